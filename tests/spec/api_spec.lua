-- The HTTP API as a client sees it: a real assetd process, the simulator behind it, curl in front.
local sim = require "sim"
local daemon = require "daemon"
local cjson = require "cjson"

local PIPELINE = daemon.SIM_PIPELINE

local function env(s, extra)
  local e = {OPENAI_API_KEY = "sk-api", OPENAI_BASE_URL = s.openai, NOTION_TOKEN = "secret_api", NOTION_BASE_URL = s.notion}
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function job_status(d, page) return d:job_status(page) end

describe("HTTP API", function()
  local s, d
  setup(function()
    s = sim.start("--openai-key sk-api --notion-token secret_api")
    s:video{{id = "video_a", sizes = {video = 300000, thumbnail = 3000, spritesheet = 5000}},
            {id = "video_b", sizes = {video = 100000, thumbnail = 3000, spritesheet = 5000}}}
    d = daemon.start{pipeline = PIPELINE, env = env(s)}
  end)
  teardown(function()
    s:stop()
    d:stop_clean()
  end)

  it("GET /healthz is 200 when the database and storage are usable", function()
    local status, body = d:json("GET", "/healthz")
    assert.are.equal(200, status)
    assert.are.equal("ok", body.status)
  end)

  it("POST /api/downloads enqueues (202), is idempotent, and the job completes", function()
    local req = {notionPageId = "page-a", soraVideoId = "video_a", batchId = "batch1"}
    local status, job = d:json("POST", "/api/downloads", {body = req})
    assert.are.equal(202, status)
    assert.are.equal("page-a", job.notionPageId)
    assert.are.equal("batch1", job.batchId)
    local status2, job2, h2 = d:json("POST", "/api/downloads", {body = req})
    assert.are.equal(202, status2)
    assert.are.equal(job.id, job2.id)
    assert.are.equal("true", h2["x-assetd-existing"])
    daemon.eventually(function() return job_status(d, "page-a") == "completed" end, 15, "page-a completed")
    local _, full = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-a"}})
    assert.are.equal(3, #full.downloadedAssets)
    for _, a in ipairs(full.downloadedAssets) do
      assert.are.equal(1, a.version)
      assert.matches("^%x+$", a.sha256)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", a.downloadedAt)
      assert.is_number(a.fileSize)
    end
    assert.matches("Z$", full.expiresAt)
    assert.are.equal(cjson.null, full.error)
    assert.are.equal(0, full.retryCount)
  end)

  it("refuses bad bodies with 400 naming the problem, and 413 over 1 MiB", function()
    local cases = {
      {"{not json", "invalid_json", "malformed JSON"},
      {"[1,2]", "invalid_json", "JSON object"},
      {"", "invalid_json", "empty"},
      {{soraVideoId = "v", batchId = "b"}, "validation_error", "notionPageId: is required"},
      {{notionPageId = "p", soraVideoId = 5, batchId = "b"}, "validation_error", "soraVideoId: must be a string"},
      {{notionPageId = "../../etc", soraVideoId = "v", batchId = "b"}, "validation_error", "notionPageId: must match"},
      {{notionPageId = "p", soraVideoId = "v", batchId = string.rep("x", 129)}, "validation_error", "batchId: must match"},
      {{notionPageId = "p", soraVideoId = "v", batchId = "b", completedAt = "yesterday"}, "validation_error", "completedAt"},
      {{notionPageId = "p", soraVideoId = "v", batchId = "b", provider = "nope"}, "validation_error", "provider"},
      {{notionPageId = "p", soraVideoId = "v", batchId = "b", assets = {{variant = "video", url = "file:///etc/passwd"}}},
       "validation_error", "assets%[1%]%.url"},
      -- two transfers of one variant would stream into the same file at once
      {{notionPageId = "p", soraVideoId = "v", batchId = "b", provider = "urls",
        assets = {{variant = "video", url = "http://x/a"}, {variant = "video", url = "http://x/b"}}},
       "validation_error", "assets%[2%]%.variant: repeats variant video"},
      {{notionPageId = "p", soraVideoId = "v", batchId = "b", provider = "urls",
        assets = {{variant = "video", url = "http://x/a", ext = "../x"}}}, "validation_error", "assets%[1%]%.ext"},
      {{notionPageId = "p", soraVideoId = "v", batchId = "b", provider = "urls",
        assets = {{variant = "video", url = "http://x/a", name = "x"}}}, "validation_error", "assets%[1%]%.name"},
      {{notionPageId = "p", soraVideoId = "v", batchId = "b", provider = "urls"}, "validation_error",
       "assets: are required by the urls provider"},
    }
    for _, c in ipairs(cases) do
      local status, body = d:json("POST", "/api/downloads", {body = c[1]})
      assert.are.equal(400, status, cjson.encode(c[1]))
      assert.are.equal(c[2], body.error.code)
      assert.matches(c[3], body.error.message)
    end
    local status, body = d:json("POST", "/api/downloads", {body = '{"x":"' .. string.rep("a", 1100000) .. '"}'})
    assert.are.equal(413, status)
    assert.are.equal("payload_too_large", body.error.code)
    -- nothing was created by any of them
    local _, page = d:json("GET", "/api/downloads?limit=100")
    for _, j in ipairs(page.jobs) do assert.are_not.equal("p", j.notionPageId) end
  end)

  it("POST /api/downloads/status answers 404 for an unknown page and 400 for a hostile one", function()
    local status, body = d:json("POST", "/api/downloads/status", {body = {notionPageId = "no-such-page"}})
    assert.are.equal(404, status)
    assert.are.equal("not_found", body.error.code)
    status, body = d:json("POST", "/api/downloads/status", {body = {notionPageId = "a/../b"}})
    assert.are.equal(400, status)
    assert.matches("notionPageId", body.error.message)
  end)

  it("GET /api/downloads filters and pages with a cursor", function()
    d:json("POST", "/api/downloads", {body = {notionPageId = "page-b", soraVideoId = "video_b", batchId = "batch2"}})
    daemon.eventually(function() return job_status(d, "page-b") == "completed" end, 15, "page-b completed")
    local status, p1 = d:json("GET", "/api/downloads?status=completed&limit=1")
    assert.are.equal(200, status)
    assert.are.equal(1, #p1.jobs)
    assert.is_string(p1.nextCursor)
    local _, p2 = d:json("GET", "/api/downloads?status=completed&limit=1&cursor=" .. p1.nextCursor)
    assert.are.equal(1, #p2.jobs)
    assert.are_not.equal(p1.jobs[1].id, p2.jobs[1].id)
    local _, b2 = d:json("GET", "/api/downloads?batchId=batch2")
    assert.are.equal(1, #b2.jobs)
    assert.are.equal("page-b", b2.jobs[1].notionPageId)
    local _, newest = d:json("GET", "/api/downloads?order=desc&limit=1")
    assert.are.equal("page-b", newest.jobs[1].notionPageId)
    local _, older = d:json("GET", "/api/downloads?order=desc&limit=1&cursor=" .. newest.nextCursor)
    assert.are.equal("page-a", older.jobs[1].notionPageId)
    assert.are.equal(400, (d:json("GET", "/api/downloads?order=sideways")))
    local bad = d:json("GET", "/api/downloads?status=bogus")
    assert.are.equal(400, bad)
    assert.are.equal(400, (d:json("GET", "/api/downloads?limit=0")))
    assert.are.equal(400, (d:json("GET", "/api/downloads?batchId=..%2Fx")))
  end)

  it("GET /api/downloads/status lists downloads expiring within 10 minutes", function()
    -- a download that cannot reach its server keeps retrying until its deadline
    local expires = assetd.now() + 290
    d:json("POST", "/api/downloads", {body = {notionPageId = "page-stuck", soraVideoId = "video_stuck", batchId = "b3",
      provider = "urls", expiresAt = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(expires)),
      assets = {{variant = "video", url = "http://127.0.0.1:9/video.mp4"}}}})
    local st = daemon.eventually(function()
      local _, v = d:json("GET", "/api/downloads/status")
      return v.expiring >= 1 and v
    end, 10, "an expiring download")
    for _, k in ipairs{"waiting", "pending", "downloading", "completed", "failed", "expired", "approachingExpiration"} do
      assert.is_number(st.summary[k], k)
    end
    local e = st.expiringDownloads[1]
    assert.are.equal("page-stuck", e.notionPageId)
    assert.are.equal("video_stuck", e.soraVideoId)
    assert.is_true(e.minutesRemaining == 4 or e.minutesRemaining == 3, tostring(e.minutesRemaining))
    assert.matches("Z$", e.expiresAt)
  end)

  it("POST /api/downloads/retry: 404 unknown, 409 not failed, 410 expired, 200 for a failed job", function()
    assert.are.equal(404, (d:json("POST", "/api/downloads/retry", {body = {notionPageId = "nobody"}})))
    local status, body = d:json("POST", "/api/downloads/retry", {body = {notionPageId = "page-a"}})
    assert.are.equal(409, status)
    assert.are.equal("not_failed", body.error.code)
    -- expired: its deadline has already passed
    d:json("POST", "/api/downloads", {body = {notionPageId = "page-old", soraVideoId = "video_old", batchId = "b4",
      provider = "urls", expiresAt = assetd.now() - 5, assets = {{variant = "video", url = s.url .. "/files/x.mp4"}}}})
    daemon.eventually(function() return job_status(d, "page-old") == "expired" end, 10, "page-old expired")
    status, body = d:json("POST", "/api/downloads/retry", {body = {notionPageId = "page-old"}})
    assert.are.equal(410, status)
    assert.are.equal("expired", body.error.code)
    -- failed: the server answers 403, which is not retried
    s:fault{{kind = "status", path = "/files/forbidden", status = 403, count = 1}}
    d:json("POST", "/api/downloads", {body = {notionPageId = "page-f", soraVideoId = "video_f", batchId = "b5",
      provider = "urls", expiresAt = assetd.now() + 600, assets = {{variant = "video", url = s.url .. "/files/forbidden.mp4?size=1000"}}}})
    daemon.eventually(function() return job_status(d, "page-f") == "failed" end, 10, "page-f failed")
    status, body = d:json("POST", "/api/downloads/retry", {body = {notionPageId = "page-f"}})
    assert.are.equal(200, status)
    assert.is_true(body.success)
    daemon.eventually(function() return job_status(d, "page-f") == "completed" end, 10, "page-f completed after retry")
    local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-f"}})
    assert.are.equal(1, j.retryCount)
  end)

  it("answers 404 for unknown routes and 405 with Allow for a wrong method", function()
    local status, body = d:json("GET", "/api/nothing")
    assert.are.equal(404, status)
    assert.are.equal("not_found", body.error.code)
    local st2, body2, h = d:json("DELETE", "/api/downloads/status")
    assert.are.equal(405, st2)
    assert.are.equal("method_not_allowed", body2.error.code)
    assert.are.equal("GET, HEAD, POST", h.allow)
    assert.are.equal(405, (d:json("GET", "/api/downloads/retry")))
    assert.are.equal(405, (d:json("public", "/healthz")))        -- the routes' own flag, not a method
    local st3, body3 = d:json("GET", "/api/downloads?cursor=1e300")
    assert.are.equal(400, st3)
    assert.matches("cursor", body3.error.message)
    assert.are.equal(400, (d:json("GET", "/api/downloads?cursor=9223372036854775808")))
  end)

  it("serves stored assets with Range, ETag and the right Content-Type", function()
    local path = "/generated-videos/batch1/video_a_V1.mp4"
    local file = assert(io.open(d.dir .. "/root/batch1/video_a_V1.mp4", "rb")):read("a")
    local status, body, h = d:request("GET", path)
    assert.are.equal(200, status)
    assert.are.equal("video/mp4", h["content-type"])
    assert.are.equal(#file, #body)
    assert.is_true(body == file)
    status, body, h = d:request("GET", path, {headers = {Range = "bytes=100-199"}})
    assert.are.equal(206, status)
    assert.are.equal("bytes 100-199/" .. #file, h["content-range"])
    assert.is_true(body == file:sub(101, 200))
    status, body = d:request("GET", path, {headers = {Range = "bytes=-10"}})
    assert.are.equal(206, status)
    assert.is_true(body == file:sub(-10))
    status, _, h = d:request("GET", path, {headers = {Range = "bytes=999999999-"}})
    assert.are.equal(416, status)
    assert.are.equal("bytes */" .. #file, h["content-range"])
    local _, _, h1 = d:request("HEAD", path)
    assert.are.equal(tostring(#file), h1["content-length"])
    assert.are.equal(304, (d:request("GET", path, {headers = {["If-None-Match"] = h1.etag}})))
    assert.are.equal(304, (d:request("GET", path, {headers = {["If-None-Match"] = '"other", W/' .. h1.etag}})))
    assert.are.equal(200, (d:request("GET", path, {headers = {["If-None-Match"] = '"other"'}})))
    assert.matches("^private", h1["cache-control"])
    local _, _, ht = d:request("GET", "/generated-videos/batch1/video_a_V1_thumbnail.webp")
    assert.are.equal("image/webp", ht["content-type"])
  end)

  it("never serves anything outside the storage root", function()
    os.execute(string.format("ln -s /etc/passwd %s/root/batch1/link.mp4 && ln -s /etc %s/root/etcdir", d.dir, d.dir))
    os.execute(string.format("echo partial > %s/root/batch1/.partial.mp4.part", d.dir))    -- still being written
    for _, p in ipairs{"/generated-videos/../data/jobs.db", "/generated-videos/batch1/..%2F..%2Fdata%2Fjobs.db",
                       "/generated-videos/%2e%2e/data/jobs.db", "/generated-videos/batch1/link.mp4",
                       "/generated-videos/etcdir/passwd", "/generated-videos/batch1", "/generated-videos/..%2fdata/jobs.db",
                       "/generated-videos/batch1/.partial.mp4.part"} do
      local status, body = d:request("GET", p, {raw = "--path-as-is"})
      assert.are.equal(404, status, p)
      assert.is_nil(body:find("root:", 1, true), p)
      assert.is_nil(body:find("SQLite", 1, true), p)
    end
  end)

  it("GET /healthz is 500 naming the reason when storage is unusable", function()
    local root = d.dir .. "/root"
    assert(os.execute(string.format("mv %s %s.away && touch %s", root, root, root)))
    local status, body = d:json("GET", "/healthz")
    assert(os.execute(string.format("rm -f %s && mv %s.away %s", root, root, root)))
    assert.are.equal(500, status)
    assert.are.equal("unavailable", body.status)
    assert.are.equal(1, #body.reasons)
    assert.matches("^storage root: .*ENOTDIR", body.reasons[1])
    assert.are.equal(200, (d:json("GET", "/healthz")))
  end)

  it("keeps serving others while one address holds connections open", function()
    -- 40 from 127.0.0.1 (past the per-address cap of 16); the probe comes from 127.0.0.2
    local p = io.popen(string.format([[python3 -c "
import socket, sys, time, http.client
held = []
for _ in range(40):
    try: held.append(socket.create_connection(('%s', %s)))
    except OSError: pass
for s in held:
    try: s.sendall(b'GET / HTTP/1.1\r\nHost: x\r\n')   # never finished
    except OSError: pass
t = time.time()
c = http.client.HTTPConnection('%s', %s, timeout=5, source_address=('127.0.0.2', 0))
c.request('GET', '/healthz')
print(c.getresponse().status, round(time.time() - t, 2))
"]], d.url:match("//([%d.]+):"), d.url:match(":(%d+)$"), d.url:match("//([%d.]+):"), d.url:match(":(%d+)$")))
    local out = p:read("a")
    p:close()
    assert.matches("^200 ", out)
    local big = d:request("GET", "/healthz", {headers = {["X-Big"] = string.rep("a", 40000)}})
    assert.is_true(big == 431 or big == 413, tostring(big))
  end)

  it("keeps secrets out of job errors and the log: a key an upstream echoes, a URL's password", function()
    s:fault{path = "/files/echo", kind = "status", status = 403, body = "denied for key sk-api (Bearer secret_api)", count = -1}
    local url = s.openai:gsub("^http://", "http://svc:hunter2@"):gsub("/v1$", "") .. "/files/echo"
    local status = d:json("POST", "/api/downloads", {body = {notionPageId = "page-s", soraVideoId = "video_s", batchId = "b",
      provider = "urls", expiresAt = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 600),
      assets = {{variant = "video", url = url}}}})
    assert.are.equal(202, status)
    daemon.eventually(function() return job_status(d, "page-s") == "failed" end, 15, "page-s failed")
    local _, job = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-s"}})
    assert.matches("HTTP 403", job.error)
    assert.matches("[redacted]", job.error, 1, true)
    for _, text in ipairs{job.error, d:log()} do
      assert.is_nil(text:find("sk-api", 1, true))
      assert.is_nil(text:find("secret_api", 1, true))
      assert.is_nil(text:find("hunter2", 1, true))
    end
  end)

  it("retries and shows the video named when a page has several (soraVideoId), else the newest", function()
    s:fault{path = "/files/gone", kind = "status", status = 404, count = -1}
    local url = s.openai:gsub("/v1$", "") .. "/files/gone"
    for _, vid in ipairs{"video_p1", "video_p2"} do
      d:json("POST", "/api/downloads", {body = {notionPageId = "page-two", soraVideoId = vid, batchId = "b", provider = "urls",
        expiresAt = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 600), assets = {{variant = "video", url = url}}}})
    end
    local function job(vid)
      local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-two", soraVideoId = vid}})
      return j
    end
    daemon.eventually(function() return job("video_p1").status == "failed" and job("video_p2").status == "failed" end, 15, "both failed")
    assert.are.equal(200, (d:json("POST", "/api/downloads/retry", {body = {notionPageId = "page-two", soraVideoId = "video_p1"}})))
    daemon.eventually(function() return job("video_p1").retryCount == 1 end, 15, "video_p1 retried")
    assert.are.equal(0, job("video_p2").retryCount)
    local _, newest = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-two"}})
    assert.are.equal("video_p2", newest.soraVideoId)
    assert.are.equal(404, (d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-two", soraVideoId = "video_p3"}})))
    assert.are.equal(400, (d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-two", soraVideoId = "../x"}})))
  end)

  it("POST /api/downloads/redownload stores a completed video again as the next version", function()
    s:video{id = "video_r", sizes = {video = 50000, thumbnail = 3000, spritesheet = 5000}}
    d:json("POST", "/api/downloads", {body = {notionPageId = "page-r", soraVideoId = "video_r", batchId = "batch1"}})
    daemon.eventually(function() return job_status(d, "page-r") == "completed" end, 15, "page-r completed")
    local function redownload()                    -- 409 busy while the Notion sync still runs
      local status, body
      daemon.eventually(function()
        status, body = d:json("POST", "/api/downloads/redownload", {body = {notionPageId = "page-r"}})
        return status ~= 409 or body.error.code ~= "busy"
      end, 10, "the Notion sync to end")
      return status, body
    end
    for version = 2, 3 do
      local status, job = redownload()
      assert.are.equal(202, status)
      assert.are.equal("pending", job.status)
      daemon.eventually(function() return job_status(d, "page-r") == "completed" end, 15, "page-r completed again")
      local _, full = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-r"}})
      assert.are.equal(version, full.version)
      local per_version = {}
      for _, a in ipairs(full.downloadedAssets) do per_version[a.version] = (per_version[a.version] or 0) + 1 end
      for v = 1, version do assert.are.equal(3, per_version[v]) end
    end
    assert.are.equal(404, (d:json("POST", "/api/downloads/redownload", {body = {notionPageId = "no-such-page"}})))
  end)
end)
