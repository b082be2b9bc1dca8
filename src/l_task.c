/* l_task.c: tasks in `assetd.core`: spawn (a coroutine on the loop, runtime.c's), bounded
 * (a call under a time budget, for pipeline hooks) and stop (the daemon's end). */
#include "lbind.h"
#include "lmodules.h"
#include "runtime.h"

#include <lauxlib.h>

/* ---- tasks ----------------------------------------------------------------------------- */

/* assetd.spawn([opts,] fn, ...): opts = {on_error = fn(msg), name = "...", detached = bool} */
static int l_spawn(lua_State *L) {
    int top = lua_gettop(L), base = lua_istable(L, 1) ? 2 : 1, handler = 0, flags = 0;
    const char *name = "task";
    if (base == 2) {
        name = l_optstrfield(L, 1, "name", name);
        if (lua_getfield(L, 1, "detached") != LUA_TNIL && lua_toboolean(L, -1)) flags |= RT_DETACHED;
        lua_pop(L, 1);
        if (lua_getfield(L, 1, "on_error") != LUA_TNIL) {
            luaL_argcheck(L, lua_isfunction(L, -1), 1, "on_error must be a function");
            handler = lua_gettop(L);
        } else {
            lua_pop(L, 1);
        }
    }
    luaL_checktype(L, base, LUA_TFUNCTION);
    luaL_checkstack(L, top - base + 4, "too many arguments");
    for (int i = base; i <= top; i++) lua_pushvalue(L, i);
    rt_spawn(L, top - base, handler, name, flags);
    return 1;
}

/* ---- time budgets --------------------------------------------------------------------- */

/* The hook a bounded call found on its thread, put back when it ends (the REPL's, or none). */
typedef struct saved_hook {
    lua_Hook hook;
    int mask, count;
} saved_hook;

static int bounded_done(lua_State *L, int status, lua_KContext ctx) {
    saved_hook *s = lua_touserdata(L, 1);
    rt_budget_leave(L);
    lua_sethook(L, s->hook, s->mask, s->count);
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, 3);
    return lua_gettop(L) - 2;
}

/* assetd.bounded(seconds, fn, ...) -> true, results... | false, message_with_traceback.
 * Like xpcall, with a time budget: FN may wait (yield) as long as it likes, but holding the
 * loop for SECONDS without yielding raises in it. Pipeline hooks run under it. */
static int l_bounded(lua_State *L) {
    lua_Number secs = luaL_checknumber(L, 1);
    luaL_argcheck(L, secs > 0 && secs <= 86400, 1, "budget must be > 0 and <= 86400 seconds");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 2;
    saved_hook *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->hook = lua_gethook(L);
    s->mask = lua_gethookmask(L);
    s->count = lua_gethookcount(L);
    lua_replace(L, 1);                           /* saved fn args... */
    lua_pushcfunction(L, rt_traceback);
    lua_insert(L, 2);                            /* saved handler fn args... */
    rt_budget_enter(L, (unsigned)(secs * 1000 + 0.5));
    return bounded_done(L, lua_pcallk(L, nargs, LUA_MULTRET, 2, 0, bounded_done), 0);
}

static int l_stop(lua_State *L) {
    rt_stop(rt_get(L), (int)luaL_optinteger(L, 1, 0));
    return 0;
}

void l_task_open(lua_State *L) {
    static const luaL_Reg fns[] = {{"spawn", l_spawn}, {"bounded", l_bounded}, {"stop", l_stop}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
