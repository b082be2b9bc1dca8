-- The job store at scale: 100,000 jobs; start-up (open + recover + summary), summary(), and
-- list pages (keyset, with and without filters). Usage: assetd bench/jobs100k.lua DIR [N] [LIVE]
-- Without LIVE a third of the jobs are live (waiting or pending); with it, the first LIVE jobs
-- are live and the rest finished (nine completed to one failed), like a long-running store.
local dir, n, live = arg[1], tonumber(arg[2] or 100000), tonumber(arg[3])
local mono = assetd.monotonic
local states = {"pending", "completed", "completed", "completed", "failed", "waiting"}
local function state(i)
  if not live then return states[i % #states + 1] end
  if i <= live then return i % 2 == 0 and "pending" or "waiting" end
  return i % 10 == 0 and "failed" or "completed"
end

local jobs = assert(assetd.jobdb.open(dir))
local t0 = mono()
local now = assetd.now()
for i = 1, n do
  local st = state(i)
  assert(jobs:create{notionPageId = "page" .. i, soraVideoId = "video_" .. i, batchId = "batch" .. (i % 50),
                     completedAt = st ~= "waiting" and now or nil, expiresAt = now + (i % 7200), status = st})
end
local insert = mono() - t0
jobs:close()

t0 = mono()
jobs = assert(assetd.jobdb.open(dir))
jobs:recover()
local s = jobs:summary(now, 600)
local startup = mono() - t0

local function pct(xs, p) table.sort(xs); return xs[math.max(1, math.floor(#xs * p + 0.5))] end
local sums = {}
for i = 1, 50 do t0 = mono(); jobs:summary(now, 600); sums[i] = mono() - t0 end

local pages = {}
for _, filter in ipairs{{}, {status = "completed"}, {batchId = "batch7"}, {status = "failed", batchId = "batch3"}} do
  local cursor
  for _ = 1, 50 do
    filter.cursor, filter.limit = cursor, 50
    t0 = mono()
    local page
    page, cursor = jobs:list(filter)
    pages[#pages + 1] = mono() - t0
    if not cursor then break end
  end
end

print(string.format("jobs %d: insert %.1f s (%.0f/s, one transaction each)", n, insert, n / insert))
print(string.format("start-up (open, recover, summary): %.1f ms", startup * 1000))
print(string.format("summary(): p50 %.2f ms  p99 %.2f ms  (completed=%d approaching=%d)",
  pct(sums, 0.5) * 1000, pct(sums, 0.99) * 1000, s.completed, s.approachingExpiration))
print(string.format("list page of 50: p50 %.3f ms  p99 %.3f ms  (%d pages)", pct(pages, 0.5) * 1000, pct(pages, 0.99) * 1000, #pages))
