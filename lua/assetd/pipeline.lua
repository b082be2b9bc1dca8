-- A pipeline: the table a pipeline script returns (or passes to assetd.pipeline{}), checked
-- against a schema (unknown keys and wrong types are errors naming the key), completed with
-- defaults, and run: job store, versioned store, providers, Notion, alerts, the runner.
local assetd = require "assetd"
local defaults = require "assetd.defaults"

local M = {}

-- The schema: a type name, a kind of number (NUMBERS), or a table of fields. "fn" is a function.
M.schema = {
  storage = {root = "string", public_base_url = "string", direct_io = "boolean",
             s3 = {bucket = "string", prefix = "string", endpoint = "string", region = "string", path_style = "boolean",
                   keep_local = "boolean", part_size = "count", max_uploads = "count", storage_class = "string",
                   retry = {attempts = "count", base = "positive", cap = "positive", jitter = "fraction"}}},
  sora = {variants = "table", poll = {interval = "positive", max = "positive", with_webhooks = "positive"},
          retry = {attempts = "count", base = "positive", cap = "positive", jitter = "fraction", margin = "nonnegative",
                   floor = "positive"},
          base_url = "string"},
  naming = "fn",
  notion = {properties = "fn", fields = "table", version = "string", rate = "positive", on_error = "fn",
            base_url = "string", enabled = "boolean"},
  alerts = {warn_before = "nonnegative", stall_after = "positive", expiring = "fn", stalled = "fn", at_risk = "fn",
            expired = "fn", failed = "fn", completed = "fn"},
  http = {listen = "string", enabled = "boolean", max_body = "count", max_conns = "count", timeout = "count",
          per_ip = "count", header_timeout = "count", body_timeout = "count"},
  -- per_host 0: no limit per host; max_bytes_per_sec 0: no cap; order "edf" or "fifo"
  limits = {max_active = "count", per_host = "nonnegative", max_bytes_per_sec = "nonnegative", max_jobs = "count",
            hook_budget = "budget", order = "string"},
  database = {url = "string", lease = "positive", connect_timeout = "positive"},
  jobs = "table",
  on_start = "fn",
  providers = "table",
}

local function typename(v)
  local t = type(v)
  return t == "function" and "fn" or t
end

-- Kinds of number, for keys whose type alone lets through values that freeze the daemon: a
-- poll interval of 0 is a tight loop, a Notion rate of 0 an endless pacing wait, max_jobs 0 no
-- download slot ever. {what the error says, the test}; NaN fails every test.
local NUMBERS = {
  positive = {"a number > 0", function(v) return v > 0 end},
  nonnegative = {"a number >= 0", function(v) return v >= 0 end},
  count = {"an integer > 0", function(v) return v > 0 and v == math.floor(v) end},
  fraction = {"a number from 0 to 1", function(v) return v >= 0 and v <= 1 end},
  budget = {"seconds > 0 and <= 3600", function(v) return v > 0 and v <= 3600 end},
}

local function check_leaf(value, schema, path, errs)
  local num = NUMBERS[schema]
  if num and not (type(value) == "number" and num[2](value)) then
    errs[#errs + 1] = string.format("%s: expected %s, got %s", path, num[1],
      type(value) == "number" and tostring(value) or type(value))
  elseif not num and typename(value) ~= schema then
    errs[#errs + 1] = string.format("%s: expected %s, got %s", path,
      schema == "fn" and "a function" or "a " .. schema, type(value))
  end
end

