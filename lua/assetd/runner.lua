-- The job runner: what a job does, as straight-line code in its own task.
--   waiting  -> poll the provider (backoff) until the video completes or fails
--   pending  -> reserve a version, download every variant together, validate, commit
--   completed-> Notion sync as its own retried step (never a re-download)
-- Deadlines are timers (assetd.at), not sweeps: `expiring` fires once at expiresAt -
-- warn_before; at expiresAt a job that cannot finish becomes `expired`. Hooks run in the
-- job's task; an error in one is recorded on the job and the daemon goes on.
local assetd = require "assetd"
local cjson = require "cjson"
local retry = require "assetd.retry"
local hooks = require "assetd.hooks"
local watch = require "assetd.watch"

local Runner = {}
Runner.__index = Runner

local M = {}

local live = {waiting = true, pending = true, downloading = true}   -- unfinished states

local function decode(s)
  if not s then return {} end
  local ok, t = pcall(cjson.decode, s)
  return ok and type(t) == "table" and t or {}
end

-- ---- a store that is full or failing ------------------------------------------------------

-- Threads of job tasks: there a store write refused for a database fault waits until it goes
-- through, so a job resumes by itself where it was when the disk has room again. Elsewhere
-- (the API, the REPL) the error comes back at once, for a 503 or a message.
local patient_threads = setmetatable({}, {__mode = "k"})

local function is_fault(err) return type(err) == "table" and err.category == "database" end

-- The wait before the next try at a store in fault: 0.5 s doubling to 30 s.
local function fault_delay(attempt) return math.min(30, 0.5 * 2 ^ math.min(attempt - 1, 6)) end

-- FN(...), tried again while it fails with a store fault, on a job's thread (elsewhere once):
-- the job waits where it is until the disk has room, logged at error now and then.
local function patiently(what, fn, ...)
  local attempt = 0
  while true do
    local r = table.pack(fn(...))
    if r[1] ~= nil or not is_fault(r[2]) or not patient_threads[coroutine.running()] then
      return table.unpack(r, 1, r.n)
    end
    attempt = attempt + 1
    local delay = fault_delay(attempt)
    if attempt == 1 or attempt % 10 == 0 then
      assetd.log.error("job store write refused; the job waits and tries again",
                       {method = what, error = tostring(r[2]), attempt = attempt, retry_in = delay})
    end
    assetd.sleep(delay)
  end
end

-- The job store as the runner uses it: every method of STORE, with that patience.
local function patient(store)
  return setmetatable({}, {__index = function(t, k)
    local f = store[k]
    if type(f) ~= "function" then return f end
    local method = function(_, ...) return patiently(k, f, store, ...) end
    rawset(t, k, method)
    return method
  end})
end

-- Runner.new{jobs=, versions=, providers = {name = provider}, notion = client|nil,
--   properties = fn(job) -> props, on_error = fn(job, message) -> props|nil,
--   alerts = {warn_before=, expiring=, expired=, failed=, completed=},
--   retry = {...}, poll = {interval=, max=}, metrics = registry, max_jobs = download slots,
--   direct_io = write whole blocks past the page cache (default true)}
function M.new(cfg)
  local self = setmetatable({
    jobs = patient(assert(cfg.jobs)), versions = assert(cfg.versions), providers = assert(cfg.providers),
    notion = cfg.notion, properties = cfg.properties, on_error = cfg.on_error,
    alerts = cfg.alerts or {}, retry = cfg.retry, poll = cfg.poll or {interval = 5, max = 60},
    metrics = cfg.metrics or require("assetd.metrics").standard(),
    slots = require("assetd.slots").new(cfg.max_jobs or 32),
    running = {}, timers = {}, progress = {}, marks = {}, direct_io = cfg.direct_io ~= false,
  }, Runner)
  self.alerts.warn_before = self.alerts.warn_before or 600
  return self
end

function Runner:event(job, kind, detail)
  self.jobs:event(job, kind, detail and tostring(detail) or nil)
end

