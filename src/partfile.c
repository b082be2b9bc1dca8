/* partfile.c: where a body is written while it downloads, and how it becomes the final file.
 * Nothing partial ever stands under the final name: the rename happens only after fsync. */
#include "partfile.h"

#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

void partfile_init(partfile *p) {
    p->fd = p->dirfd = -1;
    p->base[0] = p->part[0] = '\0';
}

/* Hash what a previous attempt left, so the final digest covers every byte. */
static int hash_existing(partfile *p, int64_t len, EVP_MD_CTX *sha) {
    char buf[64 << 10];
    for (int64_t done = 0; done < len;) {
        size_t want = (size_t)(len - done < (int64_t)sizeof buf ? len - done : (int64_t)sizeof buf);
        ssize_t r = pread(p->fd, buf, want, done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? errno : EIO;
        EVP_DigestUpdate(sha, buf, (size_t)r);
        done += r;
    }
    return 0;
}

int partfile_open(partfile *p, const char *path, int resume, EVP_MD_CTX *sha, int64_t *kept,
                  const char **what) {
    char dir[4096];
    struct stat st;
    *kept = 0;
    *what = "invalid target path";
    if (path_split(path, dir, sizeof dir, p->base, sizeof p->base) != 0 ||
        path_part_name(p->base, p->part, sizeof p->part) != 0)
        return EINVAL;
    *what = "open directory of";
    if ((p->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) return errno;
    *what = "open .part for";
    int flags = O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (resume ? 0 : O_TRUNC);
    if ((p->fd = openat(p->dirfd, p->part, flags, 0644)) < 0) return errno;
    *what = "stat .part of";
    if (fstat(p->fd, &st) != 0) return errno;
    if (resume && st.st_size > 0) {
        *what = "read .part of";
        int err = hash_existing(p, st.st_size, sha);
        if (err) return err;
        *kept = st.st_size;
    }
    *what = "seek .part of";
    return lseek(p->fd, 0, SEEK_END) < 0 ? errno : 0;
}

int partfile_restart(partfile *p) {
    if (ftruncate(p->fd, 0) != 0 || lseek(p->fd, 0, SEEK_SET) < 0) return errno;
    return 0;
}

int partfile_write(partfile *p, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(p->fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

int partfile_commit(partfile *p) {
    if (fsync(p->fd) != 0) return errno;
    if (renameat(p->dirfd, p->part, p->dirfd, p->base) != 0) return errno;
    return fsync(p->dirfd) != 0 ? errno : 0;
}

void partfile_close(partfile *p) {
    if (p->fd >= 0) close(p->fd);
    if (p->dirfd >= 0) close(p->dirfd);
    p->fd = p->dirfd = -1;
}
