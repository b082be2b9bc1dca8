/* lmodules.h: the C modules that make up `assetd.core`, opened by l_assetd.c (linit's role).
 * Each l_<module>_open adds its functions to the module table on top of the stack. */
#ifndef ASSETD_LMODULES_H
#define ASSETD_LMODULES_H

#include <lua.h>

int luaopen_assetd_core(lua_State *L);
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