-- A hook call that cannot break the job: errors are recorded on it.
function Runner:hook(name, job, ...)
  local fn = self.alerts[name]
  if not fn then return end
  local ok, err = hooks.call(fn, job, ...)
  self:event(job, "alert", name)
  self.metrics:inc("assetd_alerts_total", {alert = name})
  if not ok then
    self:event(job, "hook_error", name .. ": " .. tostring(err))
    assetd.log.error("hook failed", {hook = name, job = job.notionPageId, error = tostring(err)})
  end
end

function Runner:data(job) return decode(job.data) end

-- The job made progress now (a poll answered, a byte arrived, a step done): the watch's clock.
function Runner:mark(id) self.marks[id] = assetd.now() end

function Runner:set_data(job, patch)
  local d = decode(job.data)
  for k, v in pairs(patch) do d[k] = v end
  return assert(self.jobs:transition(job, job.status, {data = cjson.encode(d)}))
end

-- ---- deadlines ---------------------------------------------------------------------------

function Runner:arm_deadlines(job)
  if not job.expiresAt or self.timers[job.id] or not live[job.status] then return end
  local id, t = job.id, {}
  self.timers[id] = t
  local warn_at = job.expiresAt - self.alerts.warn_before
  t.warn = assetd.at(math.max(warn_at, assetd.now()), function()
    local j = self.jobs:get(id)
    if j and live[j.status] then
      self:hook("expiring", j, j.expiresAt - assetd.now())
    end
  end)
  t.expire = assetd.at(job.expiresAt, function()
    local j = self.jobs:get(id)
    if j and (j.status == "pending" or j.status == "waiting") then
      -- a transfer already streaming (downloading) is allowed to finish
      self:expire(j, "the download window closed before the assets were stored")
    end
  end)
end

function Runner:disarm(job)
  local t = self.timers[job.id]
  if not t then return end
  t.warn:cancel()
  t.expire:cancel()
  self.timers[job.id] = nil
end

function Runner:expire(job, reason)
  local expired = self.jobs:transition(job, "expired", {error = reason})
  if not expired then return job end
  self:disarm(expired)
  self:hook("expired", expired)
  self:report_error(expired, reason)
  return expired
end

function Runner:fail(job, reason)
  job = assert(self.jobs:transition(job, "failed", {error = reason}))
  self:disarm(job)
  self:hook("failed", job, reason)
  self:report_error(job, reason)
  return job
end

-- A failed or expired job's error goes to its Notion page through the on_error mapping, in a
-- task of its own so a slow or failing Notion never holds the job's steps up.
function Runner:report_error(job, reason)
  if not (self.notion and self.on_error) then return end
  assetd.spawn({name = "notion error " .. job.notionPageId, detached = true}, function()
    local ok, props = hooks.call(self.on_error, self:job_view(job), reason)
    if not ok then return self:event(job, "hook_error", "notion.on_error: " .. tostring(props)) end
    if not props then return end
    local page, err = self.notion:update_page(job.notionPageId, props)
    self:event(job, "notion", page and "error reported" or ("error not reported: " .. tostring(err)))
  end)
end

-- ---- the steps ---------------------------------------------------------------------------

function Runner:provider(job)
  return self.providers[job.provider] or error("unknown provider '" .. tostring(job.provider) .. "'")
end

-- waiting: poll until the provider says completed or failed. Between polls the job sleeps on
-- an alarm that a webhook for its video rings (on_video_event), so it wakes at once.
function Runner:await_ready(job)
  self.wake = self.wake or {}
  local video, id = job.soraVideoId, job.id
  local alarms = self.wake[video] or {}
  self.wake[video] = alarms
  alarms[id] = assetd.alarm()
  local ok, res = pcall(self.poll_until_ready, self, job, alarms[id])
  alarms[id] = nil
  if next(alarms) == nil then self.wake[video] = nil end
  if not ok then error(res, 0) end
  return res
end

-- 404s in a row that fail a waiting job: a gateway may not know a video for a moment after
-- its creation, but a mistyped soraVideoId stays unknown and would keep the job waiting forever.
M.NOT_FOUND_POLLS = 3

-- Why a failed poll ends the wait (credentials refused, a persistent 404, another 4xx but
-- 408/429), or nil to poll again. MISSES counts the 404s in a row so far.
local function poll_verdict(job, err, misses, base_url)
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

