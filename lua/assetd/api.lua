-- The HTTP API: routes as Lua functions over the runner and the job store. C (assetd.http_listen)
-- carries requests and responses; this file decides the paths, the job's JSON shape (the
-- original design's camelCase), the commands, authentication and asset serving. The reads
-- (status, list, queue, instances, /metrics) are views.lua's; the answers reply.lua's.
local assetd = require "assetd"
local cjson = require "cjson.safe"
local timefmt = require "assetd.timefmt"
local urls = require "assetd.providers.urls"
local webhooks = require "assetd.webhooks"
local states = require "assetd.states"
local live = require "assetd.live"
local uploadsync = require "assetd.uploadsync"
local reply = require "assetd.reply"
local views = require "assetd.views"

local M = {}
local Api = {}
Api.__index = Api

local array, json, opt, err, bad = reply.array, reply.json, reply.opt, reply.err, reply.bad
local check_id, fault, unavailable = reply.check_id, reply.fault, reply.unavailable

Api.encode = function(_, value) return reply.encode(value) end

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
  local refused = fault(why)
  if refused then return refused end
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
  if (kind == "completed" or kind == "failed") and type(video) == "string" and video:match(reply.ID) then
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
  ["/metrics"] = {GET = views.metrics_text},
  ["/api/downloads"] = {GET = views.list, POST = Api.enqueue},
  ["/api/downloads/status"] = {GET = views.status, POST = Api.status_post},
  ["/api/downloads/retry"] = {POST = Api.retry},
  ["/api/downloads/redownload"] = {POST = Api.redownload},
  ["/api/downloads/cancel"] = {POST = Api.cancel},
  ["/api/events"] = {GET = function(self) return self.live:open() end},
  ["/api/instances"] = {GET = views.instances},
  ["/api/queue"] = {GET = views.queue},
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
