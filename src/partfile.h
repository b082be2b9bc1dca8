/* partfile.h: the `.NAME.part` file a download streams into, and its atomic commit to NAME
 * (fsync, rename, fsync the directory). Opened relative to the directory fd, never through a
 * symbolic link. Functions return 0 or an errno value. */
#ifndef ASSETD_PARTFILE_H
#define ASSETD_PARTFILE_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

typedef struct partfile {
    int fd, dirfd;
    char base[256];      /* NAME */
    char part[300];      /* .NAME.part */
    char *wbuf;          /* small writes gathered into one write(2) */
    size_t wlen;
} partfile;

void partfile_init(partfile *p);
/* Open (creating) the .part beside PATH. With RESUME its bytes are kept and counted in
 * *KEPT; otherwise it is emptied. *WHAT names the step that failed. */
int partfile_open(partfile *p, const char *path, int resume, int64_t *kept, const char **what);
int partfile_restart(partfile *p);
int partfile_write(partfile *p, const char *buf, size_t len);
/* Write what partfile_write gathered; hash, commit and close do it first. */
int partfile_flush(partfile *p);
/* Blocking, meant for the thread pool: feed every byte of the .part to SHA; then commit. */
int partfile_hash(partfile *p, EVP_MD_CTX *sha);
int partfile_commit(partfile *p);
void partfile_close(partfile *p);

#endif
