/* digest.h: the SHA-256 digests a server may send with a body, parsed from their header
 * values: RFC 9530 Repr-Digest / Content-Digest ("sha-256=:BASE64:", one member of a
 * structured-field dictionary) and S3's x-amz-checksum-sha256 (bare base64). Pure functions
 * of their input, for the engine and for fuzzing. */
#ifndef ASSETD_DIGEST_H
#define ASSETD_DIGEST_H

#include <stddef.h>

#define DIGEST_SHA256_LEN 32

/* The sha-256 member of an RFC 9530 dictionary V into OUT: 0, or -1 when V has none or it is
 * not 32 bytes of valid base64 (other algorithms are skipped). */
int digest_parse_rfc9530(const char *v, unsigned char out[DIGEST_SHA256_LEN]);
/* V as the base64 of a whole object's SHA-256 into OUT: 0, or -1 (a multipart checksum,
 * "BASE64-N", describes parts, not the object). */
int digest_parse_base64(const char *v, unsigned char out[DIGEST_SHA256_LEN]);
/* OUT as 64 lowercase hex digits and a NUL. */
void digest_hex(const unsigned char d[DIGEST_SHA256_LEN], char out[2 * DIGEST_SHA256_LEN + 1]);

#endif
