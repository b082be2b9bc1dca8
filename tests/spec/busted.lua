-- Runs the Lua specs with busted inside the assetd binary, so every binding is there and
-- each test body runs in the main task (it may wait: fetch, sleep).
package.path = "tests/lib/?.lua;" .. package.path
require "busted.runner" ({ standalone = false })
