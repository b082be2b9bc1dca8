/* l_repl.c: `assetd.repl` in the core module (listen on the attach socket, count sessions),
 * the session handle a Lua session talks through (write, error, info, prompt, guard), and
 * the handler repl.c hands each session's lines to. The handle outlives its session; once
 * the session is gone its methods do nothing. A count hook on the running chunk stops REPL
 * code that holds the loop: on an interrupt, or after repl_budget(). */
#include "lbind.h"
#include "lmodules.h"
#include "repl.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_MT "assetd.repl.session"
#define HOOK_COUNT 1000

typedef struct lsession {
    repl_session *s;           /* NULL once the session is closed */
    lua_State *chunk;          /* the running chunk's thread, for the hook */
} lsession;

/* A session's Lua side, kept in *repl_session_user: its input function and its handle. */
typedef struct lrepl {
    int fn_ref, ud_ref;
    lsession *h;
} lrepl;

/* The hooked threads' sessions: thread -> its session handle (kept alive while the thread
 * is), weak-keyed in the registry. */
static const char CHUNKS;

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
    h->chunk = NULL;                          /* the chunk ended: no thread to interrupt */
    if (h->s) repl_session_prompt(h->s, p);
    return 0;
}

/* On a chunk's thread and on every thread it creates (tasks and coroutines inherit the hook
 * from the thread that makes them), so nothing typed at the REPL holds the loop past the
 * budget, now or when a task it spawned runs later. */
static void chunk_hook(lua_State *L, lua_Debug *ar) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CHUNKS);
    lua_pushthread(L);
    lua_rawget(L, -2);
    lsession *h = lua_touserdata(L, -1);
    lua_pop(L, 2);
    if (h && h->s && h->chunk == L && repl_session_take_interrupt(h->s)) luaL_error(L, "interrupted");
    /* Measured from the resume of the task running now (a coroutine runs inside one): the
     * loop's time (uv_now) is no base, since bindings may update it (assetd.timer does). */
    rt_runtime *rt = rt_get(L);
    unsigned budget = repl_budget(rt->repl, 0);
    rt_task *t = rt->running;
    if (t && uv_hrtime() - rt_task_resumed(t) > (uint64_t)budget * 1000000)
        luaL_error(L, "interrupted: held the event loop for over %f s without yielding",
                   (double)budget / 1000);
}

/* h:guard(): called first thing by a chunk's task; the hook watches that thread. */
static int s_guard(lua_State *L) {
    lsession *h = check_session(L);
    rt_check_task(L, "session:guard");
    if (!h->s) return 0;
    h->chunk = L;
    repl_session_take_interrupt(h->s);        /* one asked before the chunk began is not its */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CHUNKS);
    lua_pushthread(L);
    lua_pushvalue(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_sethook(L, chunk_hook, LUA_MASKCOUNT, HOOK_COUNT);
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

/* ---- the handler repl.c calls ----------------------------------------------------------- */

/* A Lua session for S: require("assetd.repl").session(handle, kind) gives its input function. */
static int session_open(void *ud, repl_session *s) {
    lua_State *L = ud;
    lrepl *r = calloc(1, sizeof *r);
    if (!r) return -1;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "assetd.repl");
    if (rt_pcall(L, 1, 1, "require assetd.repl") != LUA_OK) { free(r); return -1; }
    lua_getfield(L, -1, "session");
    lua_remove(L, -2);
    r->h = lua_newuserdatauv(L, sizeof *r->h, 0);
    memset(r->h, 0, sizeof *r->h);
    r->h->s = s;
    luaL_setmetatable(L, SESSION_MT);
    lua_pushvalue(L, -1);
    r->ud_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushstring(L, repl_session_kind(s));
    int st = rt_pcall(L, 2, 1, "repl session");
    if (st != LUA_OK || !lua_isfunction(L, -1)) {
        if (st == LUA_OK) lua_pop(L, 1);
        r->h->s = NULL;
        luaL_unref(L, LUA_REGISTRYINDEX, r->ud_ref);
        free(r);
        return -1;
    }
    r->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *repl_session_user(s) = r;
    return 0;
}

static void session_input(void *ud, repl_session *s, const char *what, const char *line, size_t n) {
    lua_State *L = ud;
    lrepl *r = *repl_session_user(s);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
    lua_pushstring(L, what);
    if (line) lua_pushlstring(L, line, n);
    else lua_pushnil(L);
    if (rt_pcall(L, 2, 0, "repl session") != LUA_OK && r->h->s && !rt_get(L)->stopping) {
        static const char msg[] = "repl: internal error (the daemon's log has it)\n";
        repl_session_write(s, REPL_ERR, msg, sizeof msg - 1);
        repl_session_prompt(s, "> ");
    }
}

/* The running chunk raises at its next instruction (chunk_hook takes the interrupt). */
static void session_interrupt(void *ud, repl_session *s) {
    lrepl *r = *repl_session_user(s);
    if (r->h->chunk) lua_sethook(r->h->chunk, chunk_hook, LUA_MASKCOUNT, 1);
}

static void session_close(void *ud, repl_session *s) {
    lua_State *L = ud;
    lrepl *r = *repl_session_user(s);
    r->h->s = NULL;
    r->h->chunk = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, r->ud_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, r->fn_ref);
    free(r);
}

/* assetd.repl.listen(path) -> path | nil, err (repl.lua's default: {data}/assetd.repl.socket_name) */
static int l_listen(lua_State *L) {
    rt_runtime *rt = rt_get(L);
    const char *path = luaL_checkstring(L, 1);
    /* a listener opened now would outlive the stop's close of the loop's handles */
    if (rt->stopping) return rt_fail(L, "canceled", "repl.listen: the daemon is stopping");
    char err[512];
    if (repl_listen(rt->repl, path, err, sizeof err) != 0) return rt_fail(L, "io", "%s", err);
    lua_pushstring(L, path);
    return 1;
}

/* assetd.repl.budget([seconds]) -> seconds REPL code may hold the loop between yields */
static int l_budget(lua_State *L) {
    double secs = luaL_optnumber(L, 1, 0);
    luaL_argcheck(L, secs >= 0 && secs <= 86400, 1, "budget must be 0..86400 seconds");
    unsigned ms = repl_budget(rt_get(L)->repl, secs > 0 ? (unsigned)(secs * 1000 + 0.5) : 0);
    lua_pushnumber(L, ms / 1000.0);
    return 1;
}

static int l_sessions(lua_State *L) {
    lua_pushinteger(L, repl_session_count(rt_get(L)->repl));
    return 1;
}

void l_repl_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"write", s_write}, {"error", s_error}, {"info", s_info}, {"prompt", s_prompt},
        {"guard", s_guard}, {"kind", s_kind}, {NULL, NULL}};
    static const luaL_Reg fns[] = {{"listen", l_listen}, {"sessions", l_sessions}, {"budget", l_budget}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__tostring", s_tostring}, {NULL, NULL}};
    static const repl_handler handler = {session_open, session_input, session_interrupt, session_close};
    l_newclass(L, SESSION_MT, methods, meta);
    lua_newtable(L);                          /* CHUNKS: weak keys, a thread gone is dropped */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CHUNKS);
    rt_runtime *rt = rt_get(L);
    repl_set_handler(rt->repl, &handler, rt->L);
    luaL_newlib(L, fns);
    lua_pushliteral(L, REPL_SOCKET_NAME);     /* where `assetd attach --data DIR` looks */
    lua_setfield(L, -2, "socket_name");
    lua_setfield(L, -2, "repl");
}
