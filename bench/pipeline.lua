-- The benchmark pipeline: the real pipeline (openai provider: GET /videos/{id}, then every
-- variant at once into the versioned store, the SQLite job store, then the Notion PATCH) over a
-- generated batch, stopping itself when every job is finished, Notion sync included. The
-- default alert hooks still run (one log line per job), wrapped to count finished jobs; the
-- last one waits until no job task is left (its Notion sync) and calls assetd.stop, so the
-- run ends the same whether or not the daemon would stay up for its HTTP API.
-- Usage: assetd bench/pipeline.lua --data DIR BASE_URL ROOT PREFIX N [VARIANTS] [NOTION_RATE] [BATCH]
--   BASE_URL    the videos API (".../v1"); ROOT the storage root; PREFIX..1 .. PREFIX..N the
--   video ids; VARIANTS comma-separated (default video,thumbnail,spritesheet); NOTION_RATE
--   requests per second (default 1000: the simulator answers at once and the benchmark
--   measures downloads, not Notion's 3/s quota; "off" disables Notion); BATCH videos per
--   batch (directory), default all in one
local base, root, prefix, n, variants, rate, batch = ...
n = assert(tonumber(n), "usage: assetd bench/pipeline.lua --data DIR BASE_URL ROOT PREFIX N [VARIANTS] [NOTION_RATE] [BATCH]")
local alerts = require "assetd.alerts"

local finished, failed = 0, 0
local function count(default, ok)
  return function(job, ...)
    default(job, ...)
    finished = finished + 1
    if not ok then failed = failed + 1 end
    if finished < n then return end
    assetd.spawn({name = "bench stop"}, function()
      local pipeline = require "assetd.pipeline"
      -- jobs can all fail before start-up has returned the runner (a missing key)
      -- pipeline.runner: an older build's (an A/B with ASSETD_BIN_B runs this script on both)
      local function runner() return pipeline.daemon and pipeline.daemon.runner or pipeline.runner end
      while not runner() or next(runner().running) do assetd.sleep(0.005) end
      if failed > 0 then assetd.log.error("bench: jobs did not complete", {failed = failed}) end
      assetd.stop(failed == 0 and 0 or 1)
    end)
  end
end

local vs = {}
for v in (variants or "video,thumbnail,spritesheet"):gmatch("[^,]+") do vs[#vs + 1] = v end

local per_batch = tonumber(batch) or n
local jobs = {}
for i = 1, n do
  jobs[i] = {notionPageId = "page-" .. prefix .. i, soraVideoId = prefix .. i,
             batchId = "bench" .. (i - 1) // per_batch}
end

return {
  storage = {root = root, public_base_url = "https://example.com/generated-videos",
             direct_io = os.getenv("BENCH_DIRECT_IO") ~= "0"},   -- 0: through the page cache
  sora = {base_url = base, variants = vs},
  notion = {enabled = rate ~= "off", rate = tonumber(rate) or 1000},
  alerts = {completed = count(alerts.completed, true), failed = count(alerts.failed, false),
            expired = count(alerts.expired, false)},
  -- BENCH_RATE: a bandwidth cap for the whole batch (bytes a second), as a real link has
  limits = {max_active = 8, max_bytes_per_sec = tonumber(os.getenv("BENCH_RATE")) or 0},
  http = {listen = "127.0.0.1:0"},      -- the HTTP API is up as in production, on a free port
  jobs = jobs,
}
