/* lua_harness.h: the project's own runtime (src/runtime.c, every binding, the modules in
 * lua/) for targets whose parser is written in Lua. A target's properties live in a script,
 * tests/fuzz/NAME.lua, whose value (a function, or a table of them) raises when one fails. */
#ifndef ASSETD_FUZZ_LUA_HARNESS_H
#define ASSETD_FUZZ_LUA_HARNESS_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fuzz_str {
    const char *p;
    size_t n;
} fuzz_str;

/* The runtime's state and loop, made at the first call and kept for the whole run. */
lua_State *fuzz_lua_state(void);
uv_loop_t *fuzz_lua_loop(void);
/* Run tests/fuzz/NAME.lua once; a registry reference to the value it returns. */
int fuzz_lua_load(const char *name);
/* Call the script's value REF (or its field FIELD when not NULL) with ARGS as strings, then
 * return its first result as an integer (0 when it is not one). A raise is a failed
 * property: its message and traceback are printed and the run aborts. */
long long fuzz_lua_call(int ref, const char *field, const fuzz_str *args, int nargs);

/* The whole of a target whose properties are all in tests/fuzz/NAME.lua: load it at the first
 * input, then call its function with the input as one string. */
int fuzz_lua_input(const char *name, const uint8_t *data, size_t size);

#endif
