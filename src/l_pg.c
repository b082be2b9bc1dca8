/* l_pg.c: `assetd.pg`, PostgreSQL for Lua tasks. `pg.connect(conninfo, {connect_timeout=,
 * on_notify=})` gives a connection (pgconn.c) whose query and batch yield the calling task
 * until the answer comes: rows as tables keyed by column name, failures as nil, err. */
#include "lbind.h"
#include "lmodules.h"
#include "log.h"
#include "pgconn.h"
#include "runtime.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_MT "assetd.pg"

typedef struct lpg {
    pgconn *c;
    lua_State *L;                /* the main state, for notifications */
    int notify_ref;
    rt_closer closer;
} lpg;

typedef struct lpgq {
    rt_wait wait;
    rt_task *task;
    rt_runtime *rt;
    pgconn_req *req;
    int batch;                   /* answer a list of results, not one */
} lpgq;

static lpg *check_pg(lua_State *L) {
    lpg *p = luaL_checkudata(L, 1, PG_MT);
    if (!p->c) luaL_argerror(L, 1, "database connection is closed");
    return p;
}

/* Error text from libpq or the server may quote a conninfo: redacted like every log line. */
static int push_fail(lua_State *L, const char *msg, const char *sqlstate) {
    char buf[600];
    log_redact_into(msg, buf, sizeof buf);
    lua_pushnil(L);
    rt_push_error(L, "database", "%s", buf);
    if (sqlstate && *sqlstate) {
        lua_pushstring(L, sqlstate);
        lua_setfield(L, -2, "sqlstate");
    }
    return 2;
}

static void push_value(lua_State *L, const PGresult *res, int row, int col) {
    const char *v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case 16: lua_pushboolean(L, v[0] == 't'); return;                /* bool */
    case 20: case 21: case 23: case 26: case 700: case 701: case 1700: /* integers, floats, numeric */
        if (lua_stringtonumber(L, v) != 0) return;
        break;
    }
    lua_pushlstring(L, v, (size_t)PQgetlength(res, row, col));
}

/* One statement's result: {row, row, ..., affected = N}; a NULL column is absent. */
static void push_result(lua_State *L, const PGresult *res) {
    int rows = res ? PQntuples(res) : 0, cols = res ? PQnfields(res) : 0;
    lua_createtable(L, rows, 1);
    for (int i = 0; i < rows; i++) {
        lua_createtable(L, 0, cols);
        for (int k = 0; k < cols; k++) {
            if (PQgetisnull(res, i, k)) continue;
            push_value(L, res, i, k);
            lua_setfield(L, -2, PQfname(res, k));
        }
        lua_rawseti(L, -2, i + 1);
    }
    const char *n = res ? PQcmdTuples((PGresult *)res) : "";
    lua_pushinteger(L, *n ? (lua_Integer)strtoll(n, NULL, 10) : rows);
    lua_setfield(L, -2, "affected");
}

static int push_answer(lua_State *L, const pgconn_req *r, int batch) {
    if (pgconn_req_error(r)) return push_fail(L, pgconn_req_error(r), pgconn_req_sqlstate(r));
    if (!batch) { push_result(L, pgconn_req_result(r, 0)); return 1; }
    size_t n = pgconn_req_count(r);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push_result(L, pgconn_req_result(r, i));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static void on_done(pgconn_req *r, void *ud) {
    lpgq *q = ud;
    int n = push_answer(rt_task_thread(q->task), r, q->batch);
    pgconn_req_free(r);
    rt_task *t = q->task;
    free(q);
    rt_resume(t, n);
}

static void resume_canceled(void *arg) {
    lpgq *q = arg;
    lua_State *co = rt_task_thread(q->task);
    lua_pushnil(co);
    rt_push_error(co, "canceled", "database request canceled");
    rt_task *t = q->task;
    free(q);
    rt_resume(t, 2);
}

/* The answer may be far off (a database that stopped answering): the task goes on now and the
 * connection drops the answer when it comes. */
static void pgq_cancel(rt_wait *w) {
    lpgq *q = (lpgq *)w;
    pgconn_req_abandon(q->req);
    if (rt_defer(q->rt, resume_canceled, q) != 0) resume_canceled(q);
}

/* The parameter at stack index I as text (NULL for nil), or a raised error. */
static const char *param_text(lua_State *L, int i, int stmt, int k) {
    switch (lua_type(L, i)) {
    case LUA_TNIL: return NULL;
    case LUA_TBOOLEAN: return lua_toboolean(L, i) ? "t" : "f";
    case LUA_TNUMBER:
        if (lua_isinteger(L, i)) {
            lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, i));
        } else {
            char num[32];
            snprintf(num, sizeof num, "%.17g", (double)lua_tonumber(L, i));
            lua_pushstring(L, num);
        }
        lua_replace(L, i);
        return lua_tostring(L, i);
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, i, &len);
        if (strlen(s) != len) luaL_error(L, "pg: statement %d parameter %d holds a NUL byte", stmt, k);
        return s;
    }
    default:
        luaL_error(L, "pg: statement %d parameter %d is a %s (nil, boolean, number or string)",
                   stmt, k, luaL_typename(L, i));
        return NULL;
    }
}

