/* l_assetd.c: the daemon's own facts in `assetd.core` (its options, version and Lua directory,
 * the host and pid that name it), error values made from Lua, the data directory's lock and
 * sd_notify. linit.c opens it with the other modules. */
#include "datadir.h"
#include "lbind.h"
#include "sdnotify.h"
#include "lmodules.h"
#include "runtime.h"

#include <lauxlib.h>
#include <string.h>
#include <unistd.h>

/* assetd.lock_data(dir) -> true | nil, err: this process becomes DIR's one daemon (datadir.c) */
static int l_lock_data(lua_State *L) {
    char err[512];
    if (datadir_lock(luaL_checkstring(L, 1), err, sizeof err) < 0) return rt_fail(L, "busy", "%s", err);
    lua_pushboolean(L, 1);
    return 1;
}

/* assetd.sd_notify(state) -> true (sent), false (no NOTIFY_SOCKET) | nil, err */
static int l_sd_notify(lua_State *L) {
    int r = sdnotify_send(luaL_checkstring(L, 1));
    if (r < 0) return rt_fail(L, "io", "sd_notify failed");
    lua_pushboolean(L, r > 0);
    return 1;
}

/* assetd.process() -> hostname, pid: what names this daemon among others (ASSETD_INSTANCE's default) */
static int l_process(lua_State *L) {
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    lua_pushstring(L, host);
    lua_pushinteger(L, (lua_Integer)getpid());
    return 2;
}

static int l_error(lua_State *L) {
    const char *category = luaL_checkstring(L, 1);
    const char *message = luaL_checkstring(L, 2);
    rt_push_error(L, category, "%s", message);
    if (lua_istable(L, 3)) {                      /* extra fields: status, retry_after, ... */
        for (lua_pushnil(L); lua_next(L, 3); ) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
    }
    return 1;
}

static void push_options(lua_State *L, const struct rt_options *o) {
    lua_createtable(L, 0, 7);
    lua_pushstring(L, o->listen);
    lua_setfield(L, -2, "listen");
    lua_pushstring(L, o->data);
    lua_setfield(L, -2, "data");
    lua_pushstring(L, o->database);
    lua_setfield(L, -2, "database");
    lua_pushstring(L, o->log_level);
    lua_setfield(L, -2, "log_level");
    lua_pushstring(L, o->log_format);
    lua_setfield(L, -2, "log_format");
    lua_pushboolean(L, o->interactive);
    lua_setfield(L, -2, "interactive");
    lua_pushboolean(L, o->check);
    lua_setfield(L, -2, "check");
}

void l_assetd_open(lua_State *L) {
    static const luaL_Reg fns[] = {{"lock_data", l_lock_data}, {"error", l_error}, {"process", l_process}, {"sd_notify", l_sd_notify}, {NULL, NULL}};
    rt_runtime *rt = rt_get(L);
    luaL_setfuncs(L, fns, 0);
    push_options(L, &rt->opts);
    lua_setfield(L, -2, "options");
    lua_pushstring(L, rt->luadir);            /* nil: the built-in modules only */
    lua_setfield(L, -2, "luadir");
    lua_pushliteral(L, ASSETD_VERSION);
    lua_setfield(L, -2, "version");
}
