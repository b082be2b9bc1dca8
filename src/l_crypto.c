/* l_crypto.c: the few primitives webhook verification and API tokens need, from OpenSSL's
 * libcrypto: HMAC-SHA256, base64 both ways and a constant-time comparison. Policy (which
 * header, which secret, the time window) lives in lua/assetd/webhooks.lua. */
#include "lbind.h"
#include "lmodules.h"

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>

static int l_hmac_sha256(lua_State *L) {
    size_t klen, mlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &olen))
        return luaL_error(L, "HMAC-SHA256 failed");
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

/* Strict standard base64 (padding required); nil for anything else. */
static int l_base64_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n % 4 != 0 || n >= (1u << 30)) return 0;
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, n / 4 * 3 + 1);
    int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    if (len < 0) return 0;
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (n && s[n - 1] == '=') len--;
    if (n > 1 && s[n - 2] == '=') len--;
    luaL_pushresultsize(&b, (size_t)len);
    return 1;
}

/* digest(name, s) -> the raw digest of S ("sha256" or "md5"): the composite checksums and
 * ETags an object store gives a multipart object are digests of its parts' digests. */
static int l_digest(lua_State *L) {
    static const char *const names[] = {"sha256", "md5", NULL};
    int which = luaL_checkoption(L, 1, NULL, names);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int olen = 0;
    if (EVP_Digest(s, n, out, &olen, which == 0 ? EVP_sha256() : EVP_md5(), NULL) != 1)
        return luaL_error(L, "digest failed");
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
