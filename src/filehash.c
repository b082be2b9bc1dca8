/* filehash.c: one pass over a file feeding three digests at once (the part's SHA-256 and MD5,
 * and the whole file's MD5), so a multipart upload reads its file once to learn every part's
 * x-amz-content-sha256 and the ETag to verify, and once more to send it. */
#include "filehash.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK ((size_t)1 << 20)

static void hex(const unsigned char *d, unsigned n, char *out) {
    for (unsigned i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void finish(EVP_MD_CTX *c, char *out) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(c, d, &n);
    hex(d, n, out);
}

static int hash_fd(int fd, filehash *h, unsigned char *buf) {
    EVP_MD_CTX *whole = EVP_MD_CTX_new(), *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
    int err = whole && sha && md5 ? 0 : ENOMEM;
    if (!err && EVP_DigestInit_ex(whole, EVP_md5(), NULL) != 1) err = EIO;
    for (size_t i = 0; !err && i < h->nparts; i++) {
        filehash_part *p = &h->parts[i];
        if (EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1 || EVP_DigestInit_ex(md5, EVP_md5(), NULL) != 1) {
            err = EIO;
            break;
        }
        for (int64_t done = 0; done < p->length;) {
            size_t want = p->length - done < (int64_t)CHUNK ? (size_t)(p->length - done) : CHUNK;
            ssize_t got = pread(fd, buf, want, p->offset + done);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) { err = got < 0 ? errno : EIO; break; }   /* it shrank: EIO */
            EVP_DigestUpdate(sha, buf, (size_t)got);
            EVP_DigestUpdate(md5, buf, (size_t)got);
            EVP_DigestUpdate(whole, buf, (size_t)got);
            done += got;
        }
        if (err) break;
        finish(sha, p->sha256);
        finish(md5, p->md5);
    }
    if (!err) finish(whole, h->md5);
    EVP_MD_CTX_free(whole);
    EVP_MD_CTX_free(sha);
    EVP_MD_CTX_free(md5);
    return err;
}

int filehash_file(const char *path, int64_t part_size, filehash *out) {
    memset(out, 0, sizeof *out);
    if (part_size <= 0) return EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0) return errno;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); return e; }
    out->size = st.st_size;
    out->part_size = part_size;
    out->nparts = st.st_size == 0 ? 1 : (size_t)((st.st_size + part_size - 1) / part_size);
    out->parts = calloc(out->nparts, sizeof *out->parts);
    unsigned char *buf = malloc(CHUNK);
    int err = out->parts && buf ? 0 : ENOMEM;
    for (size_t i = 0; !err && i < out->nparts; i++) {
        out->parts[i].offset = (int64_t)i * part_size;
        int64_t left = st.st_size - out->parts[i].offset;
        out->parts[i].length = left < part_size ? left : part_size;
    }
    if (!err) err = hash_fd(fd, out, buf);
    free(buf);
    close(fd);
    if (err) filehash_free(out);
    return err;
}

void filehash_free(filehash *h) {
    free(h->parts);
    h->parts = NULL;
    h->nparts = 0;
}
