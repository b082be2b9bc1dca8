/* lbind.h: the C modules that make up `assetd.core`. Each l_<module>.c adds its functions to
 * the module table on top of the stack. */
#ifndef ASSETD_LBIND_H
#define ASSETD_LBIND_H

#include <lauxlib.h>
#include <lua.h>

int luaopen_assetd_core(lua_State *L);
void l_fetch_open(lua_State *L);
void l_jobdb_open(lua_State *L);
void l_store_open(lua_State *L);
void l_httpd_open(lua_State *L);
void l_crypto_open(lua_State *L);
void l_repl_open(lua_State *L);
void l_deadline_open(lua_State *L);

/* Register the metatable NAME once: METHODS as its __index, META (__gc, __tostring, ...) on
 * it. Leaves the stack as it was. */
void l_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta);

/* Push S with its secrets redacted (log_redact) as a Lua string, and return it. */
const char *l_pushredacted(lua_State *L, const char *s);

/* Option readers shared by the bindings: field K of the table at index T. */
double l_optnumfield(lua_State *L, int t, const char *k, double def);
/* An integer, or a float with an exact integer value (not 1e300). */
lua_Integer l_optintfield(lua_State *L, int t, const char *k, lua_Integer def);
const char *l_optstrfield(lua_State *L, int t, const char *k, const char *def);

#endif
