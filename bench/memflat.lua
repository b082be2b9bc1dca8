-- Memory flatness: peak RSS of one process fetching a SIZE-byte body to disk.
-- Usage: assetd bench/memflat.lua BASE_URL SIZE OUT_DIR   (prints one line)
local cjson = require "cjson"
local base, size, out = arg[1], tonumber(arg[2]), arg[3]
local id = "bench_" .. size
local r = assert(assetd.fetch{url = base .. "/_control/videos", method = "POST", sink = "memory",
  body = cjson.encode{id = id, sizes = {video = size}}})
local t0 = assetd.monotonic()
local res = assert(assetd.fetch{url = base .. "/v1/videos/" .. id .. "/content", to = out .. "/" .. id .. ".mp4"})
local dt = assetd.monotonic() - t0
local hwm
for line in io.lines("/proc/self/status") do hwm = hwm or line:match("^VmHWM:%s*(%d+)") end
print(string.format("%-12d %10.1f %10.1f %10d", size, dt, res.bytes / dt / 1e6, tonumber(hwm)))
os.remove(out .. "/" .. id .. ".mp4")
