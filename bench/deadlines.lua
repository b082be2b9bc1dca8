-- Deadlines under a bandwidth cap (issue 20 item 4): groups of videos of mixed sizes whose
-- windows close from seconds to minutes after they complete, arriving one group after
-- another, all feasible in deadline order; run with one limits.order. Prints one JSON line:
-- assets stored and lost to expiry, jobs lost, the least slack (window's close minus the
-- job's completion) and the wall time.
-- Usage: assetd bench/deadlines.lua SIM_URL DIR edf|fifo [CAP_BYTES_PER_SEC]
local cjson = require "cjson"
local runner = require "assetd.runner"
local versions = require "assetd.versions"
local openai = require "assetd.providers.openai"
local preempt = require "assetd.preempt"

local sim, dir, order = arg[1], arg[2], arg[3]
assert(sim and dir and (order == "edf" or order == "fifo"), "usage: assetd bench/deadlines.lua SIM_URL DIR edf|fifo [CAP]")
local cap = tonumber(arg[4] or 4e6)
local MB = 1e6

-- {arrival (s after the first), videos, video bytes, window (s after completion)}; at 4 MB/s
-- in deadline order every window is met with a second or more to spare
local GROUPS = {{0, 10, 4 * MB, 600}, {0.2, 4, 8 * MB, 120}, {0.5, 10, 0.9 * MB, 4}, {1.0, 6, 2 * MB, 20},
                {1.5, 10, 0.3 * MB, 6}}
local SMALL = {thumbnail = 20000, spritesheet = 30000}

local function control(path, body)
  local res = assert(assetd.fetch{url = sim .. path, method = "POST", sink = "memory", body = cjson.encode(body),
                                  headers = {["Content-Type"] = "application/json"}})
  assert(res.status < 300, res.body)
end

assert(os.execute("mkdir -p '" .. dir .. "'"))
local jobs = assert(assetd.jobdb.open(dir .. "/data"))
local r = runner.new{jobs = jobs, versions = assert(versions.open{root = dir .. "/store", jobs = jobs}),
                     providers = {openai = openai.new{base_url = sim .. "/v1", api_key = "sk-bench"}},
                     retry = {base = 0.1, cap = 0.5, margin = 0.5}, poll = {interval = 0.2, max = 0.5}}
-- per_host 0: per_host counts calls with downloads, so with 8 downloads from the one host a
-- job's status call (and this script's control calls) would wait behind them whatever the
-- order (docs/performance.md, issue 20 item 4)
assetd.fetch_limits{max_active = 8, per_host = 0, max_bytes_per_sec = cap, order = order}
local task = order == "edf" and preempt.start()
control("/_control/reset", {})

local pages, t0 = {}, assetd.monotonic()
for g, grp in ipairs(GROUPS) do
  local at, n, size, window = table.unpack(grp)
  assetd.sleep(math.max(0, t0 + at - assetd.monotonic()))
  for i = 1, n do
    local id = string.format("dl_%d_%d", g, i)
    control("/_control/videos", {id = id, expires_in = window, sizes = {video = size, thumbnail = SMALL.thumbnail,
                                 spritesheet = SMALL.spritesheet}})
    assert(r:enqueue{notionPageId = "page_" .. id, soraVideoId = id, batchId = "deadlines", completedAt = assetd.now()})
    pages[#pages + 1] = "page_" .. id
  end
end

-- every job's end, and when it completed (polled every 20 ms)
local done_at, ended = {}, 0
while ended < #pages and assetd.monotonic() - t0 < 300 do
  ended = 0
  for _, p in ipairs(pages) do
    local st = jobs:get(p).status
    if st == "completed" and not done_at[p] then done_at[p] = assetd.now() end
    if st == "completed" or st == "expired" or st == "failed" then ended = ended + 1 end
  end
  assetd.sleep(0.02)
end
local wall = assetd.monotonic() - t0
if task then task:cancel() end

local stored, jobs_lost, least = 0, 0, math.huge
for _, p in ipairs(pages) do
  local job = jobs:get(p)
  stored = stored + #jobs:assets(job)
  if job.status ~= "completed" then jobs_lost = jobs_lost + 1 end
  if done_at[p] then least = math.min(least, job.expiresAt - done_at[p]) end
end
print(cjson.encode{order = order, jobs = #pages, assets = 3 * #pages, stored = stored, lost = 3 * #pages - stored,
                   jobs_lost = jobs_lost, least_slack = least, wall = wall, cap = cap})
jobs:close()
