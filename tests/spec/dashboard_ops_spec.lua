-- The dashboard as an operator's tool (issue 19), in a real browser: Debian's headless
-- Chromium driven by tests/browser/operator.py against a real assetd (with ASSETD_API_TOKEN,
-- so every action goes with the token) and the simulator, with a job in every state. The
-- browser run happens once; each test asserts one part of what it saw, and what the actions
-- did is checked through the API. ASSETD_SCREENSHOTS=DIR copies the screenshots there (the
-- ones in docs/ are made so: ASSETD_SCREENSHOTS=docs ./assetd tests/spec/busted.lua ...).
local sim = require "sim"
local daemon = require "daemon"
local cjson = require "cjson"

-- three download slots: three slow transfers hold them, so two more jobs stay pending (the
-- queue shows them in the order they will start: the one due first first)
local PIPELINE = daemon.SIM_PIPELINE:gsub("providers =", "limits = {max_jobs = 3}, providers =")
local TOKEN = "ops-token-0123456789"
local AUTH = {Authorization = "Bearer " .. TOKEN}

local PAGES = {
  waiting = "8f1c2d3e-4b5a-6c7d-8e9f-0a1b2c3d4e5f", done = "page-done", expired = "page-expired",
  failedA = "page-fail-a", failedB = "page-fail-b", failedC = "page-fail-c",
  late = "page-late", slow = "page-slow", pending = "page-pending",
  passed = "page-passed", queued = "page-queued",
}

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

local function sorted(t) table.sort(t) return t end

