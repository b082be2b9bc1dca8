/* partfile.h: the `.NAME.part` file a download streams into, and its atomic commit to NAME
 * (fsync, rename, fsync the directory). Opened relative to the directory fd, never through a
 * symbolic link. The body goes through two aligned blocks: the loop thread fills one while
 * the thread pool hashes and writes the other. Functions return 0 or an errno value. */
#ifndef ASSETD_PARTFILE_H
#define ASSETD_PARTFILE_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The largest piece partfile_write takes, and the size of each write to the disk. */
#define PARTFILE_BLOCK ((size_t)256 << 10)

/* PARTFILE_NEW: fail with EEXIST when a file already has the final name (a commit could only
 * fail: it never replaces one). */
enum { PARTFILE_RESUME = 1, PARTFILE_DIRECT = 2, PARTFILE_NEW = 4 };

/* The extended attribute of the .part holding the validator of the answer its bytes came from. */
#define PARTFILE_VALIDATOR_XATTR "user.assetd.validator"

typedef struct partfile {
    int fd, dirfd;
    char base[256];      /* NAME */
    char part[300];      /* .NAME.part */
    /* set by the owner before partfile_open */
    uv_loop_t *loop;
    EVP_MD_CTX *sha;     /* borrowed; receives every byte of the file, in order */
    void (*ready)(void *ud);   /* on the loop: the block on the thread pool is written */
    void *ud;
    /* private */
    char *blk[2];
    size_t fill;         /* bytes in blk[cur] */
    int cur, busy, direct, err, work_err;
    int64_t off;         /* file offset of blk[cur] */
    int64_t hashed;      /* bytes from the start of the file fed to sha */
    char *work_buf;      /* the block on the thread pool */
    int64_t work_off;
    uv_work_t work;
} partfile;

void partfile_init(partfile *p);
/* Open (creating) the .part beside PATH. With PARTFILE_RESUME its bytes are kept and counted
 * in *KEPT; otherwise it is emptied. PARTFILE_DIRECT writes full blocks with O_DIRECT when
 * the filesystem allows it. *WHAT names the step that failed. */
int partfile_open(partfile *p, const char *path, int flags, int64_t *kept, const char **what);
/* The validator (an ETag or a Last-Modified date) recorded with the .part's bytes, as a string
 * into OUT: 0, ENODATA when none was recorded, ENOTSUP when the filesystem keeps no user
 * extended attributes, ERANGE when it does not fit. It lives in an extended attribute of the
 * .part, so it survives a restart or kill -9 and follows the .part wherever it goes (renamed,
 * removed, copied with it) with no second file to keep in step or clean up. */
int partfile_get_validator(const partfile *p, char *out, size_t cap);
/* Record V (NULL: remove any recorded one). */
int partfile_set_validator(partfile *p, const char *v);
/* Bytes an unprivileged writer may still put on the .part's filesystem. */
int partfile_free_space(const partfile *p, int64_t *avail);
/* Open the file already under the final name (after EEXIST from PARTFILE_NEW), read-only. */
int partfile_open_target(const partfile *p, int *fd);
/* Remove the .part: its bytes must not be resumed from (bad content, a commit that failed). */
int partfile_discard(partfile *p);
/* Empty the .part (the server sent the whole body again); not while a block is busy. */
int partfile_restart(partfile *p);
/* Whether LEN more bytes must wait for the block on the thread pool (then p->ready is
 * called). partfile_write takes at most PARTFILE_BLOCK bytes and never blocks on the disk. */
int partfile_full(const partfile *p, size_t len);
int partfile_write(partfile *p, const char *buf, size_t len);
int partfile_busy(const partfile *p);
/* Blocking, for the thread pool once no block is busy: write the rest and feed every byte not
 * yet hashed to sha; then commit: fsync, rename to the final name unless a file has it
 * (EEXIST: never replaced; the .part is kept), fsync the directory. The final file does not
 * keep the validator attribute. */
int partfile_finish(partfile *p);
int partfile_commit(partfile *p);
/* Keeps what was received for a resume; not while a block is busy. */
void partfile_close(partfile *p);

#endif
