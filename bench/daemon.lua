-- The daemon over an existing job store, for start-up time and the status API's latency: the
-- pipeline with its HTTP API (--listen), no new jobs, Notion off. bench/bench.py starts it,
-- polls GET /healthz until it answers (start-up), times GET /api/downloads/status, then stops
-- it with SIGTERM. Prints "runner started SECONDS" (since BENCH_T0, the caller's clock just
-- before the process started) when Runner:start has returned: the first page of live jobs
-- resumed, the rest resuming in a task that yields between pages (docs/performance.md, 6).
-- Usage: BENCH_T0=... assetd bench/daemon.lua --data DIR --listen HOST:PORT BASE_URL ROOT
local base, root = ...
local t0 = tonumber(os.getenv("BENCH_T0"))
return {
  storage = {root = root},
  sora = {base_url = base},
  notion = {enabled = false},
  on_start = function()
    if t0 then print(string.format("runner started %.4f", assetd.now() - t0)) io.stdout:flush() end
  end,
}
