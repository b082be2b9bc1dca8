-- The default alert hooks: one log event each. A pipeline overrides any of them
-- (alerts = {expiring = function(job, seconds_left) ... end, ...}); see examples/slack-alerts.lua.
local assetd = require "assetd"

local M = {}

local function fields(job, extra)
  local f = {page = job.notionPageId, video = job.soraVideoId, batch = job.batchId, version = job.version}
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

function M.expiring(job, seconds_left)
  assetd.log.warn("download expiring soon", fields(job, {seconds_left = math.floor(seconds_left or 0)}))
end

function M.expired(job)
  assetd.log.error("download expired", fields(job, {error = job.error}))
end

function M.failed(job, reason)
  assetd.log.error("download failed", fields(job, {error = reason or job.error}))
end

function M.stalled(job, reason)
  assetd.log.warn("download stalled", fields(job, {reason = reason}))
end

function M.at_risk(job, projected)
  local late = projected == math.huge and "never, at this pace" or
    string.format("%.0f s after the deadline", projected - (job.expiresAt or projected))
  assetd.log.warn("download at risk of missing its deadline", fields(job, {projected_finish = late}))
end

function M.completed(job)
  assetd.log.info("download completed", fields(job))
end

-- Every alert hook, in the order a job may meet them.
M.NAMES = {"expiring", "stalled", "at_risk", "expired", "failed", "completed"}

-- The pipeline's alerts table completed with these defaults.
function M.with_defaults(alerts)
  local out = {}
  for k, v in pairs(alerts or {}) do out[k] = v end
  for _, k in ipairs(M.NAMES) do out[k] = out[k] or M[k] end
  return out
end

return M
