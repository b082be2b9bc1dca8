-- Runs `assetd PIPELINE` as a separate process on a loopback port chosen by the kernel, for
-- tests of what a client sees: finds the API address in the log, and speaks HTTP to it with
-- curl (an independent client) so status lines and headers can be asserted.
local cjson = require "cjson"
local sim = require "sim"

local daemon = {}
daemon.__index = daemon

local bin = os.getenv("ASSETD_BIN") or "./assetd"

local shq = sim.shq

-- daemon.start{pipeline = "lua source", env = {K = V}, args = "...", bin = path (default: the one
-- under test), dir = a killed daemon's directory to start again in (its data and log kept)}
function daemon.start(o)
  local dir = o.dir or sim.tmpdir()
  os.remove(dir .. "/pid")
  os.remove(dir .. "/rc")
  local from = #(sim.read(dir .. "/log") or "")     -- a restart's log starts here
  local f = assert(io.open(dir .. "/pipeline.lua", "w"))
  f:write((o.pipeline:gsub("{DIR}", dir)))
  f:close()
  local env = {}
  for k, v in pairs(o.env or {}) do env[#env + 1] = k .. "=" .. shq(v) end
  local cmd = string.format("%s %s %s/pipeline.lua --listen 127.0.0.1:0 --data %s/data %s >>%s/log 2>&1",
    table.concat(env, " "), o.bin or bin, dir, dir, o.args or "", dir)
  -- the exit status is kept, so a stop can check it (sanitizer reports make it non-zero)
  os.execute(string.format("sh -c %s &", shq(cmd .. " & echo $! > " .. dir .. "/pid; wait $!; echo $? > " .. dir .. "/rc")))
  for _ = 1, 100 do
    local f = io.open(dir .. "/pid")
    if f and f:read("l") then f:close() break end
    if f then f:close() end
    assetd.sleep(0.02)
  end
  local self = setmetatable({dir = dir}, daemon)
  self.pid = assert(io.open(dir .. "/pid")):read("l")
  for _ = 1, 200 do
    local log = self:log():sub(from + 1)
    self.url = log:match('msg="http listening" addr=%S+ auth=%S+ url=(http://[%d.:]+)/')
    if self.url then return self end
    assert(os.execute("kill -0 " .. self.pid .. " 2>/dev/null"), "assetd exited:\n" .. log)
    assetd.sleep(0.05)
  end
  error("assetd did not start listening:\n" .. self:log())
end

-- SIGKILL: no checkpoint, no cleanup; the directory stays for a daemon.start{dir = d.dir}.
function daemon:kill9()
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
  for _ = 1, 200 do
    if sim.read(self.dir .. "/rc") then return end
    assetd.sleep(0.05)
  end
end

function daemon:log()
  local f = io.open(self.dir .. "/log")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Stop with SIGTERM; returns the exit status (nil if it did not stop) and the log.
function daemon:stop()
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  local rc
  for _ = 1, 200 do
    local f = io.open(self.dir .. "/rc")
    rc = f and tonumber(f:read("l"))
    if f then f:close() end
    if rc then break end
    assetd.sleep(0.05)
  end
  local log = self:log()
  os.execute("rm -rf " .. self.dir)
  return rc, log
end

-- stop() and assert a clean exit: status 0 and no sanitizer report in the log.
function daemon:stop_clean()
  local rc, log = self:stop()
  assert(rc == 0 and not log:find("Sanitizer", 1, true) and not log:find("runtime error", 1, true),
         "assetd did not stop cleanly (exit " .. tostring(rc) .. "):\n" .. log:sub(-4000))
end

-- request(method, path, {body=, headers = {K = V}, raw = "curl args"}) -> status, body, headers
function daemon:request(method, path, o)
  o = o or {}
  local args = {"curl -s -S -i --max-time 10 -X", method == "HEAD" and "HEAD -I" or method}
  for k, v in pairs(o.headers or {}) do args[#args + 1] = "-H " .. shq(k .. ": " .. v) end
  if o.body then
    local bf = self.dir .. "/body"
    local f = assert(io.open(bf, "wb"))
    f:write(type(o.body) == "table" and cjson.encode(o.body) or o.body)
    f:close()
    args[#args + 1] = "-H 'Content-Type: application/json' --data-binary @" .. bf
  end
  args[#args + 1] = o.raw or ""
  args[#args + 1] = shq(self.url .. path)
  local p = io.popen(table.concat(args, " "))
  local out = p:read("a")
  p:close()
  local head, body = out:match("^(.-)\r\n\r\n(.*)$")
  assert(head, "no HTTP answer from " .. method .. " " .. path .. ": " .. out)
  local status = tonumber(head:match("^HTTP/%S+ (%d+)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return status, body, headers
end

-- request() with a JSON body decoded
function daemon:json(method, path, o)
  local status, body, headers = self:request(method, path, o)
  local ok, v = pcall(cjson.decode, body)
  return status, ok and v or body, headers
end

-- A job's status through POST /api/downloads/status (HEADERS: e.g. a bearer token), or false.
function daemon:job_status(page, headers)
  local _, j = self:json("POST", "/api/downloads/status", {body = {notionPageId = page}, headers = headers})
  return type(j) == "table" and j.status
end

-- A pipeline against the simulator, polling fast; {DIR} is the daemon's directory. The
-- simulator is on 127.0.0.1, so the urls provider may fetch private addresses here.
daemon.SIM_PIPELINE = [[
return {
  storage = {root = "{DIR}/root", public_base_url = "/generated-videos"},
  sora = {poll = {interval = 0.2, max = 0.5}, retry = {base = 0.2, cap = 0.5}},
  providers = {urls = {allow_private = true}},
}
]]

daemon.eventually = sim.eventually
daemon.bin = bin           -- the binary under test

return daemon
