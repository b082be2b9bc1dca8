-- Every default of the daemon, written once (the role of wrk's wrk.lua): the pipeline is this
-- table overlaid with the user's, and the modules that run without a pipeline (a runner in a
-- test, the Notion client, assetd.http_listen) take theirs from here. Bindings have none.
local M = {}

M.provider = "openai"                    -- of a job that names none

-- The pipeline table's defaults, key by key (pipeline.validate overlays the user's).
M.pipeline = {
  storage = {root = "./public/generated-videos", public_base_url = "/generated-videos", direct_io = true},
  sora = {
    variants = {"video", "thumbnail", "spritesheet"},
    poll = {interval = 10, max = 120},   -- max: at least 120 s and the interval (pipeline.complete)
    -- downloads: exponential backoff with jitter, `floor` the shortest wait, tries go on at the
    -- floor in the last `margin` seconds; `attempts` bounds a job without a deadline
    retry = {attempts = 8, base = 1, cap = 60, jitter = 0.5, margin = 5, floor = 0.25},
  },
  notion = {
    -- 2026-03-11: the newest; the page update (PATCH /pages/{id} with properties) reads and
    -- writes nothing its breaking changes renamed (archived, after, data sources)
    version = "2026-03-11",
    rate = 3,                             -- requests a second (Notion's documented average)
    timeout = 30,
    max_retry_after = 300,                -- a longer Retry-After holds requests this long at most
    retry = {attempts = 6, base = 0.5, cap = 30, jitter = 0.5},
  },
  alerts = {warn_before = 600, stall_after = 120},
  http = {listen = "127.0.0.1:8787", max_body = 1024 * 1024, max_conns = 256, per_ip = 16, timeout = 30,
          header_timeout = 10, body_timeout = 30, header_limit = 32 * 1024},
  -- max_jobs: 4 * max_active (pipeline.complete). order: "edf", preemptive earliest deadline
  -- first (preempt.lua), or "fifo", arrival order as aria2c -j does, there for comparison
  limits = {max_active = 8, hook_budget = 5, order = "edf"},
  -- url: nil is SQLite in --data; lease: how long a daemon holds a job it claimed without renewing
  database = {lease = 15, connect_timeout = 10},
}

-- storage.s3's defaults, overlaid only when the pipeline has a storage.s3 table (bucket is
-- required; endpoint, region and path_style come from s3.resolve: the environment's, then AWS's).
-- retry: the upload step's backoff between tries of one asset (it has no deadline).
M.s3 = {prefix = "", keep_local = true, part_size = 64 * 1024 * 1024, max_uploads = 4,
        retry = {attempts = 10, base = 2, cap = 120, jitter = 0.5}}

return M
