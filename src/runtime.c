/* runtime.c: the Lua state on the libuv loop, the layer every binding stands on: the daemon's
 * context in the registry (rt_get), tasks, deferred calls, error values, time budgets and the
 * orderly stop. Every piece of Lua that can wait runs as a task (a coroutine owned here);
 * waiting bindings yield the task and their completion callbacks resume it. C never calls Lua
 * unprotected: rt_pcall and task resumption catch every error. It calls no binding and opens
 * no library (linit.c does, for the embedder), so nothing it calls calls back. */
#include "runtime.h"
#include "log.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_MT "assetd.task"

struct rt_task {
    rt_runtime *rt;
    lua_State *co;
    int ref;         /* pins this userdata (and through its uservalue the thread) while alive */
    int on_error;    /* registry ref of the error handler, or LUA_NOREF */
    rt_wait *wait;
    uint64_t resumed;  /* uv_hrtime() when its current run began */
    struct rt_budget budget;
    int done, canceled, is_main;
    char name[40];
};

struct rt_deferred {
    void (*fn)(void *arg);
    void *arg;
    struct rt_deferred *next;
};

static const char RT_KEY = 'r';

rt_runtime *rt_get(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RT_KEY);
    rt_runtime *rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rt;
}

/* ---- error values ---------------------------------------------------------------------- */

static int error_tostring(lua_State *L) {
    lua_getfield(L, 1, "message");
    if (!lua_isstring(L, -1)) lua_pushliteral(L, "error");
    return 1;
}

static void push_error_mt(lua_State *L) {
    if (luaL_newmetatable(L, "assetd.error")) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
}

static void push_errorv(lua_State *L, const char *category, const char *fmt, va_list ap) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, category);
    lua_setfield(L, -2, "category");
    lua_pushvfstring(L, fmt, ap);
    lua_setfield(L, -2, "message");
    push_error_mt(L);
    lua_setmetatable(L, -2);
}

void rt_push_error(lua_State *L, const char *category, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    push_errorv(L, category, fmt, ap);
    va_end(ap);
}

int rt_fail(lua_State *L, const char *category, const char *fmt, ...) {
    va_list ap;
    lua_pushnil(L);
    va_start(ap, fmt);
    push_errorv(L, category, fmt, ap);
    va_end(ap);
    return 2;
}

/* ---- protected calls ------------------------------------------------------------------- */

int rt_traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int rt_pcall(lua_State *L, int nargs, int nresults, const char *what) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, rt_traceback);
    lua_insert(L, base);
    int st = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (st != LUA_OK) {
        log_event(LOG_ERROR, "lua error", "where", what, "error", lua_tostring(L, -1), NULL);
        lua_pop(L, 1);
    }
    return st;
}

/* ---- time budgets ---------------------------------------------------------------------- */

/* The budget of the code running now: the running task's, or the loop's own for code that C
 * calls outside any task. */
static struct rt_budget *budget_now(rt_runtime *rt) {
    return rt->running ? &rt->running->budget : &rt->budget;
}

/* Counted every RT_BUDGET_COUNT instructions, on the bounded code's thread and on every
 * coroutine it makes (they inherit the hook): time is measured from the later of the budget's
 * start and the task's latest resume, so waiting (a yield) never counts against it. */
static void budget_hook(lua_State *L, lua_Debug *ar) {
    rt_runtime *rt = rt_get(L);
    struct rt_budget *b = budget_now(rt);
    if (b->depth == 0) return;
    uint64_t since = b->since;
    if (rt->running && rt->running->resumed > since) since = rt->running->resumed;
    if (uv_hrtime() - since <= (uint64_t)b->ms * 1000000) return;
    /* from now on every instruction checks, so a pcall inside the hook cannot swallow it */
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "time budget exceeded: held the event loop for over %f s without yielding",
               (double)b->ms / 1000);
}

void rt_budget_enter(lua_State *L, unsigned ms) {
    struct rt_budget *b = budget_now(rt_get(L));
    if (b->depth++ == 0 || ms < b->ms) b->ms = ms;
    if (b->depth == 1) b->since = uv_hrtime();
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, RT_BUDGET_COUNT);
}

void rt_budget_leave(lua_State *L) {
    struct rt_budget *b = budget_now(rt_get(L));
    if (b->depth > 0) b->depth--;
}

/* ---- deferred calls -------------------------------------------------------------------- */

static void defer_run(uv_idle_t *h) {
    rt_runtime *rt = h->data;
    struct rt_deferred *d = rt->defer_head;
    rt->defer_head = rt->defer_tail = NULL;
    while (d) {
        struct rt_deferred *next = d->next;
        d->fn(d->arg);
        free(d);
        d = next;
    }
    if (!rt->defer_head) uv_idle_stop(h);
}

