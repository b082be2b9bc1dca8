-- The dashboard (GET /) in a real browser: Debian's headless Chromium, driven through
-- chromedriver by tests/browser/dashboard.py, against a real assetd and the simulator. The
-- browser run happens once; each test asserts one part of what it saw. A finished video with
-- real, decodable media (tests/browser/media, made by tests/browser/make_media.py) is served
-- by a plain HTTP server and fetched through the `urls` provider, so thumbnails, the scrubber
-- and inline playback are checked on pixels and frames the browser really decoded.
local sim = require "sim"
local daemon = require "daemon"
local cjson = require "cjson"

-- stall_after 2 s: the job whose server never answers is flagged stalled (and at risk) in time
local PIPELINE = daemon.SIM_PIPELINE:gsub("providers =", "alerts = {stall_after = 2}, providers =")

local CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

local shq, readfile = sim.shq, sim.read

local function executable(path) return os.execute("test -x " .. shq(path)) == true end

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

-- A static file server for the real media, on a kernel-chosen loopback port.
local function serve_media()
  local dir = sim.tmpdir()
  os.execute(string.format("python3 -u -m http.server 0 --bind 127.0.0.1 --directory tests/browser/media >%s/out 2>&1 & echo $! >%s/pid", dir, dir))
  local pid = assert(readfile(dir .. "/pid")):match("%d+")
  for _ = 1, 200 do
    local port = (readfile(dir .. "/out") or ""):match("port (%d+)")
    if port then
      return {url = "http://127.0.0.1:" .. port, stop = function()
        os.execute("kill " .. pid .. " 2>/dev/null")
        os.execute("rm -rf " .. dir)
      end}
    end
    assetd.sleep(0.05)
  end
  error("media server did not start: " .. (readfile(dir .. "/out") or ""))
end

-- Runs the browser driver against daemon D; returns what it saw, or nil and why.
local function browse(d, outdir, args)
  for _, bin in ipairs{CHROMIUM, CHROMEDRIVER} do
    if not executable(bin) then
      return nil, bin .. " is missing: install Debian's chromium and chromium-driver (scripts/install-deps)"
    end
  end
  local p = io.popen(string.format("timeout 90 python3 tests/browser/dashboard.py %s %s %s 2>%s/stderr",
    shq(d.url), shq(outdir), args, outdir))
  local text = p:read("a")
  p:close()
  local ok, v = pcall(cjson.decode, text)
  if ok and type(v) == "table" and not v.error then return v end
  return nil, (ok and type(v) == "table" and v.error or ("no JSON from the driver: " .. text)) ..
              "\n" .. (readfile(outdir .. "/stderr") or "")
end

local function job_status(d, page) return d:job_status(page) end

