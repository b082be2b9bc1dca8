/* partfile.c: where a body is written while it downloads, and how it becomes the final file.
 * The loop thread only copies pieces into a block; full blocks are hashed and written on the
 * thread pool, so neither SHA-256 nor a slow disk stalls the loop, and the hash is taken while
 * the bytes are in the cache instead of reading the file back. Nothing partial ever stands
 * under the final name: the rename happens only after fsync. */
#include "partfile.h"

#include "path.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

/* O_DIRECT's alignment for buffers, offsets and lengths: a multiple of every logical block
 * size Linux supports. */
#define ALIGN ((size_t)4096)

/* Writes through the page cache go in pieces of this size, as curl's do. A larger write makes
 * the kernel allocate a larger folio, and on a VM whose balloon reports free memory to the
 * host (Firecracker, many clouds) large free blocks are the ones reported: touching them
 * again costs a host fault per page. On this project's VM `dd bs=256K` of 1 GiB took
 * 0.6-1.6 s after 8 s idle, `bs=16K` 0.25-0.45 s; the benchmark batch without O_DIRECT went
 * from 2.28 s to 1.52 s (docs/performance.md, profile 11). */
#define PAGECACHE_PIECE ((size_t)16 << 10)

void partfile_init(partfile *p) {
    memset(p, 0, sizeof *p);
    p->fd = p->dirfd = -1;
}

