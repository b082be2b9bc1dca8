-- What the operator reads through the HTTP API: the status summary (counters, deadlines ahead
-- and passed, concerns), the job list with its filters and keyset pages, the queue behind the
-- limits, the daemons sharing the store and /metrics. Each is a route of api.lua's (SELF is
-- its Api); the commands that change a job stay there.
local assetd = require "assetd"
local cjson = require "cjson.safe"
local timefmt = require "assetd.timefmt"
local states = require "assetd.states"
local reply = require "assetd.reply"

local array, json, opt, err, bad = reply.array, reply.json, reply.opt, reply.err, reply.bad

local V = {}

-- The engine's limits and transfers now; none once it is closed (the daemon stopping, or an
-- API run without one, as fuzz_request does), which an answer must not trip over.
local function transfers()
  return assetd.fetch_limits() or {active = 0, queued = 0, max_active = 0, per_host = 0, order = "edf"}
end

-- A job as the summaries name it.
local function brief(j)
  return {notionPageId = j.notionPageId, soraVideoId = j.soraVideoId, batchId = j.batchId,
          status = j.status, expiresAt = opt(timefmt.iso(j.expiresAt))}
end

-- The watch's concerns now, and how many are stalled and at risk.
local function concerns_of(runner)
  local list, stalled, at_risk = runner:concerns(), 0, 0
  for _, c in ipairs(list) do
    stalled, at_risk = stalled + (c.stalled and 1 or 0), at_risk + (c.at_risk and 1 or 0)
  end
  return list, stalled, at_risk
end

-- The unfinished jobs whose deadline has passed at NOW (a transfer already streaming goes on):
-- how many, and the first 1,000, the longest past first. The store's expiring query over
-- (0, now] (no deadline is stored as 0), counted exactly when there are more than a page.
function V.deadline_passed(self, now)
  local list = assert(self.runner:expiring(0, 1000, now))
  local n = #list
  if n == 1000 then n = assert(self.jobs:summary(0, now)).approachingExpiration end
  return n, list
end

