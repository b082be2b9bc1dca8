-- A job's deadlines as timers (assetd.at), not sweeps: `expiring` fires once at expiresAt -
-- alerts.warn_before; at expiresAt a job still waiting or queued becomes `expired` (a transfer
-- already streaming is allowed to finish). The timers live in runner.timers, one pair a job.
local assetd = require "assetd"

local M = {}

local live = require("assetd.states").live

function M.arm(runner, job)
  if not job.expiresAt or runner.timers[job.id] or not live[job.status] then return end
  local id, t = job.id, {}
  runner.timers[id] = t
  local warn_at = job.expiresAt - runner.alerts.warn_before
  t.warn = assetd.at(math.max(warn_at, assetd.now()), function()
    local j = runner.jobs:get(id)
    if j and live[j.status] then
      runner:hook("expiring", j, j.expiresAt - assetd.now())
    end
  end)
  t.expire = assetd.at(job.expiresAt, function()
    local j = runner.jobs:get(id)
    if j and (j.status == "pending" or j.status == "waiting") then
      runner:expire(j, "the download window closed before the assets were stored")
    end
  end)
end

function M.disarm(runner, job)
  local t = runner.timers[job.id]
  if not t then return end
  t.warn:cancel()
  t.expire:cancel()
  runner.timers[job.id] = nil
end

return M
