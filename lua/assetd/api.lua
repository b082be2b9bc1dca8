-- The HTTP API: routes as Lua functions over the runner and the job store. C (assetd.http_listen)
-- carries requests and responses; this file decides everything a client sees: paths, JSON
-- shapes (the original design's camelCase), status codes, authentication and asset serving.
local assetd = require "assetd"
local cjson = require "cjson.safe"
local timefmt = require "assetd.timefmt"
local urls = require "assetd.providers.urls"
local webhooks = require "assetd.webhooks"
local states = require "assetd.states"
local live = require "assetd.live"
local uploadsync = require "assetd.uploadsync"

local M = {}
local Api = {}
Api.__index = Api

local ID = "^[A-Za-z0-9_-]+$"

-- Debian's lua-cjson 2.1.0 encodes every empty table as {}; an empty array is marked with a
-- sentinel string and turned into [] after encoding.
local EMPTY = "\1assetd-empty-array\1"
local function array(t) return next(t) == nil and EMPTY or t end

local function encode(value)
  return (cjson.encode(value):gsub('"\\u0001assetd%-empty%-array\\u0001"', "[]"))
end

Api.encode = function(_, value) return encode(value) end

local function json(status, value, headers)
  local h = {["Content-Type"] = "application/json", ["Cache-Control"] = "no-store"}
  for k, v in pairs(headers or {}) do h[k] = v end
  return {status = status, headers = h, body = encode(value)}
end

local function opt(v) if v == nil then return cjson.null end return v end

-- The engine's transfers now; none once it is closed (the daemon stopping, or an API run
-- without one, as fuzz_request does), which an answer must not trip over.
local function transfers()
  return assetd.fetch_limits() or {active = 0, queued = 0}
end

local function err(status, code, message, headers)
  return json(status, {error = {code = code, message = message}}, headers)
end
M.error_response = err

-- Server faults, by the category of the error a binding returned: the request was fine and
-- may succeed later, so 503 with Retry-After; a 4xx would tell the client not to retry.
local FAULTS = {database = "store_unavailable", disk = "storage_unavailable"}
M.RETRY_AFTER = 5

local function fault_code(e) return type(e) == "table" and FAULTS[e.category] end

local function unavailable(code, message)
  return err(503, code, message, {["Retry-After"] = tostring(M.RETRY_AFTER)})
end

-- E as a 503 if it is a server fault; else nil.
local function fault(e)
  local code = fault_code(e)
  return code and unavailable(code, tostring(e))
end

-- ---- shapes ------------------------------------------------------------------------------

function Api:asset_url(job, name)
  return string.format("%s/%s/%s", self.public_base_url, job.batchId, name)
end

-- Tries per variant of the job's current version (data.attempts, kept by download.lua on
-- each retry); 1 for a variant stored at its first try.
local function attempts_of(data, job)
  local out = {}
  local a = data.attempts
  if type(a) == "table" and a.version == job.version then
    for k, v in pairs(a) do if k ~= "version" then out[k] = v end end
  end
  return out
end

function Api:job_json(job)
  local data = self.runner:data(job)
  local attempts = attempts_of(data, job)
  local assets = {}
  -- objectKey and url of an asset in the bucket (storage.s3), else the local link
  for _, a in ipairs(uploadsync.located(data, assert(self.jobs:assets(job)))) do     -- a store fault: 503 from the handler
    assets[#assets + 1] = {type = a.type, fileName = a.fileName, filePath = a.filePath, fileSize = a.fileSize,
                           version = a.version, downloadedAt = timefmt.iso(a.downloadedAt), sha256 = a.sha256,
                           url = a.url or self:asset_url(job, a.fileName), objectKey = a.objectKey or cjson.null,
                           attempts = a.version == job.version and (attempts[a.type] or 1) or cjson.null}
  end
  local progress = self.runner:live_bytes(job.id)
  if progress then progress.bytesPerSecond = self.live:rate(job.id) end      -- known while /api/events is open
  return {
    id = job.id, notionPageId = job.notionPageId, soraVideoId = job.soraVideoId, batchId = job.batchId,
    provider = job.provider, status = job.status, completedAt = opt(timefmt.iso(job.completedAt)),
    expiresAt = opt(timefmt.iso(job.expiresAt)), version = job.version, downloadedAssets = array(assets),
    retryCount = job.retryCount, error = job.error or cjson.null,
    attempts = next(attempts) and attempts or cjson.null,
    notion = data.notion or cjson.null,
    notionError = data.notionError or cjson.null,
    upload = type(data.upload) == "table" and {state = data.upload.state, error = data.upload.error or cjson.null}
             or cjson.null,
    progress = progress or cjson.null,
  }
