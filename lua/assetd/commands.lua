-- The operator's commands on one job (the REPL's retry/redownload/cancel and the API's routes):
-- each checks the job's state, moves it, and starts or stops its run.
local assetd = require "assetd"
local deadlines = require "assetd.deadlines"
local states = require "assetd.states"
local uploadsync = require "assetd.uploadsync"

local M = {}

-- The job ID_OR_PAGE names, if it is in state WANT (a set of names; LABEL for the message).
local function find(runner, idOrPage, want, label)
  local job, err = runner.jobs:get(idOrPage)
  if not job then return nil, err end
  if not want[job.status] then return nil, assetd.error("state", "job is " .. job.status .. ", " .. label) end
  return job
end

-- Manual retry of a failed job: a new attempt, keeping its version if nothing was committed;
-- of a completed job whose upload step failed: that step again (nothing is downloaded).
function M.retry(runner, idOrPage)
  local done = runner.jobs:get(idOrPage)
  local again = done and done.status == "completed" and uploadsync.retry(runner, done)
  if again then return again end
  local job, err = find(runner, idOrPage, {failed = true}, "not failed")
  if not job then return nil, err end
  local assets, aerr = runner.jobs:assets(job)
  if not assets then return nil, aerr end
  -- a video never seen complete (canceled or failed while waiting) is polled again
  job, err = runner.jobs:transition(job, job.completedAt and "pending" or "waiting",
                                    {error = false, version = #assets > 0 and 0 or job.version,
                                     retryCount = job.retryCount + 1})
  if not job then return nil, err end
  runner:run(job)
  return job
end

-- Download a completed job's video again, as the next version (V2, V3, ...: the versions
-- already stored stay), while its download window is open.
function M.redownload(runner, idOrPage)
  local job, err = find(runner, idOrPage, {completed = true}, "not completed")
  if not job then return nil, err end
  if job.expiresAt and assetd.now() >= job.expiresAt then
    return nil, assetd.error("expired", "the download window of " .. job.notionPageId .. " has closed")
  end
  if runner.running[job.id] then       -- its Notion sync: a second run would not start
    return nil, assetd.error("state", "job is still updating its Notion page; try again in a moment")
  end
  job, err = runner.jobs:transition(job, "pending", {error = false, version = 0})
  if not job then return nil, err end
  runner:run(job)
  return job
end

-- Stop a job by hand: it becomes failed "canceled by operator" (a manual retry can start it
-- again) and its task, if running, is canceled: a poll or a transfer in flight stops, the
-- .part files stay for a resume.
function M.cancel(runner, idOrPage)
  local job, err = find(runner, idOrPage, states.live, "there is nothing to cancel")
  if not job then return nil, err end
  job, err = runner.jobs:transition(job, "failed", {error = "canceled by operator"})
  if not job then return nil, err end
  deadlines.disarm(runner, job)
  runner:event(job, "canceled", "by operator")
  local run = runner.running[job.id]
  runner.running[job.id] = nil                     -- a retry may start a new run at once
  if run and run.task then run.task:cancel() end
  for _, t in ipairs(run and run.variants or {}) do t:cancel() end   -- before a retry can start
  return job
end

return M
