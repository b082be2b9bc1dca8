-- What hostile clients and peers can do through the API (issue 14, items 4, 7, 8, 9, 13): a
-- full job-store disk, a symlink under the root, slowloris, other origins and DNS rebinding,
-- SSRF through the urls provider, webhook replays across a restart, absurd dates and a NUL
-- in a header. Real daemons (or the real server in-process), real sockets, loopback only.
local sim = require "sim"
local daemon = require "daemon"
local cjson = require "cjson"
local webhooks = require "assetd.webhooks"

local shq = sim.shq

-- The simulator's addresses without allow_private: the default a user gets.
local STRICT_PIPELINE = [[
return {
  storage = {root = "{DIR}/root", public_base_url = "/generated-videos"},
  sora = {poll = {interval = 0.2, max = 0.5}, retry = {base = 0.2, cap = 0.5}},
}
]]

local function env(s, extra)
  local e = {OPENAI_API_KEY = "sk-exp", OPENAI_BASE_URL = s.openai, NOTION_TOKEN = "secret_exp", NOTION_BASE_URL = s.notion}
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

-- A raw HTTP exchange from Python (bytes curl will not send, a chosen source address):
-- returns the status line's code, or nil and what happened.
local function raw_request(url, bytes, source)
  local host, port = url:match("//([%d.]+):(%d+)")
  local out = sim.run(string.format([[python3 -c %s]], shq(string.format([[
import socket
s = socket.create_connection((%q, %s), timeout=5, source_address=(%q, 0))
s.sendall(%s)
print(s.recv(65536).decode('latin-1'))
]], host, port, source or "127.0.0.1", bytes))))
  return tonumber(out:match("^HTTP/1%.%d (%d+)")), out
end

describe("a full job-store disk (item 4)", function()
  local s, d, data
  setup(function()
    s = sim.start("--openai-key sk-exp --notion-token secret_exp")
    data = sim.tmpfs("2m")
    d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = env(s), args = "--data " .. data}
  end)
  teardown(function()
    d:stop_clean()
    s:stop()
    sim.untmpfs(data)
  end)

  it("answers 503 with Retry-After (never 4xx), /healthz 500 naming the store, and both recover", function()
    assert.are.equal(200, (d:json("GET", "/healthz")))
    os.execute("dd if=/dev/zero of=" .. data .. "/fill bs=4k >/dev/null 2>&1")
    local status, body, h = d:json("POST", "/api/downloads", {body = {notionPageId = "page-full", soraVideoId = "video_full", batchId = "b"}})
    assert.are.equal(503, status, cjson.encode(body))
    assert.are.equal("store_unavailable", body.error.code)
    assert.matches("full", body.error.message)
    assert.are.equal("5", h["retry-after"])
    local hs, hb = d:json("GET", "/healthz")
    assert.are.equal(500, hs)
    assert.are.equal("unavailable", hb.status)
    assert.matches("^job store: .*full", hb.reasons[1])
    os.remove(data .. "/fill")
    assert.are.equal(200, (d:json("GET", "/healthz")))
    assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = "page-full", soraVideoId = "video_full", batchId = "b"}})))
  end)
end)

describe("/healthz and links planted in the root (item 8)", function()
  local s, d
  setup(function()
    s = sim.start("--openai-key sk-exp --notion-token secret_exp")
    d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = env(s)}
  end)
  teardown(function()
    d:stop_clean()
    s:stop()
  end)

  it("never writes through a symlink, whatever name it is planted under", function()
    local root, target = d.dir .. "/root", d.dir .. "/outside"
    assert(os.execute("mkdir -p " .. root))
    local f = assert(io.open(target, "w"))
    f:write("untouched")
    f:close()
    os.execute(string.format("ln -s %s %s/.assetd-healthz", target, root))          -- the old probe's name
    for i = 1, 4 do os.execute(string.format("ln -s %s %s/.assetd-probe-%s-%d", target, root, d.pid, i)) end
    for _ = 1, 3 do
      local status, body = d:json("GET", "/healthz")
      assert.are.equal(200, status, cjson.encode(body))
    end
    assert.are.equal("untouched", sim.read(target))
    local _, probes = sim.run("ls -A " .. root):gsub("%.assetd%-probe%-", "")
    assert.are.equal(4, probes)                     -- the planted links; the probe's own files are gone
  end)
end)

