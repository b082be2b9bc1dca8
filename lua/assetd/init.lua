-- assetd: the public Lua API. The C core (`assetd.core`) supplies the mechanisms: time, tasks,
-- timers, logging and the download engine; this module re-exports them and adds the policy
-- layers written in Lua as they land.
local core = require "assetd.core"

local M = {}
for k, v in pairs(core) do M[k] = v end

return M
