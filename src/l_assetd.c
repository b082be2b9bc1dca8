/* l_assetd.c: the `assetd.core` module: time, sleeping, timers, tasks, logging and the
 * daemon's options. Waiting functions yield only the calling task; handles are userdata
 * pinned in the registry while libuv uses them (luv's rule), released in their close callback. */
#include "clock.h"
#include "datadir.h"
#include "lbind.h"
#include "log.h"
#include "runtime.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TIMER_MT "assetd.timer"

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

static int l_now(lua_State *L) {
    lua_pushnumber(L, clock_now());
    return 1;
}

static int l_monotonic(lua_State *L) {
    lua_pushnumber(L, (double)uv_hrtime() / 1e9);
    return 1;
}

static uint64_t delay_ms(lua_State *L, double secs) {
    luaL_argcheck(L, secs == secs, 1, "delay is NaN");
    if (secs <= 0) return 0;
    if (secs > 1e9) secs = 1e9;
    return (uint64_t)ceil(secs * 1000.0);
}

/* ---- one-shot timer handles, shared by sleep and timer/at ------------------------------ */

typedef struct ltimer {
    uv_timer_t h;
    rt_wait wait;           /* for sleep */
    rt_task *task;          /* sleeping task, or NULL for a callback timer */
    int ref;                /* pin while the handle is open */
    int fn;                 /* callback for timer/at */
    int canceled, closed;
    struct lalarm *alarm;   /* the alarm a sleep can be woken by, if any */
    int rang;
} ltimer;

/* An alarm (below): a sleep another task or an HTTP handler can cut short. */
typedef struct lalarm {
    ltimer *sleeping;       /* the sleep in progress, if any */
    int rung;               /* rung while nobody slept: the next sleep returns at once */
} lalarm;

static void ltimer_closed(uv_handle_t *h) {
    ltimer *t = h->data;
    rt_runtime *rt = t->h.loop->data;
    t->closed = 1;
    luaL_unref(rt->L, LUA_REGISTRYINDEX, t->fn);
    luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
    t->fn = t->ref = LUA_NOREF;
}

static void ltimer_close(ltimer *t) {
    if (!uv_is_closing((uv_handle_t *)&t->h)) uv_close((uv_handle_t *)&t->h, ltimer_closed);
}

static ltimer *ltimer_new(lua_State *L, const char *mt) {
    rt_runtime *rt = rt_get(L);
    ltimer *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    t->fn = t->ref = LUA_NOREF;
    if (mt) luaL_setmetatable(L, mt);
    if (uv_timer_init(rt->loop, &t->h) != 0) luaL_error(L, "cannot create a timer");
    uv_update_time(rt->loop);     /* the loop's cached time may be stale after long Lua work */
    t->h.data = t;
    lua_pushvalue(L, -1);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return t;
}

/* Once the daemon stops nothing new may keep the loop alive or run Lua: a timer made then is
 * closed at once (it never fires; its handle says "done"), and a sleep never ends (its task
 * is left waiting, as every waiting task is at the stop). */
static void arm(lua_State *L, ltimer *t, uv_timer_cb cb, uint64_t ms) {
    if (rt_get(L)->stopping) ltimer_close(t);
    else uv_timer_start(&t->h, cb, ms, 0);
}

/* The end of a sleep, plain or on an alarm: true (rung, or a plain sleep's time is up), false
 * (an alarm's time ran out), or a `canceled` error. */
static void sleep_fired(uv_timer_t *h) {
    ltimer *t = h->data;
    lua_State *co = rt_task_thread(t->task);
    int n = 1;
    if (t->alarm && t->alarm->sleeping == t) t->alarm->sleeping = NULL;
    if (t->canceled) n = rt_fail(co, "canceled", "sleep canceled");
    else lua_pushboolean(co, t->rang);
    ltimer_close(t);
    rt_resume(t->task, n);
}

static void sleep_cancel(rt_wait *w) {
    ltimer *t = (ltimer *)((char *)w - offsetof(ltimer, wait));
    t->canceled = 1;
    uv_timer_start(&t->h, sleep_fired, 0, 0);     /* resume from the loop, not from here */
}

/* Start a sleep of SECS for TASK, which an alarm may cut short when ALARM is not NULL; the
 * caller then yields on the timer's wait. */
static ltimer *sleep_start(lua_State *L, rt_task *task, double secs, struct lalarm *alarm) {
    ltimer *t = ltimer_new(L, NULL);
    lua_pop(L, 1);
    t->task = task;
    t->alarm = alarm;
    t->rang = alarm == NULL;
    t->wait.cancel = sleep_cancel;
    arm(L, t, sleep_fired, delay_ms(L, secs));
    return t;
}