describe("slowloris (item 7)", function()
  -- The real server in-process (the pipeline's http table has no deadline keys yet), with
  -- short deadlines and room for 32 connections; the attack and the probes run in Python.
  local script = [[
import socket, sys, time, json, threading, http.client
port = int(sys.argv[1]); DUR = 6.0; t0 = time.time()
res = {"max_life": 0.0, "cuts": 0, "probes": [], "body_cut": None, "keepalive": []}
def slow():                                  # 64 connections from 127.0.0.1, a byte every 0.5 s
    conns = [None] * 64
    while time.time() - t0 < DUR:
        for i, c in enumerate(conns):
            if c is None:
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=1)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); s.setblocking(False)
                    conns[i] = [s, time.time()]
                except OSError: pass
                continue
            s, born = c
            try:
                s.send(b"a")
                if s.recv(1) == b"": raise ConnectionError()
            except BlockingIOError: continue
            except OSError: pass
            life = time.time() - born            # closed by the server
            if life > 0.3: res["cuts"] += 1
            res["max_life"] = max(res["max_life"], life)
            s.close(); conns[i] = None
        time.sleep(0.5)
    for c in conns:
        if c: res["max_life"] = max(res["max_life"], time.time() - c[1])
def probes():                                # another address, every 0.5 s
    time.sleep(0.5)
    while time.time() - t0 < DUR - 0.5:
        t = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=3, source_address=("127.0.0.2", 0))
            c.request("GET", "/healthz"); res["probes"].append([c.getresponse().status, round(time.time() - t, 2)])
        except OSError as e: res["probes"].append([str(e), round(time.time() - t, 2)])
        time.sleep(0.5)
def body():                                  # a head in at once, then its body a byte a second
    s = socket.create_connection(("127.0.0.1", port), timeout=1, source_address=("127.0.0.3", 0))
    s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"); born = time.time()
    while time.time() - t0 < DUR:
        try:
            s.send(b"a"); s.settimeout(1)
            if s.recv(1) == b"": break
        except socket.timeout: continue
        except OSError: break
    res["body_cut"] = round(time.time() - born, 2)
def keepalive():                             # one connection, two requests 1 s apart
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3, source_address=("127.0.0.4", 0))
    for _ in range(2):
        try: c.request("GET", "/healthz"); r = c.getresponse(); r.read(); res["keepalive"].append(r.status)
        except OSError as e: res["keepalive"].append(str(e))
        time.sleep(1)
ts = [threading.Thread(target=f) for f in (slow, probes, body, keepalive)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(res))
]]

  it("cuts a connection that sends its head or body too slowly, and one address cannot starve others", function()
    local server = assert(assetd.http_listen{listen = "127.0.0.1:0", max_conns = 32, header_timeout = 2, body_timeout = 2,
                                             handler = function() return {status = 200, body = "ok"} end})
    local path = sim.script(script)
    local out = path .. ".out"
    os.execute(string.format("python3 %s %d > %s 2>&1 &", path, server:port(), out))
    local res = sim.eventually(function()
      local text = sim.read(out)
      local last = text and text:match("({[^\n]*})%s*$")
      return last and cjson.decode(last)
    end, 20, "the slowloris script's result")
    server:close()
    os.remove(path)
    os.remove(out)
    local msg = cjson.encode(res)
    assert.is_true(res.max_life <= 3.5, msg)               -- header_timeout 2 s, swept to the second
    assert.is_true(res.cuts >= 16, msg)                   -- every accepted slow connection, at least once
    assert.is_true(#res.probes >= 8, msg)
    for _, p in ipairs(res.probes) do
      assert.are.equal(200, p[1], msg)
      assert.is_true(p[2] < 1, msg)
    end
    assert.is_true(res.body_cut ~= cjson.null and res.body_cut <= 3.5, msg)   -- body_timeout 2 s
    assert.are.same({200, 200}, res.keepalive)            -- an answer restarts the head's deadline
  end)
end)