-- A failed status poll that will be tried again is told: an event, a warn line naming the
-- host, the cause and the next try, and the job's error until a poll succeeds.
function Runner:note_poll_failure(job, p, err, wait)
  local host = type(p.base_url) == "string" and p.base_url:match("^%a+://([^/]+)") or job.provider
  local msg = string.format("status poll of %s failed (%s): %s", host, retry.cause(err), tostring(err))
  self:event(job, "poll_failed", msg)
  assetd.log.warn("status poll failed; polling again", {job = job.notionPageId, video = job.soraVideoId,
                  host = host, cause = retry.cause(err), error = tostring(err), retry_in = string.format("%.1f s", wait)})
  local now = self.jobs:get(job.id)
  if now and now.status == "waiting" then self.jobs:transition(now, "waiting", {error = msg}) end
end

function Runner:poll_until_ready(job, alarm)
  local p, attempt, misses = self:provider(job), 0, 0
  while true do
    local st, err = p:status(self:job_view(job))
    if st then self:mark(job.id) end
    if st and st.state == "completed" then
      local completed = st.completedAt or job.completedAt or assetd.now()
      local expires = st.expiresAt or job.expiresAt or (completed + 3600)
      return assert(self.jobs:transition(job, "pending", {completedAt = completed, expiresAt = expires, error = false}))
    elseif st and st.state == "failed" then
      return self:fail(job, st.error or "video generation failed")
    end
    misses = (not st and err.status == 404) and misses + 1 or 0
    local verdict = not st and poll_verdict(job, err, misses, p.base_url)
    if verdict then return self:fail(job, verdict) end
    attempt = attempt + 1
    local wait = math.min(self.poll.max, self.poll.interval * 1.5 ^ math.min(attempt - 1, 20))
    -- the server's word, webhooks or not, up to the longest poll wait (a huge Retry-After would
    -- sleep past the video's window) and never closer than the retry floor
    if not st and err.retry_after then
      wait = math.min(math.max(err.retry_after, retry.floor(1, self.retry)), self.poll.max)
    end
    if not st then self:note_poll_failure(job, p, err, wait) end
    if alarm:sleep(wait) == nil then return self.jobs:get(job.id) end     -- canceled
    job = self.jobs:get(job.id)
    if job.status ~= "waiting" then return job end
  end
end

-- The job as providers and hooks see it: stored fields plus the policy data (assets for urls).
-- The job as hooks and providers see it: its row, with ASSETS (default: the provider's asset
-- list kept in its data).
function Runner:job_view(job, assets)
  local view = {}
  for k, v in pairs(job) do view[k] = v end
  view.assets = assets or self:data(job).assets
  return view
end

function Runner:download_variant(job, asset)
  local path, name = self.versions:path{batchId = job.batchId, videoId = job.soraVideoId,
                                        version = job.version, variant = asset.variant, ext = asset.ext}
  if not path then return nil, name end
  local attempt = 0
  local progress = self.progress[job.id]
  local function on_progress(bytes, total)
    if progress then progress:update(asset.variant, bytes, total) end
    self:mark(job.id)
  end
  while true do
    attempt = attempt + 1
    -- Committed earlier: before a crash, or by a run canceled during its commit (whose
    -- .part this run resumed). Reservation skipped every version whose files existed, so
    -- the file is this job's; and the commit never renames over it.
    local there = io.open(path)
    if there then
      there:close()
      self.versions.files:remove(job.batchId, "." .. name .. ".part")    -- a resume's leftover, if any
      return self:record(job, asset.variant, path, name)
    end
    local res, err = assetd.fetch{url = asset.url, headers = asset.headers, to = path, resume = true,
                                  deny_private = asset.deny_private,
                                  direct = self.direct_io, check = asset.variant, deadline = job.expiresAt, low_speed = {1024, 60},
                                  on_progress = on_progress}
    if res then
      self.metrics:inc("assetd_downloaded_bytes_total", nil, res.bytes)
      self.metrics:inc("assetd_assets_stored_total", {variant = asset.variant})
      self.metrics:observe("assetd_transfer_duration_seconds", res.elapsed or 0)
      return self:record(job, asset.variant, path, name, res)
    end
    local d = retry.decide(err, attempt, job.expiresAt, assetd.now(), self.retry)
    self:event(job, "retry", asset.variant .. ": " .. tostring(err))
    if d.action ~= "retry" then return nil, d end
    self:note_failure(job, asset.variant, err, d.delay)
    self.metrics:inc("assetd_retries_total", {cause = retry.cause(err)})
    assetd.sleep(d.delay)
  end
