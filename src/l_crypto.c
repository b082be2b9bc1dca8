/* l_crypto.c: the few primitives webhook verification, API tokens and S3 checksums need, from
 * OpenSSL's libcrypto: HMAC-SHA256, base64 both ways, digests and a constant-time comparison.
 * Failures are values (nil, err), as every runtime failure in assetd. Policy (which header,
 * which secret, the time window) lives in lua/assetd/webhooks.lua. */
#include "lbind.h"
#include "lmodules.h"
#include "runtime.h"

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

/* nil and a "config" error with OpenSSL's reason. A primitive that fails here fails for every
 * input (a provider not loaded, MD5 refused in FIPS mode): the setup is wrong, not the data. */
static int fail_openssl(lua_State *L, const char *what) {
    char reason[256] = "no reason given";
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    return rt_fail(L, "config", "%s failed in OpenSSL: %s", what, reason);
}

/* hmac_sha256(key, msg) -> the raw MAC, or nil, err */
static int l_hmac_sha256(lua_State *L) {
    size_t klen, mlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &olen))
        return fail_openssl(L, "HMAC-SHA256");
    lua_pushlstring(L, (const char *)out, olen);
    return 1;
}

static int l_base64_encode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_argcheck(L, n < (1u << 30), 1, "too long");
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, 4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    luaL_pushresultsize(&b, (size_t)len);
    return 1;
}

/* base64_decode(s) -> the bytes of strict standard base64 (padding required), or nil and an
 * "invalid" error: S comes from outside (a webhook secret), so bad input is no programmer's. */
static int l_base64_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n >= (1u << 30)) return rt_fail(L, "invalid", "base64: input too long");
    if (n % 4 != 0)
        return rt_fail(L, "invalid", "base64: %d characters, not a multiple of 4 (is the '=' padding missing?)", (int)n);
    /* EVP_DecodeBlock takes '=' anywhere; only the last one or two characters may be padding */
    const char *pad = memchr(s, '=', n);
    if (pad && (pad < s + n - 2 || s[n - 1] != '='))
        return rt_fail(L, "invalid", "base64: '=' before the end (it is only padding)");
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, n / 4 * 3 + 1);
    int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    if (len < 0) return rt_fail(L, "invalid", "base64: a character outside A-Z a-z 0-9 + / =");
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (n && s[n - 1] == '=') len--;
    if (n > 1 && s[n - 2] == '=') len--;
    luaL_pushresultsize(&b, (size_t)len);
    return 1;
}

/* digest(name, s) -> the raw digest of S ("sha256" or "md5"), or nil, err: the composite
 * checksums and ETags an object store gives a multipart object are digests of its parts'. */
static int l_digest(lua_State *L) {
    static const char *const names[] = {"sha256", "md5", NULL};
    int which = luaL_checkoption(L, 1, NULL, names);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int olen = 0;
    if (EVP_Digest(s, n, out, &olen, which == 0 ? EVP_sha256() : EVP_md5(), NULL) != 1)
        return fail_openssl(L, which == 0 ? "SHA-256" : "MD5");
    lua_pushlstring(L, (const char *)out, olen);
    return 1;
}

static int l_equal(lua_State *L) {
    size_t an, bn;
    const char *a = luaL_checklstring(L, 1, &an);
    const char *b = luaL_checklstring(L, 2, &bn);
    lua_pushboolean(L, an == bn && CRYPTO_memcmp(a, b, an) == 0);
    return 1;
}

void l_crypto_open(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"hmac_sha256", l_hmac_sha256}, {"base64_encode", l_base64_encode},
        {"base64_decode", l_base64_decode}, {"secure_equal", l_equal}, {"digest", l_digest}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