int rt_defer(rt_runtime *rt, void (*fn)(void *arg), void *arg) {
    struct rt_deferred *d = malloc(sizeof *d);
    if (!d) return UV_ENOMEM;
    d->fn = fn;
    d->arg = arg;
    d->next = NULL;
    if (rt->defer_tail) rt->defer_tail->next = d;
    else rt->defer_head = d;
    rt->defer_tail = d;
    return uv_idle_start(&rt->defer_idle, defer_run);
}

/* ---- tasks ----------------------------------------------------------------------------- */

rt_task *rt_current(lua_State *L) {
    return *(rt_task **)lua_getextraspace(L);
}

rt_task *rt_check_task(lua_State *L, const char *fn) {
    rt_task *t = rt_current(L);
    if (t == NULL || t->co != L)
        luaL_error(L, "%s must be called from an assetd task (the main chunk, assetd.spawn, a "
                      "timer or a hook), not from a plain coroutine", fn);
    if (!lua_isyieldable(L))
        luaL_error(L, "%s cannot wait here: attempt to yield across a C-call boundary "
                      "(inside a metamethod, an iterator or a sort comparator)", fn);
    return t;
}

lua_State *rt_task_thread(rt_task *t) { return t->co; }

uint64_t rt_task_resumed(const rt_task *t) { return t->resumed; }

static void task_finish(rt_task *t) {
    lua_State *L = t->rt->L;
    t->done = 1;
    *(rt_task **)lua_getextraspace(t->co) = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, t->on_error);
    t->on_error = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
}

/* An error value of category "config" (a pipeline that does not validate) is the user's
 * mistake, told in its message: no traceback of assetd's own code. */
static int is_config_error(lua_State *co) {
    if (!lua_istable(co, -1)) return 0;
    lua_getfield(co, -1, "category");
    int yes = lua_type(co, -1) == LUA_TSTRING && strcmp(lua_tostring(co, -1), "config") == 0;
    lua_pop(co, 1);
    return yes;
}

static void task_report(rt_task *t) {
    lua_State *L = t->rt->L;
    if (t->is_main && is_config_error(t->co)) {
        fprintf(stderr, "assetd: %s\n", luaL_tolstring(t->co, -1, NULL));
        lua_pop(t->co, 2);
        rt_stop(t->rt, 1);
        return;
    }
    const char *msg = luaL_tolstring(t->co, -1, NULL);
    luaL_traceback(L, t->co, msg, 0);
    lua_pop(t->co, 2);
    if (t->is_main) {
        fprintf(stderr, "assetd: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        rt_stop(t->rt, 1);
        return;
    }
    if (t->on_error != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->on_error);
        lua_insert(L, -2);
        rt_pcall(L, 1, 0, "task error handler");
        return;
    }
    log_event(LOG_ERROR, "task failed", "task", t->name, "error", lua_tostring(L, -1), NULL);
    lua_pop(L, 1);
}

static void resume_later(void *arg);

static void task_resume_from(rt_task *t, lua_State *from, int nargs) {
    int nres;
    rt_task *outer = t->rt->running;     /* a task spawned by a running one runs inside it */
    t->wait = NULL;
    t->resumed = uv_hrtime();
    t->rt->running = t;
    int st = lua_resume(t->co, from, nargs, &nres);
    t->rt->running = outer;
    if (st == LUA_YIELD) {
        lua_pop(t->co, nres);
        /* a bare coroutine.yield() in a task means "let the loop run, then continue" */
        if (t->wait == NULL && rt_defer(t->rt, resume_later, t) != 0)
            log_event(LOG_ERROR, "cannot reschedule task", "task", t->name, NULL);
        return;
    }
    if (st != LUA_OK) task_report(t);
    else lua_settop(t->co, 0);
    task_finish(t);
}

static void resume_later(void *arg) {
    rt_task *t = arg;
    if (t->done || t->rt->stopping) return;
    task_resume_from(t, NULL, 0);
}

void rt_resume(rt_task *t, int nresults) {
    if (t->done || t->rt->stopping) {
        lua_pop(t->co, nresults);
        return;
    }
    task_resume_from(t, NULL, nresults);
}

int rt_wait_yield(lua_State *L, rt_task *t, rt_wait *w) {
    t->wait = w;
    if (t->canceled) w->cancel(w);
    return lua_yield(L, 0);
}

void rt_task_cancel(rt_task *t) {
    if (t->done || t->canceled) return;
    t->canceled = 1;
    if (t->wait && t->wait->cancel) t->wait->cancel(t->wait);
}

static rt_task *task_new(lua_State *L, const char *name) {
    rt_task *t = lua_newuserdatauv(L, sizeof *t, 1);
    memset(t, 0, sizeof *t);
    t->rt = rt_get(L);
    t->ref = t->on_error = LUA_NOREF;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "task");
    luaL_setmetatable(L, TASK_MT);
    t->co = lua_newthread(L);
    lua_setiuservalue(L, -2, 1);
    *(rt_task **)lua_getextraspace(t->co) = t;
    return t;
}

