/* l_repl.c: `assetd.repl` in the core module (listen on the attach socket, count sessions) and
 * the session handle a Lua session talks through: write, error, info, prompt, guard. The
 * handle outlives its session; once the session is gone its methods do nothing. */
#include "lbind.h"
#include "repl.h"

#include <lauxlib.h>
#include <string.h>

#define SESSION_MT "assetd.repl.session"

typedef struct lsession {
    repl_session *s;           /* NULL once the session is closed */
} lsession;

static lsession *check_session(lua_State *L) {
    return luaL_checkudata(L, 1, SESSION_MT);
}

static int write_kind(lua_State *L, enum repl_out kind) {
    lsession *h = check_session(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (h->s) repl_session_write(h->s, kind, p, n);
    lua_pushboolean(L, h->s != NULL);
    return 1;
}

static int s_write(lua_State *L) { return write_kind(L, REPL_OUT); }
static int s_error(lua_State *L) { return write_kind(L, REPL_ERR); }
static int s_info(lua_State *L) { return write_kind(L, REPL_INFO); }

static int s_prompt(lua_State *L) {
    lsession *h = check_session(L);
    const char *p = luaL_optstring(L, 2, "> ");
    if (h->s) repl_session_prompt(h->s, p);
    return 0;
}

/* h:guard(): called first thing by a chunk's task; the hook watches that thread. */
static int s_guard(lua_State *L) {
    lsession *h = check_session(L);
    rt_check_task(L, "session:guard");
    if (h->s) repl_session_guard(h->s, L);
    return 0;
}

static int s_kind(lua_State *L) {
    lsession *h = check_session(L);
    lua_pushstring(L, h->s ? repl_session_kind(h->s) : "closed");
    return 1;
}

static int s_tostring(lua_State *L) {
    lsession *h = check_session(L);
    lua_pushfstring(L, "assetd.repl.session(%s)", h->s ? repl_session_kind(h->s) : "closed");
    return 1;
}

int l_repl_session_open(lua_State *L, repl_session *s, int *fn_ref, int *ud_ref) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "assetd.repl");
    if (rt_pcall(L, 1, 1, "require assetd.repl") != LUA_OK) return -1;
    lua_getfield(L, -1, "session");
    lua_remove(L, -2);
    lsession *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->s = s;
    luaL_setmetatable(L, SESSION_MT);
    lua_pushvalue(L, -1);
    *ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushstring(L, repl_session_kind(s));
    int st = rt_pcall(L, 2, 1, "repl session");
    if (st != LUA_OK || !lua_isfunction(L, -1)) {
        if (st == LUA_OK) lua_pop(L, 1);
        l_repl_session_detach(L, *ud_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, *ud_ref);
        *ud_ref = LUA_NOREF;
        return -1;
    }
    *fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

void l_repl_session_detach(lua_State *L, int ud_ref) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ud_ref);
    lsession *h = luaL_testudata(L, -1, SESSION_MT);
    if (h) h->s = NULL;
    lua_pop(L, 1);
}

/* assetd.repl.listen([path]) -> path | nil, err; the default is {data}/assetd.sock */
static int l_listen(lua_State *L) {
    rt_runtime *rt = rt_get(L);
    const char *path = luaL_optstring(L, 1, NULL);
    /* a listener opened now would outlive the stop's close of the loop's handles */
    if (rt->stopping) return rt_fail(L, "canceled", "repl.listen: the daemon is stopping");
    if (!path) path = lua_pushfstring(L, "%s/" REPL_SOCKET_NAME, rt->opts.data);
    char err[512];
    if (repl_listen(rt, path, err, sizeof err) != 0) return rt_fail(L, "io", "%s", err);
    lua_pushstring(L, path);
    return 1;
}

/* assetd.repl.budget([seconds]) -> seconds REPL code may hold the loop between yields */
static int l_budget(lua_State *L) {
    double secs = luaL_optnumber(L, 1, 0);
    luaL_argcheck(L, secs >= 0 && secs <= 86400, 1, "budget must be 0..86400 seconds");
    unsigned ms = repl_budget(secs > 0 ? (unsigned)(secs * 1000 + 0.5) : 0);
    lua_pushnumber(L, ms / 1000.0);
    return 1;
}

static int l_sessions(lua_State *L) {
    lua_pushinteger(L, repl_session_count());
    return 1;
}

void l_repl_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"write", s_write}, {"error", s_error}, {"info", s_info}, {"prompt", s_prompt},
        {"guard", s_guard}, {"kind", s_kind}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"listen", l_listen}, {"sessions", l_sessions}, {"budget", l_budget}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__tostring", s_tostring}, {NULL, NULL}};
    l_newclass(L, SESSION_MT, methods, meta);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "repl");
}
