-- The upload benchmark's assetd side: every file of a directory put in a bucket the way the
-- upload step puts a job's assets (lua/assetd/s3.lua: signed by libcurl on the engine's
-- lane, streamed from the file, each object verified by a HEAD), CONCURRENCY at a time.
-- The SHA-256 the step takes from the download is computed first, outside the timing.
-- Prints "uploaded N files BYTES bytes in SECONDS s". bench/bench.py's part s3 runs it.
-- Usage: AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. assetd bench/s3up.lua DIR ENDPOINT BUCKET PREFIX [CONCURRENCY]
local dir, endpoint, bucket, prefix, concurrency = ...
assert(prefix, "usage: assetd bench/s3up.lua DIR ENDPOINT BUCKET PREFIX [CONCURRENCY]")
concurrency = tonumber(concurrency) or 4
local s3 = require "assetd.s3"
local cfg = s3.resolve{bucket = bucket, endpoint = endpoint}
local client = s3.new(cfg)
assetd.fetch_limits{max_uploads = concurrency}

local files = {}
for name in io.popen("ls " .. dir):lines() do files[#files + 1] = {name = name, path = dir .. "/" .. name} end
for _, f in ipairs(files) do
  local h = assert(assetd.hash_file(f.path, 1 << 40))
  f.sha256, f.size = h.parts[1].sha256, h.size
end

local t0, left, bytes, failed = assetd.monotonic(), #files, 0, nil
local done = assetd.alarm()
local next_file = 0
for _ = 1, concurrency do
  assetd.spawn({name = "upload"}, function()
    while next_file < #files do
      next_file = next_file + 1
      local f = files[next_file]
      local obj, err = client:put_file(prefix .. f.name, f.path, {size = f.size, sha256 = f.sha256, save = function() end})
      if not obj then failed = failed or (f.name .. ": " .. tostring(err)) else bytes = bytes + obj.size end
      left = left - 1
      if left == 0 then done:ring() end
    end
  end)
end
if #files > 0 then done:sleep(86400) end
local secs = assetd.monotonic() - t0
if failed then error(failed, 0) end
print(string.format("uploaded %d files %d bytes in %.3f s", #files, bytes, secs))