describe("dashboard in headless Chromium", function()
  local s, d, media, outdir
  local run = {}          -- what tests/browser/dashboard.py printed, decoded

  local function seen()
    assert(run.out, "the browser run failed: " .. tostring(run.err))
    return run.out
  end

  setup(function()
    outdir = sim.tmpdir()
    s = sim.start("--openai-key sk-dash --notion-token secret_dash")
    media = serve_media()
    s:video{{id = "video_done", sizes = {video = 200000, thumbnail = 3000, spritesheet = 5000}}}
    d = daemon.start{pipeline = PIPELINE, env = {OPENAI_API_KEY = "sk-dash", OPENAI_BASE_URL = s.openai,
                                                 NOTION_TOKEN = "secret_dash", NOTION_BASE_URL = s.notion}}
    local now = assetd.now()
    local function enqueue(body)
      local status, j = d:json("POST", "/api/downloads", {body = body})
      assert(status == 202, "enqueue " .. body.notionPageId .. ": " .. tostring(status) .. " " .. cjson.encode(j))
    end
    -- completed through the openai provider (simulator bytes: valid signatures; its JPEG does not decode)
    enqueue{notionPageId = "page-done", soraVideoId = "video_done", batchId = "dash"}
    -- completed with real media
    enqueue{notionPageId = "page-media", soraVideoId = "video_media", batchId = "dash", provider = "urls",
            expiresAt = iso(now + 3600), assets = {{variant = "video", url = media.url .. "/clip.mp4"},
              {variant = "thumbnail", url = media.url .. "/thumbnail.webp"},
              {variant = "spritesheet", url = media.url .. "/spritesheet.jpg"}}}
    -- unfinished and expiring in under 10 minutes: its server never answers
    enqueue{notionPageId = "page-soon", soraVideoId = "video_soon", batchId = "dash", provider = "urls",
            expiresAt = iso(now + 290), assets = {{variant = "video", url = "http://127.0.0.1:9/video.mp4"}}}
    -- downloading, slowly: 2 MB at 40 kB/s lasts the whole test
    s:fault{{kind = "slow", path = "/files/slow", rate = 40000, count = -1}}
    enqueue{notionPageId = "page-slow", soraVideoId = "video_slow", batchId = "dash", provider = "urls",
            expiresAt = iso(now + 3000), assets = {{variant = "video", url = s.url .. "/files/slow.mp4?size=2000000"}}}
    -- expired: the window closed before anything was fetched
    enqueue{notionPageId = "page-gone", soraVideoId = "video_gone", batchId = "dash", provider = "urls",
            expiresAt = iso(now - 5), assets = {{variant = "video", url = s.url .. "/files/gone.mp4"}}}
    -- failed: one 403 (not retried); the fault is used up, so a retry completes
    s:fault{{kind = "status", path = "/files/forbidden", status = 403, count = 1}}
    enqueue{notionPageId = "page-failed", soraVideoId = "video_failed", batchId = "dash", provider = "urls",
            expiresAt = iso(now + 900), assets = {{variant = "video", url = s.url .. "/files/forbidden.mp4?size=1000"}}}
    for page, want in pairs{["page-done"] = "completed", ["page-media"] = "completed", ["page-gone"] = "expired",
                            ["page-failed"] = "failed"} do
      daemon.eventually(function() return job_status(d, page) == want end, 15, page .. " " .. want)
    end
    daemon.eventually(function()
      local _, st = d:json("GET", "/api/downloads/status")
      return st.expiring == 1
    end, 10, "one expiring download")
    daemon.eventually(function()
      local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-slow"}})
      return j.progress ~= cjson.null and j.progress.bytes > 0
    end, 10, "page-slow under way")
    daemon.eventually(function()
      local _, st = d:json("GET", "/api/downloads/status")
      return st.summary.stalled == 1 and st.summary.atRisk == 1
    end, 15, "page-soon flagged stalled and at risk")

    -- the browser itself: a missing one is a failure (browse says so), never a skip
    run.out, run.err = browse(d, outdir, "--failed page-failed --media page-media")
  end)

  teardown(function()
    local ok, why = pcall(function() if d then d:stop_clean() end end)
    if media then media.stop() end
    if s then s:stop() end
    if outdir and os.getenv("KEEP") then print("kept " .. outdir) elseif outdir then os.execute("rm -rf " .. outdir) end
    assert(ok, why)
  end)

  it("runs: Chromium and chromedriver are installed and the page renders", function()
    assert(executable(CHROMIUM), CHROMIUM .. " is missing: install Debian's chromium (scripts/install-deps)")
    assert(executable(CHROMEDRIVER), CHROMEDRIVER .. " is missing: install Debian's chromium-driver (scripts/install-deps)")
    local o = seen()
    assert.are.equal("assetd", o.title)
  end)

  it("shows the stalled and at-risk jobs the status API flags, in their own banner", function()
    local o = seen()
    assert.is_true(o.concerns.visible)
    assert.are.equal(1, o.concerns.stalled)
    assert.are.equal(1, o.concerns.atRisk)
    assert.matches("^1 stalled: video_soon %(", o.concerns.text)
    assert.matches("1 at risk of missing the deadline: video_soon", o.concerns.text, 1, true)
  end)

  it("shows one counter per state, equal to the status API's summary", function()
    local o = seen()
    for _, k in ipairs{"waiting", "pending", "downloading", "completed", "failed", "expired"} do
      assert.are.equal(o.api.summary[k], o.counters[k], k)
    end
    assert.are.equal(2, o.counters.completed)
    assert.are.equal(1, o.counters.failed)
    assert.are.equal(1, o.counters.expired)
    assert.is_true(o.counters.downloading >= 1)
    assert.are.equal(2, o.counters.pending + o.counters.downloading + o.counters.waiting)
  end)

  it("shows the warning banner with the number of downloads expiring within 10 minutes", function()
    local o = seen()
    assert.is_true(o.banner.visible)
    assert.are.equal(1, o.api.expiring)
    assert.are.equal(o.api.expiring, o.banner.count)
    assert.matches("^1 download expires in under 10 minutes", o.banner.text)
    assert.matches("video_soon %([34] min left%)", o.banner.text)
  end)

  it("lists every job with its state, progress, time left, version and error", function()
    local rows = seen().rows
    local n = 0
    for _ in pairs(rows) do n = n + 1 end
    assert.are.equal(6, n)
    local done = rows["page-done"]
    assert.are.equal("completed", done.status)
    assert.are.equal("completed", done.state)
    assert.are.equal("V1", done.version)
    assert.are.equal("", done.left)
    assert.are.equal("", done.error)
    assert.matches("^%d+%.%d KiB$", done.progress)             -- the stored assets' bytes
    local soon = rows["page-soon"]
    assert.is_true(soon.status == "pending" or soon.status == "downloading", soon.status)
    assert.matches("^[34]m%d+s$", soon.left)
    assert.is_true(soon.soon)                                  -- highlighted: under 10 minutes left
    local slow = rows["page-slow"]
    assert.are.equal("downloading", slow.status)
    assert.matches("^%d+%.%d [KM]iB of 1%.9 MiB$", slow.progress)   -- bytes of total, under way
    assert.are.equal(2000000, slow.bar.max)
    assert.is_true(slow.bar.value > 0 and slow.bar.value < 2000000, tostring(slow.bar.value))
    assert.matches("^49m%d+s$", slow.left)
    assert.is_false(slow.soon)
    local gone = rows["page-gone"]
    assert.are.equal("expired", gone.status)
    assert.are.equal("passed", gone.left)
    assert.are_not.equal("", gone.error)
    assert.is_false(gone.retry)                                -- an expired job cannot be retried
    -- the simulator's thumbnail is a stored WebP too: the cell shows that file
    assert.are.equal("/generated-videos/dash/video_done_V1_thumbnail.webp", done.thumb.thumbUrl)
    assert.matches("video_done_V1_thumbnail%.webp", done.thumb.backgroundImage)
  end)

  it("a click on Retry of a failed job turns its row to completed", function()
    local r = seen().retry
    assert.are.equal("failed", r.before)
    assert.matches("403", r.errorBefore)
    assert.is_true(r.button)
    assert.are.equal("completed", r.after, "states seen: " .. table.concat(r.seen, " -> "))
    assert.is_false(r.buttonAfter)
    assert.are.equal("", r.notice)
    local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-failed"}})
    assert.are.equal("completed", j.status)
    assert.are.equal(1, j.retryCount)
  end)

  it("shows the stored WebP thumbnail of a completed job, decoded", function()
    local t = seen().thumb
    assert.are.equal("/generated-videos/dash/video_media_V1_thumbnail.webp", t.thumbUrl)
    assert.are.equal("loaded", t.thumbState)
    assert.matches('url%(".*/generated%-videos/dash/video_media_V1_thumbnail%.webp"%)', t.backgroundImage)
    assert.is_true(t.decoded.ok)
    assert.are.equal(320, t.decoded.width)
    assert.are.equal(180, t.decoded.height)
  end)

  it("scrubs through the spritesheet as the pointer moves over the thumbnail", function()
    local sc = seen().scrub
    assert.are.equal("loaded", sc.left.sheet)
    assert.are.equal("5x2", sc.left.grid)
    assert.are.equal(0, sc.left.frame)
    assert.are.equal(9, sc.right.frame)
    assert.matches("video_media_V1_spritesheet%.jpg", sc.left.backgroundImage)
    assert.are.equal("0% 0%", sc.left.backgroundPosition)
    assert.are.equal("100% 100%", sc.right.backgroundPosition)
    -- leaving the cell brings the thumbnail back
    assert.are.equal(cjson.null, sc.after.frame)
    assert.matches("video_media_V1_thumbnail%.webp", sc.after.backgroundImage)
  end)

  it("plays the stored MP4 inline after a click on the thumbnail", function()
    local v = seen().video
    assert.is_table(v, "no <video> opened")
    assert.matches("/generated%-videos/dash/video_media_V1%.mp4$", v.src)
    assert.are.equal(cjson.null, v.error)
    assert.is_true(v.readyState >= 2, "readyState " .. tostring(v.readyState))
    assert.is_true(math.abs(v.duration - 2) < 0.2, "duration " .. tostring(v.duration))
    assert.is_true(v.currentTime > 0, "it did not play")
    assert.are.equal(320, v.videoWidth)
  end)

  it("saves a screenshot (PNG) and logs no browser errors", function()
    local o = seen()
    local png = assert(readfile(o.screenshot.path), "no screenshot at " .. o.screenshot.path)
    assert.are.equal("\137PNG\r\n\26\n", png:sub(1, 8))
    assert.is_true(#png > 20000, "screenshot of " .. #png .. " bytes")
    assert.are.equal(o.screenshot.bytes, #png)
    local w, h = string.unpack(">I4>I4", png, 17)
    assert.are.equal(1280, w)
    assert.is_true(h >= 600, "height " .. h)
    -- every console error counts (the browser's own /favicon.ico request is answered 204)
    assert.are.same({}, o.console, cjson.encode(o.console))
  end)
end)

describe("dashboard in headless Chromium with ASSETD_API_TOKEN", function()
  local s, d, media, outdir
  local run = {}
  local TOKEN = "dash-token-0123456789"

  local function seen()
    assert(run.out, "the browser run failed: " .. tostring(run.err))
    return run.out
  end

  setup(function()
    outdir = sim.tmpdir()
    s = sim.start("--openai-key sk-dash --notion-token secret_dash")
    media = serve_media()
    d = daemon.start{pipeline = PIPELINE, env = {OPENAI_API_KEY = "sk-dash", OPENAI_BASE_URL = s.openai,
      NOTION_TOKEN = "secret_dash", NOTION_BASE_URL = s.notion, ASSETD_API_TOKEN = TOKEN}}
    local auth = {Authorization = "Bearer " .. TOKEN}
    local status = d:json("POST", "/api/downloads", {headers = auth, body = {notionPageId = "page-media",
      soraVideoId = "video_media", batchId = "dash", provider = "urls", expiresAt = iso(assetd.now() + 3600),
      assets = {{variant = "video", url = media.url .. "/clip.mp4"}, {variant = "thumbnail", url = media.url .. "/thumbnail.webp"},
                {variant = "spritesheet", url = media.url .. "/spritesheet.jpg"}}}})
    assert(status == 202, "enqueue: " .. tostring(status))
    daemon.eventually(function()
      local _, j = d:json("POST", "/api/downloads/status", {headers = auth, body = {notionPageId = "page-media"}})
      return type(j) == "table" and j.status == "completed"
    end, 15, "page-media completed")
    assert.are.equal(401, (d:request("GET", "/generated-videos/dash/video_media_V1.mp4")))
    run.out, run.err = browse(d, outdir, "--media page-media --token " .. TOKEN)
  end)

  teardown(function()
    local ok, why = pcall(function() if d then d:stop_clean() end end)
    if media then media.stop() end
    if s then s:stop() end
    if outdir then os.execute("rm -rf " .. outdir) end
    assert(ok, why)
  end)

  it("asks for the token, then takes it from #token= and clears it from the address bar", function()
    local o = seen()
    assert.is_true(o.authPrompt)
    assert.are.equal("", o.hashAfter)
    assert.are.equal(1, o.counters.completed)
    assert.are.equal(o.api.summary.completed, o.counters.completed)
    assert.is_false(o.banner.visible)
  end)

  it("shows the thumbnail, scrubs and plays the MP4 through the token (blob: URLs)", function()
    local o = seen()
    assert.are.equal("loaded", o.thumb.thumbState)
    assert.matches('^url%("blob:', o.thumb.backgroundImage)
    assert.is_true(o.thumb.decoded.ok)
    assert.are.equal(9, o.scrub.right.frame)
    assert.matches("^blob:", o.video.src)
    assert.are.equal(cjson.null, o.video.error)
    assert.is_true(o.video.currentTime > 0, "it did not play")
  end)
end)