describe("dashboard for operators in headless Chromium", function()
  local s, d, outdir
  local run = {}

  local function seen()
    assert(run.out, "the browser run failed: " .. tostring(run.err) .. "\n" .. tostring(run.text):sub(-3000))
    return run.out
  end
  local function job(page)
    local _, j = d:json("POST", "/api/downloads/status", {headers = AUTH, body = {notionPageId = page}})
    return j
  end

  setup(function()
    outdir = sim.tmpdir()
    s = sim.start("--openai-key sk-ops --notion-token secret_ops")
    s:video{{id = "video_done", sizes = {video = 200000, thumbnail = 3000, spritesheet = 5000}},
            {id = "video_wait", status = "in_progress", completes_in = 3600}}
    d = daemon.start{pipeline = PIPELINE, env = {OPENAI_API_KEY = "sk-ops", OPENAI_BASE_URL = s.openai,
      NOTION_TOKEN = "secret_ops", NOTION_BASE_URL = s.notion, ASSETD_API_TOKEN = TOKEN}}
    local now = assetd.now()
    local function enqueue(body)
      local status, j = d:json("POST", "/api/downloads", {headers = AUTH, body = body})
      assert(status == 202, "enqueue " .. body.notionPageId .. ": " .. tostring(status) .. " " .. cjson.encode(j))
    end
    local function urls(page, video, batch, file, expires)
      enqueue{notionPageId = page, soraVideoId = video, batchId = batch, provider = "urls", expiresAt = iso(expires),
              assets = {{variant = "video", url = s.url .. "/files/" .. file}}}
    end
    local function reach(page, want)
      daemon.eventually(function() return d:job_status(page, AUTH) == want end, 15, page .. " " .. want)
    end
    -- the finished ones first, while both slots are free; a 403 each (used up: a retry completes)
    s:fault{{kind = "status", path = "/files/fail-", status = 403, count = 3,
             body = {error = {code = "AccessDenied", message = "Request has expired"}}},
            {kind = "slow", path = "/files/slow-", rate = 30000, count = -1}}
    enqueue{notionPageId = PAGES.done, soraVideoId = "video_done", batchId = "B1"}
    urls(PAGES.failedA, "video_fail_a", "B1", "fail-a.mp4?size=1000", now + 1800)
    urls(PAGES.failedB, "video_fail_b", "B2", "fail-b.mp4?size=1000", now + 1800)
    urls(PAGES.failedC, "video_fail_c", "B1", "fail-c.mp4?size=1000", now + 1800)
    urls(PAGES.expired, "video_expired", "B2", "gone.mp4", now - 5)
    for _, k in ipairs{"failedA", "failedB", "failedC"} do reach(PAGES[k], "failed") end
    reach(PAGES.done, "completed")
    reach(PAGES.expired, "expired")
    -- three slow transfers: one whose deadline (2.5 min) comes before its finish (5 min), and
    -- one whose deadline, seconds away, passes while it streams (it goes on)
    urls(PAGES.late, "video_late", "B2", "slow-late.mp4?size=9000000", now + 150)
    urls(PAGES.slow, "video_slow", "B2", "slow-b.mp4?size=6000000", now + 3000)
    local passed_at = math.floor(assetd.now()) + 6
    urls(PAGES.passed, "video_passed", "B3", "slow-passed.mp4?size=9000000", passed_at)
    reach(PAGES.late, "downloading")
    reach(PAGES.slow, "downloading")
    reach(PAGES.passed, "downloading")
    -- two behind the slots; the later one is due first
    urls(PAGES.pending, "video_pending", "B3", "pending.mp4?size=1000", now + 3000)
    urls(PAGES.queued, "video_queued", "B3", "queued.mp4?size=1000", now + 2400)
    enqueue{notionPageId = PAGES.waiting, soraVideoId = "video_wait", batchId = "B3"}
    assetd.sleep(0.5)
    assert(d:job_status(PAGES.pending, AUTH) == "pending", "page-pending is not held behind the slots")
    assert(d:job_status(PAGES.queued, AUTH) == "pending", "page-queued is not held behind the slots")
    assert(d:job_status(PAGES.waiting, AUTH) == "waiting", "the waiting job is not waiting")
    while assetd.now() < passed_at + 0.5 do assetd.sleep(0.1) end
    assert(d:job_status(PAGES.passed, AUTH) == "downloading", "page-passed stopped at its deadline")
    local _, st = d:json("GET", "/api/downloads/status", {headers = AUTH})
    run.statusBefore = st
    local _, q = d:json("GET", "/api/queue", {headers = AUTH})
    run.queueBefore = q

    local p = io.popen(string.format("timeout 150 python3 tests/browser/operator.py %s %s --token %s --pages %s 2>%s/stderr",
      sim.shq(d.url), sim.shq(outdir), sim.shq(TOKEN), sim.shq(cjson.encode(PAGES)), outdir))
    local text = p:read("a")
    p:close()
    run.text = text
    local ok, v = pcall(cjson.decode, text)
    if ok and type(v) == "table" and not v.error then run.out = v
    else run.err = (ok and type(v) == "table" and tostring(v.error) or ("no JSON from the driver: " .. text)) .. "\n" .. (sim.read(outdir .. "/stderr") or "") end
    local shots = os.getenv("ASSETD_SCREENSHOTS")
    if shots and run.out then os.execute("cp " .. outdir .. "/*.png " .. sim.shq(shots) .. "/") end
  end)

  teardown(function()
    local ok, why = pcall(function() if d then d:stop_clean() end end)
    if s then s:stop() end
    if outdir then os.execute("rm -rf " .. outdir) end
    assert(ok, why)
  end)

  it("shows jobs in every state, with counters equal to the API's, live", function()
    local w = seen().wide
    local n = 0
    for _ in pairs(w.rows) do n = n + 1 end
    assert.are.equal(11, n)
    for _, st in ipairs{"waiting", "pending", "downloading", "completed", "failed", "expired"} do
      assert.is_true(w.counters[st] >= 1, st)
    end
    assert.are.same({waiting = 1, pending = 2, downloading = 3, completed = 1, failed = 3, expired = 1}, w.counters)
    assert.are.equal("live", w.live)
    assert.are.equal("pending", w.rows[PAGES.pending].state)
    assert.are.equal("waiting", w.rows[PAGES.waiting].state)
  end)

  it("tells each transfer's speed and ETA, in red with words when it passes the deadline", function()
    local w = seen().wide
    local late, slow = w.rows[PAGES.late].rate, w.rows[PAGES.slow].rate
    assert.are.equal("1", late.late)
    assert.matches("^%d+%.%d KiB/s · ETA %d+m%d+s · after the deadline$", late.text)
    assert.are.equal("rgb(196, 38, 46)", late.red)                  -- --bad
    assert.are.equal("0", slow.late)
    assert.matches("^%d+%.%d KiB/s · ETA %d+m%d+s$", slow.text)
    assert.is_true(slow.bps > 15000 and slow.bps < 45000, tostring(slow.bps))   -- 30 kB/s served
    assert.is_true(late.eta > 150, tostring(late.eta))
    assert.are.equal("", w.rows[PAGES.done].rate.text)
  end)

  it("draws the throughput and the next hour of deadlines (as the status API counts them)", function()
    local w = seen().wide
    assert.is_true(w.throughput.samples >= 3)
    assert.is_true(w.throughput.line)
    assert.matches("^%d+%.%d KiB/s now", w.throughput.text)
    assert.are.same(w.apiDeadlines.counts, w.deadlines.counts)
    assert.are.equal(1, w.deadlines.counts[1])                      -- page-late, due in 2.5 min
    assert.are.equal(12, w.deadlines.bars)
    assert.matches("^4 due within the hour", w.deadlines.text)    -- page-passed is past, not ahead
  end)

  it("counts and flags a download whose deadline passed while it streamed, as the status API does", function()
    -- the API, before the browser ran: counted, listed, still downloading
    assert.are.equal(1, run.statusBefore.summary.deadlinePassed)
    assert.are.equal(PAGES.passed, run.statusBefore.deadlinePassedDownloads[1].notionPageId)
    assert.are.equal("downloading", run.statusBefore.deadlinePassedDownloads[1].status)
    for _, e in ipairs(run.statusBefore.expiringDownloads) do assert.are_not.equal(PAGES.passed, e.notionPageId) end
    local w = seen().wide
    assert.are.same({summary = 1, count = 1, pages = {PAGES.passed}}, w.apiPassed)
    -- the page: a counter of its own, in words and in red, and a red banner naming it
    local p = w.passed
    assert.are.equal(1, p.count)
    assert.are.equal("deadline passed", p.label)
    assert.is_true(p.bad)
    assert.are.equal("rgb(196, 38, 46)", p.color)                   -- --bad
    assert.is_true(p.banner.visible)
    assert.are.equal(1, p.banner.count)
    assert.matches("^1 unfinished download is past its deadline: video_passed %(downloading, passed ", p.banner.text)
    assert.are.equal("rgb(196, 38, 46)", p.banner.color)
    -- its row: still downloading, flagged in words, drawn late; not in the expiring banner
    local row = w.rows[PAGES.passed]
    assert.are.equal("downloading", row.state)
    assert.is_true(row.late)
    assert.are.equal("passed", row.left)
    local has = {}
    for _, b in ipairs(row.flags) do has[b] = true end
    assert.is_true(has["deadline passed"], table.concat(row.flags, ", "))
    -- the counter is a filter: only that job, the checkbox and the address say so
    local f = seen().filters
    assert.are.same({PAGES.passed}, f.passed)
    assert.are.equal("true", f.passedPressed)
    assert.is_true(f.passedChecked)
    assert.matches("passed=1", f.passedHash, 1, true)
  end)

  it("shows the queue: what downloads with its speed, and what waits in the order it will start", function()
    local w = seen().wide
    local q, api = w.queue, w.apiQueue
    assert.is_true(q.visible)
    assert.matches("^3 downloading, 2 waiting · 3 of 3 download slots in use", q.sum)
    -- waiting: the one due first first, though it came second; as the API orders them
    local waiting = {}
    for i, e in ipairs(q.waiting) do
      waiting[i] = e.page
      assert.are.equal("#" .. i, e.pos)
      assert.are.equal("max_jobs", e.held)
      assert.matches("limits.max_jobs", e.heldText, 1, true)
      assert.matches("^due in %d+m%d+s$", e.due)
    end
    assert.are.same({PAGES.queued, PAGES.pending}, waiting)
    assert.are.same({PAGES.queued, PAGES.pending}, {api.queued[1].notionPageId, api.queued[2].notionPageId})
    assert.are.same({1, 2}, {api.queued[1].position, api.queued[2].position})
    assert.are.equal(PAGES.queued, run.queueBefore.queued[1].notionPageId)
    -- running: soonest deadline first, each with a speed; the passed one says so
    local running = {}
    for i, e in ipairs(q.running) do
      running[i] = e.page
      assert.matches("^%d+%.%d KiB/s$", e.speed)
    end
    assert.are.same({PAGES.passed, PAGES.late, PAGES.slow}, running)
    assert.are.equal("deadline passed", q.running[1].due)
    local api_running = {}
    for i, e in ipairs(api.running) do api_running[i] = e.notionPageId end
    assert.are.same(running, api_running)
  end)

  it("filters by state, batch, provider, at risk and a counter, and searches page and video ids", function()
    local f = seen().filters
    assert.are.same(sorted{PAGES.failedA, PAGES.failedB, PAGES.failedC}, f.failed)
    assert.are.same(sorted{PAGES.failedA, PAGES.failedC}, f.failedB1)
    assert.matches("status=failed", f.hash, 1, true)
    assert.matches("batch=B1", f.hash, 1, true)
    assert.are.equal(11, #f.cleared)
    assert.are.same(sorted{PAGES.waiting, PAGES.done}, f.openai)
    assert.are.same({PAGES.waiting}, f.search)                       -- typed without dashes, in capitals
    assert.are.same({PAGES.slow}, f.searchVideo)
    assert.are.same(sorted{PAGES.late, PAGES.passed}, f.atRisk)      -- at risk includes a passed deadline
    assert.are.equal(11, #f.all)
    assert.are.same({PAGES.expired}, f.counter)
    assert.are.equal("true", f.counterPressed)
  end)

  it("opens a shared view from the address's fragment", function()
    local sh = seen().shared
    assert.are.same(sorted{PAGES.failedA, PAGES.failedC}, sh.rows)
    assert.are.equal("failed", sh.status)
    assert.are.equal("B1", sh.batch)
  end)

  it("pages through the jobs with the list's cursor, newest first, each once", function()
    local pg = seen().paging
    assert.are.equal(4, #pg.pages)
    local all, ids = {}, {}
    for _, page in ipairs(pg.pages) do
      assert.is_true(#page <= 3)
      for _, id in ipairs(page) do all[#all + 1] = id; ids[id] = (ids[id] or 0) + 1 end
    end
    assert.are.equal(11, #all)
    for id, n in pairs(ids) do assert.are.equal(1, n, id) end
    assert.are.equal(PAGES.waiting, pg.pages[1][1])                  -- the newest first
    assert.are.equal(3, #pg.newest)
  end)

  it("takes a change from the stream within a second, without a reload", function()
    local e = seen().sse
    assert.are.equal(200, e.cancelStatus)
    assert.is_true(e.ms < 1000, e.ms .. " ms")
    assert.are.equal("not reloaded", e.marker)
    assert.are.equal("live", e.mode)
    assert.are.equal("failed", e.row.status)
  end)

  it("polls when the stream drops, says so, and takes the stream again", function()
    local f = seen().fallback
    assert.are.equal("polling every 0.5 s", f.polling)
    assert.is_true(f.polls >= 2, f.polls .. " polls in 1.5 s")
  end)

  it("cancels a download from its panel after a confirmation (checked through the API)", function()
    local c = seen().cancel
    assert.are.same({"act-cancel"}, c.actions)
    assert.matches("^Cancel the downloading download of page%-slow%?", c.dialog)
    assert.are.equal("failed", c.panel.state)
    local j = job(PAGES.slow)
    assert.are.equal("failed", j.status)
    assert.are.equal("canceled by operator", j.error)
    assert.are.equal("failed", job(PAGES.pending).status)              -- the stream test's cancel
  end)

  it("downloads a completed job again as V2 after a confirmation (checked through the API)", function()
    local r = seen().redownload
    assert.matches("^Download every file of page%-done again as V2%?", r.dialog)
    assert.are.equal("completed", r.states[#r.states])
    local j = job(PAGES.done)
    assert.are.equal(2, j.version)
    assert.are.equal(6, #j.downloadedAssets)
    local v2 = 0
    for _, a in ipairs(r.panel.assets) do if a.version == 2 then v2 = v2 + 1 end end
    assert.are.equal(3, v2)
  end)

  it("retries every failed job of the filtered view, and only those (checked through the API)", function()
    local b = seen().bulk
    assert.matches("^Retry 2 failed downloads %(batch B1%)%?", b.dialog)
    assert.are.equal(2, b.notice.retried)
    assert.are.equal(0, b.notice.refused)
    assert.matches("^Retried 2 of 2 failed downloads%.$", b.notice.text)
    for _, k in ipairs{"failedA", "failedC"} do
      local j = job(PAGES[k])
      assert.are.equal(1, j.retryCount, k)
      assert.are_not.equal("failed", j.status, k)
    end
    local other = job(PAGES.failedB)
    assert.are.equal("failed", other.status)
    assert.are.equal(0, other.retryCount)
  end)

  it("shows a retried job's attempts with their causes, its files and its Notion page", function()
    local p = seen().job
    assert.are.equal(PAGES.failedA, p.page)
    assert.are.equal("1", p.retries)
    assert.are.equal(2, #p.attempts)
    local first, second = p.attempts[1], p.attempts[2]
    assert.are.equal("failed", first.outcome)
    assert.matches("^Attempt 1 · failed", first.title)
    local cause
    for _, e in ipairs(first.events) do if e.kind == "cause" then cause = e.text end end
    assert.matches("^attempt ended refused %(HTTP 403%) by 127%.0%.0%.1:%d+: Request has expired", cause)
    assert.are.equal("completed", second.outcome)
    assert.are.equal("state", second.events[1].kind)
    assert.matches("failed → pending", second.events[1].text, 1, true)
    for _, e in ipairs(first.events) do assert.matches("Z$", e.time) end
    assert.are.equal(1, #p.assets)
    local a = p.assets[1]
    assert.are.equal("video", a.type)
    assert.matches("^video_fail_a_V1%.mp4$", a.cells[1])
    assert.are.equal("1000 B", a.cells[3])
    assert.matches("^%x+$", a.cells[4])
    assert.are.equal(64, #a.cells[4])
    assert.are.equal("/generated-videos/B1/video_fail_a_V1.mp4", a.href)
    assert.are.equal("https://www.notion.so/pagefaila", p.notionHref)
    assert.matches("^synced", p.notion)
  end)

  it("writes a failed job's error for a person, the upstream answer folded under details", function()
    local p = seen().humanError
    assert.are.equal(PAGES.failedB, p.page)
    assert.matches("^refused %(HTTP 403%) by 127%.0%.0%.1:%d+: Request has expired$", p.error)
    assert.is_false(p.errorDetails.open)
    assert.matches('"code": "AccessDenied"', p.errorDetails.text, 1, true)
    assert.matches("HTTP 403 from GET http://", p.errorDetails.text, 1, true)
    assert.are.same({"act-retry"}, p.actions)
    assert.matches("^error reported", p.notion)                    -- its last Notion event
  end)

  it("names the daemons sharing the job store and the jobs each holds, as GET /api/instances does", function()
    local w = seen().wide
    local me = w.apiInstances.instances[1]
    assert.are.equal(1, #w.apiInstances.instances)                 -- SQLite: this daemon alone
    -- the count moves as downloads end between the page's read and the API's
    local held = tonumber(w.instances:match("^1 daemon: " .. me.id:gsub("%p", "%%%0") .. " %(this one%): (%d+) jobs?$"))
    assert(held, w.instances)
    assert.is_true(math.abs(held - me.jobsHeld) <= 3, w.instances)
  end)

  it("is reachable by keyboard: Enter opens a job, Escape closes it and gives the focus back, / searches", function()
    local k = seen().keyboard
    assert.is_true(k.closed)
    assert.are.equal("job-" .. PAGES.failedA, k.focusBack)
    assert.are.equal("panel-close", k.focusInPanel)
    assert.are.equal("f-q", k.slashFocus)
  end)

  it("has no horizontal scroll at 360, 1280 or 1400 px, list, table or job panel, and logs no browser errors", function()
    local o = seen()
    local n = o.narrow
    assert.are.equal(360, n.list.innerWidth)
    assert.is_true(n.list.scrollWidth <= n.list.innerWidth, "list: " .. cjson.encode(n.list))
    assert.is_true(n.panel.scrollWidth <= n.panel.innerWidth, "panel: " .. cjson.encode(n.panel))
    -- wide: neither the page nor the table scrolls sideways, at 1280 and at 1400 px
    for name, wd in pairs{["1280"] = o.wide.widths, ["1400"] = o.wide.widths1400} do
      assert.are.equal(tonumber(name), wd.innerWidth)
      assert.is_true(wd.scrollWidth <= wd.innerWidth, name .. ": " .. cjson.encode(wd))
      assert.is_true(wd.table.scrollWidth <= wd.table.clientWidth, name .. " table: " .. cjson.encode(wd))
      assert.is_true(wd.queue.scrollWidth <= wd.queue.clientWidth, name .. " queue: " .. cjson.encode(wd))
    end
    assert.is_true(n.list.table.scrollWidth <= n.list.table.clientWidth, "narrow table: " .. cjson.encode(n.list))
    assert.are.same({}, n.console, cjson.encode(n.console))
    assert.are.same({}, o.console, cjson.encode(o.console))
    for _, name in ipairs{"dashboard-narrow.png", "dashboard-narrow-job.png", "dashboard-wide.png", "dashboard-job.png"} do
      local png = assert(sim.read(outdir .. "/" .. name), name)
      assert.are.equal("\137PNG\r\n\26\n", png:sub(1, 8))
    end
  end)
end)
