-- The job states as Lua sees them: their names in the job store's order (jobdb.c writes them
-- once; assetd.job_states) and which of them are unfinished (a job there has a run,
-- deadlines and a place in the watch).
local assetd = require "assetd"

local M = {}

M.names = assetd.job_states
M.known = {}
for _, s in ipairs(M.names) do M.known[s] = true end
M.live = {waiting = true, pending = true, downloading = true}

-- The unfinished ones, in order.
M.live_names = {}
for _, s in ipairs(M.names) do
  if M.live[s] then M.live_names[#M.live_names + 1] = s end
end

return M
