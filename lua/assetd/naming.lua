-- The default naming scheme (the original design's): {videoId}_V{n}.mp4,
-- {videoId}_V{n}_thumbnail.webp, {videoId}_V{n}_spritesheet.jpg, in {root}/{batchId}/.
-- A pipeline may pass its own function(asset) -> file name; it gets the same fields.
local formats = require "assetd.formats"

local M = {}

-- The variants' extensions (formats.lua), also for callers that take them from the naming scheme.
M.ext = formats.ext

function M.default(asset)
  local suffix = asset.variant == "video" and "" or "_" .. asset.variant
  return string.format("%s_V%d%s.%s", asset.videoId, asset.version, suffix,
                       asset.ext or M.ext[asset.variant] or "bin")
end

return M
