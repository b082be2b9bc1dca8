/* fuzz_webhook: Standard Webhooks verification (lua/assetd/webhooks.lua over src/l_crypto.c)
 * on hostile deliveries; the properties are in webhook.lua. */
#include "harness.h"
#include "lua_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_lua_input("webhook", data, size); }