end

-- A failed try that will be tried again is not silent: a log line (error for a full or failing
-- disk, which a person must act on; warn otherwise) and the job's error until it succeeds.
function Runner:note_failure(job, variant, err, delay)
  local level = err.category == "disk" and "error" or "warn"
  assetd.log[level]("transfer failed; trying again", {job = job.notionPageId, variant = variant,
                    error = tostring(err), retry_in = string.format("%.1f s", delay)})
  local now = self.jobs:get(job.id)
  if now and now.status == "downloading" then
    self.jobs:transition(now, "downloading", {error = variant .. ": " .. tostring(err)})
  end
end

-- Live bytes of a downloading job, summed over its variants (for the API and dashboard).
local LiveBytes = {}
LiveBytes.__index = LiveBytes

function LiveBytes:update(variant, bytes, total)
  self.parts[variant] = {bytes, total or 0}
  local b, t = 0, 0
  for _, p in pairs(self.parts) do b, t = b + p[1], t + p[2] end
  self.bytes, self.total = b, t
end

function Runner:record(job, variant, path, name, res)
  for _, a in ipairs(assert(self.jobs:assets(job))) do
    if a.type == variant and a.version == job.version then return a end
  end
  local f = assert(io.open(path))
  local size = f:seek("end")
  f:close()
  local sha = res and res.sha256 or assert(assetd.store.sha256_file(path))   -- committed earlier
  assert(self.jobs:add_asset(job, {variant = variant, filePath = path, fileName = name, fileSize = size,
                                   sha256 = sha, version = job.version}))
  return true
end

-- pending: wait for a download slot (earliest deadline first), then download in it
function Runner:download(job)
  if not self.slots:acquire(job.expiresAt) then return self.jobs:get(job.id) end     -- canceled
  local ok, res = pcall(self.download_in_slot, self, self.jobs:get(job.id))
  self.slots:release()
  if not ok then error(res, 0) end
  return res
end

-- one version, every variant at once
function Runner:download_in_slot(job)
  if job.status ~= "pending" then return job end    -- expired or canceled while queued
  if job.expiresAt and assetd.now() >= job.expiresAt then
    return self:expire(job, "the video had already expired")
  end
  local fields = {}
  local assets = self:provider(job):assets(self:job_view(job))
  if job.version == 0 then
    -- the version table is the job store's: as patient
    local v, err = patiently("reserve", self.versions.reserve, self.versions, job.batchId, job.soraVideoId, assets)
    if not v then return self:fail(job, tostring(err)) end
    fields.version = v
  end
  -- a resumed job's names too: a naming hook changed by a reload may give two variants one name
  local names, err = self.versions:names(job.batchId, job.soraVideoId, fields.version or job.version, assets)
  if not names then return self:fail(job, tostring(err)) end
  job = assert(self.jobs:transition(job, "downloading", fields))
  self:mark(job.id)
  local progress = setmetatable({parts = {}, bytes = 0, total = 0, video = job.soraVideoId}, LiveBytes)
  self.progress[job.id] = progress
  local function drop_progress()                  -- not a newer run's (a retry right after a cancel)
    if self.progress[job.id] == progress then self.progress[job.id] = nil end
  end
  local left, failure, tasks, done = #assets, nil, {}, assetd.alarm()
  local run = self.running[job.id]
  if run then run.variants = tasks end            -- cancel_job stops them at once
  for _, a in ipairs(assets) do
    tasks[#tasks + 1] = assetd.spawn({name = "asset"}, function()
      patient_threads[coroutine.running()] = true
      local ok, res, why = pcall(self.download_variant, self, job, a)
      if not ok then failure = failure or res elseif not res then failure = failure or why end
      left = left - 1
      if left == 0 then done:ring() end
    end)
  end
  while left > 0 do
    if done:sleep(86400) == nil then               -- canceled (cancel_job): stop the variants too
      for _, t in ipairs(tasks) do t:cancel() end
      drop_progress()
      return self.jobs:get(job.id)
    end
  end
  drop_progress()
  if failure then
    local reason = type(failure) == "table" and (failure.reason or tostring(failure)) or tostring(failure)
    if type(failure) == "table" and failure.action == "expire" then return self:expire(job, reason) end
    return self:fail(job, reason)
  end
  job = assert(self.jobs:transition(job, "completed", {error = false}))
  self:disarm(job)
  if job.expiresAt then self.metrics:observe("assetd_deadline_slack_seconds", math.max(0, job.expiresAt - assetd.now())) end
  job = self:set_data(job, self.notion and {notion = "pending"} or {notion = "skipped", notionError = "no NOTION_TOKEN"})
  self:hook("completed", job)
  return job