describe("other origins and DNS rebinding without a token (item 9)", function()
  local s, d
  setup(function()
    s = sim.start("--openai-key sk-exp --notion-token secret_exp")
    d = daemon.start{pipeline = STRICT_PIPELINE, env = env(s, {OPENAI_WEBHOOK_SECRET = "whsec_" .. assetd.base64_encode("k-exposure")})}
  end)
  teardown(function()
    d:stop_clean()
    s:stop()
  end)
  local port = function() return d.url:match(":(%d+)$") end
  local function enqueue(page, headers)
    return d:json("POST", "/api/downloads", {headers = headers,
      body = {notionPageId = page, soraVideoId = "video_" .. page, batchId = "b"}})
  end

  it("refuses a Host that is not this server's (403 host_not_allowed), reads included", function()
    local status, body = enqueue("p-rebind", {Host = "evil.example", Origin = "http://evil.example"})
    assert.are.equal(403, status)
    assert.are.equal("host_not_allowed", body.error.code)
    assert.are.equal(403, (d:json("GET", "/api/downloads", {headers = {Host = "evil.example:" .. port()}})))
    assert.are.equal(403, (d:json("GET", "/api/downloads", {headers = {Host = "127.0.0.1:1"}})))     -- another port
    assert.are.equal(200, (d:json("GET", "/api/downloads", {headers = {Host = "localhost:" .. port()}})))
    assert.are.equal(200, (d:json("GET", "/api/downloads", {headers = {Host = "[::1]:" .. port()}})))
    assert.is_falsy(d:job_status("p-rebind"))
  end)

  it("refuses cross-origin writes (403 cross_origin) and takes same-origin ones", function()
    local status, body = enqueue("p-csrf", {Origin = "http://evil.example"})
    assert.are.equal(403, status)
    assert.are.equal("cross_origin", body.error.code)
    assert.are.equal(403, (enqueue("p-csrf", {["Sec-Fetch-Site"] = "cross-site"})))
    assert.are.equal(403, (enqueue("p-csrf", {Origin = "http://localhost:3000"})))            -- same site, other port
    assert.are.equal(403, (enqueue("p-csrf", {Origin = "null"})))
    assert.is_falsy(d:job_status("p-csrf"))
    assert.are.equal(202, (enqueue("p-same", {Origin = "http://127.0.0.1:" .. port(), ["Sec-Fetch-Site"] = "same-origin"})))
  end)

  it("lets the webhook through under any Host: its signature authenticates it", function()
    local status, body = d:json("POST", "/webhooks/openai", {headers = {Host = "hooks.example.com", Origin = "http://evil.example"}, body = "{}"})
    assert.are.equal(400, status)
    assert.are.equal("missing_signature_headers", body.error.code)
  end)

  it("urls provider: a private address is refused, nothing is fetched from it and no byte of it shown", function()
    s:fault{path = "/files/internal", kind = "status", status = 404, body = "internal-secret-body", count = -1}
    local url = s.url .. "/files/internal"
    local status = d:json("POST", "/api/downloads", {body = {notionPageId = "p-ssrf", soraVideoId = "video_ssrf", batchId = "b",
      provider = "urls", expiresAt = iso(assetd.now() + 600), assets = {{variant = "video", url = url}}}})
    assert.are.equal(202, status)
    daemon.eventually(function() return d:job_status("p-ssrf") == "failed" end, 10, "p-ssrf failed")
    local _, job = d:json("POST", "/api/downloads/status", {body = {notionPageId = "p-ssrf"}})
    assert.matches("private address", job.error)
    assert.matches("allow_private", job.error)
    assert.is_nil(job.error:find("internal-secret-body", 1, true))
    for _, e in ipairs(s:log()) do assert.is_nil((e.path or ""):find("/files/internal", 1, true)) end
  end)

  it("urls provider: a name that resolves to loopback is refused at connect time", function()
    local name = sim.run("hostname"):match("%S+")
    local resolved = sim.run("getent hosts " .. shq(name)):match("^(%S+)")
    if not (resolved and assetd.private_address(resolved)) then
      pending("this host's name (" .. tostring(name) .. ") does not resolve to a private address")
      return
    end
    local url = s.url:gsub("127%.0%.0%.1", name) .. "/files/named.mp4?size=1000"
    assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = "p-name", soraVideoId = "video_name", batchId = "b",
      provider = "urls", expiresAt = iso(assetd.now() + 600), assets = {{variant = "video", url = url}}}})))
    daemon.eventually(function() return d:job_status("p-name") == "failed" end, 10, "p-name failed")
    local _, job = d:json("POST", "/api/downloads/status", {body = {notionPageId = "p-name"}})
    assert.matches("refused to connect to " .. resolved:gsub("%.", "%%."), job.error)
  end)
end)

describe("assetd.fetch deny_private (item 9's mechanism)", function()
  it("never connects to a private address by name or literal, nor sends on a reused connection to one", function()
    local hits = 0
    local server = assert(assetd.http_listen{listen = "127.0.0.1:0", handler = function()
      hits = hits + 1
      return {status = 404, body = "internal-secret-body"}
    end})
    local port = server:port()
    for _, url in ipairs{"http://127.0.0.1:%d/", "http://localhost:%d/", "http://[::ffff:127.0.0.1]:%d/"} do
      local res, err = assetd.fetch{url = url:format(port), sink = "memory", deny_private = true, timeout = 5}
      assert.is_nil(res)
      assert.are.equal("config", err.category)
      assert.matches("refused to connect to [%x:.]*127%.0%.0%.1: a loopback, link%-local or private address", err.message)
    end
    assert.are.equal(0, hits)
    assert.is_nil(assetd.fetch{url = ("http://127.0.0.1:%d/"):format(port), sink = "memory"})   -- opens a connection
    assert.are.equal(1, hits)
    local _, err = assetd.fetch{url = ("http://127.0.0.1:%d/"):format(port), sink = "memory", deny_private = true}
    assert.are.equal("config", err.category)
    assert.are.equal(1, hits)
    server:close()
    for ip, private in pairs{["10.1.2.3"] = true, ["172.16.0.1"] = true, ["192.168.1.1"] = true, ["169.254.169.254"] = true,
                             ["100.64.0.1"] = true, ["0.0.0.0"] = true, ["::1"] = true, ["::"] = true, ["fe80::1"] = true,
                             ["fd00::1"] = true, ["::ffff:10.0.0.1"] = true, ["64:ff9b::a00:1"] = true, ["2002:7f00:1::"] = true,
                             ["8.8.8.8"] = false, ["::ffff:8.8.8.8"] = false, ["2001:4860:4860::8888"] = false} do
      assert.are.equal(private, assetd.private_address(ip), ip)
    end
    assert.is_nil(assetd.private_address("localhost"))
  end)
end)

