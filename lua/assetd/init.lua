-- assetd: the public Lua API. The C core (`assetd.core`) supplies the mechanisms: time, tasks,
-- timers, logging, the download engine, the job store and the file store; this module
-- re-exports them and adds the policy layers written in Lua.
local core = require "assetd.core"

local M = {}
for k, v in pairs(core) do M[k] = v end

-- The daemon's defaults (defaults.lua) under OPTS: the C side takes every field given.
function M.http_listen(opts)
  local o = {}
  for k, v in pairs(require("assetd.defaults").pipeline.http) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  return core.http_listen(o)
end

-- assetd.pipeline{...}: validate the pipeline table and run it (or only check it with --check).
function M.pipeline(cfg)
  return require("assetd.pipeline").main(cfg)
end

-- How the main chunk runs: a script that returns a table is a pipeline.
function M.run_main(chunk, ...)
  local r = table.pack(chunk(...))
  if r.n >= 1 and type(r[1]) == "table" then return M.pipeline(r[1]) end
  if core.options.check then error("--check: the script did not return a pipeline table", 0) end
end

return M