/* Statement I of R from the stack: SQL at index FIRST, its parameters after it up to LAST. */
static void set_stmt(lua_State *L, pgconn_req *r, size_t i, int first, int last) {
    const char *sql = luaL_checkstring(L, first);
    int n = last - first;
    const char *params[n > 0 ? n : 1];
    for (int k = 0; k < n; k++) params[k] = param_text(L, first + 1 + k, (int)i + 1, k + 1);
    if (pgconn_req_set(r, i, sql, n, params) != 0) luaL_error(L, "out of memory");
}

static int submit(lua_State *L, lpg *p, pgconn_req *r, int batch) {
    rt_task *task = rt_current(L);
    lpgq *q = calloc(1, sizeof *q);
    if (!q) { pgconn_req_free(r); return luaL_error(L, "out of memory"); }
    q->task = task;
    q->rt = rt_get(L);
    q->req = r;
    q->batch = batch;
    q->wait.cancel = pgq_cancel;
    if (pgconn_submit(p->c, r, on_done, q) != 0) {
        pgconn_req_free(r);
        free(q);
        return push_fail(L, "database connection is closing", NULL);
    }
    return rt_wait_yield(L, task, &q->wait);
}

/* Holds R while the stack is read, so an error raised meanwhile frees it. */
static pgconn_req **boxed_req(lua_State *L, size_t n);

static int box_gc(lua_State *L) {
    pgconn_req **b = lua_touserdata(L, 1);
    pgconn_req_free(*b);
    *b = NULL;
    return 0;
}

static pgconn_req **boxed_req(lua_State *L, size_t n) {
    pgconn_req **b = lua_newuserdatauv(L, sizeof *b, 0);
    *b = NULL;
    if (luaL_newmetatable(L, "assetd.pgbox")) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (!(*b = pgconn_req_new(n))) luaL_error(L, "out of memory");
    return b;
}

static pgconn_req *unbox(pgconn_req **b) {
    pgconn_req *r = *b;
    *b = NULL;
    return r;
}

/* db:query(sql, p1, p2, ...) -> rows | nil, err */
static int l_query(lua_State *L) {
    lpg *p = check_pg(L);
    rt_check_task(L, "pg query");
    int top = lua_gettop(L);
    pgconn_req **b = boxed_req(L, 1);
    set_stmt(L, *b, 0, 2, top);
    return submit(L, p, unbox(b), 0);
}

static void on_sent(pgconn_req *r, void *ud) {
    const char *what = ud;
    if (pgconn_req_error(r)) {
        char buf[600];
        log_redact_into(pgconn_req_error(r), buf, sizeof buf);
        log_event(LOG_WARN, "database write not made", "what", what, "error", buf, NULL);
    }
    pgconn_req_free(r);
}

/* db:send(what, sql, p1, ...): a write nobody waits for (a history line): it goes out in order
 * with the connection's other requests; a failure is logged under WHAT (a static name). */
