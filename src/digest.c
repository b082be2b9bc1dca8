/* digest.c: parsing of the digests a server vouches for a body with (see digest.h). Tolerant of
 * whitespace and of members it does not know, strict about the one it uses: anything but
 * exactly 32 bytes of base64 is no digest at all, never a guess. */
#include "digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define B64_LEN 44      /* 32 bytes: 43 characters and one '=' */

static int b64_char(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static int decode_sha256(const char *s, size_t len, unsigned char out[DIGEST_SHA256_LEN]) {
    unsigned char buf[DIGEST_SHA256_LEN + 1];
    if (len != B64_LEN || s[B64_LEN - 1] != '=') return -1;
    for (size_t i = 0; i < B64_LEN - 1; i++)
        if (!b64_char((unsigned char)s[i])) return -1;
    /* EVP_DecodeBlock counts the padding as a zero byte: 33 for 32 */
    if (EVP_DecodeBlock(buf, (const unsigned char *)s, B64_LEN) != DIGEST_SHA256_LEN + 1) return -1;
    memcpy(out, buf, DIGEST_SHA256_LEN);
    return 0;
}

/* Past the dictionary member at P: after its ',' (a quoted string's commas are its own). */
static const char *next_member(const char *p) {
    for (; *p; p++) {
        if (*p == ',') return p + 1;
        if (*p != '"') continue;
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\' && p[1]) p++;
        if (!*p) return p;
    }
    return p;
}

int digest_parse_rfc9530(const char *v, unsigned char out[DIGEST_SHA256_LEN]) {
    for (const char *p = v; *p; p = next_member(p)) {
        p += strspn(p, " \t");
        size_t klen = strcspn(p, "=;, \t");
        if (klen != 7 || strncmp(p, "sha-256", 7) != 0 || strncmp(p + 7, "=:", 2) != 0) continue;
        const char *b = p + 9, *e = strchr(b, ':');
        return e ? decode_sha256(b, (size_t)(e - b), out) : -1;
    }
    return -1;
}

int digest_parse_base64(const char *v, unsigned char out[DIGEST_SHA256_LEN]) {
    v += strspn(v, " \t");
    size_t n = strcspn(v, " \t");
    if (v[n + strspn(v + n, " \t")] != '\0') return -1;
    return decode_sha256(v, n, out);
}

void digest_hex(const unsigned char d[DIGEST_SHA256_LEN], char out[2 * DIGEST_SHA256_LEN + 1]) {
    for (int i = 0; i < DIGEST_SHA256_LEN; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}