describe("webhook replays, far dates and NUL bytes (item 13)", function()
  local KEY = "k-replay-0123456789"
  local SECRET = "whsec_" .. assetd.base64_encode(KEY)
  local TOKEN = "tok-exposure-77"
  local s, d, data
  local function start()
    return daemon.start{pipeline = daemon.SIM_PIPELINE, args = "--data " .. data,
                        env = env(s, {OPENAI_WEBHOOK_SECRET = SECRET, ASSETD_API_TOKEN = TOKEN})}
  end
  setup(function()
    s = sim.start("--openai-key sk-exp --notion-token secret_exp")
    data = sim.tmpdir()
    d = start()
  end)
  teardown(function()
    d:stop_clean()
    s:stop()
    os.execute("rm -rf " .. data)
  end)

  it("knows a webhook id after a restart, as a replay", function()
    local body = cjson.encode{type = "video.completed", data = {id = "video_replay"}}
    local ts = tostring(math.floor(assetd.now()))
    local headers = {["webhook-id"] = "msg_restart_1", ["webhook-timestamp"] = ts,
                     ["webhook-signature"] = webhooks.sign(SECRET, "msg_restart_1", ts, body)}
    local status, first = d:json("POST", "/webhooks/openai", {headers = headers, body = body})
    assert.are.equal(200, status)
    assert.is_nil(first.replay)
    d:stop_clean()
    d = start()
    local status2, again = d:json("POST", "/webhooks/openai", {headers = headers, body = body})
    assert.are.equal(200, status2)
    assert.is_true(again.replay)
  end)

  it("refuses expiresAt and completedAt past ten years from now, as numbers already were", function()
    local auth = {Authorization = "Bearer " .. TOKEN}
    for field, value in pairs{expiresAt = "9999-12-31T23:59:59Z", completedAt = "1975-01-01T00:00:00Z"} do
      local status, body = d:json("POST", "/api/downloads", {headers = auth,
        body = {notionPageId = "p-far", soraVideoId = "video_far", batchId = "b", [field] = value}})
      assert.are.equal(400, status, field)
      assert.are.equal("validation_error", body.error.code)
      assert.matches("^" .. field .. ": .*within ten years", body.error.message)
    end
    assert.is_falsy(d:job_status("p-far", auth))
  end)

  it("refuses a query value holding a NUL (400 invalid_header)", function()
    local auth = {Authorization = "Bearer " .. TOKEN}
    local status, body = d:json("GET", "/api/downloads?batchId=b%00junk", {headers = auth})
    assert.are.equal(400, status)
    assert.are.equal("invalid_header", body.error.code)
    assert.are.equal(200, (d:json("GET", "/api/downloads?batchId=b", {headers = auth})))
  end)

  it("refuses a header value holding a bare CR (RFC 9112 2.2; libmicrohttpd passes it on)", function()
    local head = "GET /api/downloads HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n"
    local status, out = raw_request(d.url, string.format([[b"%sAuthorization: Bearer %s\r\x1b[2J\r\n\r\n"]], head, TOKEN))
    assert.are.equal(400, status, out)
    assert.matches("invalid_header", out)
  end)

  it("refuses a header holding a NUL (Bearer <token>\\0junk is not the token)", function()
    local head = "GET /api/downloads HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n"
    local status, out = raw_request(d.url, string.format([[b"%sAuthorization: Bearer %s\x00junk\r\n\r\n"]], head, TOKEN))
    if status == 200 then
      -- libmicrohttpd 0.9.75 cuts a header value at a NUL before any of its API shows it
      -- (value_size is the C string's length), so the server cannot tell; 1.0 parses per RFC 9112
      pending("this libmicrohttpd hands over a header value cut at its NUL: not detectable through its API")
      return
    end
    assert.are.equal(400, status, out)
    assert.matches("invalid_header", out)
  end)
end)
