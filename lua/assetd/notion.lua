-- The Notion client and the default property mapping. All requests of a client share one
-- pacing slot (Notion allows about 3 requests per second per integration), a 429 holds every
-- request, waiting ones too, for its Retry-After (capped), 5xx and network errors back off
-- exponentially with jitter (so do 408 and 409), and any other 4xx is reported with Notion's
-- own message, not retried.
local assetd = require "assetd"
local cjson = require "cjson"
local retry = require "assetd.retry"

local M = {}
local Client = {}
Client.__index = Client

M.MAX_TEXT = 2000          -- Notion's limit for one rich_text content
-- The longest a 429's Retry-After holds this client's requests. Notion's own rate limiting asks
-- for seconds; a far larger value comes from a broken proxy or a bug, and since the hold stops
-- the Notion update of every job, trusting it could stall them all for days. After the cap
-- one request goes out, and if Notion is still limiting, its next 429 holds them again.
local defaults = require("assetd.defaults").pipeline.notion
M.MAX_RETRY_AFTER = defaults.max_retry_after

function M.truncate(s, n)
  n = n or M.MAX_TEXT
  s = tostring(s)
  if #s <= n then return s end
  -- cut on a UTF-8 character boundary
  local cut = n - 1
  while cut > 0 and (s:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
  return s:sub(1, cut) .. "…"
end

-- notion.new{token=, base_url=, version=, rate=, retry = {attempts=, base=, cap=}, timeout=,
--            max_retry_after=}
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    token = opts.token or os.getenv("NOTION_TOKEN"),
    base_url = (opts.base_url or os.getenv("NOTION_BASE_URL") or "https://api.notion.com/v1"):gsub("/+$", ""),
    version = opts.version or defaults.version,
    interval = 1 / (opts.rate or defaults.rate),
    retry = opts.retry or {},
    timeout = opts.timeout or defaults.timeout,
    observe = opts.observe,            -- called with each answer's status (metrics)
    max_retry_after = opts.max_retry_after or M.MAX_RETRY_AFTER,
    next_slot = 0,
    blocked_until = 0,                 -- no request leaves before this (a 429's Retry-After)
    requests = 0,
  }, Client)
  for k, v in pairs(defaults.retry) do
    if self.retry[k] == nil then self.retry[k] = v end
  end
  return self
end

function Client:__tostring()
  return string.format("notion.client(%s, token %s)", self.base_url, self.token and "set" or "missing")
end

-- The next free turn: one request per interval, in arrival order, none before blocked_until.
-- On the monotonic clock: a wall clock set back an hour would hold every update an hour.
local function take_slot(self)
  local slot = math.max(assetd.monotonic(), self.next_slot, self.blocked_until)
  self.next_slot = slot + self.interval
  return slot
end

-- Wait for this request's turn: true, or nil, err when the task is canceled. A 429 can come in
-- while a request sleeps; one whose turn falls inside the Retry-After would earn another 429,
-- so it takes a new turn after the window, and the held requests leave paced, not in a burst.
function Client:pace()
  local slot = take_slot(self)
  while true do
    if slot < self.blocked_until then slot = take_slot(self) end
    local wait = slot - assetd.monotonic()
    if wait <= 0 then return true end
    local ok, err = assetd.sleep(wait)
    if not ok then return nil, err end
  end
end

-- A 429: hold every request of this client for its Retry-After, capped (M.MAX_RETRY_AFTER
-- says why). Returns the seconds held.
function Client:block(retry_after)
  local wait = math.min(retry_after or 1, self.max_retry_after)
  self.blocked_until = math.max(self.blocked_until, assetd.monotonic() + wait)
  return wait
end

local function notion_message(err)
  local ok, body = pcall(cjson.decode, err.body or "")
  if ok and type(body) == "table" and body.message then
    return string.format("Notion %s (%s): %s", tostring(err.status), tostring(body.code), body.message)
  end
  return tostring(err)
end

-- cjson raises on what JSON cannot say (a function, NaN, a sparse array). That is a mistake in
-- the caller's properties, so it comes back as a value and sending it again would not help.
local function encode_body(body)
  local ok, json = pcall(cjson.encode, body)
  if ok then return json end
  return nil, assetd.error("invalid", "the Notion request body cannot be encoded as JSON: " .. tostring(json),
                           {retryable = false})
end