static int l_send(lua_State *L) {
    lpg *p = check_pg(L);
    static const char *const whats[] = {"event", "release", "other", NULL};
    int w = luaL_checkoption(L, 2, "other", whats);
    int top = lua_gettop(L);
    pgconn_req **b = boxed_req(L, 1);
    set_stmt(L, *b, 0, 3, top);
    pgconn_req *r = unbox(b);
    if (pgconn_submit(p->c, r, on_sent, (void *)whats[w]) != 0) {
        pgconn_req_free(r);
        return push_fail(L, "database connection is closing", NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* The highest integer key of the table at T: a statement's last parameter may be nil. */
static int stmt_len(lua_State *L, int t) {
    lua_Integer max = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
    }
    return (int)max;
}

/* db:batch({sql, p1, ...}, {sql, ...}, ...) -> {rows, rows, ...} | nil, err: all or nothing */
static int l_batch(lua_State *L) {
    lpg *p = check_pg(L);
    rt_check_task(L, "pg batch");
    int n = lua_gettop(L) - 1;
    luaL_argcheck(L, n >= 1, 2, "a batch needs a statement");
    pgconn_req **b = boxed_req(L, (size_t)n);
    for (int i = 0; i < n; i++) {
        luaL_checktype(L, 2 + i, LUA_TTABLE);
        int len = stmt_len(L, 2 + i), base = lua_gettop(L);
        luaL_argcheck(L, len >= 1 && lua_rawgeti(L, 2 + i, 1) == LUA_TSTRING, 2 + i, "a statement is {sql, params...}");
        for (int k = 2; k <= len; k++) lua_rawgeti(L, 2 + i, k);
        set_stmt(L, *b, (size_t)i, base + 1, lua_gettop(L));
        lua_settop(L, base);
    }
    return submit(L, p, unbox(b), 1);
}

static int valid_channel(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z'))) return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* db:listen(channel): notifications on CHANNEL go to on_notify(channel, payload, pid) */
static int l_listen(lua_State *L) {
    lpg *p = check_pg(L);
    const char *ch = luaL_checkstring(L, 2);
    luaL_argcheck(L, valid_channel(ch), 2, "a channel name is ^[a-z_][a-z0-9_]{0,62}$");
    if (pgconn_listen(p->c, ch) != 0) return luaL_error(L, "out of memory");
    lua_pushboolean(L, 1);
    return 1;
}

/* db:status() -> "idle" | "connecting" | "ready" | "down", the latest failure or nil */
static int l_status(lua_State *L) {
    lpg *p = check_pg(L);
    lua_pushstring(L, pgconn_state_name(pgconn_state(p->c)));
    const char *e = pgconn_last_error(p->c);
    if (*e) l_pushredacted(L, e); else lua_pushnil(L);
    return 2;
}

/* db:backend_pid() -> the server process serving this connection now (0: not connected) */
static int l_backend_pid(lua_State *L) {
    lua_pushinteger(L, pgconn_backend_pid(check_pg(L)->c));
    return 1;
}

static void on_notify(const char *channel, const char *payload, int pid, void *ud) {
    lpg *p = ud;
    if (p->notify_ref == LUA_NOREF) return;
    lua_State *L = p->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->notify_ref);
    lua_pushstring(L, channel);
    lua_pushstring(L, payload);
    lua_pushinteger(L, pid);
    rt_pcall(L, 3, 0, "pg on_notify");
}

static void pg_release(lpg *p) {
    if (!p->c) return;
    rt_closer_remove(&p->closer);
    pgconn *c = p->c;
    p->c = NULL;
    pgconn_free(c);
    luaL_unref(p->L, LUA_REGISTRYINDEX, p->notify_ref);
    p->notify_ref = LUA_NOREF;
}

static void pg_close_at_stop(rt_closer *cl) {
    pg_release((lpg *)((char *)cl - offsetof(lpg, closer)));
}

static int l_close(lua_State *L) {
    pg_release(luaL_checkudata(L, 1, PG_MT));
    return 0;
}

/* pg.connect(conninfo, {connect_timeout = seconds, on_notify = fn}) -> db | nil, err. Nothing
 * is dialled yet: the first request connects. */
static int l_connect(lua_State *L) {
    const char *info = luaL_checkstring(L, 1);
    double timeout = lua_istable(L, 2) ? l_optnumfield(L, 2, "connect_timeout", 10) : 10;
    luaL_argcheck(L, timeout >= 0 && timeout <= 3600, 2, "connect_timeout must be 0..3600 seconds");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(info, &perr);
    if (!opts) {
        lua_pushnil(L);
        char buf[400];
        log_redact_into(perr ? perr : "out of memory", buf, sizeof buf);
        PQfreemem(perr);
        size_t n = strlen(buf);
        while (n && buf[n - 1] == '\n') buf[--n] = '\0';
        rt_push_error(L, "config", "database URL: %s", buf);
        return 2;
    }
    PQconninfoFree(opts);
    int notify = LUA_NOREF;
    if (lua_istable(L, 2) && lua_getfield(L, 2, "on_notify") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TFUNCTION);
        notify = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    rt_runtime *rt = rt_get(L);
    lpg *p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    p->L = rt->L;
    p->notify_ref = notify;
    luaL_setmetatable(L, PG_MT);
    if (!(p->c = pgconn_new(rt->loop, info, (unsigned)(timeout * 1000), on_notify, p)))
        return luaL_error(L, "out of memory");
    rt_closer_add(rt, &p->closer, pg_close_at_stop);
    return 1;
}

void l_pg_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"query", l_query}, {"batch", l_batch}, {"send", l_send}, {"listen", l_listen}, {"status", l_status}, {"backend_pid", l_backend_pid},
        {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_close}, {"__close", l_close}, {NULL, NULL}};
    l_newclass(L, PG_MT, methods, meta);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_connect);
    lua_setfield(L, -2, "connect");
    lua_setfield(L, -2, "pg");
}
