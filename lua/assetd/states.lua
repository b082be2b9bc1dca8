-- The job states as Lua sees them, written once: their names in order and which of them are
-- unfinished (a job there has a run, deadlines and a place in the watch).
local M = {}

M.names = {"waiting", "pending", "downloading", "completed", "failed", "expired"}
M.live = {waiting = true, pending = true, downloading = true}

return M
