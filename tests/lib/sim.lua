-- Starts the project's OpenAI + Notion simulator (tests/sim/sim.py) on a loopback port and
-- talks to its control API over real HTTP with assetd.fetch.
local cjson = require "cjson"

local sim = {}
sim.__index = sim

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "command failed: " .. cmd)
end

function sim.start(args)
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  sh(string.format("python3 tests/sim/sim.py --port 0 --quiet %s > %s/out 2>%s/err & echo $! > %s/pid",
    args or "", dir, dir, dir))
  local self = setmetatable({dir = dir}, sim)
  self.pid = assert(io.open(dir .. "/pid")):read("l")
  for _ = 1, 200 do
    local f = io.open(dir .. "/out")
    local line = f and f:read("l")
    if f then f:close() end
    if line and line:match("^listening ") then
      self.url = line:match("^listening (%S+)")
      self.openai = self.url .. "/v1"
      self.notion = self.url .. "/notion/v1"
      return self
    end
    assetd.sleep(0.05)
  end
  error("simulator did not start: " .. (io.open(dir .. "/err") or io.open("/dev/null")):read("a"))
end

function sim:stop()
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  os.execute("rm -rf " .. self.dir)
end

function sim:call(method, path, body)
  local res, err = assetd.fetch{
    url = self.url .. path, method = method, sink = "memory",
    headers = {["Content-Type"] = "application/json"},
    body = body and cjson.encode(body) or nil,
  }
  assert(res, err and tostring(err))
  return res.body ~= "" and cjson.decode(res.body) or nil
end

function sim:video(v) return self:call("POST", "/_control/videos", v) end
function sim:fault(f) return self:call("POST", "/_control/faults", f) end
function sim:info(id) return self:call("GET", "/_control/videos/" .. id) end
function sim:log() return self:call("GET", "/_control/log") end
function sim:reset() return self:call("POST", "/_control/reset", {}) end

-- sha256 of a file on disk, through the system's sha256sum (independent of the engine)
function sim.sha256_file(path)
  local p = io.popen("sha256sum '" .. path .. "'")
  local out = p:read("a")
  p:close()
  return out:match("^(%x+)")
end

-- Poll FN until it returns a truthy value, which is returned (fail after SECS).
function sim.eventually(fn, secs, what)
  local t0 = assetd.monotonic()
  while assetd.monotonic() - t0 < (secs or 10) do
    local v = fn()
    if v then return v end
    assetd.sleep(0.05)
  end
  error("timed out waiting for " .. (what or "a condition"), 2)
end

-- Run a shell command: its output (stdout and stderr) and exit status.
function sim.run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  return out:gsub("rc=%d+%s*$", ""), tonumber(out:match("rc=(%d+)%s*$"))
end

-- S quoted for sh.
function sim.shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A whole file, or nil when it cannot be opened.
function sim.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Write SRC to a new .lua file; its path.
function sim.script(src)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  return path
end

-- The .NAME.part the engine writes for PATH.
function sim.part_of(path)
  local d, base = path:match("^(.*/)([^/]+)$")
  return (d or "") .. "." .. (base or path) .. ".part"
end

-- A small tmpfs of SIZE ("256k", "8m") mounted at a new directory (or DIR), for full-disk
-- specs: they need root, as CI has (or `unshare -Urm`). Returns the directory.
function sim.tmpfs(size, dir)
  dir = dir or sim.tmpdir()
  assert(os.execute("mkdir -p " .. dir .. " && mount -t tmpfs -o size=" .. size .. " tmpfs " .. dir),
    "this spec mounts a small tmpfs and needs root (or run it under `unshare -Urm`)")
  return dir
end

function sim.untmpfs(dir) os.execute("umount " .. dir .. " 2>/dev/null; rmdir " .. dir .. " 2>/dev/null") end

function sim.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  os.execute("mkdir -p " .. d)
  return d
end

return sim
