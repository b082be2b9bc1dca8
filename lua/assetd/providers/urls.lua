-- Provider `urls`: a job that carries its own asset URLs and deadline, for any generator
-- that hands out signed output URLs (Runway, Seedance, fal, Replicate, ...). The job's
-- `assets` = {{variant=, url=, ext=?}} and `expiresAt` come with it; it is complete at once.
-- Anyone who may enqueue may name any URL, so unless `allow_private` is set the engine never
-- connects to a loopback, link-local or private address (fetch's deny_private, checked on the
-- address actually connected to, so a name that resolves or rebinds to one fails too), and a
-- URL naming one outright fails the job at once.
local assetd = require "assetd"
local formats = require "assetd.formats"

local M = {}
M.__index = M

-- new{headers=, allow_private = false}
function M.new(opts)
  opts = opts or {}
  return setmetatable({headers = opts.headers, allow_private = opts.allow_private == true}, M)
end

-- The host of an http(s) URL as written: without userinfo, port or IPv6 brackets.
local function url_host(url)
  local authority = url:match("^[hH][tT][tT][pP][sS]?://([^/?#]*)") or ""
  authority = authority:gsub("^.*@", "")
  return (authority:match("^%[(.*)%]") or authority:gsub(":%d*$", "")):lower()
end

-- Why URL may not be fetched by this provider, or nil. Names are judged where they resolve.
function M:refuses(url)
  if self.allow_private then return nil end
  local host = url_host(url):gsub("%.$", "")                  -- "localhost." is localhost
  if host == "localhost" or host:match("%.localhost$") or assetd.private_address(host) then
    return "names a loopback, link-local or private address (" .. host ..
           "); set providers.urls.allow_private = true to allow it"
  end
end

function M:__tostring() return "provider.urls" end

local KEYS = {variant = true, url = true, ext = true}

-- nil when ASSETS is a usable list of {variant, url, ext?}; else the field at fault and why.
-- Two assets of one variant would stream into the same file at once, so variants are unique.
function M.check_assets(assets)
  if type(assets) ~= "table" or assets[1] == nil then return "assets", "must be a non-empty array of {variant, url}" end
  local seen = {}
  for i, a in ipairs(assets) do
    local at = string.format("assets[%d]", i)
    if type(a) ~= "table" then return at, "must be an object {variant, url, ext?}" end
    for k in pairs(a) do
      if not KEYS[k] then return at .. "." .. tostring(k), "is not a field of an asset (variant, url, ext)" end
    end
    if type(a.variant) ~= "string" or not a.variant:match("^[a-z0-9_]+$") or #a.variant > 32 then
      return at .. ".variant", "must be a lowercase name of at most 32 characters"
    end
    if seen[a.variant] then return at .. ".variant", "repeats variant " .. a.variant end
    seen[a.variant] = true
    if type(a.url) ~= "string" or not a.url:match("^https?://") then return at .. ".url", "must be an http(s) URL" end
    if a.ext ~= nil and (type(a.ext) ~= "string" or not a.ext:match("^[a-z0-9]+$") or #a.ext > 8) then
      return at .. ".ext", "must be a lowercase extension of at most 8 characters"
    end
  end
end

function M:status(job)
  local field, why = M.check_assets(job.assets)
  if field then return {state = "failed", error = "a `urls` job's " .. field .. " " .. why} end
  for i, a in ipairs(job.assets) do
    local refused = self:refuses(a.url)
    if refused then return {state = "failed", error = string.format("a `urls` job's assets[%d].url %s", i, refused)} end
  end
  return {state = "completed", completedAt = job.completedAt or assetd.now(), expiresAt = job.expiresAt}
end

function M:assets(job)
  local out = {}
  for _, a in ipairs(job.assets) do
    out[#out + 1] = {variant = a.variant, url = a.url, headers = self.headers, deny_private = not self.allow_private,
                     ext = a.ext or formats.ext[a.variant] or (a.url:match("%.(%w+)%f[?#%z]") or "bin")}
  end
  return out
end

return M
