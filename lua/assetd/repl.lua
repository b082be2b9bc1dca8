-- The REPL in Lua. src/repl.c carries lines in and output out; here a session (one per
-- terminal or attach client) reads them as lua.c does, runs each chunk as a task, and
-- prints through the pretty printer. Each session has its own environment, whose `print`
-- writes to that session. The helpers (help(), summary(), jobs(), ...) work on the running
-- pipeline's job runner.
local assetd = require "assetd"
local pretty = require "assetd.pretty"
local states = require "assetd.states"

local M = {}

local STATES = {}
for _, s in ipairs(states.names) do STATES[s] = true end

local daemon           -- the running daemon (pipeline.lua's), given to M.listen

-- ---- helpers -----------------------------------------------------------------------------

local function runner()
  if not daemon then error("no pipeline is running (the script did not return a pipeline table)", 0) end
  return daemon.runner
end

-- A helper's answer: the data, printed by the REPL as RENDER says.
local function view(t, render) return setmetatable(t, {__pp = render}) end

local function rel(t) return t and pretty.relative(t) or "-" end

local H = {}
M.helpers = H

local help = {
  {"help()", "this list"},
  {"summary()", "jobs by state, deadlines near, transfers, sessions"},
  {"jobs([filter])", "a page of jobs; filter: a state, a batchId or {status=, batchId=, limit=, cursor=}"},
  {"job(id)", "one job (id or notionPageId) with its assets and event history"},
  {"expiring([secs])", "unfinished jobs due within secs (default: alerts.warn_before)"},
  {"instances()", "the daemons sharing the job store: heartbeat, jobs held (one, on SQLite)"},
  {"retry(id)", "start a failed job again"},
  {"redownload(id)", "download a completed job's video again, as the next version (while its window is open)"},
  {"cancel(id)", "stop a job: it fails with \"canceled by operator\"; retry(id) starts it again"},
  {"enqueue{...}", "add a job: {notionPageId=, soraVideoId=, batchId=, provider=, expiresAt=, assets=}"},
  {"prune{...}", "remove old versions' files and objects: {keep = 1, older_than = secs, batchId=, dry_run = true}"},
  {"reload()", "re-read the pipeline's hooks (naming, Notion mapping, alerts)"},
  {"pp(v, [depth])", "pretty-print a value"},
}

function H.help()
  return view({}, function()
    local rows = {}
    for _, h in ipairs(help) do rows[#rows + 1] = {h[1], h[2]} end
    return pretty.columns({"helper", "what it does"}, rows) ..
      "\nA bare expression prints its value; `assetd` is the API. Ctrl-C clears the line or interrupts."
  end)
end

function H.summary()
  local r = runner()
  local s = assert(r:summary())
  s.transfers = assetd.fetch_limits() or {active = 0, queued = 0, max_active = 0}   -- none once stopping
  s.sessions = assetd.repl.sessions()
  return view(s, function(t)
    local counts = {}
    for _, k in ipairs(states.names) do
      counts[#counts + 1] = k .. " " .. t[k]
    end
    return table.concat({
      "jobs       " .. table.concat(counts, "  "),
      string.format("expiring   %d within %s", t.approachingExpiration, pretty.duration(r:warn_before())),
      string.format("transfers  %d active, %d queued (at most %d at once)",
        t.transfers.active, t.transfers.queued, t.transfers.max_active),
      "sessions   " .. t.sessions,
    }, "\n")
  end)
end

local function job_rows(list)
  local rows = {}
  for _, j in ipairs(list) do
    rows[#rows + 1] = {j.id, j.notionPageId, j.soraVideoId, j.batchId, j.status, j.version > 0 and "V" .. j.version or "-",
                       rel(j.expiresAt), j.retryCount, pretty.cut(pretty.redact(j.error or ""), 40)}
  end
  return rows
end

local job_headers = {"id", "page", "video", "batch", "status", "ver", "expires", "retries", "error"}

function H.jobs(filter)
  local q = {limit = 50}
  if type(filter) == "string" then
    if STATES[filter] then q.status = filter else q.batchId = filter end
  elseif type(filter) == "table" then
    for k, v in pairs(filter) do q[k] = v end
  elseif filter ~= nil then
    error("jobs([state | batchId | {status=, batchId=, limit=, cursor=}])", 2)
  end
  local list, cursor = runner().jobs:list(q)
  if not list then return nil, cursor end
  return view(list, function(t)
    if #t == 0 then return "(no jobs)" end
    local text = pretty.columns(job_headers, job_rows(t))
    if cursor then
      text = text .. string.format("\n(%d shown; more with jobs{cursor = %d%s})", #t, cursor,
        q.status and ', status = "' .. q.status .. '"' or q.batchId and ', batchId = "' .. q.batchId .. '"' or "")
    end
    return text
  end)
end

function H.instances()
  local list, err = runner():instances()
  if not list then return nil, err end
  return view(list, function(t)
    local rows = {}
    for _, d in ipairs(t) do
      rows[#rows + 1] = {d.id .. (d.self and " (this one)" or ""), rel(d.startedAt), rel(d.heartbeatAt), tostring(d.jobsHeld)}
    end
    return pretty.columns({"instance", "started", "heartbeat", "jobs held"}, rows)
  end)
end

-- The upload step's line (storage.s3): its state, and its error, redacted.
local function upload_line(u)
  if type(u) ~= "table" then return nil end
  return "  upload: " .. tostring(u.state) .. (type(u.error) == "string" and ": " .. pretty.redact(u.error) or "")
end

-- Where an asset is in the bucket: its object key, "-" while it is not there.
local function object_of(j, a)
  local objects = type(j.data.upload) == "table" and j.data.upload.objects
  local o = type(objects) == "table" and objects[a.fileName]
  return type(o) == "table" and o.objectKey or "-"
end

local function render_job(j)
  local lines = {
    string.format("job %d  page %s  video %s  batch %s  provider %s", j.id, j.notionPageId, j.soraVideoId, j.batchId, j.provider or "-"),
    string.format("  %s  version %s  retries %d  completed %s  expires %s", j.status:upper(),
      j.version > 0 and "V" .. j.version or "-", j.retryCount, rel(j.completedAt), rel(j.expiresAt)),
  }
  if j.error then lines[#lines + 1] = "  error: " .. pretty.redact(j.error) end
  if j.data.notion then
    lines[#lines + 1] = "  notion: " .. j.data.notion ..
      (type(j.data.notionError) == "string" and ": " .. pretty.redact(j.data.notionError) or "")
  end
  lines[#lines + 1] = upload_line(j.data.upload)
  if j.data and next(j.data) then lines[#lines + 1] = "  data: " .. pretty.format(j.data, {depth = 3}) end
  if #j.assets > 0 then
    local rows, bucket = {}, type(j.data.upload) == "table"
    for _, a in ipairs(j.assets) do
      rows[#rows + 1] = {a.type, "V" .. a.version, pretty.bytes(a.fileSize), a.sha256:sub(1, 12), rel(a.downloadedAt), a.filePath}
      if bucket then rows[#rows][7] = object_of(j, a) end
    end
    local headers = {"type", "ver", "size", "sha256", "stored", "path", bucket and "object" or nil}
    lines[#lines + 1] = "  assets:\n    " .. pretty.columns(headers, rows):gsub("\n", "\n    ")
  else
    lines[#lines + 1] = "  assets: none yet"
  end
  local rows = {}
  for _, e in ipairs(j.events) do rows[#rows + 1] = {rel(e.t), e.kind, pretty.cut(pretty.redact(e.detail or ""), 90)} end
  lines[#lines + 1] = "  events:\n    " .. pretty.columns({"when", "event", "detail"}, rows):gsub("\n", "\n    ")
  return table.concat(lines, "\n")
end

function H.job(id)
  local r = runner()
  local j, err = r.jobs:get(id)
  if not j then return nil, err end
  j.assets = assert(r.jobs:assets(j))
  j.events = assert(r.jobs:events(j))
  local ok, data = pcall(require("cjson").decode, j.data or "{}")
  j.data = ok and type(data) == "table" and data or {raw = j.data}
  return view(j, render_job)
end

function H.expiring(window)
  local r = runner()
  window = window or r:warn_before()
  local now = assetd.now()
  local out = assert(r.jobs:expiring(now, window, 1000))     -- indexed, soonest first
  return view(out, function(t)
    if #t == 0 then return "(nothing expires within " .. pretty.duration(window) .. ")" end
    local rows = {}
    for _, j in ipairs(t) do
      rows[#rows + 1] = {j.id, j.notionPageId, j.soraVideoId, j.status, rel(j.expiresAt), math.floor((j.expiresAt - now) / 60)}
    end
    return pretty.columns({"id", "page", "video", "status", "expires", "minutesRemaining"}, rows)
  end)
end

-- A job a command acted on, shown on one line (its fields are all there for code).
local function brief(j, ...)
  if not j then return j, ... end
  return view(j, function(t)
    return string.format("job %d  %s  %s  %s%s", t.id, t.notionPageId, t.soraVideoId, t.status,
      t.error and ": " .. pretty.redact(t.error) or "")
  end), ...
end

-- The versions room's prune (a dry run unless dry_run = false): what it removed, or would.
function H.prune(opts) return runner():prune(opts) end

function H.retry(id) return brief(runner():retry_job(id)) end
function H.redownload(id) return brief(runner():redownload_job(id)) end
function H.cancel(id) return brief(runner():cancel_job(id)) end
function H.enqueue(req)
  if type(req) ~= "table" then error("enqueue{notionPageId=, soraVideoId=, batchId=, ...}", 2) end
  return brief(runner():enqueue(req))
end

function H.reload()
  runner()
  local info = daemon:reload()
  return view(info, function(t)
    return string.format("reloaded %s: naming %s, notion.properties %s, alerts %s", t.script,
      t.naming, t.properties, table.concat(t.alerts, ", "))
  end)
end

-- ---- sessions ----------------------------------------------------------------------------

local Session = {}
Session.__index = Session

function Session:write(text) return self.h:write(pretty.redact(text)) end
function Session:err(text) return self.h:error(pretty.redact(text) .. "\n") end

function Session:show(...)
  local n, parts = select("#", ...), {}
  for i = 1, n do parts[i] = pretty.format((select(i, ...))) end
  self:write(table.concat(parts, "\t") .. "\n")
end

-- lua.c's reading: first as an expression (so a bare expression prints), else as statements;
-- a syntax error at <eof> means the chunk goes on on the next line.
local function compile(src, env)
  local fn = load("return " .. src, "=repl", "t", env)
  if fn then return fn end
  return load(src, "=repl", "t", env)
end

local function message(e)
  if type(e) == "string" then return e end
  local mt = getmetatable(e)
  if mt and mt.__tostring then return tostring(e) end
  return "(error object is a " .. type(e) .. " value)"
end

function Session:on_line(text)
  if not self.buf and text:match("^%s*$") then return self.h:prompt("> ") end
  local src = self.buf and self.buf .. "\n" .. text or text:gsub("^%s*=", "return ", 1)
  local fn, err = compile(src, self.env)
  if not fn and err:match("<eof>$") then
    self.buf = src
    return self.h:prompt(">> ")
  end
  self.buf = nil
  if not fn then
    self:err(err)
    return self.h:prompt("> ")
  end
  self:run(fn)
end

function Session:run(fn)
  local done = false
  local function finish(ok, ...)
    if done then return end
    done, self.task = true, nil
    if self.interrupted then
      self.interrupted = nil
      self:err(ok and "interrupted" or message(...))
    elseif ok then
      -- a value the printer cannot show (a raising __index, math.huge as a duration) is an
      -- error to report, not a session left without its prompt
      local shown, why = true, nil
      if select("#", ...) > 0 then shown, why = pcall(self.show, self, ...) end
      if not shown then self:err("cannot print the value: " .. message(why)) end
    else
      self:err(message(...))
    end
    self.h:prompt("> ")
  end
  local t = assetd.spawn({name = "repl", on_error = function(msg) finish(false, msg) end}, function()
    self.h:guard()
    finish(xpcall(fn, message))
  end)
  if not done then self.task = t end
end

function Session:on_interrupt()
  if self.task then
    self.interrupted = true
    self.task:cancel()
  else
    self.buf = nil
    self.h:prompt("> ")
  end
end

function Session:on_close()
  if self.task then self.task:cancel() end
  if self.buf then
    local _, err = load(self.buf, "=repl")
    self:err("unfinished chunk dropped: " .. tostring(err))
  end
end

function Session:environment()
  local env = setmetatable({}, {__index = _G})
  for name, fn in pairs(H) do env[name] = fn end
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    self:write(table.concat(parts, "\t") .. "\n")
  end
  env.pp = function(v, depth) self:write(pretty.format(v, {depth = depth}) .. "\n") end
  return env
end

-- Called by the C side with the session's handle; returns the function it feeds input to:
-- fn("line", text), fn("interrupt"), fn("close").
function M.session(h, kind)
  local s = setmetatable({h = h, kind = kind}, Session)
  s.env = s:environment()
  if kind == "terminal" then _G.print = s.env.print end   -- hooks print through the terminal too
  h:info(string.format("assetd %s, %s (%s). help() lists the helpers; Ctrl-D %s.\n", assetd.version,
    _VERSION, kind == "terminal" and "-i" or "attached", kind == "terminal" and "stops the daemon" or "detaches"))
  h:prompt("> ")
  return function(what, line) return s["on_" .. what](s, line) end
end

-- Open the attach socket in the data directory (a pipeline does at its start).
-- The attach socket (at PATH, default {data}/assetd.sock); D, the running daemon
-- (pipeline.lua's object: runner, config, reload), is what the helpers work on.
function M.listen(path, d)
  daemon = d or daemon
  local where, err = assetd.repl.listen(path or (assetd.options.data .. "/" .. assetd.repl.socket_name))
  if not where then
    assetd.log.warn("attach socket not available", {error = tostring(err)})
    return nil, err
  end
  assetd.log.info("attach socket ready", {path = where})
  return where
end

return M
