/* l_deadline.c: `assetd.deadline_queue()`, the engine's earliest-deadline-first heap
 * (deadline.c) for Lua, so the download slots and the transfer admission order by one
 * queue. Each queued Lua value is held in the queue's uservalue table by an integer ref. */
#include "deadline.h"
#include "lbind.h"
#include "lmodules.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>

#define DEADLINE_MT "assetd.deadline_queue"

static deadline_queue *check_queue(lua_State *L) {
    return luaL_checkudata(L, 1, DEADLINE_MT);
}

static int l_deadline_queue(lua_State *L) {
    deadline_queue *q = lua_newuserdatauv(L, sizeof *q, 1);
    deadline_queue_init(q);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, DEADLINE_MT);
    return 1;
}

/* q:push(deadline, value): deadline nil or +inf for none; equal deadlines leave in order. */
static int q_push(lua_State *L) {
    deadline_queue *q = check_queue(L);
    double deadline = luaL_optnumber(L, 2, HUGE_VAL);
    luaL_argcheck(L, !isnan(deadline), 2, "deadline is NaN");
    luaL_checkany(L, 3);
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 3);
    int ref = luaL_ref(L, -2);
    if (deadline_queue_push(q, deadline, (void *)(intptr_t)ref) != 0) {
        luaL_unref(L, -1, ref);
        return luaL_error(L, "deadline queue: out of memory");
    }
    return 0;
}

/* q:pop() -> value, deadline (the earliest), or nothing when empty. */
static int q_pop(lua_State *L) {
    deadline_queue *q = check_queue(L);
    deadline_item it;
    if (deadline_queue_pop(q, &it) != 0) return 0;
    int ref = (int)(intptr_t)it.data;
    lua_getiuservalue(L, 1, 1);
    lua_rawgeti(L, -1, ref);
    luaL_unref(L, -2, ref);
    lua_pushnumber(L, it.deadline);
    return 2;
}

static int q_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)deadline_queue_len(check_queue(L)));
    return 1;
}

static int q_gc(lua_State *L) {
    deadline_queue_free(check_queue(L));
    return 0;
}

void l_deadline_open(lua_State *L) {
    static const luaL_Reg methods[] = {{"push", q_push}, {"pop", q_pop}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__len", q_len}, {"__gc", q_gc}, {NULL, NULL}};
    l_newclass(L, DEADLINE_MT, methods, meta);
    lua_pushcfunction(L, l_deadline_queue);
    lua_setfield(L, -2, "deadline_queue");
}
