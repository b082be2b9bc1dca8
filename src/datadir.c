/* datadir.c: one daemon per data directory. The daemon holds an exclusive flock on
 * DIR/assetd.lock for its whole life (the kernel drops it at any exit, kill -9 included), and
 * the file says whose it is, so a second daemon can name the pid that holds it. */
#include "datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int holder_pid(int fd) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    int pid = 0;
    if (n > 0 && sscanf(buf, "%d", &pid) == 1) return pid;
    return 0;
}

int datadir_lock(const char *dir, char *err, size_t errlen) {
    char path[4096];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "data directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (snprintf(path, sizeof path, "%s/assetd.lock", dir) >= (int)sizeof path) {
        snprintf(err, errlen, "data directory %s: path too long", dir);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "data directory %s: cannot open its lock file: %s", dir, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno, pid = holder_pid(fd);
        close(fd);
        if (e == EWOULDBLOCK && pid > 0) snprintf(err, errlen, "data directory %s is in use by pid %d", dir, pid);
        else if (e == EWOULDBLOCK) snprintf(err, errlen, "data directory %s is in use by another assetd", dir);
        else snprintf(err, errlen, "data directory %s: cannot lock it: %s", dir, strerror(e));
        return -1;
    }
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        snprintf(err, errlen, "data directory %s: cannot write its lock file: %s", dir, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;                                    /* held open, and so locked, until exit */
}
