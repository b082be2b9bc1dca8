-- Provider `urls`: a job that carries its own asset URLs and deadline, for any generator
-- that hands out signed output URLs (Runway, Seedance, fal, Replicate, ...). The job's
-- `assets` = {{variant=, url=, ext=?}} and `expiresAt` come with it; it is complete at once.
local assetd = require "assetd"

local M = {}
M.__index = M

local EXT = {video = "mp4", thumbnail = "webp", spritesheet = "jpg"}

function M.new(opts)
  return setmetatable({headers = (opts or {}).headers}, M)
end

function M:__tostring() return "provider.urls" end

function M:status(job)
  if type(job.assets) ~= "table" or #job.assets == 0 then
    return {state = "failed", error = "a `urls` job needs assets = {{variant, url}, ...}"}
  end
  return {state = "completed", completedAt = job.completedAt or assetd.now(), expiresAt = job.expiresAt}
end

function M:assets(job)
  local out = {}
  for _, a in ipairs(job.assets) do
    out[#out + 1] = {variant = a.variant, url = a.url, headers = self.headers,
                     ext = a.ext or EXT[a.variant] or (a.url:match("%.(%w+)%f[?#%z]") or "bin")}
  end
  return out
end

return M
