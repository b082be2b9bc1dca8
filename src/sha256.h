/* sha256.h: SHA-256 over files and OpenSSL digest contexts, as 64 lowercase hex digits: what
 * the engine, the .part file and the store record of every asset. Functions return 0 or an
 * errno value. */
#ifndef ASSETD_SHA256_H
#define ASSETD_SHA256_H

#include <openssl/evp.h>
#include <stdint.h>

/* Finish SHA and write its digest as 64 hex digits and a NUL. */
void sha256_hex(EVP_MD_CTX *sha, char hex[65]);
/* Feed SHA the bytes of FD from *FROM up to END (its end when END < 0), advancing *FROM; a
 * file that ends before END is EIO. */
int sha256_update_fd(int fd, EVP_MD_CTX *sha, int64_t *from, int64_t end);
/* The SHA-256 of everything in FD, read from the start. Blocking: for a file that was not
 * hashed on its way to the disk (committed before a crash, recorded after). */
int sha256_fd(int fd, char hex[65]);

#endif
