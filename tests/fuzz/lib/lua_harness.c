/* lua_harness.c: one runtime for the run, as main.c makes it (without the download engine and
 * signals, which no fuzz target reaches), with logs below error kept quiet. */
#include "lua_harness.h"
#include "harness.h"
#include "lmodules.h"
#include "log.h"
#include "repl.h"
#include "runtime.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>

static rt_runtime runtime;
static int ready;

/* liblua is not built with coverage, so libFuzzer would see none of a Lua parser's branches.
 * A line hook counts each (previous line, line) step of Lua code into libFuzzer's extra
 * counters instead, the way it counts edges of instrumented C. */
enum { LUA_EDGES = 1 << 16 };
__attribute__((section("__libfuzzer_extra_counters"), used)) static uint8_t lua_edges[LUA_EDGES];

static void on_line(lua_State *L, lua_Debug *ar) {
    static uintptr_t prev;
    if (!lua_getinfo(L, "S", ar)) return;
    uintptr_t here = (uintptr_t)ar->source * 31u ^ (uintptr_t)ar->currentline * 2654435761u;
    lua_edges[(here ^ prev >> 1) % LUA_EDGES]++;
    prev = here;
}

lua_State *fuzz_lua_state(void) {
    if (!ready) {
        log_configure(LOG_ERROR, LOG_LOGFMT, stderr);
        FUZZ_CHECK(rt_init(&runtime, uv_default_loop(), ASSETD_LUADIR) == 0, "cannot create the runtime");
        l_openlibs(runtime.L, ASSETD_LUADIR);
        FUZZ_CHECK(repl_new(&runtime, &runtime.repl) == 0, "cannot create the REPL");
        lua_sethook(runtime.L, on_line, LUA_MASKLINE, 0);     /* threads made later inherit it */
        ready = 1;
    }
    return runtime.L;
}

uv_loop_t *fuzz_lua_loop(void) {
    fuzz_lua_state();
    return runtime.loop;
}

/* The traceback of a raise, as lua.c's msghandler makes it. */
static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : luaL_tolstring(L, 1, NULL), 1);
    return 1;
}

static void call_or_die(lua_State *L, int nargs, const char *what) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    if (lua_pcall(L, nargs, 1, base) != LUA_OK)
        fuzz_fail(FUZZ_DIR, 0, "%s raised: %s", what, lua_tostring(L, -1));
    lua_remove(L, base);
}

int fuzz_lua_load(const char *name) {
    lua_State *L = fuzz_lua_state();
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.lua", FUZZ_DIR, name);
    if (luaL_loadfile(L, path) != LUA_OK) fuzz_fail(path, 0, "%s", lua_tostring(L, -1));
    call_or_die(L, 0, path);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

long long fuzz_lua_call(int ref, const char *field, const fuzz_str *args, int nargs) {
    lua_State *L = fuzz_lua_state();
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (field) lua_getfield(L, -1, field);
    for (int i = 0; i < nargs; i++) lua_pushlstring(L, args[i].p, args[i].n);
    call_or_die(L, nargs, field ? field : "the property check");
    long long r = lua_isinteger(L, -1) ? (long long)lua_tointeger(L, -1) : 0;
    lua_settop(L, top);
    return r;
}

int fuzz_lua_input(const char *name, const uint8_t *data, size_t size) {
    static int ref = LUA_NOREF;
    if (ref == LUA_NOREF) ref = fuzz_lua_load(name);
    fuzz_str in = {(const char *)data, size};
    fuzz_lua_call(ref, NULL, &in, 1);
    return 0;
}
