/* l_log.c: logging in `assetd.core`: assetd.log.debug/info/warn/error(msg, fields) over
 * log.c, and the secrets policy Lua needs to hide values (redact, is_secret_key, secret_env). */
#include "lbind.h"
#include "lmodules.h"
#include "log.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

/* ---- logging --------------------------------------------------------------------------- */

static int cmp_fields(const void *a, const void *b) {
    return strcmp(((const log_field *)a)->key, ((const log_field *)b)->key);
}

static int log_at(lua_State *L, enum log_level level) {
    const char *msg = luaL_checkstring(L, 1);
    if (!log_enabled(level)) return 0;
    log_field f[32];
    size_t n = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_settop(L, 2);
        luaL_checkstack(L, 2 * 32 + 8, NULL);
        /* each field leaves (key, string) on the stack, which keeps both alive */
        for (lua_pushnil(L); lua_next(L, 2);) {
            if (n == 32 || lua_type(L, -2) != LUA_TSTRING) { lua_pop(L, 1); continue; }
            f[n].raw = lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TBOOLEAN;
            luaL_tolstring(L, -1, NULL);
            lua_replace(L, -2);
            f[n].key = lua_tostring(L, -2);
            f[n].val = lua_tostring(L, -1);
            lua_pushvalue(L, -2);
            n++;
        }
    }
    qsort(f, n, sizeof f[0], cmp_fields);
    log_fields(level, msg, f, n);
    return 0;
}

static int l_log_debug(lua_State *L) { return log_at(L, LOG_DEBUG); }
static int l_log_info(lua_State *L) { return log_at(L, LOG_INFO); }
static int l_log_warn(lua_State *L) { return log_at(L, LOG_WARN); }
static int l_log_error(lua_State *L) { return log_at(L, LOG_ERROR); }

/* assetd.redact(text) -> text with secret values and URL passwords as [redacted] */
static int l_redact(lua_State *L) {
    l_pushredacted(L, luaL_checkstring(L, 1));
    return 1;
}

/* assetd.secret_env -> the names of the environment variables holding secrets */
static void push_secret_env(lua_State *L) {
    lua_newtable(L);
    const char *const *names = log_secret_env();
    for (int i = 0; names[i]; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_is_secret_key(lua_State *L) {
    lua_pushboolean(L, log_is_secret_key(luaL_checkstring(L, 1)));
    return 1;
}

void l_log_open(lua_State *L) {
    static const luaL_Reg fns[] = {{"is_secret_key", l_is_secret_key}, {"redact", l_redact}, {NULL, NULL}};
    static const luaL_Reg logfns[] = {
        {"debug", l_log_debug}, {"info", l_log_info}, {"warn", l_log_warn},
        {"error", l_log_error}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    luaL_newlib(L, logfns);
    lua_setfield(L, -2, "log");
    push_secret_env(L);
    lua_setfield(L, -2, "secret_env");
}
