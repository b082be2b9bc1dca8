-- Provider `openai`: the OpenAI-compatible videos API (GET /videos/{id},
-- GET /videos/{id}/content?variant=...), still served by gateways and clouds now that
-- OpenAI retired its own endpoint. A provider answers two questions about a job:
--   status(job) -> {state = "waiting"|"completed"|"failed", completedAt, expiresAt, error}
--                  or nil, err (err.category "auth" must not be retried)
--   assets(job) -> {{variant, url, headers, ext}, ...}
local assetd = require "assetd"
local cjson = require "cjson"
local formats = require "assetd.formats"
local timefmt = require "assetd.timefmt"

local M = {}
M.__index = M

-- openai.new{base_url=, api_key=, variants=}: base URL and key default to the environment.
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    base_url = (opts.base_url or os.getenv("OPENAI_BASE_URL") or "https://api.openai.com/v1"):gsub("/+$", ""),
    api_key = opts.api_key or os.getenv("OPENAI_API_KEY"),
    variants = opts.variants or {"video", "thumbnail", "spritesheet"},
    timeout = opts.timeout or 30,
  }, M)
end

function M:__tostring()
  return string.format("provider.openai(%s, key %s)", self.base_url, self.api_key and "set" or "missing")
end

function M:headers()
  return {Authorization = "Bearer " .. (self.api_key or "")}
end

local function auth_error(status)
  return assetd.error("auth", string.format(
    "the videos API refused the credentials (HTTP %d): check OPENAI_API_KEY", status), {status = status})
end

-- A time of the video object as unix seconds, or nil for none or an unusable one: gateways
-- differ, some send ISO 8601 strings (parsed), some milliseconds, which would put the deadline
-- in the year 55000 where no alert or expiry ever fires. So a time must lie within ten years
-- of now (timefmt.near); without it the runner falls back to completedAt + 1 h.
local function unix_time(v, field, id)
  if v == nil or v == cjson.null then return nil end
  local t = timefmt.near(v, assetd.now())
  if t then return t end
  assetd.log.warn("the videos API gave an unusable time; ignored", {video = id, field = field, value = tostring(v):sub(1, 64)})
  return nil
end

function M:status(job)
  if not self.api_key then return nil, assetd.error("auth", "OPENAI_API_KEY is not set") end
  local res, err = assetd.fetch{url = self.base_url .. "/videos/" .. job.soraVideoId, headers = self:headers(),
                                sink = "memory", timeout = self.timeout}
  if not res then
    if err.status == 401 or err.status == 403 then return nil, auth_error(err.status) end
    if err.status == 404 then
      return nil, assetd.error("not_found", "video " .. job.soraVideoId .. " not found", {status = 404})
    end
    return nil, err
  end
  local ok, v = pcall(cjson.decode, res.body)
  if not ok or type(v) ~= "table" then
    return nil, assetd.error("protocol", "the videos API answered with malformed JSON")
  end
  local expires = unix_time(v.expires_at, "expires_at", job.soraVideoId)
  local completed = unix_time(v.completed_at, "completed_at", job.soraVideoId)
  if v.status == "completed" then
    return {state = "completed", completedAt = completed, expiresAt = expires}
  elseif v.status == "failed" then
    local e = type(v.error) == "table" and v.error or {}
    return {state = "failed", error = e.message or "video generation failed"}
  end
  return {state = "waiting", progress = v.progress}
end

function M:assets(job)
  local out = {}
  for _, variant in ipairs(self.variants) do
    out[#out + 1] = {variant = variant, ext = formats.ext[variant],
                     url = string.format("%s/videos/%s/content?variant=%s", self.base_url, job.soraVideoId, variant),
                     headers = self:headers()}
  end
  return out
end

return M
