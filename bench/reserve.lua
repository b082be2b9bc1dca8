-- Versions:reserve in a batch directory that has grown large: N videos x 3 files (default
-- 20,000, so 60,000 files), then 200 reservations of other videos in the same batch.
-- Usage: assetd bench/reserve.lua DIR [N]   (DIR is created; docs/performance.md, 5)
local versions = require "assetd.versions"
local dir, n = assert(arg[1], "usage: assetd bench/reserve.lua DIR [N]"), tonumber(arg[2] or 20000)
assert(os.execute("mkdir -p '" .. dir .. "/root/b1'"))
for i = 1, n do
  for _, name in ipairs{"video_%d_V1.mp4", "video_%d_V1_thumbnail.webp", "video_%d_V1_spritesheet.jpg"} do
    assert(io.open(string.format("%s/root/b1/" .. name, dir, i), "w")):close()
  end
end
local jobs = assert(assetd.jobdb.open(dir .. "/data"))
local v = assert(versions.open{root = dir .. "/root", jobs = jobs})
local t0 = assetd.monotonic()
for i = 1, 200 do assert(v:reserve("b1", "other_" .. i)) end
print(string.format("reserve in a batch directory of %d files: %.3f ms each (200 reservations)",
  3 * n, (assetd.monotonic() - t0) / 200 * 1000))
jobs:close()
