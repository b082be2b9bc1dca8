/* lmodules.h: opening assetd's libraries (linit.c, the role of Lua's linit.c; its lualib.h)
 * and the C modules that make up `assetd.core`. Each l_<module>_open adds its functions to
 * the module table on top of the stack. */
#ifndef ASSETD_LMODULES_H
#define ASSETD_LMODULES_H

#include <lua.h>

/* The standard libraries, the Lua tree's searcher (LUADIR: a development tree or NULL),
 * and `cjson` and `assetd.core` in package.preload: once, on a new state from rt_init. */
void l_openlibs(lua_State *L, const char *luadir);
int luaopen_assetd_core(lua_State *L);
void l_assetd_open(lua_State *L);
void l_timer_open(lua_State *L);
void l_task_open(lua_State *L);
void l_log_open(lua_State *L);
void l_fetch_open(lua_State *L);
void l_jobdb_open(lua_State *L);
void l_store_open(lua_State *L);
void l_httpd_open(lua_State *L);
void l_crypto_open(lua_State *L);
void l_repl_open(lua_State *L);
void l_deadline_open(lua_State *L);
void l_filehash_open(lua_State *L);
void l_pg_open(lua_State *L);

#endif
