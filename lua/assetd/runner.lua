-- The job runner: what a job does, as straight-line code in its own task (Runner:run):
--   waiting  -> polling.lua: poll the provider until the video completes or fails
--   pending  -> download.lua: reserve a version, download every variant together, commit
--   completed-> uploadsync.lua: the assets into the bucket (storage.s3), verified, as a retried step
--            -> notionsync.lua: the Notion page, as its own retried step (never a re-download)
-- with its deadlines (deadlines.lua), its watch (watch.lua) and the operator's commands
-- (commands.lua). Hooks run in the job's task; an error in one is recorded on the job and
-- the daemon goes on.
local assetd = require "assetd"
local cjson = require "cjson"
local hooks = require "assetd.hooks"
local watch = require "assetd.watch"
local patience = require "assetd.patience"
local events = require "assetd.events"            -- job changes published (GET /api/events)
local deadlines = require "assetd.deadlines"
local polling = require "assetd.polling"
local download = require "assetd.download"
local notionsync = require "assetd.notionsync"
local uploadsync = require "assetd.uploadsync"
local commands = require "assetd.commands"
local live = require("assetd.states").live
local defaults = require "assetd.defaults"

local Runner = {}
Runner.__index = Runner

local M = {}

local function decode(s)
  if not s then return {} end
  local ok, t = pcall(cjson.decode, s)
  return ok and type(t) == "table" and t or {}
end

-- Runner.new{jobs=, versions=, providers = {name = provider}, notion = client|nil,
--   properties = fn(job) -> props, on_error = fn(job, message) -> props|nil,
--   alerts = {warn_before=, expiring=, expired=, failed=, completed=},
--   retry = {...}, poll = {interval=, max=}, metrics = registry, max_jobs = download slots,
--   direct_io = write whole blocks past the page cache (default true),
--   s3 = {client = s3 client, prefix=, keep_local=, retry=, public_base_url=} | nil}
function M.new(cfg)
  local self = setmetatable({
    jobs = events.store(patience.store(assert(cfg.jobs))), versions = assert(cfg.versions), providers = assert(cfg.providers),
    notion = cfg.notion, properties = cfg.properties, on_error = cfg.on_error,
    alerts = cfg.alerts or {}, retry = cfg.retry, poll = cfg.poll or defaults.pipeline.sora.poll,
    metrics = cfg.metrics or require("assetd.metrics").standard(),
    max_jobs = cfg.max_jobs or 4 * defaults.pipeline.limits.max_active,
    backlog = assetd.deadline_queue(), queued = {}, admitted = {},
    running = {}, timers = {}, progress = {}, marks = {}, flagged = {}, direct_io = cfg.direct_io ~= false,
    s3 = cfg.s3, cluster = cfg.cluster,
  }, Runner)
  self.slots = require("assetd.slots").new(self.max_jobs)
  self.alerts.warn_before = self.alerts.warn_before or defaults.pipeline.alerts.warn_before
  return self
end

function Runner:event(job, kind, detail)
  self.jobs:event(job, kind, detail and tostring(detail) or nil)
end

-- A hook call that cannot break the job: errors are recorded on it.
function Runner:hook(name, job, ...)
  local fn = self.alerts[name]
  if not fn then return end
  if self.cluster and not self.cluster:alert(job, name) then return end   -- fired by another daemon
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

-- The job with PATCH merged into its data (and FIELDS of its row set, in the same write); the
-- job as it is if the store refused (it was moved meanwhile, by a cancel say), and why.
function Runner:set_data(job, patch, fields)
  local d = decode(job.data)
  for k, v in pairs(patch) do d[k] = v end
  local set = {data = cjson.encode(d)}
  for k, v in pairs(fields or {}) do set[k] = v end
  local moved, err = self.jobs:transition(job, job.status, set)
  if not moved then return self.jobs:get(job.id) or job, err end
  return moved
end

function Runner:provider(job)
  return self.providers[job.provider] or error("unknown provider '" .. tostring(job.provider) .. "'")
end

-- The job as hooks and providers see it: its row, with ASSETS (default: the provider's asset
-- list kept in its data).
function Runner:job_view(job, assets)
  local view = {}
  for k, v in pairs(job) do view[k] = v end
  view.assets = assets or self:data(job).assets
  return view
end

-- ---- how a job ends -----------------------------------------------------------------------

function Runner:expire(job, reason)
  local expired = self.jobs:transition(job, "expired", {error = reason})
  if not expired then return job end
  deadlines.disarm(self, expired)
  self:hook("expired", expired)
  notionsync.report_error(self, expired, reason)
  return expired
end

-- A job that ends (fail, complete) but was moved meanwhile (canceled) stays as it was moved.
function Runner:fail(job, reason)
  local failed = self.jobs:transition(job, "failed", {error = reason})
  if not failed then return self.jobs:get(job.id) or job end
  job = failed
  deadlines.disarm(self, job)
  self:hook("failed", job, reason)
  notionsync.report_error(self, job, reason)
  return job
