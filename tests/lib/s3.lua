-- The object-storage specs' server: s3rver (npm, pinned in tests/s3/package-lock.json) on a
-- loopback port behind tests/s3/recorder.py, which checks and records every request's SigV4
-- signature; plus an independent reader (awscli) to read objects back.
local cjson = require "cjson"
local sim = require "sim"

local s3 = {}
s3.__index = s3

s3.INSTALL = "npm ci --prefix tests/s3"
s3.KEY, s3.SECRET = "S3RVER", "S3RVER"        -- the one key pair s3rver knows
local BIN = "tests/s3/node_modules/s3rver/bin/s3rver.js"

local function wait_line(file, pattern, what)
  for _ = 1, 300 do
    local f = io.open(file)
    local s = f and f:read("a")
    if f then f:close() end
    local v = s and s:match(pattern)
    if v then return v end
    assetd.sleep(0.05)
  end
  error(what .. " did not start: " .. (sim.read(file) or ""))
end

-- s3.start{bucket = "videos", answer = "403:SignatureDoesNotMatch"}: a fresh server with BUCKET.
-- Fails (never skips) when the npm packages are not installed.
function s3.start(o)
  o = o or {}
  assert(io.open(BIN), "s3rver is not installed: run `" .. s3.INSTALL .. "` (scripts/install-deps does)")
  local self = setmetatable({dir = sim.tmpdir(), bucket = o.bucket or "videos"}, s3)
  self.data = self.dir .. "/data"
  os.execute("mkdir -p " .. self.data)
  os.execute(string.format("node %s -d %s -a 127.0.0.1 -p 0 --configure-bucket %s > %s/s3rver.out 2>&1 & echo $! > %s/s3rver.pid",
    BIN, self.data, self.bucket, self.dir, self.dir))
  self.s3rver_pid = sim.read(self.dir .. "/s3rver.pid"):match("%d+")
  self.upstream = wait_line(self.dir .. "/s3rver.out", "listening on [%d.]+:(%d+)", "s3rver")
  self.log_path = self.dir .. "/requests.jsonl"
  self.answer = o.answer
  self.slow_parts = o.slow_parts
  self:up()
  return self
end

-- The recorder (the address assetd talks to); on the same port as before after a down().
function s3:up()
  local out = self.dir .. "/recorder.out"
  os.remove(out)
  os.execute(string.format("python3 tests/s3/recorder.py --port %d --upstream %s --s3dir %s --log %s %s > %s 2>&1 & echo $! > %s/recorder.pid",
    self.port or 0, self.upstream, self.data, self.log_path,
    (self.answer and ("--answer " .. self.answer) or "") .. (self.slow_parts and (" --slow-parts " .. self.slow_parts) or ""),
    out, self.dir))
  self.recorder_pid = sim.read(self.dir .. "/recorder.pid"):match("%d+")
  self.url = wait_line(out, "listening (http://[%d.:]+)", "recorder")
  self.port = tonumber(self.url:match(":(%d+)$"))
end

-- The server unreachable: connections to its port are refused until up().
function s3:down()
  os.execute("kill " .. self.recorder_pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not os.execute("kill -0 " .. self.recorder_pid .. " 2>/dev/null") then return end
    assetd.sleep(0.05)
  end
end

function s3:stop()
  self:down()
  os.execute("kill " .. self.s3rver_pid .. " 2>/dev/null")
  os.execute("rm -rf " .. self.dir)
end

-- Every request the recorder saw: {method, path, query, headers, body_sha256, signature_ok, why, ...}
function s3:requests()
  local out = {}
  local f = io.open(self.log_path)
  if not f then return out end
  for line in f:lines() do out[#out + 1] = cjson.decode(line) end
  f:close()
  return out
end

-- The environment an independent client (awscli) needs to reach this server.
function s3:env()
  return string.format("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_DEFAULT_REGION=us-east-1 "
    .. "AWS_REQUEST_CHECKSUM_CALCULATION=when_required AWS_RESPONSE_CHECKSUM_VALIDATION=when_required "
    .. "AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null", s3.KEY, s3.SECRET)
end

local function aws(self, args)
  local out, rc = sim.run(self:env() .. " aws --endpoint-url " .. self.url .. " " .. args)
  return out, rc
end

-- SHA-256 of the object KEY as awscli downloads it (nil and the output when it cannot).
function s3:sha256(key)
  local tmp = self.dir .. "/get.bin"
  os.remove(tmp)
  local out, rc = aws(self, "s3api get-object --bucket " .. self.bucket .. " --key " .. sim.shq(key) .. " " .. tmp)
  if rc ~= 0 then return nil, out end
  local sum = sim.sha256_file(tmp)
  os.remove(tmp)
  return sum
end

-- Every object under PREFIX downloaded by awscli into DIR (aws s3 cp --recursive); true or
-- nil and its output.
function s3:download_all(prefix, dir)
  local out, rc = aws(self, "s3 cp --recursive --only-show-errors s3://" .. self.bucket .. "/" .. prefix .. " " .. dir)
  if rc ~= 0 then return nil, out end
  return true
end

-- The keys in the bucket (awscli's list-objects-v2), sorted.
function s3:keys()
  local out, rc = aws(self, "s3api list-objects-v2 --bucket " .. self.bucket .. " --output json")
  assert(rc == 0, out)
  local keys = {}
  local ok, t = pcall(cjson.decode, out)
  for _, o in ipairs(ok and type(t) == "table" and t.Contents or {}) do keys[#keys + 1] = o.Key end
  table.sort(keys)
  return keys
end

-- The multipart uploads the bucket lists (awscli's list-multipart-uploads): {key, ...}.
function s3:listed_uploads()
  local out, rc = aws(self, "s3api list-multipart-uploads --bucket " .. self.bucket .. " --output json")
  assert(rc == 0, out)
  local keys = {}
  local ok, t = pcall(cjson.decode, out)
  for _, u in ipairs(ok and type(t) == "table" and type(t.Uploads) == "table" and t.Uploads or {}) do keys[#keys + 1] = u.Key end
  return keys
end

-- Multipart uploads not completed nor aborted (s3rver's upload directories).
function s3:incomplete_uploads()
  local p = io.popen("find " .. self.data .. " -mindepth 3 -maxdepth 3 -type d -path '*/._S3rver_uploads/*' 2>/dev/null")
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- Run the Lua source SRC as `assetd script.lua` with this server's credentials in its
-- environment (and ENV's extra "K=V ..."): its output and exit status. {URL} is the server.
function s3:run_lua(src, env)
  local path = sim.script((src:gsub("{URL}", self.url)))
  local out, rc = sim.run(string.format("AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s %s %s %s", s3.KEY, s3.SECRET,
    env or "", os.getenv("ASSETD_BIN") or "./assetd", path))
  os.remove(path)
  return out, rc
end

-- A file of N random bytes at PATH; its SHA-256.
function s3.random_file(path, n)
  assert(os.execute(string.format("head -c %d /dev/urandom > %s", n, path)))
  return sim.sha256_file(path)
end

return s3
