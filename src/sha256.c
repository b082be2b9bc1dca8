/* sha256.c: SHA-256 of a file read in chunks with pread (so a caller's file offset is left
 * alone and a resumed prefix can be hashed from where the hash stopped), and the hex form
 * every result carries. OpenSSL's EVP does the hashing. */
#include "sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void sha256_hex(EVP_MD_CTX *sha, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    hex[0] = 0;
    EVP_DigestFinal_ex(sha, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int sha256_update_fd(int fd, EVP_MD_CTX *sha, int64_t *from, int64_t end) {
    enum { CHUNK = 256 << 10 };
    char *buf = malloc(CHUNK);
    if (!buf) return ENOMEM;
    int err = 0;
    while (end < 0 || *from < end) {
        size_t want = end < 0 || end - *from > CHUNK ? CHUNK : (size_t)(end - *from);
        ssize_t r = pread(fd, buf, want, *from);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = errno;
        else if (r == 0 && end >= 0) err = EIO;      /* shorter than it should be */
        if (r <= 0) break;
        if (EVP_DigestUpdate(sha, buf, (size_t)r) != 1) { err = EIO; break; }
        *from += r;
    }
    free(buf);
    return err;
}

int sha256_fd(int fd, char hex[65]) {
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    int64_t at = 0;
    int err = sha && EVP_DigestInit_ex(sha, EVP_sha256(), NULL) == 1 ? 0 : ENOMEM;
    if (!err) err = sha256_update_fd(fd, sha, &at, -1);
    if (!err) sha256_hex(sha, hex);
    EVP_MD_CTX_free(sha);
    return err;
}