end

-- The Notion step gave up: the files stay stored (the job is completed), and people are told.
function Runner:notion_failed(job, message)
  self:event(job, "notion", "failed: " .. message)
  assetd.log.warn("Notion page not updated", {job = job.notionPageId, video = job.soraVideoId, error = message})
  return self:set_data(job, {notion = "failed", notionError = message})
end

-- Notion sync: its own retried step; a Notion outage never re-downloads anything.
function Runner:sync_notion(job)
  if not self.notion or self:data(job).notion ~= "pending" then return job end
  local view = self:job_view(job, self.jobs:assets(job))   -- the stored files
  local attempt = 0
  while true do
    attempt = attempt + 1
    local ok, props = hooks.call(self.properties, view)
    if not ok then return self:notion_failed(job, "the notion.properties mapping failed: " .. tostring(props):match("[^\n]*")) end
    local page, err = self.notion:update_page(job.notionPageId, props)
    if page then
      self:event(job, "notion", "synced")
      return self:set_data(job, {notion = "synced", notionError = cjson.null})
    end
    self:event(job, "notion", tostring(err))
    if not err.retryable then return self:notion_failed(job, tostring(err)) end
    assetd.log.warn("Notion update failed; trying again", {job = job.notionPageId, error = tostring(err)})
    assetd.sleep(math.min(300, 2 ^ math.min(attempt, 8)))
  end
end

-- An error escaping a step fails the job with it (the traceback goes to its history).
function Runner:crashed(id, msg)
  local j = self.jobs:get(id)
  if not j then return end
  self:event(j, "error", msg)
  if live[j.status] then
    self:fail(j, msg:match("[^\n]*"))
  end
end

function Runner:run(job)
  local id = job.id
  if self.running[id] then return end
  local me = {}                                   -- this run; a later run has its own entry
  self.running[id] = me
  -- detached: a job started from the REPL (retry, enqueue) is the daemon's, not held to the
  -- REPL's time budget for the hours it may run
  self:mark(id)
  watch.start(self, id, function() return self.running[id] == me end)
  me.task = assetd.spawn({name = "job " .. job.notionPageId, detached = true, on_error = function(msg)
    if self.running[id] == me then self.running[id] = nil end
    local ok, err = pcall(self.crashed, self, id, msg)
    if not ok then assetd.log.error("job error not recorded", {job = id, error = tostring(err), cause = msg}) end
  end}, function()
    patient_threads[coroutine.running()] = true
    job = self.jobs:get(id) or job                  -- the row as it is now, not as listed
    if job.status == "waiting" then job = self:await_ready(job) end
    if self.running[id] ~= me then return end      -- canceled meanwhile (cancel_job)
    self:arm_deadlines(job)
    if job.status == "pending" then job = self:download(job) end
    if job.status == "completed" then self:sync_notion(job) end
    if self.running[id] == me then self.running[id], self.marks[id] = nil, nil end
  end)
end

-- ---- the outside world -------------------------------------------------------------------

