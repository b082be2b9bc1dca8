-- The Notion step: a completed job's page is updated through the notion.properties mapping,
-- as its own retried step (a Notion outage never re-downloads anything); a failed or expired
-- job's error goes to its page through notion.on_error. Giving up is logged and recorded.
local assetd = require "assetd"
local cjson = require "cjson"
local hooks = require "assetd.hooks"
local retry = require "assetd.retry"
local uploadsync = require "assetd.uploadsync"

local M = {}

-- Between tries of the step (each already retried inside the Notion client): 2 s doubling to
-- about four minutes, as long as the job's files wait unlinked on Notion anyway.
M.BACKOFF = {base = 2, cap = 256, jitter = 0}

-- The state a completed job starts its Notion step in.
function M.initial(runner)
  return runner.notion and {notion = "pending"} or {notion = "skipped", notionError = "no NOTION_TOKEN"}
end

-- A try that will be made again, whether the client's or the step's: an event, a warn line
-- naming the host, the cause and the next try, and the job's latest Notion failure (its state
-- stays pending), so a Notion that does not answer is seen at once, not when the step gives up.
local function retrying(runner, job, err, attempt, wait)
  local message = tostring(err)
  runner:event(job, "notion", "try failed: " .. message)
  assetd.log.warn("Notion update failed; trying again", {job = job.notionPageId, error = message,
                  host = runner.notion.base_url:match("^%a+://([^/]+)"), cause = retry.describe(err),
                  attempt = attempt, retry_in = string.format("%.1f s", wait)})
  return runner:set_data(job, {notionError = message}, {retryCount = job.retryCount + 1})
end

-- The step gave up: the files stay stored (the job is completed), people are told, and
-- notion.on_error has its say (it may write the failure to another property, or alert).
local function failed(runner, job, err)
  local message = tostring(err)
  runner:event(job, "notion", "failed: " .. message)
  assetd.log.warn("Notion page not updated", {job = job.notionPageId, video = job.soraVideoId, error = message,
                  cause = type(err) == "table" and retry.describe(err) or nil})
  job = runner:set_data(job, {notion = "failed", notionError = message})
  M.report_error(runner, job, "Notion page not updated: " .. message)
  return job
end

function M.sync(runner, job)
  if not runner.notion or runner:data(job).notion ~= "pending" then return job end
  -- the stored files, with their objects in the bucket when there is one
  local view = runner:job_view(job, uploadsync.located(runner:data(job), runner.jobs:assets(job)))
  local function on_retry(err, attempt, wait) job = retrying(runner, job, err, attempt, wait) end
  local attempt = 0
  while true do
    attempt = attempt + 1
    local ok, props = hooks.call(runner.properties, view)
    if not ok then return failed(runner, job, "the notion.properties mapping failed: " .. tostring(props):match("[^\n]*")) end
    local page, err = runner.notion:update_page(job.notionPageId, props, on_retry)
    if page then
      runner:event(job, "notion", "synced")
      return runner:set_data(job, {notion = "synced", notionError = cjson.null})
    end
    if not err.retryable then return failed(runner, job, err) end
    local wait = retry.backoff(attempt, M.BACKOFF)
    job = retrying(runner, job, err, attempt, wait)
    assetd.sleep(wait)
  end
end

-- A failed or expired job's error to its page, in a task of its own so a slow or failing
-- Notion never holds the job's steps up.
function M.report_error(runner, job, reason)
  if not (runner.notion and runner.on_error) then return end
  assetd.spawn({name = "notion error " .. job.notionPageId, detached = true}, function()
    local ok, props = hooks.call(runner.on_error, runner:job_view(job), reason)
    if not ok then return runner:event(job, "hook_error", "notion.on_error: " .. tostring(props)) end
    if not props then return end
    local page, err = runner.notion:update_page(job.notionPageId, props)
    runner:event(job, "notion", page and "error reported" or ("error not reported: " .. tostring(err)))
  end)
end

return M
