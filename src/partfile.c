/* partfile.c: where a body is written while it downloads, and how it becomes the final file.
 * Nothing partial ever stands under the final name: the rename happens only after fsync. */
#include "partfile.h"

#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void partfile_init(partfile *p) {
    p->fd = p->dirfd = -1;
    p->base[0] = p->part[0] = '\0';
    p->wbuf = NULL;
    p->wlen = 0;
}

#define HASH_CHUNK ((size_t)256 << 10)

/* The digest of the whole .part, read back from the page cache on the thread pool: the loop
 * thread only receives and writes, like a plain downloader, and a resumed prefix needs no
 * blocking read when the transfer starts. */
int partfile_hash(partfile *p, EVP_MD_CTX *sha) {
    struct stat st;
    int flushed = partfile_flush(p);
    if (flushed) return flushed;
    if (fstat(p->fd, &st) != 0) return errno;
    char *buf = malloc(HASH_CHUNK);
    if (!buf) return ENOMEM;
    int err = 0;
    for (int64_t done = 0; done < st.st_size;) {
        size_t want = (size_t)(st.st_size - done < (int64_t)HASH_CHUNK ? st.st_size - done : (int64_t)HASH_CHUNK);
        ssize_t r = pread(p->fd, buf, want, done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { err = r < 0 ? errno : EIO; break; }
        if (EVP_DigestUpdate(sha, buf, (size_t)r) != 1) { err = EIO; break; }
        done += r;
    }
    free(buf);
    return err;
}

int partfile_open(partfile *p, const char *path, int resume, int64_t *kept, const char **what) {
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
    if (resume) *kept = st.st_size;
    *what = "seek .part of";
    return lseek(p->fd, 0, SEEK_END) < 0 ? errno : 0;
}

int partfile_restart(partfile *p) {
    p->wlen = 0;
    if (ftruncate(p->fd, 0) != 0 || lseek(p->fd, 0, SEEK_SET) < 0) return errno;
    return 0;
}

#define WBUF ((size_t)128 << 10)

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

int partfile_flush(partfile *p) {
    if (p->wlen == 0) return 0;
    int err = write_all(p->fd, p->wbuf, p->wlen);
    p->wlen = 0;
    return err;
}

/* libcurl hands the body over in pieces of at most 16 KiB (CURL_MAX_WRITE_SIZE): gathering
 * them into 128 KiB writes took 8 of 9 write calls away and a fifth of the batch's system
 * time (docs/performance.md). */
int partfile_write(partfile *p, const char *buf, size_t len) {
    if (!p->wbuf && !(p->wbuf = malloc(WBUF))) return write_all(p->fd, buf, len);
    if (p->wlen + len > WBUF) {
        int err = partfile_flush(p);
        if (err) return err;
        if (len >= WBUF) return write_all(p->fd, buf, len);
    }
    memcpy(p->wbuf + p->wlen, buf, len);
    p->wlen += len;
    return 0;
}

int partfile_commit(partfile *p) {
    int err = partfile_flush(p);
    if (err) return err;
    if (fsync(p->fd) != 0) return errno;
    if (renameat(p->dirfd, p->part, p->dirfd, p->base) != 0) return errno;
    return fsync(p->dirfd) != 0 ? errno : 0;
}

void partfile_close(partfile *p) {
    if (p->fd >= 0) partfile_flush(p);       /* kept for a resume */
    free(p->wbuf);
    p->wbuf = NULL;
    if (p->fd >= 0) close(p->fd);
    if (p->dirfd >= 0) close(p->dirfd);
    p->fd = p->dirfd = -1;
}