-- Recover, then resume every unfinished job from a task that yields between pages, so the
-- HTTP API and the REPL answer at once even with a long backlog.
function Runner:start()
  self.jobs:recover()
  assetd.spawn({name = "resume"}, function()
    for _, status in ipairs{"pending", "waiting", "completed"} do
      local cursor
      repeat
        local page
        page, cursor = self.jobs:list{status = status, limit = 500, cursor = cursor}
        for _, j in ipairs(page) do
          if status ~= "completed" or self:data(j).notion == "pending" then self:run(j) end
        end
        assetd.sleep(0)
      until not cursor
    end
  end)
end

-- enqueue{notionPageId, soraVideoId, batchId, completedAt?, expiresAt?, provider?, assets?}
function Runner:enqueue(req)
  local provider = req.provider or "openai"
  if not self.providers[provider] then return nil, assetd.error("validation", "unknown provider '" .. provider .. "'") end
  local job, created = self.jobs:create{
    notionPageId = req.notionPageId, soraVideoId = req.soraVideoId, batchId = req.batchId,
    provider = provider, expiresAt = req.expiresAt, completedAt = req.completedAt,
    status = "waiting", data = req.assets and cjson.encode{assets = req.assets} or nil}
  if not job then return nil, created end
  if created then self:run(job) end
  return job, created
end

-- A webhook said the video changed: wake its waiting job now instead of at the next poll.
function Runner:on_video_event(videoId, status)
  local alarms = self.wake and self.wake[videoId]
  if not alarms then return false, status end
  for _, alarm in pairs(alarms) do alarm:ring() end
  return true, status
end

-- Manual retry of a failed job: a new attempt, keeping its version if nothing was committed.
function Runner:retry_job(idOrPage)
  local job, err = self.jobs:get(idOrPage)
  if not job then return nil, err end
  if job.status ~= "failed" then return nil, assetd.error("state", "job is " .. job.status .. ", not failed") end
  local committed = #assert(self.jobs:assets(job)) > 0
  -- a video never seen complete (canceled or failed while waiting) is polled again
  job = assert(self.jobs:transition(job, job.completedAt and "pending" or "waiting",
                                    {error = false, version = committed and 0 or job.version,
                                     retryCount = job.retryCount + 1}))
  self:run(job)
  return job
end

-- Download a completed job's video again, as the next version (V2, V3, ...: the versions
-- already stored stay), while its download window is open. The REPL's redownload() and
-- POST /api/downloads/redownload.
function Runner:redownload_job(idOrPage)
  local job, err = self.jobs:get(idOrPage)
  if not job then return nil, err end
  if job.status ~= "completed" then return nil, assetd.error("state", "job is " .. job.status .. ", not completed") end
  if job.expiresAt and assetd.now() >= job.expiresAt then
    return nil, assetd.error("expired", "the download window of " .. job.notionPageId .. " has closed")
  end
  if self.running[job.id] then       -- its Notion sync: a second run would not start
    return nil, assetd.error("state", "job is still updating its Notion page; try again in a moment")
  end
  job = assert(self.jobs:transition(job, "pending", {error = false, version = 0}))
  self:run(job)
  return job
end

-- ---- operator cancel (the REPL's cancel(), issue 5) ---------------------------------------

-- Stop a job by hand: it becomes failed "canceled by operator" (a manual retry can start it
-- again) and its task, if running, is canceled: a poll or a transfer in flight stops, the
-- .part files stay for a resume.
function Runner:cancel_job(idOrPage)
  local job, err = self.jobs:get(idOrPage)
  if not job then return nil, err end
  if job.status ~= "waiting" and job.status ~= "pending" and job.status ~= "downloading" then
    return nil, assetd.error("state", "job is " .. job.status .. ", there is nothing to cancel")
  end
  job = assert(self.jobs:transition(job, "failed", {error = "canceled by operator"}))
  self:disarm(job)
  self:event(job, "canceled", "by operator")
  local run = self.running[job.id]
  self.running[job.id] = nil                     -- a retry may start a new run at once
  if run and run.task then run.task:cancel() end
  for _, t in ipairs(run and run.variants or {}) do t:cancel() end   -- before a retry can start
  return job
end

return M