function V.status(self)
  local now = assetd.now()
  local s = assert(self.runner:summary(now))
  local expiring = {}
  for _, j in ipairs(assert(self.runner:expiring(now, 100))) do
    local e = brief(j)
    e.minutesRemaining = math.floor((j.expiresAt - now) / 60)
    expiring[#expiring + 1] = e
  end
  local passed_n, passed_list = V.deadline_passed(self, now)
  local passed = {}
  for i = 1, math.min(100, #passed_list) do
    local j = passed_list[i]
    passed[i] = brief(j)
    passed[i].minutesPast = math.floor((now - j.expiresAt) / 60)
  end
  local flagged, stalled, at_risk = concerns_of(self.runner)
  local summary = {approachingExpiration = s.approachingExpiration, stalled = stalled, atRisk = at_risk,
                   deadlinePassed = passed_n}
  for _, st in ipairs(states.names) do summary[st] = s[st] end
  local concerns = {}
  for i, c in ipairs(flagged) do
    concerns[i] = brief(c.job)
    concerns[i].stalled = c.stalled or cjson.null
    concerns[i].projectedFinish = c.at_risk and (c.at_risk == math.huge and "never" or timefmt.iso(c.at_risk)) or cjson.null
  end
  -- the next hour of deadlines in 5-minute buckets, so a crowded window shows before it bites
  local ahead, counts = assert(self.runner:expiring(now, 1000, 3600)), {}
  for i = 1, 12 do counts[i] = 0 end
  for _, j in ipairs(ahead) do
    local i = math.floor((j.expiresAt - now) / 300) + 1
    if i >= 1 and i <= 12 then counts[i] = counts[i] + 1 end
  end
  local t = transfers()
  return json(200, {
    deadlines = {bucketSeconds = 300, counts = counts, truncated = #ahead == 1000},
    transfers = {running = t.active, queued = t.queued},
    summary = summary, states = states.names, liveStates = states.live_names,
    warnBefore = self.runner:warn_before(),
    pending = s.pending, expiring = s.approachingExpiration,
    expiringDownloads = array(expiring), concerns = array(concerns),
    deadlinePassed = passed_n, deadlinePassedDownloads = array(passed),
  })
end

-- Ids are compared as people type them: any case, Notion's dashes or none.
local function bare(id) return (id:lower():gsub("-", "")) end

-- The list's filters the store has no index for (additions): provider, q (a part of the Notion
-- page or video id), atRisk (unfinished, and flagged by the watch or due within
-- alerts.warn_before, or past its deadline) and deadlinePassed (unfinished and past its
-- deadline). A test of a job, or nil when none is asked; or
-- nil and an error answer.
function V.list_filter(self, q)
  local tests = {}
  if q.provider then
    if not self.runner:has_provider(q.provider) then return nil, bad("provider", "must be one of the configured providers") end
    tests[#tests + 1] = function(j) return j.provider == q.provider end
  end
  if q.q then
    if #q.q > 128 or not q.q:match(reply.ID) then return nil, bad("q", "must be a part of an id: ^[A-Za-z0-9_-]{1,128}$") end
    local needle = bare(q.q)
    tests[#tests + 1] = function(j)
      return bare(j.notionPageId):find(needle, 1, true) ~= nil or bare(j.soraVideoId):find(needle, 1, true) ~= nil
    end
  end
  if q.atRisk then
    if q.atRisk ~= "1" and q.atRisk ~= "true" then return nil, bad("atRisk", "must be 1 or true") end
    local now, window = assetd.now(), self.runner:warn_before()
    tests[#tests + 1] = function(j)
      if not states.live[j.status] then return false end
      local c = self.runner:flags(j.id)
      return (c and (c.stalled or c.at_risk)) ~= nil or (j.expiresAt ~= nil and j.expiresAt - now < window)
    end
  end
  if q.deadlinePassed then
    if q.deadlinePassed ~= "1" and q.deadlinePassed ~= "true" then return nil, bad("deadlinePassed", "must be 1 or true") end
    local now = assetd.now()
    tests[#tests + 1] = function(j) return states.live[j.status] and j.expiresAt ~= nil and j.expiresAt <= now end
  end
  if #tests == 0 then return nil end
  return function(j)
    for _, t in ipairs(tests) do if not t(j) then return false end end
    return true
  end
end

-- A page of the jobs QUERY lists that pass MATCH, found by scanning the store's pages in
-- order. A request scans V.SCAN jobs at most, so a page may hold fewer than the limit with a
-- cursor to go on from; the cursor is always the last job looked at (keyset, as the store's).
V.SCAN = 5000
function V.scan(self, query, match)
  local out, scanned, cursor = {}, 0, query.cursor
  local q = {status = query.status, batchId = query.batchId, newest_first = query.newest_first, limit = 500}
  while true do
    q.cursor = cursor
    local page, more = assert(self.jobs:list(q))
    for _, j in ipairs(page) do
      scanned, cursor = scanned + 1, j.id
      if match(j) then out[#out + 1] = j end
      if #out == query.limit or scanned >= V.SCAN then return out, cursor end
    end
    if not more then return out, nil end
  end
end

function V.list(self, req)
  local q = req.query
  local limit = tonumber(q.limit or "50")
  if not limit or limit ~= math.floor(limit) or limit < 1 or limit > 1000 then
    return err(400, "validation_error", "limit: must be an integer 1..1000")
  end
  local cursor = math.tointeger(tonumber(q.cursor or "0"))
  if not cursor or cursor < 0 then return err(400, "validation_error", "cursor: must be a cursor from a previous page") end
  local st = q.status
  if st and not states.known[st] then
    return err(400, "validation_error", "status: must be one of " .. table.concat(states.names, ", "))
  end
  if q.batchId then
    local e = reply.check_id(q, "batchId")
    if e then return e end
  end
  if q.order and q.order ~= "asc" and q.order ~= "desc" then
    return err(400, "validation_error", "order: must be asc or desc")
  end
  local match, e = V.list_filter(self, q)
  if e then return e end
  local query = {status = st, batchId = q.batchId, limit = limit, cursor = cursor, newest_first = q.order == "desc"}
  local page, next_cursor
  if match then page, next_cursor = V.scan(self, query, match) else page, next_cursor = assert(self.jobs:list(query)) end
  local out = {}
  for i, j in ipairs(page) do out[i] = self:job_json(j) end
  return json(200, {jobs = array(out), nextCursor = next_cursor and tostring(next_cursor) or cjson.null})
end

function V.metrics_text(self)
  local s = assert(self.runner:summary())
  local series = {}
  for _, st in ipairs(states.names) do
    series[#series + 1] = {labels = {state = st}, value = s[st]}
  end
  local _, stalled, at_risk = concerns_of(self.runner)
  local t = transfers()
  local body = self.metrics:render{
    {name = "assetd_build_info", help = "The running build (its version as a label; the value is 1)",
     series = {{labels = {version = assetd.version}, value = 1}}},
    {name = "assetd_jobs", help = "Jobs by state", series = series},
    {name = "assetd_jobs_approaching_expiration", help = "Unfinished jobs expiring within alerts.warn_before",
     series = {{value = s.approachingExpiration}}},
    {name = "assetd_jobs_stalled", help = "Unfinished jobs without progress for alerts.stall_after",
     series = {{value = stalled}}},
    {name = "assetd_jobs_at_risk", help = "Unfinished jobs whose projected finish passes their deadline",
     series = {{value = at_risk}}},
    {name = "assetd_jobs_deadline_passed", help = "Unfinished jobs whose deadline has passed (a streaming transfer goes on)",
     series = {{value = (V.deadline_passed(self, assetd.now()))}}},
    {name = "assetd_transfers", help = "Transfers in the engine, running or queued behind the limits",
     series = {{labels = {state = "running"}, value = t.active}, {labels = {state = "queued"}, value = t.queued}}},
  }
  return {status = 200, headers = {["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"}, body = body}
end

-- GET /api/queue (an addition): what waits behind the concurrency limits, in the order it will
-- start, and what runs. A downloading job whose transfers all wait in the engine is held by
-- `transfers` (limits.max_active) or `per_host`, or by `preempted` (held back for an earlier
-- deadline, limits.order = "edf"); after those, in slot order (earliest deadline first, then
-- arrival: slots.lua), the pending jobs waiting for a slot, held by `max_jobs`. Each of the
-- engine's transfers carries its job's id (the fetch tag download.lua gives), so a job waits
-- exactly when none of its transfers runs. This daemon's jobs only.
V.QUEUE_MAX = 200
function V.queue(self, req)
  local limit = tonumber(req.query.limit or tostring(V.QUEUE_MAX))
  if not limit or limit ~= math.floor(limit) or limit < 1 or limit > V.QUEUE_MAX then
    return err(400, "validation_error", "limit: must be an integer 1.." .. V.QUEUE_MAX)
  end
  local lim = transfers()
  -- the engine's downloads by the job whose they are (the tag download.lua gives)
  local by_job = {}
  for _, d in ipairs(assetd.downloads()) do
    local g = d.tag and (by_job[d.tag] or {active = 0, queued = 0, held = 0})
    if g then
      by_job[d.tag] = g
      g[d.state] = (g[d.state] or 0) + 1
    end
  end
  local engine_wait = lim.active >= lim.max_active and "transfers" or "per_host"
  local function entry(job)
    local e = brief(job)
    e.id = job.id
    return e
  end
  local running, held = {}, {}
  local ids = {}
  for id in self.runner:downloading() do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local job = self.jobs:get(id)
    if job and job.status == "downloading" then
      local p, rate = self.runner:progress_of(id), self.live:rate(id)
      local g = by_job[id]
      local wait                                     -- none of its transfers running: it waits
      if g and g.active == 0 and (g.queued > 0 or g.held > 0) then
        wait = g.queued > 0 and engine_wait or "preempted"
      end
      local e = entry(job)
      e.bytes, e.total = p and p.bytes or 0, p and p.total or 0
      e.bytesPerSecond = rate and math.floor(rate + 0.5) or cjson.null
      if wait then e.heldBy = wait; held[#held + 1] = e else running[#running + 1] = e end
    end
  end
  local function by_deadline_then_id(a, b)
    if a.expiresAt == b.expiresAt then return a.id < b.id end
    if a.expiresAt == cjson.null then return false end
    if b.expiresAt == cjson.null then return true end
    return a.expiresAt < b.expiresAt                 -- ISO times in UTC sort as text
  end
  table.sort(running, by_deadline_then_id)
  table.sort(held, by_deadline_then_id)
  local queued = {}
  for _, e in ipairs(held) do
    if #queued < limit then queued[#queued + 1] = e end
  end
  local order = self.runner:slot_queue()
  for _, w in ipairs(order) do
    if #queued >= limit then break end
    local job = w.who and self.jobs:get(w.who)
    if job then
      local e = entry(job)
      e.heldBy = "max_jobs"
      queued[#queued + 1] = e
    end
  end
  for i, e in ipairs(queued) do e.position = i end
  local total = #held + #order
  local slots = self.runner:slot_use()
  return json(200, {
    limits = {maxJobs = slots.size, maxActive = lim.max_active, perHost = lim.per_host, order = lim.order},
    slots = {used = slots.size - slots.free, free = slots.free},
    transfers = {running = lim.active, queued = lim.queued},
    running = array(running), queued = array(queued), queuedTotal = total, truncated = total > #queued,
  })
end

-- GET /api/instances: the daemons sharing the job store (one, on SQLite), each with its last
-- heartbeat and the jobs it holds.
function V.instances(self)
  local list = {}
  for i, d in ipairs(assert(self.runner:instances())) do
    list[i] = {id = d.id, self = d.self, startedAt = opt(timefmt.iso(d.startedAt)),
               heartbeatAt = opt(timefmt.iso(d.heartbeatAt)), jobsHeld = d.jobsHeld}
  end
  return json(200, {instances = array(list)})
end


return V