static int l_sleep(lua_State *L) {
    double secs = luaL_checknumber(L, 1);
    rt_task *task = rt_check_task(L, "assetd.sleep");
    return rt_wait_yield(L, task, &sleep_start(L, task, secs, NULL)->wait);
}

/* ---- alarms: a sleep another task (or an HTTP handler) can cut short --------------------- */

#define ALARM_MT "assetd.alarm"


/* alarm:sleep(secs) -> true when rung, false when the time ran out; nil, err if canceled */
static int alarm_sleep(lua_State *L) {
    lalarm *a = luaL_checkudata(L, 1, ALARM_MT);
    double secs = luaL_checknumber(L, 2);
    rt_task *task = rt_check_task(L, "alarm:sleep");
    luaL_argcheck(L, a->sleeping == NULL, 1, "another task is already sleeping on this alarm");
    if (a->rung) {
        a->rung = 0;
        lua_pushboolean(L, 1);
        return 1;
    }
    ltimer *t = sleep_start(L, task, secs, a);
    /* after the stop the timer is already closing and will be freed: a ring must not reach it */
    if (!rt_get(L)->stopping) a->sleeping = t;
    return rt_wait_yield(L, task, &t->wait);
}

/* alarm:ring(): wakes the sleeper from the loop (never from inside this call) */
static int alarm_ring(lua_State *L) {
    lalarm *a = luaL_checkudata(L, 1, ALARM_MT);
    ltimer *t = a->sleeping;
    if (!t) a->rung = 1;
    else if (!t->rang && !t->canceled) {
        t->rang = 1;
        uv_timer_start(&t->h, sleep_fired, 0, 0);
    }
    return 0;
}

static int alarm_gc(lua_State *L) {
    lalarm *a = luaL_checkudata(L, 1, ALARM_MT);
    if (a->sleeping) a->sleeping->alarm = NULL;        /* the sleep ends on its own time */
    return 0;
}

static int l_alarm(lua_State *L) {
    lalarm *a = lua_newuserdatauv(L, sizeof *a, 0);
    memset(a, 0, sizeof *a);
    luaL_setmetatable(L, ALARM_MT);
    return 1;
}

static void timer_fired(uv_timer_t *h) {
    ltimer *t = h->data;
    rt_runtime *rt = h->loop->data;
    lua_State *L = rt->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn);
    ltimer_close(t);
    rt_spawn(L, 0, 0, "timer", 0);
    lua_pop(L, 1);
}

static int start_timer(lua_State *L, double secs) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    ltimer *t = ltimer_new(L, TIMER_MT);
    lua_pushvalue(L, 2);
    t->fn = luaL_ref(L, LUA_REGISTRYINDEX);
    arm(L, t, timer_fired, delay_ms(L, secs));
    return 1;
}

static int l_timer(lua_State *L) { return start_timer(L, luaL_checknumber(L, 1)); }
static int l_at(lua_State *L) { return start_timer(L, luaL_checknumber(L, 1) - clock_now()); }

static int timer_cancel(lua_State *L) {
    ltimer *t = luaL_checkudata(L, 1, TIMER_MT);
    int was_pending = !t->closed && !uv_is_closing((uv_handle_t *)&t->h);
    if (was_pending) ltimer_close(t);
    lua_pushboolean(L, was_pending);
    return 1;
}

static int timer_tostring(lua_State *L) {
    ltimer *t = luaL_checkudata(L, 1, TIMER_MT);
    int pending = !t->closed && !uv_is_closing((uv_handle_t *)&t->h);
    lua_pushfstring(L, "assetd.timer(%s)", pending ? "pending" : "done");
    return 1;
}

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

/* assetd.lock_data(dir) -> true | nil, err: this process becomes DIR's one daemon (datadir.c) */
static int l_lock_data(lua_State *L) {
    char err[512];
    if (datadir_lock(luaL_checkstring(L, 1), err, sizeof err) < 0) return rt_fail(L, "busy", "%s", err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_stop(lua_State *L) {
    rt_stop(rt_get(L), (int)luaL_optinteger(L, 1, 0));
    return 0;
}

/* ---- logging --------------------------------------------------------------------------- */

static int cmp_fields(const void *a, const void *b) {
    return strcmp(((const log_field *)a)->key, ((const log_field *)b)->key);
}

static int log_at(lua_State *L, enum log_level level) {
    const char *msg = luaL_checkstring(L, 1);
    if (!log_enabled(level)) return 0;
    log_field f[32];
    size_t n = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_settop(L, 2);
        luaL_checkstack(L, 2 * 32 + 8, NULL);
        /* each field leaves (key, string) on the stack, which keeps both alive */
        for (lua_pushnil(L); lua_next(L, 2);) {
            if (n == 32 || lua_type(L, -2) != LUA_TSTRING) { lua_pop(L, 1); continue; }
            f[n].raw = lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TBOOLEAN;
            luaL_tolstring(L, -1, NULL);
            lua_replace(L, -2);
            f[n].key = lua_tostring(L, -2);
            f[n].val = lua_tostring(L, -1);
            lua_pushvalue(L, -2);
            n++;
        }
    }
    qsort(f, n, sizeof f[0], cmp_fields);
    log_fields(level, msg, f, n);
    return 0;
}

static int l_log_debug(lua_State *L) { return log_at(L, LOG_DEBUG); }
static int l_log_info(lua_State *L) { return log_at(L, LOG_INFO); }
static int l_log_warn(lua_State *L) { return log_at(L, LOG_WARN); }
static int l_log_error(lua_State *L) { return log_at(L, LOG_ERROR); }

const char *l_pushredacted(lua_State *L, const char *s) {
    size_t n = log_redact_into(s, NULL, 0);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n + 1);
    log_redact_into(s, p, n + 1);
    luaL_pushresultsize(&b, n);
    return lua_tostring(L, -1);
}

