/* store.h: the versioned file store's mechanisms: id checks, batch directories opened without
 * following links, the versions present on disk, the SHA-256 of a file, and the file-signature
 * check a variant must pass before its commit. Functions return 0 or an errno value. */
#ifndef ASSETD_STORE_H
#define ASSETD_STORE_H

#include <openssl/evp.h>
#include <stdint.h>

/* ^[A-Za-z0-9_-]{1,128}$ */
int store_valid_id(const char *id);
/* Open ROOT (created with its parents when missing) as a directory fd. */
int store_open_root(const char *root, int *fd);
/* Open ROOTFD/BATCH, creating it when CREATE; a symbolic link there is refused (ELOOP). */
int store_open_batch(int rootfd, const char *batch, int create, int *fd);
/* One pass over BATCHFD: CB(video, video_len, N, UD) for every "{video}_V{N}" that names a
 * file or its ".part" file ("{video}_V{N}" followed by '.', '_' or nothing). Reading a whole
 * batch once lets the caller keep the highest version of every video it holds. */
typedef void (*store_version_cb)(const char *video, size_t len, int64_t n, void *ud);
int store_scan_versions(int batchfd, store_version_cb cb, void *ud);
/* Whether the file at FD looks like VARIANT ("video": MP4 ftyp; "thumbnail": WebP;
 * "spritesheet": JPEG; anything else: non-empty) and has EXPECT bytes when EXPECT >= 0.
 * Returns 0, or EINVAL with *WHY set to the reason. */
int store_check_file(int fd, const char *variant, int64_t expect, const char **why);
/* Finish SHA and write its digest as 64 hex digits and a NUL. */
void store_digest_hex(EVP_MD_CTX *sha, char hex[65]);
/* Feed SHA the bytes of FD from *FROM up to END (its end when END < 0), advancing *FROM; a
 * file that ends before END is EIO. */
int store_sha256_update(int fd, EVP_MD_CTX *sha, int64_t *from, int64_t end);
/* The SHA-256 of everything in FD, read from the start. Blocking: for a file that was not
 * hashed on its way to the disk (committed before a crash, recorded after). */
int store_sha256_fd(int fd, char hex[65]);

#endif
