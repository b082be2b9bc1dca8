/* fuzz_range: the Range header of asset requests (lua/assetd/files.lua, M.range); the
 * properties are in range.lua. */
#include "harness.h"
#include "lua_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_lua_input("range", data, size); }
