-- Calling pipeline hooks (naming, Notion mapping, alerts, on_start): each call runs under a
-- time budget, so a hook that never returns (`while true do end`) is cut with an error on the
-- job while downloads, timers and the API go on. Waiting inside a hook does not count.
local assetd = require "assetd"

local M = {}

-- seconds a hook may hold the loop without yielding: the running pipeline's limits.hook_budget
M.budget = require("assetd.defaults").pipeline.limits.hook_budget

-- call(fn, ...) -> true, results... | false, message (with a traceback)
function M.call(fn, ...)
  return assetd.bounded(M.budget, fn, ...)
end

return M