end

-- Every variant stored: the job is completed and its upload and Notion steps begin. ASSETS
-- (the stored files, as jobs:add_asset takes them) are recorded in the same write: the assets,
-- the state and the steps are one transaction of the store, not one each.
function Runner:complete(job, assets)
  local steps = notionsync.initial(self)
  for k, v in pairs(uploadsync.initial(self)) do steps[k] = v end
  local d = self:data(self.jobs:get(job.id) or job)        -- its data now (a retry's attempts)
  for k, v in pairs(steps) do d[k] = v end
  local set = {error = false, data = cjson.encode(d)}
  local completed = self.jobs:complete_with_assets(job, assets or {}, set)
  if not completed then return self.jobs:get(job.id) or job end
  job = completed
  deadlines.disarm(self, job)
  if job.expiresAt then self.metrics:observe("assetd_deadline_slack_seconds", math.max(0, job.expiresAt - assetd.now())) end
  self:hook("completed", job)
  return job
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

-- ---- the job's story ----------------------------------------------------------------------

-- QUEUED: the record of a run resumed lazily (Runner:resume), now given its task.
function Runner:run(job, queued)
  local id = job.id
  if queued then
    if self.running[id] ~= queued then return end  -- canceled or replaced while queued
    self.queued[id], self.admitted[id], queued.backlogged = nil, queued, nil
  else
    if self.running[id] then return end
    if self.cluster and not self.cluster:holds(id) then
      job = self.cluster:claim(id)                -- another daemon runs it, or it is not runnable
      if not job or self.running[id] then return end
    end
  end
  local me = queued or {}                         -- this run; a later run has its own entry
  self.running[id] = me
  -- the claim goes with the run, unless a newer run of this daemon has the job now
  local function over()
    if self.running[id] == me then self.running[id], self.marks[id] = nil, nil end
    if self.cluster and self.running[id] == nil then self.cluster:release(id) end
    if queued and self.admitted[id] == me then self.admitted[id] = nil; self:admit() end
  end
  -- detached: a job started from the REPL (retry, enqueue) is the daemon's, not held to the
  -- REPL's time budget for the hours it may run
  self:mark(id)
  watch.start(self, id, function() return self.running[id] == me end, me.fired)
  me.task = assetd.spawn({name = "job " .. job.notionPageId, detached = true, on_error = function(msg)
    local ok, err = pcall(self.crashed, self, id, msg)
    if not ok then assetd.log.error("job error not recorded", {job = id, error = tostring(err), cause = msg}) end
    over()
  end}, function()
    patience.adopt()
    job = self.jobs:get(id) or job                  -- the row as it is now, not as listed
    if job.status == "waiting" then job = polling.await_ready(self, job) end
    if self.running[id] ~= me then return end      -- canceled meanwhile (cancel_job)
    deadlines.arm(self, job)
    if job.status == "pending" then job = download.run(self, job) end
    if job.status == "completed" then
      job = uploadsync.sync(self, job)
      -- Notion links the bucket's objects: it waits for them (a failed upload leaves it pending)
      if uploadsync.done(self:data(job)) then notionsync.sync(self, job) end
    end
    over()
  end)
end

-- ---- the outside world -------------------------------------------------------------------

-- ---- the resumed backlog: unfinished jobs as data ------------------------------------------
-- A restart over a long backlog resumes every unfinished job, but lazily: a waiting job is an
-- entry in the poll queue (polling.queue: MAX_POLLS polls in flight), a pending one (or a
-- completed one with a step left) an entry in `backlog`, earliest deadline first, with its
-- deadline timers armed at once; at most max_jobs of those get a task at a time (Runner:admit,
-- as a run ends). Each entry is its run's record in runner.running, so the API, the REPL and
-- the operator's commands see it as running: a cancel drops it, a retry starts a run of its
-- own. The watch over queued jobs is one sweep (watch.sweep), not a task each.

-- Resume JOB (as listed) lazily.
function Runner:resume(job)
  local id = job.id
  if self.running[id] then return end
  local me = {fired = {}}
  self.running[id] = me
  self:mark(id)
  watch.sweep(self)
  if job.status == "waiting" then
    self.queued[id] = me
    polling.queue(self, job, me)
  else
    self:queue_pending(job, me)
  end
end

-- The job of the queued run ME waits in the backlog for a task (deadlines armed now).
function Runner:queue_pending(job, me)
  self.queued[job.id], me.backlogged = me, true
  deadlines.arm(self, job)
  self.backlog:push(job.status ~= "completed" and job.expiresAt or nil, {id = job.id, me = me})
  self:admit()
end

-- The queued run ME of job ID ends without a task (its job moved on, failed while waiting, or canceled).
function Runner:unqueue(id, me)
  if self.queued[id] == me then self.queued[id] = nil end
  if self.running[id] == me then self.running[id], self.marks[id] = nil, nil end
  if not self.running[id] then self.flagged[id] = nil end
end

-- Give queued runs their tasks while fewer than max_jobs of them run.
function Runner:admit()
  local busy = 0
  for id, me in pairs(self.admitted) do
    if self.running[id] == me and me.task and me.task:status() ~= "done" then busy = busy + 1
    else self.admitted[id] = nil end
  end
  while busy < self.max_jobs and #self.backlog > 0 do
    local entry = self.backlog:pop()
    local id, me = entry.id, entry.me
    if self.running[id] == me then
      local job = self.jobs:get(id)
      if job and (live[job.status] or job.status == "completed") then
        self:run(job, me)
        busy = busy + 1
      else
        self:unqueue(id, me)
      end
    else
      self:unqueue(id, me)                        -- canceled while queued
    end
  end
end

-- Recover, then resume every unfinished job (lazily, above) from a task that yields between
-- pages, so the HTTP API and the REPL answer at once even with a long backlog.
function Runner:start()
  self.started_at = assetd.now()
  if self.cluster then return self.cluster:start(self) end   -- claims instead: cluster.lua
  self.jobs:recover()
  assetd.spawn({name = "resume"}, function()
    for _, status in ipairs{"pending", "waiting", "completed"} do
      local cursor
      repeat
        local page
        page, cursor = self.jobs:list{status = status, limit = 500, cursor = cursor}
        for _, j in ipairs(page) do
          local d = status == "completed" and self:data(j)
          if not d or d.notion == "pending" or uploadsync.unfinished(d) then self:resume(j) end
        end
        coroutine.yield()                      -- the loop polls I/O first (a sleep(0) would not)
      until not cursor
    end
  end)
end

-- enqueue{notionPageId, soraVideoId, batchId, completedAt?, expiresAt?, provider?, assets?}
function Runner:enqueue(req)
  local provider = req.provider or defaults.provider
  if not self:has_provider(provider) then return nil, assetd.error("invalid", "unknown provider '" .. provider .. "'") end
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

-- ---- what the API and the REPL read ------------------------------------------------------

function Runner:has_provider(name) return self.providers[name] ~= nil end

-- The live bytes of a downloading job ({bytes=, total=}), or nil.
function Runner:live_bytes(id)
  local p = self.progress[id]
  return p and {bytes = p.bytes, total = p.total}
end

-- Jobs by state, and the unfinished ones due within alerts.warn_before (as it is now: a
-- reload may change it).
function Runner:summary(now)
  return self.jobs:summary(now or assetd.now(), self.alerts.warn_before)
end

-- Unfinished jobs the watch has flagged now: {{job=, stalled = reason|nil, at_risk = t|nil}}.
function Runner:concerns()
  local out = {}
  for id, c in pairs(self.flagged) do
    local job = (c.stalled or c.at_risk) and self.jobs:get(id)
    if job then out[#out + 1] = {job = job, stalled = c.stalled, at_risk = c.at_risk} end
  end
  table.sort(out, function(a, b) return a.job.id < b.job.id end)
  return out
end

-- The daemons sharing the store: {{id=, self=, startedAt=, heartbeatAt=, jobsHeld=}}; alone
-- (SQLite), this one with the jobs it runs.
function Runner:instances()
  if not self.cluster then
    local n = 0
    for _ in pairs(self.running) do n = n + 1 end
    return {{id = require("assetd.cluster").instance(), self = true, startedAt = self.started_at,
             heartbeatAt = assetd.now(), jobsHeld = n}}
  end
  local list, err = self.cluster.store:instances()
  if not list then return nil, err end
  for _, d in ipairs(list) do d.self = d.id == self.cluster.instance end
  return list
end

-- What the API and the live stream show of the runs, read through methods (the runner's
-- tables stay its own): the warning window, a job's flags (stalled, at_risk), the bytes of
-- the jobs downloading now, and the download slots.
function Runner:warn_before() return self.alerts.warn_before end
function Runner:flags(id) return self.flagged[id] end
function Runner:downloading() return pairs(self.progress) end
function Runner:progress_of(id) return self.progress[id] end
function Runner:slot_queue() return self.slots:order() end
function Runner:slot_use() return {size = self.slots.size, free = self.slots.free} end
function Runner:prune(opts) return self.versions:prune(opts) end

function Runner:expiring(now, limit, window)
  return self.jobs:expiring(now or assetd.now(), window or self.alerts.warn_before, limit)
end

-- ---- the operator's commands (commands.lua) -----------------------------------------------

Runner.retry_job = commands.retry
Runner.redownload_job = commands.redownload
Runner.cancel_job = commands.cancel
Runner.download_variant = download.variant

return M
