/* store.c: the file side of the versioned store. Every name that reaches the disk is checked
 * here or in path.c; directories are walked with openat and O_NOFOLLOW so nothing is written
 * outside the root, whatever links someone plants under it. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int store_valid_id(const char *id) {
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        if (!ok || n >= 128) return 0;
    }
    return n > 0;
}

static int mkdir_p(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int r = mkdir(path, 0755);
        *p = '/';
        if (r != 0 && errno != EEXIST) return errno;
    }
    return mkdir(path, 0755) != 0 && errno != EEXIST ? errno : 0;
}

int store_open_root(const char *root, int *fd) {
    char *copy = strdup(root);
    if (!copy) return ENOMEM;
    int err = mkdir_p(copy);
    free(copy);
    if (err) return err;
    *fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *fd < 0 ? errno : 0;
}

int store_open_batch(int rootfd, const char *batch, int create, int *fd) {
    if (!store_valid_id(batch)) return EINVAL;
    if (create && mkdirat(rootfd, batch, 0755) != 0 && errno != EEXIST) return errno;
    *fd = openat(rootfd, batch, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd >= 0) return 0;
    int err = errno;
    struct stat st;
    /* O_DIRECTORY makes a link fail as ENOTDIR: say what it really is */
    if (err == ENOTDIR && fstatat(rootfd, batch, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        err = ELOOP;
    return err;
}

/* N when P is "V{N}" followed by '.', '_' or nothing; else -1. */
static int64_t version_at(const char *p) {
    if (*p++ != 'V') return -1;
    int64_t n = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 18; p++, digits++) n = n * 10 + (*p - '0');
    if (digits == 0 || (*p != '\0' && *p != '.' && *p != '_')) return -1;
    return n;
}

/* Every way NAME reads as "{video}_V{N}...": a video id may itself contain "_V1", so each
 * '_' that starts a version gives one (prefix, N); the caller keeps the prefixes it knows. */
static void versions_of(const char *name, store_version_cb cb, void *ud) {
    for (const char *u = strchr(name, '_'); u; u = strchr(u + 1, '_')) {
        int64_t n = u > name ? version_at(u + 1) : -1;
        if (n >= 0) cb(name, (size_t)(u - name), n, ud);
    }
}

int store_scan_versions(int batchfd, store_version_cb cb, void *ud) {
    int fd = dup(batchfd);
    if (fd < 0) return errno;
    DIR *d = fdopendir(fd);
    if (!d) { int err = errno; close(fd); return err; }
    rewinddir(d);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL)
        versions_of(ent->d_name[0] == '.' ? ent->d_name + 1 : ent->d_name, cb, ud);
    closedir(d);
    return 0;
}