static int pwrite_all(int fd, const char *buf, size_t len, int64_t off) {
    while (len > 0) {
        ssize_t w = pwrite(fd, buf, len, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        buf += w;
        len -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Feed sha what the file holds before END and sha has not seen: a resumed prefix, or the
 * whole file when a previous attempt had every byte. Never with O_DIRECT (see open). */
static int catch_up(partfile *p, int64_t end) {
    if (!p->sha || p->hashed >= end) return 0;
    return sha256_update_fd(p->fd, p->sha, &p->hashed, end);
}

static int write_out(const partfile *p, const char *buf, size_t len, int64_t off) {
    size_t piece = p->direct ? len : PAGECACHE_PIECE;
    int err = 0;
    for (size_t done = 0; done < len && !err; done += piece) {
        size_t n = len - done < piece ? len - done : piece;
        err = pwrite_all(p->fd, buf + done, n, off + (int64_t)done);
    }
    return err;
}

/* Hash then write LEN bytes at OFF, on a thread-pool thread. */
static int put(partfile *p, const char *buf, size_t len, int64_t off) {
    int err = catch_up(p, off);
    if (err) return err;
    if (p->sha) {
        if (EVP_DigestUpdate(p->sha, buf, len) != 1) return EIO;
        p->hashed = off + (int64_t)len;
    }
    return write_out(p, buf, len, off);
}

static void block_work(uv_work_t *w) {
    partfile *p = w->data;
    p->work_err = put(p, p->work_buf, PARTFILE_BLOCK, p->work_off);   /* only full blocks go */
}

static void block_done(uv_work_t *w, int status) {
    partfile *p = w->data;
    p->busy = 0;
    if (!p->err) p->err = status ? EIO : p->work_err;
    if (p->ready) p->ready(p->ud);
}

static int submit(partfile *p) {
    p->work_buf = p->blk[p->cur];
    p->work_off = p->off;
    p->off += (int64_t)p->fill;
    p->fill = 0;
    p->cur ^= 1;
    p->busy = 1;
    p->work.data = p;
    int rc = uv_queue_work(p->loop, &p->work, block_work, block_done);
    if (rc == 0) return 0;
    p->busy = 0;
    return EIO;
}

/* O_DIRECT only for a new file: its blocks then stay aligned, and a resumed prefix is hashed
 * by plain reads. Filesystems without it (EINVAL) write through the page cache. */
static void try_direct(partfile *p) {
    int fl = fcntl(p->fd, F_GETFL);
    if (fl >= 0 && fcntl(p->fd, F_SETFL, fl | O_DIRECT) == 0) p->direct = 1;
}

/* The tail of a file is not a whole block: written through the page cache. */
static int end_direct(partfile *p) {
    if (!p->direct) return 0;
    int fl = fcntl(p->fd, F_GETFL);
    if (fl < 0 || fcntl(p->fd, F_SETFL, fl & ~O_DIRECT) != 0) return errno;
    p->direct = 0;
    return 0;
}

int partfile_open(partfile *p, const char *path, int flags, int64_t *kept, const char **what) {
    char dir[4096];
    struct stat st;
    *kept = 0;
    *what = "invalid target path";
    if (path_split(path, dir, sizeof dir, p->base, sizeof p->base) != 0 ||
        path_part_name(p->base, p->part, sizeof p->part) != 0)
        return EINVAL;
    *what = "open directory of";
    if ((p->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) return errno;
    *what = "target exists:";
    if ((flags & PARTFILE_NEW) && fstatat(p->dirfd, p->base, &st, AT_SYMLINK_NOFOLLOW) == 0) return EEXIST;
    *what = "open .part for";
    int resume = flags & PARTFILE_RESUME;
    int oflags = O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (resume ? 0 : O_TRUNC);
    if ((p->fd = openat(p->dirfd, p->part, oflags, 0644)) < 0) return errno;
    *what = "stat .part of";
    if (fstat(p->fd, &st) != 0) return errno;
    if (resume) *kept = st.st_size;
    p->off = *kept;
    if ((flags & PARTFILE_DIRECT) && *kept == 0) try_direct(p);
    return 0;
}

int partfile_get_validator(const partfile *p, char *out, size_t cap) {
    ssize_t n = fgetxattr(p->fd, PARTFILE_VALIDATOR_XATTR, out, cap - 1);
    if (n < 0) return errno == EOPNOTSUPP ? ENOTSUP : errno;
    out[n] = '\0';
    if (n == 0 || memchr(out, '\0', (size_t)n)) return ENODATA;     /* not one of ours */
    return 0;
}

int partfile_set_validator(partfile *p, const char *v) {
    if (v && *v) return fsetxattr(p->fd, PARTFILE_VALIDATOR_XATTR, v, strlen(v), 0) == 0 ? 0 : errno;
    if (fremovexattr(p->fd, PARTFILE_VALIDATOR_XATTR) == 0 || errno == ENODATA) return 0;
    return errno == EOPNOTSUPP ? ENOTSUP : errno;
}

int partfile_free_space(const partfile *p, int64_t *avail) {
    struct statvfs sv;
    if (fstatvfs(p->fd, &sv) != 0) return errno;
    *avail = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
    return 0;
}

int partfile_open_target(const partfile *p, int *fd) {
    *fd = openat(p->dirfd, p->base, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    return *fd < 0 ? errno : 0;
}

int partfile_discard(partfile *p) {
    return unlinkat(p->dirfd, p->part, 0) == 0 || errno == ENOENT ? 0 : errno;
}

int partfile_restart(partfile *p) {
    if (p->busy) return EBUSY;
    if (ftruncate(p->fd, 0) != 0) return errno;
    p->off = p->hashed = 0;
    p->fill = 0;
    if (p->sha && EVP_DigestInit_ex(p->sha, EVP_sha256(), NULL) != 1) return EIO;
    return 0;
}

int partfile_busy(const partfile *p) { return p->busy; }

int partfile_full(const partfile *p, size_t len) {
    return p->busy && p->fill + len >= PARTFILE_BLOCK;
}

/* Blocks given back by closed partfiles, for the next transfers: a fresh block is an mmap
 * whose every page faults on its first write, and its free is a munmap. With many small files
 * that was 7% of the CPU (docs/performance.md, profile 13); at most BLOCK_CACHE are kept
 * (8 transfers x 2 blocks), so memory stays what the busiest moment needed. */
#define BLOCK_CACHE 16
static pthread_mutex_t block_mu = PTHREAD_MUTEX_INITIALIZER;
static void *block_cache[BLOCK_CACHE];
static int block_n;

static void *block_get(void) {
    void *m = NULL;
    pthread_mutex_lock(&block_mu);
    if (block_n > 0) m = block_cache[--block_n];
    pthread_mutex_unlock(&block_mu);
    if (!m && posix_memalign(&m, ALIGN, PARTFILE_BLOCK) != 0) return NULL;
    return m;
}

static void block_put(void *m) {
    if (!m) return;
    pthread_mutex_lock(&block_mu);
    if (block_n < BLOCK_CACHE) { block_cache[block_n++] = m; m = NULL; }
    pthread_mutex_unlock(&block_mu);
    free(m);
}

static int ensure_block(partfile *p, int i) {
    if (p->blk[i]) return 0;
    if (!(p->blk[i] = block_get())) return ENOMEM;
    return 0;
}

/* At most one block fills per call (LEN <= PARTFILE_BLOCK), so nothing is ever half taken. */
int partfile_write(partfile *p, const char *buf, size_t len) {
    if (p->err) return p->err;
    if (len > PARTFILE_BLOCK) return E2BIG;
    if (partfile_full(p, len)) return EBUSY;
    while (len > 0) {
        if (ensure_block(p, p->cur) != 0) return ENOMEM;
        size_t n = PARTFILE_BLOCK - p->fill < len ? PARTFILE_BLOCK - p->fill : len;
        memcpy(p->blk[p->cur] + p->fill, buf, n);
        p->fill += n;
        buf += n;
        len -= n;
        if (p->fill == PARTFILE_BLOCK && submit(p) != 0) return EIO;
    }
    return 0;
}

int partfile_finish(partfile *p) {
    if (p->err) return p->err;
    int err = end_direct(p);
    if (!err && p->fill) err = put(p, p->blk[p->cur], p->fill, p->off);
    if (err) return p->err = err;        /* so partfile_close does not try it again, on the loop */
    p->off += (int64_t)p->fill;
    p->fill = 0;
    return catch_up(p, p->off);
}

/* Rename the .part to its final name unless that name is taken (EEXIST): a file is never
 * replaced, whoever put it there. Filesystems without RENAME_NOREPLACE get a link and an
 * unlink, which refuse the same way (a crash between the two leaves the .part, which the
 * runner removes when it records the file); only one with neither (some FUSE and network
 * filesystems) falls back to a plain rename, which would replace. */
static int publish(partfile *p) {
    if (renameat2(p->dirfd, p->part, p->dirfd, p->base, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return errno;
    if (linkat(p->dirfd, p->part, p->dirfd, p->base, 0) == 0)
        return unlinkat(p->dirfd, p->part, 0) == 0 ? 0 : errno;
    if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS) return errno;
    return renameat(p->dirfd, p->part, p->dirfd, p->base) == 0 ? 0 : errno;
}

int partfile_commit(partfile *p) {
    fremovexattr(p->fd, PARTFILE_VALIDATOR_XATTR);    /* only the .part needs it; none is fine */
    if (fsync(p->fd) != 0) return errno;
    int err = publish(p);
    if (err) return err;
    return fsync(p->dirfd) != 0 ? errno : 0;
}

void partfile_close(partfile *p) {
    if (p->busy) return;     /* the owner waits for p->ready first; freeing now would crash */
    if (p->fd >= 0 && p->fill && !p->err && end_direct(p) == 0)
        write_out(p, p->blk[p->cur], p->fill, p->off);       /* kept for a resume */
    for (int i = 0; i < 2; i++) block_put(p->blk[i]);
    if (p->fd >= 0) close(p->fd);
    if (p->dirfd >= 0) close(p->dirfd);
    partfile_init(p);
}
