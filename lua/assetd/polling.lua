-- The waiting step: poll the provider, with backoff and the server's Retry-After, until the
-- video completes or fails. Between polls the job sleeps on an alarm that a webhook for its
-- video rings (runner:on_video_event), so it wakes at once. A failed poll is told.
local assetd = require "assetd"
local retry = require "assetd.retry"
local patience = require "assetd.patience"

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

-- One status poll of the waiting JOB from provider P; S = {attempt=, misses=} carries the
-- tries so far from one poll to the next. The job when its wait is over (pending, failed, or
-- as it was moved meanwhile), else nil and the wait before the next poll.
local function poll_once(runner, job, p, s)
  local started = assetd.monotonic()
  local st, err = p:status(runner:job_view(job))
  runner.metrics:observe("assetd_provider_request_duration_seconds", assetd.monotonic() - started,
                         {provider = job.provider})
  if st then runner:mark(job.id) end
  if st and st.state == "completed" then
    local completed = st.completedAt or job.completedAt or assetd.now()
    local expires = st.expiresAt or job.expiresAt or (completed + 3600)
    local ready = runner.jobs:transition(job, "pending", {completedAt = completed, expiresAt = expires, error = false})
    return ready or runner.jobs:get(job.id) or job                   -- moved meanwhile (canceled)
  elseif st and st.state == "failed" then
    return runner:fail(job, st.error or "video generation failed")
  end
  s.misses = (not st and err.status == 404) and s.misses + 1 or 0
  local why = not st and verdict(job, err, s.misses, p.base_url)
  if why then return runner:fail(job, why) end
  s.attempt = s.attempt + 1
  local wait = retry.backoff(s.attempt, {base = runner.poll.interval, cap = runner.poll.max, factor = 1.5, jitter = 0})
  -- the server's word, webhooks or not, up to the longest poll wait (a huge Retry-After would
  -- sleep past the video's window) and never closer than the retry floor
  if not st and err.retry_after then
    wait = math.min(math.max(err.retry_after, retry.floor(1, runner.retry)), runner.poll.max)
  end
  if not st then note_failure(runner, job, p, err, wait) end
  return nil, wait
end

local function poll_until_ready(runner, job, alarm)
  local p, s = runner:provider(job), {attempt = 0, misses = 0}
  while true do
    local done, wait = poll_once(runner, job, p, s)
    if done then return done end
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

-- ---- the resumed backlog: waiting jobs as data ------------------------------------------
-- A daemon restarted over thousands of waiting jobs does not give each a task asleep between
-- polls: they wait as entries in one queue ordered by the time of their next poll, and at most
-- MAX_POLLS polls are in flight at once, each in a short task of its own. An entry is its
-- run's record (runner.running[id]): a cancel drops it, a retry starts a run of its own; a
-- webhook for its video (runner:on_video_event) makes it due at once.
M.MAX_POLLS = 8

local Entry = {}
Entry.__index = Entry

-- Due now (a webhook said the video changed).
function Entry:ring()
  local q = self.runner.pollq
  if not q then return end
  if self.polling then self.rung = true return end      -- polled again as soon as this poll ends
  self.due = assetd.monotonic()
  q.heap:push(self.due, {entry = self, due = self.due})
  q.alarm:ring()
end

local function current(runner, e) return runner.running[e.id] == e.me end

local function unwake(runner, e)
  local alarms = runner.wake and runner.wake[e.video]
  if alarms and alarms[e.id] == e then
    alarms[e.id] = nil
    if next(alarms) == nil then runner.wake[e.video] = nil end
  end
end

-- One poll of entry E in its own task; the entry goes back in the queue, on to the download
-- step (runner:queue_pending), or ends with its job.
local function poll_task(runner, q, e)
  local id, me = e.id, e.me
  e.polling, e.rung = true, nil
  me.task = assetd.spawn({name = "poll " .. tostring(e.page), detached = true, on_error = function(msg)
    e.polling = false
    unwake(runner, e)
    local ok, err = pcall(runner.crashed, runner, id, msg)
    if not ok then assetd.log.error("job error not recorded", {job = id, error = tostring(err), cause = msg}) end
    runner:unqueue(id, me)
    q.alarm:ring()
  end}, function()
    patience.adopt()
    local job = runner.jobs:get(id)
    local done, wait
    if job and job.status == "waiting" and current(runner, e) then
      done, wait = poll_once(runner, job, runner:provider(job), e)
    else
      done = job or {status = "gone"}
    end
    e.polling = false
    if not current(runner, e) then                   -- canceled or replaced meanwhile
      unwake(runner, e)
    elseif done then
      unwake(runner, e)
      if done.status == "pending" then runner:queue_pending(done, me)
      else runner:unqueue(id, me) end
    else
      e.due = assetd.monotonic() + (e.rung and 0 or wait)
      e.rung = nil
      q.heap:push(e.due, {entry = e, due = e.due})
    end
    q.alarm:ring()
  end)
  return me.task
end

-- The queue's one task: it starts the polls that are due, MAX_POLLS at most at a time, and
-- sleeps until the next is due, a poll ends or an entry is rung.
local function poller(runner, q)
  while true do
    local busy = 0
    for t in pairs(q.active) do
      if t:status() == "done" then q.active[t] = nil else busy = busy + 1 end
    end
    local now, sleep = assetd.monotonic(), 60
    while busy < M.MAX_POLLS and #q.heap > 0 do
      local item, due = q.heap:pop()
      local e = item.entry
      if e.due == item.due and not e.polling and current(runner, e) then   -- else stale: dropped
        if due > now then
          q.heap:push(due, item)
          sleep = due - now
          break
        end
        q.active[poll_task(runner, q, e)] = true
        busy = busy + 1
      end
    end
    if q.alarm:sleep(sleep) == nil then return end     -- canceled: nothing is queued (watch.sweep)
  end
end

-- Queue the waiting JOB of run ME for its next poll (now). The queue's task ends when the
-- watch over queued jobs (watch.sweep) sees none left.
function M.queue(runner, job, me)
  local q = runner.pollq
  if not q then
    q = {heap = assetd.deadline_queue(), alarm = assetd.alarm(), active = {}}
    runner.pollq = q
    q.task = assetd.spawn({name = "poller", detached = true}, poller, runner, q)
  end
  local e = setmetatable({runner = runner, id = job.id, me = me, page = job.notionPageId, video = job.soraVideoId,
                          attempt = 0, misses = 0, due = assetd.monotonic()}, Entry)
  me.poll = e                                         -- the watch's sweep reads its turn
  runner.wake = runner.wake or {}
  runner.wake[e.video] = runner.wake[e.video] or {}
  runner.wake[e.video][e.id] = e
  q.heap:push(e.due, {entry = e, due = e.due})
  q.alarm:ring()
end

return M
