-- A batch downloader built only from the store and engine bindings, for the kill -9 test:
-- jobs live in the job store, each download reserves one version, fetches its three
-- variants together with resume, and is marked completed. Run again after a crash, it
-- recovers and finishes what was left. Usage: assetd worker.lua OPENAI_BASE ROOT DATA N
local versions = require "assetd.versions"
local naming = require "assetd.naming"
local formats = require "assetd.formats"
local base, root, data, n = arg[1], arg[2], arg[3], tonumber(arg[4])

local jobs = assert(assetd.jobdb.open(data))
jobs:recover()
local store = assert(versions.open{root = root, jobs = jobs})
for i = 1, n do
  assert(jobs:create{notionPageId = "page" .. i, soraVideoId = string.format("vid_%03d", i),
                     batchId = "crash", completedAt = assetd.now()})
end
assetd.fetch_limits{max_active = 6, max_bytes_per_sec = 8e6}

-- Record an asset once, also when a crash fell between its rename and its record.
local function record(job, variant, path, name)
  for _, a in ipairs(assert(jobs:assets(job))) do
    if a.type == variant and a.version == job.version then return end
  end
  local p = io.popen("sha256sum '" .. path .. "'")
  local sum = p:read("a"):match("^(%x+)")
  p:close()
  local f = assert(io.open(path))
  local size = f:seek("end")
  f:close()
  assert(jobs:add_asset(job, {variant = variant, filePath = path, fileName = name, fileSize = size,
                              sha256 = sum, version = job.version}))
end

local function fetch_variant(job, variant)
  local path, name = assert(store:path{batchId = job.batchId, videoId = job.soraVideoId,
                                       version = job.version, variant = variant})
  local f = io.open(path)
  if f then f:close() return record(job, variant, path, name) end   -- committed before a crash
  for _ = 1, 50 do
    local res = assetd.fetch{url = base .. "/videos/" .. job.soraVideoId .. "/content?variant=" .. variant,
                             to = path, resume = true, check = formats.check(variant)}
    if res then return record(job, variant, path, name) end
    assetd.sleep(0.05)
  end
  error("gave up on " .. path)
end

local function run(job)
  if job.version == 0 then
    job = assert(jobs:transition(job, "downloading", {version = assert(store:reserve(job.batchId, job.soraVideoId))}))
  else
    job = assert(jobs:transition(job, "downloading"))
  end
  local left = 0
  for variant in pairs(naming.ext) do
    left = left + 1
    assetd.spawn(function() fetch_variant(job, variant); left = left - 1 end)
  end
  while left > 0 do assetd.sleep(0.02) end
  assert(jobs:transition(job, "completed"))
end

local pending = jobs:list{status = "pending", limit = 1000}
for _, job in ipairs(pending) do assetd.spawn(run, job) end
