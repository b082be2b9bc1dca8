-- The live stream of GET /api/events (Server-Sent Events): a "job" event with the job's JSON
-- each time a job changes (events.lua tells which), a "progress" event every second while
-- transfers run (bytes, total and a smoothed bytesPerSecond per job), and a "summary" (the
-- GET /api/downloads/status answer) on connecting and every few seconds, which also shows a
-- client the stream is alive.
local assetd = require "assetd"
local events = require "assetd.events"
local views = require "assetd.views"

local M = {}
local Live = {}
Live.__index = Live

M.CAP = 1024 * 1024         -- bytes a client may fall behind before it is cut (it reconnects)
M.FLUSH = 0.05              -- seconds job changes are gathered: a transition and its events go out as one
M.SUMMARY_EVERY = 5         -- seconds between summaries

-- new(api): API answers the job shape (job_json), views.lua the status, and the runner is read.
function M.new(api)
  return setmetatable({api = api, clients = {}, dirty = {}, rates = {}}, Live)
end

local function frame(kind, json) return "event: " .. kind .. "\ndata: " .. json .. "\n\n" end

-- FRAME to every client; a client whose stream is over is forgotten.
function Live:broadcast(text)
  for s in pairs(self.clients) do
    if not s:write(text) then self.clients[s] = nil end
  end
end

function Live:summary_frame() return frame("summary", views.status(self.api).body) end

-- The changed jobs, each once, as they are now.
function Live:flush()
  local ids = {}
  for id in pairs(self.dirty) do ids[#ids + 1] = id end
  self.dirty = {}
  table.sort(ids)
  for _, id in ipairs(ids) do
    local job = self.api.jobs:get(id)
    if job then self:broadcast(frame("job", self.api:encode(self.api:job_json(job)))) end
  end
end

function Live:changed(id)
  self.dirty[id] = true
  if self.flushing then return end
  self.flushing = true
  assetd.spawn({name = "live flush"}, function()
    assetd.sleep(M.FLUSH)
    self.flushing = false
    local ok, err = pcall(self.flush, self)
    if not ok then assetd.log.warn("live events: a job change was not sent", {error = tostring(err)}) end
  end)
end

-- Bytes per second of job ID's transfer, smoothed over the last seconds (nil before two samples).
function Live:rate(id)
  local r = self.rates[id]
  return r and r.rate
end

-- One sample of every running transfer; the progress event's entries.
function Live:sample(now)
  local out, seen = {}, {}
  for id, p in self.api.runner:downloading() do
    seen[id] = true
    local r = self.rates[id]
    if r and now > r.t then
      local v = math.max(0, p.bytes - r.bytes) / (now - r.t)
      r.rate = r.rate and (0.6 * r.rate + 0.4 * v) or v
    end
    if not r then r = {} self.rates[id] = r end
    r.t, r.bytes = now, p.bytes
    out[#out + 1] = {id = id, soraVideoId = p.video, bytes = p.bytes, total = p.total,
                     bytesPerSecond = r.rate and math.floor(r.rate + 0.5)}
  end
  for id in pairs(self.rates) do if not seen[id] then self.rates[id] = nil end end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

-- The clock of the stream while anyone listens: progress each second, a summary every few.
function Live:run()
  local n = 0
  while next(self.clients) do
    assetd.sleep(1)
    n = n + 1
    local moving = self:sample(assetd.now())
    if #moving > 0 then self:broadcast(frame("progress", self.api:encode{jobs = moving})) end
    if n % M.SUMMARY_EVERY == 0 then self:broadcast(self:summary_frame()) end
  end
  events.unsubscribe(self.token)
  self.token, self.task = nil, nil
end

-- The answer to GET /api/events: a stream that starts with a summary.
function Live:open()
  local s = assetd.http_stream(M.CAP)
  -- reconnect after 2 s when the stream drops (the page polls meanwhile)
  s:write("retry: 2000\n\n" .. self:summary_frame())
  self.clients[s] = true
  if not self.token then
    self.token = events.subscribe(function(id) self:changed(id) end)
    self.task = assetd.spawn({name = "live events", detached = true}, function() self:run() end)
  end
  return {status = 200, stream = s, headers = {["Content-Type"] = "text/event-stream; charset=utf-8",
    ["Cache-Control"] = "no-store", ["X-Accel-Buffering"] = "no"}}
end

return M
