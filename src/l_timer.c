/* l_timer.c: time in `assetd.core`: now, monotonic, sleep, one-shot timers (timer, at) and
 * alarms (a sleep another task can cut short). Waiting functions yield only the calling
 * task; handles are userdata pinned in the registry while libuv uses them (luv's rule),
 * released in their close callback. */
#include "clock.h"
#include "lbind.h"
#include "lmodules.h"
#include "runtime.h"

#include <lauxlib.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#define TIMER_MT "assetd.timer"

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
    rt_runtime *rt;         /* the runtime, for libuv's callbacks (rt_get is the way in Lua) */
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
    rt_runtime *rt = t->rt;
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
    t->rt = rt;
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
    lua_State *L = t->rt->L;
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

void l_timer_open(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"now", l_now}, {"monotonic", l_monotonic}, {"sleep", l_sleep}, {"timer", l_timer},
        {"at", l_at}, {"alarm", l_alarm}, {NULL, NULL}};
    static const luaL_Reg timer_methods[] = {{"cancel", timer_cancel}, {NULL, NULL}};
    static const luaL_Reg timer_meta[] = {{"__tostring", timer_tostring}, {NULL, NULL}};
    static const luaL_Reg alarm_methods[] = {{"sleep", alarm_sleep}, {"ring", alarm_ring}, {NULL, NULL}};
    static const luaL_Reg alarm_meta[] = {{"__gc", alarm_gc}, {NULL, NULL}};
    l_newclass(L, TIMER_MT, timer_methods, timer_meta);
    l_newclass(L, ALARM_MT, alarm_methods, alarm_meta);
    luaL_setfuncs(L, fns, 0);
}
