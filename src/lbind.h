/* lbind.h: the helpers every binding shares (lbind.c; the role of lauxlib for assetd's own
 * modules). The modules themselves are listed in lmodules.h. */
#ifndef ASSETD_LBIND_H
#define ASSETD_LBIND_H

#include <lauxlib.h>
#include <lua.h>

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