local function check(value, schema, path, errs)
  if type(schema) == "string" then return check_leaf(value, schema, path, errs) end
  if type(value) ~= "table" then
    errs[#errs + 1] = string.format("%s: expected a table, got %s", path, type(value))
    return
  end
  for k, v in pairs(value) do
    local sub = schema[k]
    if sub == nil then errs[#errs + 1] = string.format("%s.%s: unknown key", path, tostring(k))
    else check(v, sub, path .. "." .. k, errs) end
  end
end

-- A new table: BASE with TOP's fields over it, tables merged key by key (a list, such as
-- sora.variants, is taken whole from TOP); neither is changed.
function M.overlay(base, top)
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(top) do
    if type(v) == "table" and type(out[k]) == "table" and #v == 0 and #out[k] == 0 then
      out[k] = M.overlay(out[k], v)
    else
      out[k] = v
    end
  end
  for k, v in pairs(out) do
    if type(v) == "table" and v == base[k] then out[k] = M.overlay(v, {}) end   -- never share the defaults
  end
  return out
end

-- Returns the config completed with defaults, or nil and every problem found.
function M.validate(cfg)
  local errs = {}
  check(cfg, M.schema, "pipeline", errs)
  local order = cfg.limits and cfg.limits.order
  if type(order) == "string" and order ~= "edf" and order ~= "fifo" then
    errs[#errs + 1] = string.format('pipeline.limits.order: expected "edf" or "fifo", got "%s"', order)
  end
  if #errs > 0 then table.sort(errs); return nil, errs end
  local user_poll_max = cfg.sora and cfg.sora.poll and cfg.sora.poll.max
  local c = M.overlay(defaults.pipeline, cfg)
  -- derived defaults: they follow what the user set
  if not user_poll_max then c.sora.poll.max = math.max(defaults.pipeline.sora.poll.max, c.sora.poll.interval) end
  c.limits.max_jobs = c.limits.max_jobs or 4 * c.limits.max_active
  c.http.listen = assetd.options.listen or c.http.listen   -- --listen wins
  if c.storage.s3 then
    if not c.storage.s3.bucket then return nil, {"pipeline.storage.s3.bucket: is required"} end
    c.storage.s3 = M.overlay(defaults.s3, c.storage.s3)
  end
  if c.naming then
    local ok, err = M.check_naming(c)
    if not ok then return nil, {"pipeline.naming: " .. tostring(err)} end
  end
  return c
end

-- The naming hook against the rules (versions.check_naming) for the variants this pipeline
-- downloads, under the hook budget it will run with.
function M.check_naming(c)
  local hooks, naming = require "assetd.hooks", require "assetd.naming"
  local variants = {}
  for i, v in ipairs(c.sora.variants) do variants[i] = {variant = v, ext = naming.ext[v]} end
  local saved = hooks.budget
  hooks.budget = c.limits.hook_budget
  local ok, err = require("assetd.versions").check_naming(c.naming, variants)
  hooks.budget = saved
  return ok, err
end

local function mask(v) return v and string.format("set (%d chars)", #v) or "not set" end

-- The resolved configuration as text, secrets masked.
-- The job store's URL: --database, else ASSETD_DATABASE_URL, else the pipeline's database.url;
-- nil: SQLite in the data directory.
function M.database_url(c)
  local url = assetd.options.database or os.getenv("ASSETD_DATABASE_URL") or c.database.url
  if url == "" then return nil end
  return url
end

local function is_postgres(url) return url and (url:match("^postgres://") or url:match("^postgresql://")) end

-- How --check and the start-up line name the store: never with its password.
function M.store_name(url)
  if not url then return "SQLite in " .. assetd.options.data .. "/jobs.db" end
  return "PostgreSQL " .. assetd.redact(url)
end

-- The store the daemon runs on (in the main task: PostgreSQL's connect and migration wait),
-- and ON_NOTIFY(payload) for PostgreSQL's change notices (every daemon's changes).
function M.open_store(c, on_notify, metrics)
  local url = M.database_url(c)
  if not url then return assert(assetd.jobdb.open(assetd.options.data)) end
  if not is_postgres(url) then
    error(assetd.error("config", "database URL " .. assetd.redact(url) .. ": not a postgres:// or postgresql:// URL"))
  end
  local store, err = require("assetd.pgstore").open(url, {connect_timeout = c.database.connect_timeout,
    on_notify = on_notify,
    observe = metrics and function(seconds) metrics:observe("assetd_database_request_duration_seconds", seconds) end})
  if not store then
    -- told like a config error (no traceback): the deployment's to fix; systemd restarts it
    error(assetd.error("config", "job store " .. M.store_name(url) .. ": " .. tostring(err)))
  end
  return store
end

function M.describe(c)
  local lines = {
    "storage.root            " .. c.storage.root,
    "storage.public_base_url " .. c.storage.public_base_url,
    "storage.direct_io       " .. tostring(c.storage.direct_io),
    "sora.base_url           " .. (c.sora.base_url or os.getenv("OPENAI_BASE_URL") or "https://api.openai.com/v1"),
    "sora.variants           " .. table.concat(c.sora.variants, ", "),
    "notion.base_url         " .. (c.notion.base_url or os.getenv("NOTION_BASE_URL") or "https://api.notion.com/v1"),
    "notion.version          " .. c.notion.version,
    "naming                  " .. (c.naming and "custom function" or "default ({videoId}_V{n}...)"),
    "alerts.warn_before      " .. c.alerts.warn_before .. " s",
    "alerts.stall_after      " .. c.alerts.stall_after .. " s",
    "http.listen             " .. c.http.listen,
    "limits.max_active       " .. c.limits.max_active,
    "limits.max_jobs         " .. c.limits.max_jobs,
    "limits.order            " .. c.limits.order,
    "limits.hook_budget      " .. c.limits.hook_budget .. " s",
    "data directory          " .. assetd.options.data,
    "job store               " .. M.store_name(M.database_url(c)),
  }
  if c.storage.s3 then
    local s = require("assetd.s3").resolve(c.storage.s3)
    for _, l in ipairs{
      "storage.s3.bucket       " .. s.bucket,
      "storage.s3.endpoint     " .. s.endpoint,
      "storage.s3.region       " .. s.region,
      "storage.s3.path_style   " .. tostring(s.path_style),
      "storage.s3.prefix       " .. s.prefix,
      "storage.s3.part_size    " .. s.part_size,
      "storage.s3.max_uploads  " .. s.max_uploads,
      "storage.s3.keep_local   " .. tostring(s.keep_local),
      "AWS_ACCESS_KEY_ID       " .. mask(os.getenv("AWS_ACCESS_KEY_ID")),
    } do lines[#lines + 1] = l end
  end
  local keys = {table.unpack(require("assetd.pretty").secret_env)}   -- the secrets the REPL hides
  table.sort(keys)
  for _, k in ipairs(keys) do lines[#lines + 1] = string.format("%-23s %s", k, mask(os.getenv(k))) end
  return table.concat(lines, "\n")
end

-- What will not work as configured, told once at --check and at start: a missing credential
-- makes every request of its service fail later, one job at a time.
function M.warnings(c)
  local out = {}
  local function unset(k) local v = os.getenv(k) return v == nil or v == "" end
  if unset("OPENAI_API_KEY") then
    out[#out + 1] = "OPENAI_API_KEY is not set: the openai provider's requests will be refused (401)"
  end
  local secret_ok, secret_err = require("assetd.webhooks").check_secret(os.getenv("OPENAI_WEBHOOK_SECRET"))
  if not secret_ok then out[#out + 1] = secret_err.message end
  if c.notion.enabled ~= false and not c.notion.base_url and unset("NOTION_TOKEN") then
    out[#out + 1] = "NOTION_TOKEN is not set: Notion pages will not be updated (jobs show notion: skipped)"
  end
  if c.storage.s3 then
    for _, k in ipairs{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} do
      if unset(k) then out[#out + 1] = k .. " is not set: uploads to s3://" .. c.storage.s3.bucket .. " will fail" end
    end
    if c.storage.s3.part_size < 5 * 1024 * 1024 then
      out[#out + 1] = "storage.s3.part_size is under 5 MiB: AWS S3 refuses such parts (EntityTooSmall)"
    end
  end
  return out
end

-- Waiting jobs are polled in any case (a webhook can be missed), less often when webhooks
-- are configured: every `with_webhooks` seconds (default 60) instead of `interval`.
function M.poll(p)
  local secret = os.getenv("OPENAI_WEBHOOK_SECRET")
  if not secret or secret == "" then return p end
  local every = p.with_webhooks or math.max(60, p.interval)
  return {interval = every, max = math.max(p.max, every)}
end

local function loopback(listen)
  local host = listen:match("^%[(.*)%]:%d+$") or listen:match("^(.*):%d+$") or ""
  return host == "127.0.0.1" or host == "::1" or host == "localhost" or host:match("^127%.") ~= nil
end

-- The HTTP API on the loop; a non-loopback address without ASSETD_API_TOKEN is logged loudly.
function M.serve(c, runner, metrics)
  local token = os.getenv("ASSETD_API_TOKEN")
  if token == "" then token = nil end
  local api = require("assetd.api").new{runner = runner, root = c.storage.root, metrics = metrics,
    public_base_url = c.storage.public_base_url, token = token, webhook_secret = os.getenv("OPENAI_WEBHOOK_SECRET")}
  local server, lerr = assetd.http_listen{listen = c.http.listen, handler = api:handler(),
    max_body = c.http.max_body, max_conns = c.http.max_conns, timeout = c.http.timeout, per_ip = c.http.per_ip,
    header_timeout = c.http.header_timeout, body_timeout = c.http.body_timeout}
  if not server then error(assetd.error("config", tostring(lerr))) end     -- the user's address: no traceback
  local addr = c.http.listen:gsub(":%d+$", ":" .. server:port())
  assetd.log.info("http listening", {addr = addr, url = "http://" .. addr .. "/", auth = token and "bearer" or "none"})
  if not token and not loopback(c.http.listen) then
    assetd.log.warn("THE HTTP API IS OPEN TO THE NETWORK WITHOUT A TOKEN: set ASSETD_API_TOKEN",
                    {addr = addr})
  end
  return server, api, "http://" .. addr .. "/"
end

-- The runner's hooks from a validated pipeline, defaults filled in (start and reload).
function M.hooks(c)
  local notion = require "assetd.notion"
  return {
    alerts = require("assetd.alerts").with_defaults(c.alerts),
    properties = c.notion.properties or function(job)
      return notion.properties(job, c.storage.public_base_url, c.notion.fields)
    end,
    on_error = c.notion.on_error or function(job, message)
      return notion.error_properties(job, message, c.notion.fields)
    end,
  }
end

-- providers.NAME is either a provider of the user's own (it has an assets method) or, for a
-- built-in one, its settings: providers.urls = {allow_private = true}.
function M.provider_settings(c, name)
  local p = (c.providers or {})[name]
  if name == "urls" and type(p) == "table" and type(p.assets) ~= "function" then return p end
end

-- The running daemon: its configuration, runner, HTTP server and API, and the script it
-- came from. pipeline.main makes it and hands it to the REPL; SIGHUP reaches it through
-- M.daemon, the one reference the module keeps.
local Daemon = {}
Daemon.__index = Daemon

-- Build and start everything; returns the runner and, with the API on, the server and the API.
function M.start(c)
  for _, w in ipairs(M.warnings(c)) do assetd.log.warn(w) end
  local hooks = require "assetd.hooks"
  hooks.budget = c.limits.hook_budget
  local notion = require "assetd.notion"
  local versions = require "assetd.versions"
  local runner = require "assetd.runner"
  assetd.fetch_limits{max_active = c.limits.max_active, per_host = c.limits.per_host,
                      max_bytes_per_sec = c.limits.max_bytes_per_sec, order = c.limits.order,
                      max_uploads = c.storage.s3 and c.storage.s3.max_uploads or defaults.s3.max_uploads}
  -- one daemon per data directory: a second one would expire and re-fetch the first's jobs
  local locked, lerr = assetd.lock_data(assetd.options.data)
  if not locked then error(assetd.error("config", lerr.message)) end
  local cluster
  local bucket
  if c.storage.s3 then
    local s3 = require "assetd.s3"
    local s = s3.resolve(c.storage.s3)
    bucket = {client = s3.new(s), prefix = s.prefix, keep_local = s.keep_local, retry = s.retry,
              public_base_url = c.storage.public_base_url:gsub("/+$", "")}
  end
  local metrics = require("assetd.metrics").standard()
  local jobs = M.open_store(c, function(payload, mine) if cluster then cluster:notice(payload, mine) end end, metrics)
  local store = assert(versions.open{root = c.storage.root, jobs = jobs, naming = c.naming, bucket = bucket})
  if jobs.join then                 -- PostgreSQL: this daemon is one of several (cluster.lua)
    cluster = require("assetd.cluster").new{store = jobs, lease = c.database.lease, capacity = c.limits.max_jobs,
                                            metrics = metrics}
    local ok, jerr = cluster:join()
    if not ok then error(assetd.error("config", "job store: cannot join the cluster: " .. tostring(jerr))) end
    assetd.log.info("joined the cluster", {instance = cluster.instance, lease = c.database.lease})
  end
  local client = (c.notion.enabled ~= false) and (c.notion.base_url or os.getenv("NOTION_TOKEN")) and
    notion.new{base_url = c.notion.base_url, version = c.notion.version, rate = c.notion.rate,
               observe = function(status, seconds)
                 metrics:inc("assetd_notion_requests_total", {status = tostring(status)})
                 metrics:observe("assetd_notion_request_duration_seconds", seconds)
               end} or nil
  local providers = {openai = require("assetd.providers.openai").new{base_url = c.sora.base_url, variants = c.sora.variants},
                     urls = require("assetd.providers.urls").new(M.provider_settings(c, "urls") or {})}
  for name, p in pairs(c.providers or {}) do
    if not M.provider_settings(c, name) then providers[name] = p end      -- a provider of the user's own
  end
  local h = M.hooks(c)
  local r = runner.new{
    jobs = jobs, versions = store, providers = providers, notion = client,
    properties = h.properties, on_error = h.on_error, alerts = h.alerts,
    retry = c.sora.retry, poll = M.poll(c.sora.poll), metrics = metrics, max_jobs = c.limits.max_jobs,
    direct_io = c.storage.direct_io, s3 = bucket, cluster = cluster,
  }
  if cluster then cluster.runner = r end
  local server, api, url
  if c.http.enabled ~= false then server, api, url = M.serve(c, r, metrics) end
  r:start()
  -- fifo is for comparison: the engine's arrival order, nothing held
  if c.limits.order == "edf" then r.preempt = require("assetd.preempt").start() end
  M.enqueue_all(r, c.jobs or {})
  if c.on_start then
    -- INFO.url: the API's and the dashboard's address (the port chosen, for --listen HOST:0)
    local ok, err = hooks.call(c.on_start, r, {url = url})
    if not ok then error("on_start: " .. tostring(err), 0) end
  end
  return r, server, api
end

-- The pipeline's own jobs, all at once, each from its own task, and back when all are in: on
-- a database store each is a few round trips, and one after another they would hold the last
-- job's start by the batch's size times the latency (bench part cluster, 50 ms a round trip).
function M.enqueue_all(r, list)
  local left, failure = #list, nil
  local done = assetd.alarm()
  for _, j in ipairs(list) do
    assetd.spawn({name = "enqueue " .. tostring(j.notionPageId)}, function()
      local ok, job, err = pcall(r.enqueue, r, j)
      if not (ok and job) then failure = failure or (ok and err or job) end
      left = left - 1
      if left == 0 then done:ring() end
    end)
  end
  while left > 0 do done:sleep(60) end
  if failure then error(failure, 0) end
end

-- The entry point for `assetd pipeline.lua` (run) and `assetd --check pipeline.lua`.
function M.main(cfg)
  local c, errs = M.validate(cfg)
  if not c then
    error(assetd.error("config", "invalid pipeline:\n  " .. table.concat(errs, "\n  ")))
  end
  if assetd.options.check then
    print(M.describe(c))
    for _, w in ipairs(M.warnings(c)) do print("warning: " .. w) end
    print("pipeline OK")
    return
  end
  -- Generational collection: a daemon holds its resumed backlog (queue entries, deadline
  -- timers) for hours while every API request makes short-lived garbage; in incremental mode
  -- each cycle over that heap ended in an 80-100 ms pause of the loop (docs/performance.md, 13)
  collectgarbage("generational")
  local d = setmetatable({config = c, script = arg and arg[0]}, Daemon)
  d.runner, d.server, d.api = M.start(c)
  M.daemon = d
  require("assetd.repl").listen(nil, d)    -- `assetd attach` reaches this daemon
  assetd.sd_notify("READY=1")              -- systemd's Type=notify: the API listens, jobs resumed
  return d.runner
end

-- Keys a running daemon cannot take without a restart (they sized or opened what is running):
-- a reload that changes one is refused, naming it, and the running configuration stays.
M.RESTART_ONLY = {"storage.root", "storage.direct_io", "sora.base_url", "sora.variants",
  "notion.base_url", "notion.version", "notion.rate", "notion.enabled", "http.listen", "http.enabled",
  "http.max_body", "http.max_conns", "http.timeout", "http.per_ip", "http.header_timeout", "http.body_timeout",
  "limits.max_active", "limits.per_host", "storage.s3.bucket", "storage.s3.prefix", "storage.s3.endpoint",
  "storage.s3.region", "storage.s3.path_style", "storage.s3.part_size", "storage.s3.max_uploads",
  "limits.max_bytes_per_sec", "limits.max_jobs", "limits.order", "database.url", "database.lease", "database.connect_timeout"}

local function at(c, key)
  local v = c
  for part in key:gmatch("[^.]+") do v = type(v) == "table" and v[part] or nil end
  if type(v) == "table" then v = table.concat(v, ",") end
  return v
end

-- The first restart-only key whose value differs between configurations A and B, or nil.
function M.restart_only_change(a, b)
  for _, key in ipairs(M.RESTART_ONLY) do
    if at(a, key) ~= at(b, key) then return key end
  end
end

-- SIGHUP (main.c): reload, and log what happened; a failed reload leaves everything as it was.
function M.on_sighup()
  local d = M.daemon
  if not d then return assetd.log.warn("SIGHUP: no pipeline is running; nothing to reload") end
  assetd.sd_notify("RELOADING=1")
  local ok, res = pcall(d.reload, d)
  assetd.sd_notify("READY=1")
  if not ok then
    return assetd.log.error("pipeline not reloaded; the running configuration stays", {error = tostring(res)})
  end
  assetd.log.info("pipeline reloaded", {script = res.script, naming = res.naming, properties = res.properties})
end

-- reload(): read the pipeline script again and swap its hooks (naming, notion.properties,
-- notion.on_error, alerts) into the running runner; jobs, timers and transfers in flight go on untouched.
-- Returns what was loaded, or raises naming the problem (the old hooks stay).
function Daemon:reload(path)
  local r = self.runner
  path = path or self.script
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local cfg = chunk(table.unpack(path == self.script and arg or {}))   -- the same arguments as at start
  if type(cfg) ~= "table" then error(path .. ": did not return a pipeline table", 0) end
  local c, errs = M.validate(cfg)
  if not c then error("invalid pipeline:\n  " .. table.concat(errs, "\n  "), 0) end
  local changed = M.restart_only_change(self.config, c)
  if changed then error(changed .. " changes only with a restart; nothing was reloaded", 0) end
  self.config = c
  require("assetd.hooks").budget = c.limits.hook_budget
  local h = M.hooks(c)
  r.alerts, r.properties, r.on_error = h.alerts, h.properties, h.on_error
  r.versions.naming = c.naming or require("assetd.naming").default
  local alerts = {}
  for _, k in ipairs(require("assetd.alerts").NAMES) do
    alerts[#alerts + 1] = k .. (c.alerts[k] and "" or " (default)")
  end
  return {script = path, naming = c.naming and "custom" or "default",
          properties = c.notion.properties and "custom" or "default mapping", alerts = alerts}
end

return M
