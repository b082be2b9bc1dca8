/* runtime.h: the Lua state on the libuv loop, under the bindings. The daemon's context (one
 * rt_runtime, found by rt_get), tasks (coroutines the runtime owns), the wait/resume protocol
 * every waiting binding follows, deferred calls, error values and the one protected-call
 * wrapper through which C calls Lua. */
#ifndef ASSETD_RUNTIME_H
#define ASSETD_RUNTIME_H

#include <lua.h>
#include <uv.h>

/* What a task is waiting on. A waiting binding embeds one in its request object, sets
 * `cancel`, and the runtime calls it when the task is cancelled; `cancel` must arrange for
 * the task to be resumed later (never from inside the call) with a `canceled` error. */
typedef struct rt_wait {
    void (*cancel)(struct rt_wait *w);
} rt_wait;

typedef struct rt_task rt_task;

/* A time budget (rt_budget_enter): how long bounded code may hold the loop between yields. */
struct rt_budget {
    unsigned ms;
    uint64_t since;          /* uv_hrtime() at the outermost enter */
    int depth;               /* nested bounded calls; 0: none */
};
enum { RT_BUDGET_COUNT = 1000 };   /* instructions between two looks at the clock */

/* An owner of libuv handles that frees its memory from their close callbacks. At the orderly
 * stop the embedder closes whatever handles are left with no callback, so such an owner would
 * never learn its handles were gone: it registers here while open instead, and rt_stop
 * unregisters and closes it first. Embed one in the owner; zeroed means "not registered". */
typedef struct rt_closer {
    void (*close)(struct rt_closer *c);
    struct rt_closer *next, **pprev;
} rt_closer;

typedef struct rt_runtime {
    uv_loop_t *loop;
    lua_State *L;            /* main state; tasks are threads of it */
    int exit_code;           /* set by the main task's end or assetd.stop() */
    int stopping;            /* no task is resumed once set */
    const char *luadir;      /* a Lua tree on disk over the built-in modules, or NULL */
    uv_idle_t defer_idle;    /* runs deferred calls on the next loop iteration */
    struct rt_deferred *defer_head, *defer_tail;
    void (*on_stop)(struct rt_runtime *rt); /* asks the embedder to wind down */
    rt_closer *closers;                      /* closed by rt_stop before on_stop */
    struct rt_task *running;                 /* the task being resumed now, NULL on the loop */
    struct rt_budget budget;                 /* bounded code run outside any task */
    struct fetch_engine *fetch;              /* the download engine, owned by main */
    struct repl *repl;                       /* the REPL's sessions and socket, owned by main:
                                                made before the main script runs (l_repl.c) */
    struct rt_options {                      /* daemon options from the command line */
        const char *listen, *data, *database, *log_level, *log_format;
        int interactive, check;
    } opts;
} rt_runtime;

/* A new state on LOOP holding RT as its context (rt_get), with the task class and no library:
 * the embedder opens them next (l_openlibs in lmodules.h). LUADIR is only remembered. */
int rt_init(rt_runtime *rt, uv_loop_t *loop, const char *luadir);
void rt_close(rt_runtime *rt);
rt_runtime *rt_get(lua_State *L);

/* Load SCRIPT ("@path" chunk name) and start it as the main task with ARGS as its varargs. */
int rt_run_main(rt_runtime *rt, const char *script, int argc, char **argv, int script_index);
/* Ask the loop to wind down with CODE (first caller wins): close the registered owners, then
 * call on_stop. */
void rt_stop(rt_runtime *rt, int code);
/* Register C, whose CLOSE rt_stop will call; remove it when the owner closes first (removing
 * one that is not registered does nothing). */
void rt_closer_add(rt_runtime *rt, rt_closer *c, void (*close)(rt_closer *c));
void rt_closer_remove(rt_closer *c);

/* Tasks. rt_spawn pops a function and NARGS arguments from L and starts it; ON_ERROR
 * (a stack index or 0) receives (message_with_traceback) instead of the log. A new task's
 * thread inherits the debug hook of the thread that spawns it (the REPL's time budget), unless
 * FLAGS has RT_DETACHED: a task of the daemon's own that outlives whoever started it. */
enum { RT_DETACHED = 1 };
rt_task *rt_spawn(lua_State *L, int nargs, int on_error, const char *name, int flags);
rt_task *rt_current(lua_State *L);
/* For a waiting binding: the running task, or a raised error naming FN. */
rt_task *rt_check_task(lua_State *L, const char *fn);
/* Mark the task as waiting on W and yield; the values later given to rt_resume are returned. */
int rt_wait_yield(lua_State *L, rt_task *t, rt_wait *w);
/* The task's thread, on which the waker pushes results before rt_resume. */
lua_State *rt_task_thread(rt_task *t);
/* When the task's current run began (uv_hrtime): its start, or its latest resume. */
uint64_t rt_task_resumed(const rt_task *t);
void rt_resume(rt_task *t, int nresults);
void rt_task_cancel(rt_task *t);

/* Call FN(ARG) from the loop soon, outside any current callback. */
int rt_defer(rt_runtime *rt, void (*fn)(void *arg), void *arg);

/* Protected call with a traceback handler; on error logs it under WHAT and returns non-zero. */
int rt_pcall(lua_State *L, int nargs, int nresults, const char *what);

/* The message handler rt_pcall uses: the error with a traceback. */
int rt_traceback(lua_State *L);

/* Time budgets for hooks (pipeline code that may never return). Between enter and leave, code
 * on L and on coroutines it creates may hold the loop at most MS between yields; past it, it
 * raises "time budget exceeded". Enter installs a count hook on L: the caller saves and
 * restores L's previous hook. Nested budgets take the smaller. */
void rt_budget_enter(lua_State *L, unsigned ms);
void rt_budget_leave(lua_State *L);

/* Error values: push a table {category=, message=, ...} with a __tostring metamethod. */
void rt_push_error(lua_State *L, const char *category, const char *fmt, ...);
/* `return nil, err` for a binding. */
int rt_fail(lua_State *L, const char *category, const char *fmt, ...);

#endif
