/* linit.c: opens assetd's libraries in a new state (the role of Lua's linit.c): the standard
 * libraries, `require` for the Lua tree (built in, or a development tree on disk: luamods.c),
 * cjson, and `assetd.core`, whose one table each l_<module>.c fills. The embedder (main.c)
 * calls l_openlibs once after rt_init; nothing here is called back from below. */
#include "lmodules.h"
#include "luamods.h"

#include <lauxlib.h>
#include <lualib.h>

extern int luaopen_cjson(lua_State *L);

/* A development tree (LUADIR) is also on package.path, for modules a script adds beside the
 * project's own (examples, tests); the project's own come through luamods.c either way. */
static void set_paths(lua_State *L, const char *luadir) {
    if (!luadir) return;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", luadir, luadir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

static void preload(lua_State *L, const char *name, lua_CFunction open) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

void l_openlibs(lua_State *L, const char *luadir) {
    luaL_openlibs(L);
    set_paths(L, luadir);
    luamods_open(L, luadir);
    preload(L, "cjson", luaopen_cjson);
    preload(L, "assetd.core", luaopen_assetd_core);
}

int luaopen_assetd_core(lua_State *L) {
    lua_newtable(L);
    l_assetd_open(L);
    l_timer_open(L);
    l_task_open(L);
    l_log_open(L);
    l_fetch_open(L);
    l_jobdb_open(L);
    l_store_open(L);
    l_httpd_open(L);
    l_crypto_open(L);
    l_repl_open(L);
    l_deadline_open(L);
    l_filehash_open(L);
    l_pg_open(L);
    return 1;
}