-- A 2xx whose body is not a JSON object came from something between us and Notion (a proxy's
-- empty or HTML page), not from Notion: a protocol error, retried like a 5xx.
local function decode_answer(res)
  local ok, value = pcall(cjson.decode, res.body)
  if ok and type(value) == "table" then return value end
  return nil, assetd.error("protocol", string.format(
    "Notion answered HTTP %d with a body that is not JSON (%s, %d bytes)",
    res.status, res.headers["content-type"] or "no content type", #res.body))
end

-- One attempt: the decoded answer, or nil, err.
function Client:send(method, path, json)
  self.requests = self.requests + 1
  local started = assetd.monotonic()
  local res, err = assetd.fetch{
    url = self.base_url .. path, method = method, sink = "memory", timeout = self.timeout,
    headers = {Authorization = "Bearer " .. self.token, ["Notion-Version"] = self.version,
               ["Content-Type"] = "application/json"},
    body = json,
  }
  if self.observe then self.observe(res and res.status or err.status or err.category, assetd.monotonic() - started) end
  if not res then return nil, err end
  return decode_answer(res)
end

-- Notion's reference says a 409 conflict_error is a data collision to try again, and a 408
-- is a timeout on the way; every other 4xx but 429 would fail the same way again.
local TRANSIENT_4XX = {[408] = true, [409] = true, [429] = true}

-- One request with pacing and retries. Returns the decoded body, or nil, err (its cause that
-- of the last attempt). ON_RETRY(err, attempt, wait), when given, hears of every attempt that
-- will be tried again: the caller decides what people are told, the client only retries.
function Client:request(method, path, body, on_retry)
  if not self.token then
    return nil, assetd.error("config", "NOTION_TOKEN is not set")
  end
  local json, jerr
  if body ~= nil then
    json, jerr = encode_body(body)
    if not json then return nil, jerr end
  end
  local last
  for attempt = 1, self.retry.attempts do
    local turn, perr = self:pace()
    if not turn then return nil, perr end
    local answer, err = self:send(method, path, json)
    if answer then return answer end
    last = err
    local status = err.status
    -- 529 is Notion's "service unavailable, try later": its Retry-After holds us like a 429's
    if retry.client_error(status, TRANSIENT_4XX) then
      return nil, assetd.error("notion", notion_message(err), {status = status, retryable = false})
    elseif err.category == "canceled" then
      return nil, err
    end
    local last_try = attempt == self.retry.attempts
    local held = status == 429 or (status == 529 and err.retry_after)
    local wait = held and self:block(err.retry_after) or (not last_try and retry.backoff(attempt, self.retry) or 0)
    if on_retry and not last_try then on_retry(err, attempt, wait) end
    if not held and wait > 0 then assetd.sleep(wait) end
  end
  return nil, assetd.error("notion", "Notion request failed after " .. self.retry.attempts ..
                           " attempts: " .. notion_message(last),
                           {status = last.status, retryable = true, cause = retry.describe(last)})
end

function Client:update_page(page_id, properties, on_retry)
  assert(type(page_id) == "string" and page_id:match("^[%w_-]+$"), "notion: bad page id")
  return self:request("PATCH", "/pages/" .. page_id, {properties = properties}, on_retry)
end

-- The default property mapping: names and types settable without writing a function.
M.default_fields = {
  video_url = {name = "Video URL", type = "url"},
  thumbnail_url = {name = "Thumbnail URL", type = "url"},
  spritesheet_url = {name = "Spritesheet URL", type = "url"},
  video_path = {name = "Video Path", type = "rich_text"},
  thumbnail_path = {name = "Thumbnail Path", type = "rich_text"},
  spritesheet_path = {name = "Spritesheet Path", type = "rich_text"},
  version = {name = "Version", type = "number"},
  status = {name = "Status", type = "select", value = "Completed", failed = "Download Failed", expired = "Expired"},
  error = {name = "Download Error", type = "rich_text"},
}

local encoders = {
  url = function(v) return {url = v} end,
  rich_text = function(v) return {rich_text = {{type = "text", text = {content = M.truncate(v)}}}} end,
  title = function(v) return {title = {{type = "text", text = {content = M.truncate(v)}}}} end,
  number = function(v) return {number = tonumber(v)} end,
  select = function(v) return {select = {name = v}} end,
  status = function(v) return {status = {name = v}} end,
  checkbox = function(v) return {checkbox = not not v} end,
  date = function(v) return {date = {start = v}} end,
}

function M.encode(type_, value)
  local enc = encoders[type_]
  if not enc then error("notion: unknown property type '" .. tostring(type_) .. "'", 2) end
  return enc(value)
end

-- Properties for a completed job: job.assets = {{type=, filePath=, fileName=}}, public_base_url
-- prefixes {batchId}/{fileName}. FIELDS overrides entries of default_fields (false drops one).
local function merged(fields)
  local f = {}
  for k, v in pairs(M.default_fields) do f[k] = v end
  for k, v in pairs(fields or {}) do f[k] = v or nil end
  return f
end

-- The default on_error mapping: the error (cut to Notion's 2,000 characters) and a status
-- saying the download failed or expired.
function M.error_properties(job, message, fields)
  local f = merged(fields)
  local props = {}
  if f.error then props[f.error.name] = M.encode(f.error.type, message or job.error or "unknown error") end
  if f.status then
    local d = M.default_fields.status       -- a status field given without these keeps the defaults
    local v = job.status == "expired" and (f.status.expired or d.expired) or (f.status.failed or d.failed)
    props[f.status.name] = M.encode(f.status.type, v)
  end
  return props
end

function M.properties(job, public_base_url, fields)
  local f = merged(fields)
  local values = {version = job.version, status = f.status and f.status.value}
  for _, a in ipairs(job.assets or {}) do
    -- a.url: the object's link when the asset is in a bucket (uploadsync.located)
    values[a.type .. "_url"] = a.url or
      string.format("%s/%s/%s", (public_base_url or ""):gsub("/+$", ""), job.batchId, a.fileName)
    values[a.type .. "_path"] = a.filePath
  end
  local props = {}
  for key, spec in pairs(f) do
    local v = values[key]
    if v ~= nil then props[spec.name] = M.encode(spec.type, v) end
  end
  return props
end

return M