/* assetd.redact(text) -> text with secret values and URL passwords as [redacted] */
static int l_redact(lua_State *L) {
    l_pushredacted(L, luaL_checkstring(L, 1));
    return 1;
}

/* assetd.secret_env -> the names of the environment variables holding secrets */
static void push_secret_env(lua_State *L) {
    lua_newtable(L);
    const char *const *names = log_secret_env();
    for (int i = 0; names[i]; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_is_secret_key(lua_State *L) {
    lua_pushboolean(L, log_is_secret_key(luaL_checkstring(L, 1)));
    return 1;
}

static int l_error(lua_State *L) {
    const char *category = luaL_checkstring(L, 1);
    const char *message = luaL_checkstring(L, 2);
    rt_push_error(L, category, "%s", message);
    if (lua_istable(L, 3)) {                      /* extra fields: status, retry_after, ... */
        for (lua_pushnil(L); lua_next(L, 3); ) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
    }
    return 1;
}

static void push_options(lua_State *L, const struct rt_options *o) {
    lua_createtable(L, 0, 6);
    lua_pushstring(L, o->listen);
    lua_setfield(L, -2, "listen");
    lua_pushstring(L, o->data);
    lua_setfield(L, -2, "data");
    lua_pushstring(L, o->log_level);
    lua_setfield(L, -2, "log_level");
    lua_pushstring(L, o->log_format);
    lua_setfield(L, -2, "log_format");
    lua_pushboolean(L, o->interactive);
    lua_setfield(L, -2, "interactive");
    lua_pushboolean(L, o->check);
    lua_setfield(L, -2, "check");
}

int luaopen_assetd_core(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"now", l_now}, {"monotonic", l_monotonic}, {"sleep", l_sleep}, {"timer", l_timer},
        {"at", l_at}, {"alarm", l_alarm}, {"spawn", l_spawn}, {"bounded", l_bounded}, {"lock_data", l_lock_data}, {"stop", l_stop}, {"error", l_error},
        {"is_secret_key", l_is_secret_key}, {"redact", l_redact}, {NULL, NULL}};
    static const luaL_Reg logfns[] = {
        {"debug", l_log_debug}, {"info", l_log_info}, {"warn", l_log_warn},
        {"error", l_log_error}, {NULL, NULL}};
    static const luaL_Reg timer_methods[] = {{"cancel", timer_cancel}, {NULL, NULL}};
    static const luaL_Reg timer_meta[] = {{"__tostring", timer_tostring}, {NULL, NULL}};
    static const luaL_Reg alarm_methods[] = {{"sleep", alarm_sleep}, {"ring", alarm_ring}, {NULL, NULL}};
    static const luaL_Reg alarm_meta[] = {{"__gc", alarm_gc}, {NULL, NULL}};
    l_newclass(L, TIMER_MT, timer_methods, timer_meta);
    l_newclass(L, ALARM_MT, alarm_methods, alarm_meta);
    luaL_newlib(L, fns);
    luaL_newlib(L, logfns);
    lua_setfield(L, -2, "log");
    push_secret_env(L);
    lua_setfield(L, -2, "secret_env");
    push_options(L, &rt_get(L)->opts);
    lua_setfield(L, -2, "options");
    lua_pushstring(L, rt_get(L)->luadir);
    lua_setfield(L, -2, "luadir");
    lua_pushliteral(L, ASSETD_VERSION);
    lua_setfield(L, -2, "version");
    l_fetch_open(L);
    l_jobdb_open(L);
    l_store_open(L);
    l_httpd_open(L);
    l_crypto_open(L);
    l_repl_open(L);
    l_deadline_open(L);
    return 1;
}
