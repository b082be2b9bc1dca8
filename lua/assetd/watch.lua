-- The watch over one job's run: it tells people of a loss while there is still time. `stalled`
-- fires once when the job has made no progress (no successful poll, no new byte, no step) for
-- alerts.stall_after seconds; `at_risk` once when its projected finish (the bytes left at the
-- rate observed, or never while it is stalled) passes its deadline. Both are hooks of the
-- pipeline's alerts, run through the runner like the others, and events on the job.
local assetd = require "assetd"
local defaults = require "assetd.defaults"
local live = require("assetd.states").live

local M = {}

-- Bytes per second, smoothed, from successive (time, bytes) samples of a transfer.
local function rate_of(state, now, bytes)
  if state.t and now > state.t then
    local r = math.max(0, bytes - state.bytes) / (now - state.t)
    state.rate = state.rate and (0.7 * state.rate + 0.3 * r) or r
    state.samples = (state.samples or 0) + 1
  end
  state.t, state.bytes = now, bytes
  return state.rate
end

-- When the job would finish at this pace, or nil when it is too early to tell.
local function projected(state, job, progress, stalled, now)
  if stalled then return math.huge end
  if job.status ~= "downloading" or not progress or (progress.total or 0) <= 0 then return nil end
  local rate = rate_of(state, now, progress.bytes)
  if not rate or state.samples < 3 then return nil end
  local left = progress.total - progress.bytes
  if left <= 0 then return now end
  return rate > 0 and now + left / rate or math.huge
end

-- The engine's downloads by the job whose they are (their tag): {[id] = {active =, waiting =}},
-- read at most twice a second however many jobs are watched.
local turns, turns_at = {}, -math.huge
local function downloads_by_job()
  local now = assetd.monotonic()
  if now - turns_at < 0.5 then return turns end
  turns, turns_at = {}, now
  for _, d in ipairs(assetd.downloads()) do
    if d.tag then
      local e = turns[d.tag] or {}
      if d.state == "active" then e.active = true else e.waiting = true end
      turns[d.tag] = e
    end
  end
  return turns
end

-- Whether job ID waits its turn rather than failing to move: for a download slot, or with its
-- transfers queued behind the engine's limits or held for an earlier deadline. Its stall clock
-- stands still meanwhile: a long batch's queue is no stall (a slot's holders are watched).
local function waiting_turn(runner, id)
  if runner.slots:queued(id) then return true end
  local e = downloads_by_job()[id]
  return e ~= nil and e.waiting and not e.active
end

-- Watch job ID while RUNNING() says its run goes on. While it is stalled or at risk, so says
-- runner.flagged[ID] ({stalled = reason, at_risk = projected finish}), for the API's summary.
function M.start(runner, id, running)
  local stall_after = runner.alerts.stall_after or defaults.pipeline.alerts.stall_after
  -- a rate needs a few samples a second apart; a waiting job (thousands may wait) is looked at less often
  local tick = math.max(0.25, math.min(5, stall_after / 4))
  local state, fired, status = {}, {}, nil
  local function watch()
    while true do
      assetd.sleep(status == "downloading" and math.min(1, tick) or tick)
      if not running() then return end
      local job = runner.jobs:get(id)
      if not job or not live[job.status] then return end
      status = job.status
      if waiting_turn(runner, id) then runner:mark(id) end
      local now = assetd.now()
      local idle = now - (runner.marks[id] or now)
      local stalled = idle >= stall_after
      if stalled and not fired.stalled then
        fired.stalled = true
        local reason = job.error or ("no progress for " .. math.floor(idle) .. " s")
        runner.flagged[id] = runner.flagged[id] or {}
        runner.flagged[id].stalled = reason
        runner:event(job, "stalled", reason)
        runner:hook("stalled", job, reason)
      elseif not stalled and fired.stalled and runner.flagged[id] then
        runner.flagged[id].stalled = nil             -- moving again (the alert stays fired once)
      end
      local finish = job.expiresAt and not fired.at_risk and projected(state, job, runner.progress[id], stalled, now)
      if finish and finish > job.expiresAt then
        fired.at_risk = true
        runner.flagged[id] = runner.flagged[id] or {}
        runner.flagged[id].at_risk = finish
        runner:event(job, "at_risk", finish == math.huge and "no projected finish" or
                     string.format("projected finish %.0f s after the deadline", finish - job.expiresAt))
        runner:hook("at_risk", job, finish)
      end
    end
  end
  assetd.spawn({name = "watch", detached = true}, function()
    local ok, err = pcall(watch)
    runner.flagged[id] = nil
    if not ok then error(err, 0) end
  end)
end

return M