end

-- ---- request bodies ----------------------------------------------------------------------

local function body_object(req)
  if req.body == "" then return nil, err(400, "invalid_json", "the request body is empty; send a JSON object") end
  local v, e = cjson.decode(req.body)
  if v == nil then return nil, err(400, "invalid_json", "malformed JSON: " .. tostring(e)) end
  if type(v) ~= "table" or (next(v) == nil and req.body:match("^%s*%[")) or v[1] ~= nil then
    return nil, err(400, "invalid_json", "the body must be a JSON object")
  end
  return v
end

local function bad(field, what) return err(400, "validation_error", field .. ": " .. what) end
-- The checks answer an error response for a bad field, or nothing for a good one.
local function check_id(body, field)
  local v = body[field]
  if v == nil or v == cjson.null then return bad(field, "is required") end
  if type(v) ~= "string" then return bad(field, "must be a string, got " .. (type(v) == "table" and "an object or array" or type(v))) end
  if #v > 128 or not v:match(ID) then return bad(field, "must match ^[A-Za-z0-9_-]{1,128}$") end
end

-- An optional time field: its unix seconds (nil when absent), or nil and an error response.
-- Within ten years of now (timefmt.near), as the provider's times: "9999-12-31" is a mistake,
-- and a deadline there would never expire.
local function time_field(body, field)
  local v = body[field]
  if v == nil or v == cjson.null then return nil end
  local t = timefmt.near(v, assetd.now())
  if not t then
    return nil, bad(field, "must be an ISO 8601 time (e.g. 2026-11-24T10:30:00Z) or unix seconds within ten years of now")
  end
  return t
end

-- A body's assets (the `urls` provider's), checked as that provider checks a job's: an
-- explicit null ext is no ext.
local function check_assets(body)
  local a = body.assets
  if a == nil or a == cjson.null then
    if body.provider == "urls" then return bad("assets", "are required by the urls provider") end
    return
  end
  if type(a) == "table" then
    for _, x in ipairs(a) do if type(x) == "table" and x.ext == cjson.null then x.ext = nil end end
  end
  local field, why = urls.check_assets(a)
  if field then return bad(field, why) end
end

-- ---- routes ------------------------------------------------------------------------------

-- The unfinished jobs whose deadline has passed at NOW (a transfer already streaming goes on):
-- how many, and the first 1,000, the longest past first. The store's expiring query over
-- (0, now] (no deadline is stored as 0), counted exactly when there are more than a page.
function Api:deadline_passed(now)
  local list = assert(self.runner:expiring(0, 1000, now))
  local n = #list
  if n == 1000 then n = assert(self.jobs:summary(0, now)).approachingExpiration end
  return n, list
end