rt_task *rt_spawn(lua_State *L, int nargs, int on_error, const char *name, int flags) {
    if (on_error) on_error = lua_absindex(L, on_error);
    rt_task *t = task_new(L, name);               /* fn args... task */
    if (flags & RT_DETACHED) lua_sethook(t->co, NULL, 0, 0);
    lua_pushvalue(L, -1);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (on_error) {
        lua_pushvalue(L, on_error);
        t->on_error = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_insert(L, -(nargs + 2));                  /* task fn args... */
    lua_xmove(L, t->co, nargs + 1);
    task_resume_from(t, L, nargs);
    return t;                                     /* the task handle is left on L */
}

static rt_task *check_taskud(lua_State *L) {
    return luaL_checkudata(L, 1, TASK_MT);
}

static int task_cancel(lua_State *L) {
    rt_task_cancel(check_taskud(L));
    return 0;
}

static int task_status(lua_State *L) {
    rt_task *t = check_taskud(L);
    lua_pushstring(L, t->done ? "done" : t->wait ? "waiting" : "running");
    return 1;
}

static int task_tostring(lua_State *L) {
    rt_task *t = check_taskud(L);
    lua_pushfstring(L, "assetd.task(%s, %s)", t->name,
                    t->done ? "done" : t->wait ? "waiting" : "running");
    return 1;
}

static void create_task_mt(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"cancel", task_cancel}, {"status", task_status}, {NULL, NULL}};
    luaL_newmetatable(L, TASK_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, task_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

/* ---- the state ------------------------------------------------------------------------- */

/* A state with the context and the task class, and no library: the embedder opens those
 * (l_openlibs), so nothing here calls up into the modules. */
int rt_init(rt_runtime *rt, uv_loop_t *loop, const char *luadir) {
    memset(rt, 0, sizeof *rt);
    rt->loop = loop;
    rt->luadir = luadir;
    rt->L = luaL_newstate();
    if (!rt->L) return UV_ENOMEM;
    *(rt_task **)lua_getextraspace(rt->L) = NULL;
    int err = uv_idle_init(loop, &rt->defer_idle);
    if (err) return err;
    rt->defer_idle.data = rt;
    uv_unref((uv_handle_t *)&rt->defer_idle);
    lua_State *L = rt->L;
    lua_pushlightuserdata(L, rt);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &RT_KEY);
    create_task_mt(L);
    return 0;
}

void rt_close(rt_runtime *rt) {
    while (rt->defer_head) {
        struct rt_deferred *d = rt->defer_head;
        rt->defer_head = d->next;
        free(d);
    }
    if (rt->L) lua_close(rt->L);
    rt->L = NULL;
}

void rt_closer_add(rt_runtime *rt, rt_closer *c, void (*close)(rt_closer *c)) {
    c->close = close;
    c->next = rt->closers;
    if (c->next) c->next->pprev = &c->next;
    c->pprev = &rt->closers;
    rt->closers = c;
}

void rt_closer_remove(rt_closer *c) {
    if (!c->pprev) return;
    *c->pprev = c->next;
    if (c->next) c->next->pprev = c->pprev;
    c->next = NULL;
    c->pprev = NULL;
}

void rt_stop(rt_runtime *rt, int code) {
    if (rt->stopping) return;
    rt->stopping = 1;
    rt->exit_code = code;
    while (rt->closers) {
        rt_closer *c = rt->closers;
        rt_closer_remove(c);           /* before the call, which may free C */
        c->close(c);
    }
    if (rt->on_stop) rt->on_stop(rt);
}

static void push_args(lua_State *L, int argc, char **argv, int script_index) {
    lua_createtable(L, argc - script_index - 1, script_index + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script_index);
    }
    lua_setglobal(L, "arg");
}

int rt_run_main(rt_runtime *rt, const char *script, int argc, char **argv, int script_index) {
    lua_State *L = rt->L;
    push_args(L, argc, argv, script_index);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "assetd");
    if (rt_pcall(L, 1, 1, "require assetd") != LUA_OK) return 1;
    lua_setglobal(L, "assetd");
    if (luaL_loadfile(L, script) != LUA_OK) {
        fprintf(stderr, "assetd: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    /* run it through assetd.run_main, which turns a returned table into a pipeline */
    lua_getglobal(L, "assetd");
    lua_getfield(L, -1, "run_main");
    lua_remove(L, -2);
    lua_insert(L, -2);
    int nargs = argc - script_index;              /* the chunk is run_main's first argument */
    luaL_checkstack(L, nargs + 4, "too many arguments to script");
    for (int i = script_index + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    rt_task *t = task_new(L, "main");            /* fn args... task */
    t->is_main = 1;
    lua_pushvalue(L, -1);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_xmove(L, t->co, nargs + 1);
    task_resume_from(t, NULL, nargs);
    return 0;
}
