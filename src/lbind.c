/* lbind.c: the helpers every binding shares (the role of Lua's lauxlib for assetd's own
 * modules): metatables for a class, option fields of a table read with their types checked,
 * and strings pushed with their secrets redacted. Nothing here opens a module. */
#include "lbind.h"
#include "log.h"

#include <lauxlib.h>

void l_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta) {
    if (luaL_newmetatable(L, name)) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        luaL_setfuncs(L, meta, 0);
    }
    lua_pop(L, 1);
}

double l_optnumfield(lua_State *L, int t, const char *k, double def) {
    int ty = lua_getfield(L, t, k);
    double v = def;
    if (ty == LUA_TNUMBER) v = lua_tonumber(L, -1);
    else if (ty != LUA_TNIL) luaL_error(L, "option '%s' must be a number, got %s", k, lua_typename(L, ty));
    lua_pop(L, 1);
    return v;
}

lua_Integer l_optintfield(lua_State *L, int t, const char *k, lua_Integer def) {
    int ty = lua_getfield(L, t, k), exact = 1;
    lua_Integer v = def;
    if (ty == LUA_TNUMBER) v = lua_tointegerx(L, -1, &exact);
    if ((ty != LUA_TNUMBER && ty != LUA_TNIL) || !exact)
        luaL_error(L, "option '%s' must be an integer, got %s", k, lua_typename(L, ty));
    lua_pop(L, 1);
    return v;
}

const char *l_optstrfield(lua_State *L, int t, const char *k, const char *def) {
    int ty = lua_getfield(L, t, k);
    const char *v = def;
    if (ty == LUA_TSTRING) v = lua_tostring(L, -1);
    else if (ty != LUA_TNIL) luaL_error(L, "option '%s' must be a string, got %s", k, lua_typename(L, ty));
    lua_pop(L, 1);            /* the string stays alive in the options table */
    return v;
}

const char *l_pushredacted(lua_State *L, const char *s) {
    size_t n = log_redact_into(s, NULL, 0);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n + 1);
    log_redact_into(s, p, n + 1);
    luaL_pushresultsize(&b, n);
    return lua_tostring(L, -1);
}
