-- The waiting step: poll the provider, with backoff and the server's Retry-After, until the
-- video completes or fails. Between polls the job sleeps on an alarm that a webhook for its
-- video rings (runner:on_video_event), so it wakes at once. A failed poll is told.
local assetd = require "assetd"
local retry = require "assetd.retry"

local M = {}

-- 404s in a row that fail a waiting job: a gateway may not know a video for a moment after
-- its creation, but a mistyped soraVideoId stays unknown and would keep the job waiting forever.
M.NOT_FOUND_POLLS = 3

-- Why a failed poll ends the wait (credentials refused, a persistent 404, another 4xx but
-- 408/429), or nil to poll again. MISSES counts the 404s in a row so far.
local function verdict(job, err, misses, base_url)
  if err.category == "auth" then return tostring(err) end
  if err.status ~= 404 then return retry.client_error(err) and tostring(err) or nil end
  if misses < M.NOT_FOUND_POLLS then return nil end
  local hint = "check soraVideoId"
  -- every path 404s on a base URL without its API version: the mistake is the URL, not the id
  if base_url and not base_url:match("/v%d+/?$") then
    hint = string.format("check soraVideoId, and the base URL %s, which has no API version (/v1)", base_url)
  end
  return string.format("video %s not found: the provider answered 404 to %d status polls in a row; %s",
                       job.soraVideoId, misses, hint)
end

-- A failed status poll that will be tried again: an event, a warn line naming the host, the
-- cause and the next try, and the job's error until a poll succeeds.
local function note_failure(runner, job, p, err, wait)
  local host = type(p.base_url) == "string" and p.base_url:match("^%a+://([^/]+)") or job.provider
  local msg = string.format("status poll of %s failed (%s): %s", host, retry.describe(err), tostring(err))
  runner:event(job, "poll_failed", msg)
  assetd.log.warn("status poll failed; polling again", {job = job.notionPageId, video = job.soraVideoId,
                  host = host, cause = retry.describe(err), error = tostring(err), retry_in = string.format("%.1f s", wait)})
  local now = runner.jobs:get(job.id)
  if now and now.status == "waiting" then
    runner.jobs:transition(now, "waiting", {error = msg, retryCount = now.retryCount + 1})
  end
end

local function poll_until_ready(runner, job, alarm)
  local p, attempt, misses = runner:provider(job), 0, 0
  while true do
    local started = assetd.monotonic()
    local st, err = p:status(runner:job_view(job))
    runner.metrics:observe("assetd_provider_request_duration_seconds", assetd.monotonic() - started,
                           {provider = job.provider})
    if st then runner:mark(job.id) end
    if st and st.state == "completed" then
      local completed = st.completedAt or job.completedAt or assetd.now()
      local expires = st.expiresAt or job.expiresAt or (completed + 3600)
      local ready = runner.jobs:transition(job, "pending", {completedAt = completed, expiresAt = expires, error = false})
      return ready or runner.jobs:get(job.id) or job                 -- moved meanwhile (canceled)
    elseif st and st.state == "failed" then
      return runner:fail(job, st.error or "video generation failed")
    end
    misses = (not st and err.status == 404) and misses + 1 or 0
    local why = not st and verdict(job, err, misses, p.base_url)
    if why then return runner:fail(job, why) end
    attempt = attempt + 1
    local wait = retry.backoff(attempt, {base = runner.poll.interval, cap = runner.poll.max, factor = 1.5, jitter = 0})
    -- the server's word, webhooks or not, up to the longest poll wait (a huge Retry-After would
    -- sleep past the video's window) and never closer than the retry floor
    if not st and err.retry_after then
      wait = math.min(math.max(err.retry_after, retry.floor(1, runner.retry)), runner.poll.max)
    end
    if not st then note_failure(runner, job, p, err, wait) end
    if alarm:sleep(wait) == nil then return runner.jobs:get(job.id) end     -- canceled
    job = runner.jobs:get(job.id)
    if job.status ~= "waiting" then return job end
  end
end

-- waiting -> pending (or failed); the job as it is when the wait ends.
function M.await_ready(runner, job)
  runner.wake = runner.wake or {}
  local video, id = job.soraVideoId, job.id
  local alarms = runner.wake[video] or {}
  runner.wake[video] = alarms
  alarms[id] = assetd.alarm()
  local ok, res = pcall(poll_until_ready, runner, job, alarms[id])
  alarms[id] = nil
  if next(alarms) == nil then runner.wake[video] = nil end
  if not ok then error(res, 0) end
  return res
end

return M