function Api:status_get()
  local now = assetd.now()
  local s = assert(self.runner:summary(now))
  local expiring = {}
  for _, j in ipairs(assert(self.runner:expiring(now, 100))) do
    expiring[#expiring + 1] = {notionPageId = j.notionPageId, soraVideoId = j.soraVideoId, batchId = j.batchId,
                               expiresAt = timefmt.iso(j.expiresAt), status = j.status,
                               minutesRemaining = math.floor((j.expiresAt - now) / 60)}
  end
  local passed_n, passed_list = self:deadline_passed(now)
  local passed = {}
  for i = 1, math.min(100, #passed_list) do
    local j = passed_list[i]
    passed[i] = {notionPageId = j.notionPageId, soraVideoId = j.soraVideoId, batchId = j.batchId,
                 expiresAt = timefmt.iso(j.expiresAt), status = j.status,
                 minutesPast = math.floor((now - j.expiresAt) / 60)}
  end
  local summary = {approachingExpiration = s.approachingExpiration, stalled = 0, atRisk = 0, deadlinePassed = passed_n}
  for _, st in ipairs(states.names) do summary[st] = s[st] end
  local concerns = {}
  for _, c in ipairs(self.runner:concerns()) do
    summary.stalled = summary.stalled + (c.stalled and 1 or 0)
    summary.atRisk = summary.atRisk + (c.at_risk and 1 or 0)
    concerns[#concerns + 1] = {notionPageId = c.job.notionPageId, soraVideoId = c.job.soraVideoId,
      batchId = c.job.batchId, status = c.job.status, expiresAt = opt(timefmt.iso(c.job.expiresAt)),
      stalled = c.stalled or cjson.null,
      projectedFinish = c.at_risk and (c.at_risk == math.huge and "never" or timefmt.iso(c.at_risk)) or cjson.null}
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

-- The job a body {notionPageId, soraVideoId?} names and the body; or nil and an error answer.
function Api:find_page(req)
  local body, e = body_object(req)
  if not body then return nil, e end
  local e2 = check_id(body, "notionPageId")
  if e2 then return nil, e2 end
  -- a page may have several videos: soraVideoId names one (without it, the newest)
  if body.soraVideoId ~= nil then
    local e3 = check_id(body, "soraVideoId")
    if e3 then return nil, e3 end
  end
  local job, e4 = self.jobs:get(body.notionPageId, body.soraVideoId)
  if not job then return nil, fault(e4) or err(404, "not_found", "no download for notionPageId " .. body.notionPageId) end
  return job, body
end

-- The job's history for a person: oldest first, the newest M.MAX_EVENTS at most.
M.MAX_EVENTS = 500
function Api:events_json(job)
  local list = assert(self.jobs:events(job))
  local out, first = {}, math.max(1, #list - M.MAX_EVENTS + 1)
  for i = first, #list do
    local e = list[i]
    out[#out + 1] = {at = timefmt.iso(e.t), kind = e.kind, detail = e.detail or cjson.null}
  end
  return array(out), first - 1
end

function Api:status_post(req)
  local job, body = self:find_page(req)
  if not job then return body end
  local out = self:job_json(job)
  -- {"events": true} (an addition): the job's history too, for the dashboard's job view
  if body.events == true then
    out.events, out.eventsOmitted = self:events_json(job)
  end
  return json(200, out)
end

function Api:retry(req)
  local job, e = self:find_page(req)
  if not job then return e end
  if job.status == "expired" or (job.expiresAt and job.expiresAt <= assetd.now() and job.status == "failed") then
    return err(410, "expired", "the download window of " .. job.notionPageId .. " has closed; it cannot be retried")
  end
  if job.status ~= "failed" then
    return err(409, "not_failed", "the download is " .. job.status .. "; only a failed download can be retried")
  end
  local ok, why = self.runner:retry_job(job.id)
  if not ok then return fault(why) or err(409, "not_failed", tostring(why)) end
  return json(200, {success = true, message = "Download retry initiated"})
end

-- A completed download fetched again as the next version (design.md: "a re-download asked for
-- through the API"): 202 with the job, 409 when it is not completed, 410 once its window closed.
function Api:redownload(req)
  local job, e = self:find_page(req)
  if not job then return e end
  local again, why = self.runner:redownload_job(job.id)
  if again then return json(202, self:job_json(again)) end
  if fault_code(why) then return fault(why) end
  if why.category == "expired" then return err(410, "expired", tostring(why)) end
  if job.status == "completed" then return err(409, "busy", tostring(why)) end
  return err(409, "not_completed", "the download is " .. job.status .. "; only a completed download can be downloaded again")
end

-- Stop an unfinished download by hand (an addition): it becomes failed "canceled by operator"
-- and can be retried. 200 with the job, 404 unknown, 409 when it is not unfinished.
function Api:cancel(req)
  local job, e = self:find_page(req)
  if not job then return e end
  if not states.live[job.status] then
    return err(409, "not_unfinished", "the download is " .. job.status .. "; only an unfinished download (" ..
               table.concat(states.live_names, ", ") .. ") can be canceled")
  end
  local canceled, why = self.runner:cancel_job(job.id)
  if not canceled then return fault(why) or err(409, "not_unfinished", tostring(why)) end
  return json(200, self:job_json(canceled))
end

function Api:enqueue(req)
  local body, e = body_object(req)
  if not body then return e end
  for _, f in ipairs{"notionPageId", "soraVideoId", "batchId"} do
    local e2 = check_id(body, f)
    if e2 then return e2 end
  end
  local completed, e3 = time_field(body, "completedAt")
  if e3 then return e3 end
  local expires, e4 = time_field(body, "expiresAt")
  if e4 then return e4 end
  local e5 = check_assets(body)
  if e5 then return e5 end
  if body.provider ~= nil and (type(body.provider) ~= "string" or not self.runner:has_provider(body.provider)) then
    return bad("provider", "must be one of the configured providers")
  end
  local job, created = self.runner:enqueue{
    notionPageId = body.notionPageId, soraVideoId = body.soraVideoId, batchId = body.batchId,
    completedAt = completed, expiresAt = expires,
    provider = body.provider, assets = body.assets ~= cjson.null and body.assets or nil}
  if not job then return fault(created) or err(400, "validation_error", tostring(created)) end
  return json(202, self:job_json(job), created and {} or {["X-Assetd-Existing"] = "true"})
end

-- Ids are compared as people type them: any case, Notion's dashes or none.
local function bare(id) return (id:lower():gsub("-", "")) end

-- The list's filters the store has no index for (additions): provider, q (a part of the Notion
-- page or video id), atRisk (unfinished, and flagged by the watch or due within
-- alerts.warn_before, or past its deadline) and deadlinePassed (unfinished and past its
-- deadline). A test of a job, or nil when none is asked; or
-- nil and an error answer.
function Api:list_filter(q)
  local tests = {}
  if q.provider then
    if not self.runner:has_provider(q.provider) then return nil, bad("provider", "must be one of the configured providers") end
    tests[#tests + 1] = function(j) return j.provider == q.provider end
  end
  if q.q then
    if #q.q > 128 or not q.q:match(ID) then return nil, bad("q", "must be a part of an id: ^[A-Za-z0-9_-]{1,128}$") end
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
-- order. A request scans M.SCAN jobs at most, so a page may hold fewer than the limit with a
-- cursor to go on from; the cursor is always the last job looked at (keyset, as the store's).
M.SCAN = 5000
function Api:scan(query, match)
  local out, scanned, cursor = {}, 0, query.cursor
  local q = {status = query.status, batchId = query.batchId, newest_first = query.newest_first, limit = 500}
  while true do
    q.cursor = cursor
    local page, more = assert(self.jobs:list(q))
    for _, j in ipairs(page) do
      scanned, cursor = scanned + 1, j.id
      if match(j) then out[#out + 1] = j end
      if #out == query.limit or scanned >= M.SCAN then return out, cursor end
    end
    if not more then return out, nil end
  end
end

function Api:list(req)
  local q = req.query
  local limit = tonumber(q.limit or "50")
  if not limit or limit ~= math.floor(limit) or limit < 1 or limit > 1000 then
    return err(400, "validation_error", "limit: must be an integer 1..1000")
  end
  local cursor = math.tointeger(tonumber(q.cursor or "0"))
  if not cursor or cursor < 0 then return err(400, "validation_error", "cursor: must be a cursor from a previous page") end
  local st = q.status
  if st and not ({waiting = 1, pending = 1, downloading = 1, completed = 1, failed = 1, expired = 1})[st] then
    return err(400, "validation_error", "status: must be one of waiting, pending, downloading, completed, failed, expired")
  end
  if q.batchId then
    local e = check_id(q, "batchId")
    if e then return e end
  end
  if q.order and q.order ~= "asc" and q.order ~= "desc" then
    return err(400, "validation_error", "order: must be asc or desc")
  end
  local match, e = self:list_filter(q)
  if e then return e end
  local query = {status = st, batchId = q.batchId, limit = limit, cursor = cursor, newest_first = q.order == "desc"}
  local page, next_cursor
  if match then page, next_cursor = self:scan(query, match) else page, next_cursor = assert(self.jobs:list(query)) end
  local out = {}
  for i, j in ipairs(page) do out[i] = self:job_json(j) end
  return json(200, {jobs = array(out), nextCursor = next_cursor and tostring(next_cursor) or cjson.null})
end

function Api:webhook(req)
  local ok, why = self.verifier:verify(req.headers, req.body)
  if ok == nil then
    self.metrics:inc("assetd_webhooks_total", {outcome = why.code})
    -- a misconfigured secret or a clock far off loses every event: told, not only counted
    assetd.log.warn("webhook refused", {code = why.code, error = why.message, remote = req.remote,
                    webhook_id = req.headers["webhook-id"]})
    if why.status == 503 then return unavailable(why.code, why.message) end
    return err(why.status, why.code, why.message)
  end
  if ok == false then
    self.metrics:inc("assetd_webhooks_total", {outcome = "replay"})
    assetd.log.info("webhook replay ignored", {remote = req.remote, webhook_id = req.headers["webhook-id"]})
    return json(200, {received = true, replay = true})
  end
  local event = cjson.decode(req.body)
  if type(event) ~= "table" or type(event.type) ~= "string" then
    self.metrics:inc("assetd_webhooks_total", {outcome = "invalid_json"})
    return err(400, "invalid_json", "the event is not a JSON object with a type")
  end
  local video = type(event.data) == "table" and event.data.id
  local kind = event.type:match("^video%.(%a+)$")
  if (kind == "completed" or kind == "failed") and type(video) == "string" and video:match(ID) then
    self.runner:on_video_event(video, kind)
  end
  self.metrics:inc("assetd_webhooks_total", {outcome = "accepted"})
  return json(200, {received = true})
end

-- Usable means writable, so both are written: a row of the job store in a committed
-- transaction, and a new file in the storage root (assetd.probe_write: O_EXCL|O_NOFOLLOW, so
-- a link planted there is never followed), written, fsynced and removed.
function Api:healthz()
  local problems = {}
  local ok, e = self.jobs:probe()
  if not ok then problems[#problems + 1] = tostring(e) end
  ok, e = assetd.probe_write(self.root)
  if not ok then problems[#problems + 1] = "storage root: " .. tostring(e) end
  if #problems > 0 then return json(500, {status = "unavailable", reasons = problems}) end
  return json(200, {status = "ok"})
end

function Api:metrics_text()
  local s = assert(self.runner:summary())
  local series = {}
  for _, st in ipairs(states.names) do
    series[#series + 1] = {labels = {state = st}, value = s[st]}
  end
  local stalled, at_risk = 0, 0
  for _, c in ipairs(self.runner:concerns()) do
    stalled, at_risk = stalled + (c.stalled and 1 or 0), at_risk + (c.at_risk and 1 or 0)
  end
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
     series = {{value = (self:deadline_passed(assetd.now()))}}},
    {name = "assetd_transfers", help = "Transfers in the engine, running or queued behind the limits",
     series = {{labels = {state = "running"}, value = t.active}, {labels = {state = "queued"}, value = t.queued}}},
  }
  return {status = 200, headers = {["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"}, body = body}
end

-- GET /api/queue (an addition): what waits behind the concurrency limits, in the order it will
-- start, and what runs. A downloading job whose transfers all wait in the engine is held by
-- `transfers` (limits.max_active) or `per_host`, or by `preempted` (held back for an earlier
-- deadline, limits.order = "edf"); after those, in slot order (earliest deadline first, then
-- arrival: slots.lua), the pending jobs waiting for a slot, held by `max_jobs`. The engine's
-- transfers name no job, so they are matched by deadline: of jobs that share one where some
-- transfers run and some wait, those without a measured rate (live.lua) count as waiting.
-- This daemon's jobs only.
M.QUEUE_MAX = 200
function Api:queue(req)
  local limit = tonumber(req.query.limit or tostring(M.QUEUE_MAX))
  if not limit or limit ~= math.floor(limit) or limit < 1 or limit > M.QUEUE_MAX then
    return err(400, "validation_error", "limit: must be an integer 1.." .. M.QUEUE_MAX)
  end
  local lim = assetd.fetch_limits() or {active = 0, queued = 0, max_active = 0, per_host = 0, order = "edf"}
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
    return {id = job.id, notionPageId = job.notionPageId, soraVideoId = job.soraVideoId, batchId = job.batchId,
            status = job.status, expiresAt = opt(timefmt.iso(job.expiresAt))}
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
function Api:instances()
  local list = {}
  for i, d in ipairs(assert(self.runner:instances())) do
    list[i] = {id = d.id, self = d.self, startedAt = opt(timefmt.iso(d.startedAt)),
               heartbeatAt = opt(timefmt.iso(d.heartbeatAt)), jobsHeld = d.jobsHeld}
  end
  return json(200, {instances = array(list)})
end

function Api:dashboard()
  return {status = 200, headers = {["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-store",
                                   ["Content-Security-Policy"] = "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' blob:; media-src 'self' blob:"},
          body = self.dashboard_html}
end

M.routes = {
  ["/"] = {GET = Api.dashboard, public = true},        -- the page holds no data; its API calls carry the token
  ["/healthz"] = {GET = Api.healthz, public = true},
  ["/favicon.ico"] = {GET = function() return {status = 204, headers = {["Cache-Control"] = "max-age=86400"}, body = ""} end,
                      public = true},
  ["/metrics"] = {GET = Api.metrics_text},
  ["/api/downloads"] = {GET = Api.list, POST = Api.enqueue},
  ["/api/downloads/status"] = {GET = Api.status_get, POST = Api.status_post},
  ["/api/downloads/retry"] = {POST = Api.retry},
  ["/api/downloads/redownload"] = {POST = Api.redownload},
  ["/api/downloads/cancel"] = {POST = Api.cancel},
  ["/api/events"] = {GET = function(self) return self.live:open() end},
  ["/api/instances"] = {GET = Api.instances},
  ["/api/queue"] = {GET = Api.queue},
  -- signed: its signature authenticates it, from any origin and under any Host (a proxy's)
  ["/webhooks/openai"] = {POST = Api.webhook, public = true, signed = true},
}

local FLAGS = {public = true, signed = true}

-- ---- dispatch ----------------------------------------------------------------------------

function Api:authorized(req)
  if not self.token then return true end
  local h = req.headers.authorization or ""
  local given = h:match("^Bearer (.+)$") or ""
  return assetd.secure_equal(given, self.token)
end

local function allow(route)
  local m = {}
  for k in pairs(route) do if not FLAGS[k] then m[#m + 1] = k end end
  if route.GET then m[#m + 1] = "HEAD" end
  table.sort(m)
  return table.concat(m, ", ")
end

-- Without a token, what keeps other web pages out. DNS rebinding: evil.example, resolved to
-- 127.0.0.1, reaches the API with Host: evil.example, so a Host must name this server: the
-- address the connection came in on, with its port, or localhost / 127.0.0.1 / [::1] when that
-- is a loopback address. CSRF: a form or a text/plain POST needs no CORS preflight, so a write
-- from another origin (Origin, or Sec-Fetch-Site) is refused. A request without Host or Origin
-- is no browser's and passes.
local LOOPBACK_NAMES = {localhost = true, ["127.0.0.1"] = true, ["[::1]"] = true}
local WRITES = {POST = true, PUT = true, PATCH = true, DELETE = true}

local function is_loopback(addr) return addr == "::1" or addr:match("^127%.") ~= nil end

function Api:host_allowed(req)
  local host = req.headers.host
  if not host then return true end
  local name, port = host:lower():match("^(%[[%x:.]+%]):?(%d*)$")
  if not name then name, port = host:lower():match("^([^:]+):?(%d*)$") end
  if not name or (tonumber(port) or 80) ~= req.local_port then return false end
  local addr = req.local_addr:lower():gsub("^::ffff:(%d+%.)", "%1")     -- v4-mapped, on a [::] listen
  if name == addr or name == "[" .. addr .. "]" then return true end
  return is_loopback(addr) and LOOPBACK_NAMES[name] == true
end

local function cross_origin(req)
  local site = req.headers["sec-fetch-site"]
  if site and site ~= "same-origin" and site ~= "none" then return true end
  local origin = req.headers.origin
  return origin ~= nil and origin:lower():match("^https?://(.*)$") ~= (req.headers.host or ""):lower()
end

function Api:foreign(req, route)
  if self.token or (route and route.signed) then return nil end
  if not self:host_allowed(req) then
    return err(403, "host_not_allowed", "Host " .. tostring(req.headers.host) ..
               " is not an address this server listens on; without ASSETD_API_TOKEN only those are answered")
  end
  if WRITES[req.method] and cross_origin(req) then
    return err(403, "cross_origin", "a write from another origin is refused; without ASSETD_API_TOKEN only same-origin writes are taken")
  end
end

function Api:handle(req)
  local route = M.routes[req.path]
  local refused = self:foreign(req, route)
  if refused then return refused end
  local asset = not route and self.files:match(req.path)
  if not route and not asset then return err(404, "not_found", "no route " .. req.path) end
  if not (route and route.public) and not self:authorized(req) then
    return err(401, "unauthorized", "a valid Authorization: Bearer token is required", {["WWW-Authenticate"] = "Bearer"})
  end
  if asset then return self.files:serve(req) end
  local method = req.method == "HEAD" and "GET" or req.method
  local fn = type(route[method]) == "function" and route[method]     -- not the `public` flag
  if not fn then return err(405, "method_not_allowed", req.method .. " is not allowed on " .. req.path, {Allow = allow(route)}) end
  return fn(self, req)
end

-- new{runner=, root=, public_base_url=, token=, webhook_secret=, metrics=}
function M.new(opts)
  local self = setmetatable({
    runner = opts.runner, jobs = opts.runner.jobs, root = opts.root,
    public_base_url = (opts.public_base_url or "/generated-videos"):gsub("/+$", ""),
    token = opts.token, metrics = opts.metrics or require("assetd.metrics").standard(),
    verifier = webhooks.new{secret = opts.webhook_secret, ids = opts.runner.jobs},
  }, Api)
  self.files = require("assetd.files").new{root = opts.root, public_base_url = self.public_base_url}
  self.live = live.new(self)
  -- the page as built into the binary, or from the development tree (src/luamods.c)
  self.dashboard_html = assert(require("assetd.resources").read("assetd/dashboard.html"))
  return self
end

-- The function assetd.http_listen calls: errors never leak a traceback to the client. A
-- store or disk fault raised on the way (assert of a binding's nil, err) is a 503.
function Api:handler()
  return function(req)
    local ok, res = xpcall(self.handle, debug.traceback, self, req)
    if ok then return res end
    local answer = fault(res)
    if answer then
      assetd.log.warn("http route: server fault", {path = req.path, error = tostring(res)})
      return answer
    end
    assetd.log.error("http route failed", {path = req.path, error = tostring(res)})
    return err(500, "internal", "internal error")
  end
end

return M
