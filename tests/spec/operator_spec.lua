-- The API additions the dashboard's operator view stands on (issue 19), as a client sees them:
-- a real assetd and the simulator, curl in front. List filters and keyset paging, the job's
-- history in POST /api/downloads/status, POST /api/downloads/cancel, and the Server-Sent
-- Events of GET /api/events.
local sim = require "sim"
local daemon = require "daemon"
local cjson = require "cjson"

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

local function env(s, extra)
  local e = {OPENAI_API_KEY = "sk-op", OPENAI_BASE_URL = s.openai, NOTION_TOKEN = "secret_op", NOTION_BASE_URL = s.notion}
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

-- curl -N on PATH in the background: {file = its output so far, stop = fn}
local function listen(d, path, headers)
  local dir = sim.tmpdir()
  local h = {}
  for k, v in pairs(headers or {}) do h[#h + 1] = "-H " .. sim.shq(k .. ": " .. v) end
  local pid = sim.run(string.format("curl -sN %s %s > %s/out 2>&1 & echo $!", table.concat(h, " "),
    sim.shq(d.url .. path), dir)):match("%d+")
  return {text = function() return sim.read(dir .. "/out") or "" end,
          stop = function() os.execute("kill " .. pid .. " 2>/dev/null; rm -rf " .. dir) end}
end

-- The events in an SSE text: {{event =, data = decoded}}
local function frames(text)
  local out = {}
  for block in text:gmatch("(.-)\n\n") do
    local ev, data = block:match("event: (%w+)\ndata: (.*)")
    if ev then out[#out + 1] = {event = ev, data = cjson.decode(data)} end
  end
  return out
end

describe("operator API", function()
  local s, d
  local function post(path, body) return d:json("POST", path, {body = body}) end
  local function list(query)
    local status, page = d:json("GET", "/api/downloads?" .. query)
    assert(status == 200, "GET /api/downloads?" .. query .. ": " .. tostring(status) .. " " .. cjson.encode(page))
    return page
  end
  local function pages(list_of) local t = {} for _, j in ipairs(list_of) do t[#t + 1] = j.notionPageId end table.sort(t) return t end

  setup(function()
    s = sim.start("--openai-key sk-op --notion-token secret_op")
    s:video{{id = "video_ok", sizes = {video = 20000, thumbnail = 300, spritesheet = 500}}}
    d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = env(s)}
    local now = assetd.now()
    -- two failed (one 403 each, not retried), in two batches; one completed; one slow download
    s:fault{{kind = "status", path = "/files/f1", status = 403, count = 1},
            {kind = "status", path = "/files/f2", status = 403, count = 1},
            {kind = "slow", path = "/files/slow", rate = 20000, count = -1}}
    local function urls(page, video, batch, file, expires)
      local status = post("/api/downloads", {notionPageId = page, soraVideoId = video, batchId = batch, provider = "urls",
        expiresAt = iso(expires or now + 3000), assets = {{variant = "video", url = s.url .. "/files/" .. file}}})
      assert(status == 202, page .. ": " .. tostring(status))
    end
    urls("1f2e3d4c-aaaa-bbbb-cccc-000000000001", "video_f1", "B1", "f1.mp4?size=1000")
    urls("page-f2", "video_f2", "B2", "f2.mp4?size=1000")
    urls("page-slow", "video_slow", "B1", "slow.mp4?size=2000000", now + 300)      -- due in 5 min: at risk
    assert(post("/api/downloads", {notionPageId = "page-ok", soraVideoId = "video_ok", batchId = "B1"}) == 202)
    for page, want in pairs{["1f2e3d4c-aaaa-bbbb-cccc-000000000001"] = "failed", ["page-f2"] = "failed",
                            ["page-ok"] = "completed", ["page-slow"] = "downloading"} do
      daemon.eventually(function() return d:job_status(page) == want end, 15, page .. " " .. want)
    end
  end)
  teardown(function()
    s:stop()
    d:stop_clean()
  end)

  it("GET /api/downloads filters by status, batchId, provider, q and atRisk", function()
    assert.are.same({"1f2e3d4c-aaaa-bbbb-cccc-000000000001", "page-f2"}, pages(list("status=failed").jobs))
    assert.are.same({"1f2e3d4c-aaaa-bbbb-cccc-000000000001"}, pages(list("status=failed&batchId=B1").jobs))
    assert.are.same({"page-ok"}, pages(list("provider=openai").jobs))
    assert.are.same({"1f2e3d4c-aaaa-bbbb-cccc-000000000001", "page-f2", "page-slow"}, pages(list("provider=urls").jobs))
    -- q: a part of the page or video id, any case, with or without Notion's dashes
    assert.are.same({"page-slow"}, pages(list("q=SLOW").jobs))
    assert.are.same({"1f2e3d4c-aaaa-bbbb-cccc-000000000001"}, pages(list("q=1f2e3d4caaaa").jobs))
    assert.are.same({"1f2e3d4c-aaaa-bbbb-cccc-000000000001"}, pages(list("q=video_f1").jobs))
    assert.are.same({"page-f2"}, pages(list("q=Page-F2&status=failed&provider=urls").jobs))
    -- at risk: unfinished and due within warnBefore (10 min)
    assert.are.same({"page-slow"}, pages(list("atRisk=1").jobs))
    assert.are.same({}, list("q=nothing-like-it").jobs)
  end)

  it("pages through a filtered list with its cursor, newest first, each job once", function()
    local seen, cursor, n = {}, nil, 0
    repeat
      local page = list("provider=urls&order=desc&limit=1" .. (cursor and "&cursor=" .. cursor or ""))
      for _, j in ipairs(page.jobs) do seen[#seen + 1] = j.id end
      cursor = page.nextCursor ~= cjson.null and page.nextCursor or nil
      n = n + 1
    until not cursor or n > 10
    assert.are.equal(3, #seen)
    assert.is_true(seen[1] > seen[2] and seen[2] > seen[3])
  end)

  it("refuses a bad filter with 400 naming it", function()
    for query, field in pairs{["provider=nope"] = "provider", ["q=a%20b"] = "q", ["atRisk=maybe"] = "atRisk"} do
      local status, body = d:json("GET", "/api/downloads?" .. query)
      assert.are.equal(400, status, query)
      assert.matches("^" .. field .. ": ", body.error.message)
    end
  end)

  it("POST /api/downloads/status with events: a retried job's attempts and their causes", function()
    local page = "page-f2"
    local status, before = post("/api/downloads/status", {notionPageId = page})
    assert.are.equal(200, status)
    assert.is_nil(before.events)                                 -- only when asked
    assert.are.equal(200, (post("/api/downloads/retry", {notionPageId = page})))
    daemon.eventually(function() return d:job_status(page) == "completed" end, 15, page .. " completed")
    local _, j = post("/api/downloads/status", {notionPageId = page, events = true})
    assert.are.equal(1, j.retryCount)
    assert.are.equal(0, j.eventsOmitted)
    local kinds, cause = {}, nil
    for _, e in ipairs(j.events) do
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT.*Z$", e.at)
      kinds[#kinds + 1] = e.kind .. (e.kind == "state" and " " .. e.detail or "")
      if e.kind == "cause" then cause = e.detail end
    end
    assert.matches("403", cause)                                 -- why the first attempt ended, kept
    local story = table.concat(kinds, ", ")
    assert.matches("^created, .*state downloading %-> failed, cause, .*state failed %-> pending, .*state downloading %-> completed", story)
  end)

  it("POST /api/downloads/cancel stops an unfinished job: 200 with it, then 409; 404 unknown", function()
    local status, j = post("/api/downloads/cancel", {notionPageId = "page-slow", soraVideoId = "video_slow"})
    assert.are.equal(200, status, cjson.encode(j))
    assert.are.equal("failed", j.status)
    assert.are.equal("canceled by operator", j.error)
    assert.are.equal("failed", d:job_status("page-slow"))
    local again, e = post("/api/downloads/cancel", {notionPageId = "page-slow"})
    assert.are.equal(409, again)
    assert.are.equal("not_unfinished", e.error.code)
    assert.are.equal(404, (post("/api/downloads/cancel", {notionPageId = "page-none"})))
    assert.are.equal(400, (post("/api/downloads/cancel", {notionPageId = "bad id"})))
  end)

  it("GET /api/events: a summary at once, then each job change within a second, and progress", function()
    local sse = listen(d, "/api/events")
    daemon.eventually(function() return #frames(sse.text()) >= 1 end, 5, "the first summary")
    local first = frames(sse.text())[1]
    assert.are.equal("summary", first.event)
    assert.is_number(first.data.summary.failed)
    assert.matches("^retry: 2000\n\n", sse.text())
    -- a new slow job: its creation and every move reach the stream as they happen
    local t0 = assetd.monotonic()
    assert.are.equal(202, (post("/api/downloads", {notionPageId = "page-live", soraVideoId = "video_live", batchId = "B3",
      provider = "urls", expiresAt = iso(assetd.now() + 3000),
      assets = {{variant = "video", url = s.url .. "/files/slow-live.mp4?size=2000000"}}})))
    local seen = daemon.eventually(function()
      for _, f in ipairs(frames(sse.text())) do
        if f.event == "job" and f.data.notionPageId == "page-live" then return f end
      end
    end, 2, "a job event for page-live")
    assert.is_true(assetd.monotonic() - t0 < 1, "the change took " .. (assetd.monotonic() - t0) .. " s")
    assert.are.equal("B3", seen.data.batchId)
    local moving = daemon.eventually(function()
      for _, f in ipairs(frames(sse.text())) do
        if f.event == "progress" then
          for _, p in ipairs(f.data.jobs) do
            if p.soraVideoId == "video_live" and p.bytesPerSecond and p.bytesPerSecond > 0 then return p end
          end
        end
      end
    end, 8, "progress of video_live with a rate")
    assert.are.equal(2000000, moving.total)
    assert.is_true(moving.bytesPerSecond > 5000 and moving.bytesPerSecond < 60000, tostring(moving.bytesPerSecond))
    -- the job's JSON carries the rate too while a stream is open
    local _, j = post("/api/downloads/status", {notionPageId = "page-live"})
    assert.is_number(j.progress.bytesPerSecond)
    -- a periodic summary follows
    daemon.eventually(function()
      local n = 0
      for _, f in ipairs(frames(sse.text())) do if f.event == "summary" then n = n + 1 end end
      return n >= 2
    end, 8, "a second summary")
    assert.are.equal(200, (post("/api/downloads/cancel", {notionPageId = "page-live"})))
    daemon.eventually(function()
      for _, f in ipairs(frames(sse.text())) do
        if f.event == "job" and f.data.notionPageId == "page-live" and f.data.status == "failed" then return true end
      end
    end, 2, "the cancel on the stream")
    sse.stop()
  end)
end)

describe("operator API with ASSETD_API_TOKEN", function()
  local s, d
  local TOKEN = "op-token-0123456789"
  setup(function()
    s = sim.start("--openai-key sk-op")
    s:fault{{kind = "slow", path = "/files/slow", rate = 20000, count = -1}}
    d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = env(s, {ASSETD_API_TOKEN = TOKEN})}
  end)
  teardown(function()
    s:stop()
    d:stop_clean()
  end)

  it("wants the token on the stream and on cancel, and works with it", function()
    assert.are.equal(401, (d:request("GET", "/api/events")))
    assert.are.equal(401, (d:json("POST", "/api/downloads/cancel", {body = {notionPageId = "p"}})))
    local auth = {Authorization = "Bearer " .. TOKEN}
    local sse = listen(d, "/api/events", auth)
    assert.are.equal(202, (d:json("POST", "/api/downloads", {headers = auth, body = {notionPageId = "page-t",
      soraVideoId = "video_t", batchId = "T", provider = "urls", expiresAt = iso(assetd.now() + 3000),
      assets = {{variant = "video", url = s.url .. "/files/slow-t.mp4?size=2000000"}}}})))
    daemon.eventually(function() return d:job_status("page-t", auth) == "downloading" end, 10, "page-t downloading")
    local status, j = d:json("POST", "/api/downloads/cancel", {headers = auth, body = {notionPageId = "page-t"}})
    assert.are.equal(200, status)
    assert.are.equal("failed", j.status)
    daemon.eventually(function()
      for _, f in ipairs(frames(sse.text())) do
        if f.event == "job" and f.data.notionPageId == "page-t" and f.data.status == "failed" then return true end
      end
    end, 3, "the cancel on the stream")
    -- the token never travels in the stream
    assert.is_nil(sse.text():find(TOKEN, 1, true))
    sse.stop()
  end)
end)

-- What waits behind the limits (GET /api/queue) and a deadline passed mid-download (counted in
-- the status summary, listed, and a list filter), with the token: one download slot, a slow
-- job in it whose deadline passes while it streams, and two jobs waiting for the slot.
describe("operator API: the queue and a deadline passed mid-download", function()
  local s, d
  local TOKEN = "queue-token-0123456789"
  local AUTH = {Authorization = "Bearer " .. TOKEN}
  local t0, due
  local function get(path)
    local status, body = d:json("GET", path, {headers = AUTH})
    assert(status == 200, path .. ": " .. tostring(status) .. " " .. cjson.encode(body))
    return body
  end
  local function enqueue(page, video, file, expires)
    local status, j = d:json("POST", "/api/downloads", {headers = AUTH, body = {notionPageId = page, soraVideoId = video,
      batchId = "Q", provider = "urls", expiresAt = iso(expires), assets = {{variant = "video", url = s.url .. "/files/" .. file}}}})
    assert(status == 202, page .. ": " .. tostring(status) .. " " .. cjson.encode(j))
  end

  setup(function()
    s = sim.start("--openai-key sk-op")
    s:fault{{kind = "slow", path = "/files/slow", rate = 20000, count = -1}}
    d = daemon.start{pipeline = daemon.SIM_PIPELINE:gsub("providers =", "limits = {max_jobs = 1}, providers ="),
                     env = env(s, {ASSETD_API_TOKEN = TOKEN})}
    t0 = assetd.now()
    due = math.floor(t0) + 4                        -- whole seconds, as iso() sends it
    enqueue("page-run", "video_run", "slow-run.mp4?size=4000000", due)
    daemon.eventually(function() return d:job_status("page-run", AUTH) == "downloading" end, 10, "page-run downloading")
    -- the later one is due first: the slot goes by deadline, not by arrival
    enqueue("page-second", "video_second", "q2.mp4?size=1000", t0 + 3000)
    enqueue("page-first", "video_first", "q1.mp4?size=1000", t0 + 2000)
    daemon.eventually(function() return d:job_status("page-first", AUTH) == "pending" end, 5, "page-first pending")
  end)
  teardown(function()
    s:stop()
    d:stop_clean()
  end)

  it("GET /api/queue lists the jobs waiting for a slot in the order they will start, and the running one", function()
    assert.are.equal(401, (d:request("GET", "/api/queue")))
    local q = daemon.eventually(function()
      local v = get("/api/queue")
      return #v.queued == 2 and #v.running == 1 and v.running[1].bytes > 0 and v
    end, 5, "two queued and one running")
    assert.are.equal(1, q.limits.maxJobs)
    assert.are.same({used = 1, free = 0}, q.slots)
    assert.are.equal(2, q.queuedTotal)
    assert.is_false(q.truncated)
    local first, second = q.queued[1], q.queued[2]
    assert.are.same({"page-first", 1, "max_jobs", "pending", "video_first", "Q"},
                    {first.notionPageId, first.position, first.heldBy, first.status, first.soraVideoId, first.batchId})
    assert.are.same({"page-second", 2, "max_jobs"}, {second.notionPageId, second.position, second.heldBy})
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT.*Z$", first.expiresAt)
    local run = q.running[1]
    assert.are.equal("page-run", run.notionPageId)
    assert.are.equal("downloading", run.status)
    assert.are.equal(4000000, run.total)
    assert.is_true(run.bytes > 0 and run.bytes < run.total, tostring(run.bytes))
    -- capped by limit
    local one = get("/api/queue?limit=1")
    assert.are.equal(1, #one.queued)
    assert.are.equal("page-first", one.queued[1].notionPageId)
    assert.is_true(one.truncated)
    assert.are.equal(2, one.queuedTotal)
    assert.are.equal(400, (d:json("GET", "/api/queue?limit=0", {headers = AUTH})))
  end)

  it("counts, lists and filters a job whose deadline passed while it downloads", function()
    local before = get("/api/downloads/status")
    if assetd.now() < due then
      assert.are.equal(0, before.summary.deadlinePassed)
      assert.are.equal(0, before.deadlinePassed)
    end
    while assetd.now() < due + 0.5 do assetd.sleep(0.1) end
    assert.are.equal("downloading", d:job_status("page-run", AUTH))  -- a streaming transfer goes on
    local st = get("/api/downloads/status")
    assert.are.equal(1, st.summary.deadlinePassed)
    assert.are.equal(1, st.deadlinePassed)
    assert.are.equal(1, #st.deadlinePassedDownloads)
    local p = st.deadlinePassedDownloads[1]
    assert.are.same({"page-run", "video_run", "downloading", iso(due)},
                    {p.notionPageId, p.soraVideoId, p.status, (p.expiresAt:gsub("%.000Z$", "Z"))})
    assert.are.equal(0, p.minutesPast)
    -- not among the expiring (those are still due), and still at risk
    for _, e in ipairs(st.expiringDownloads) do assert.are_not.equal("page-run", e.notionPageId) end
    local function pages(query)
      local out = {}
      for _, j in ipairs(get("/api/downloads?" .. query).jobs) do out[#out + 1] = j.notionPageId end
      table.sort(out)
      return out
    end
    assert.are.same({"page-run"}, pages("deadlinePassed=1"))
    assert.are.same({"page-run"}, pages("atRisk=1"))                -- at risk includes a passed deadline
    local status, body = d:json("GET", "/api/downloads?deadlinePassed=maybe", {headers = AUTH})
    assert.are.equal(400, status)
    assert.matches("^deadlinePassed: ", body.error.message)
  end)
end)

-- A job holding a download slot whose transfer waits in the engine (limits.max_active = 1) is
-- queued too, held by `transfers`, ahead of the jobs waiting for a slot.
describe("operator API: the queue behind the engine's transfer limit", function()
  local s, d
  setup(function()
    s = sim.start("--openai-key sk-op")
    s:fault{{kind = "slow", path = "/files/slow", rate = 20000, count = -1}}
    d = daemon.start{pipeline = daemon.SIM_PIPELINE:gsub("providers =", "limits = {max_jobs = 2, max_active = 1}, providers ="),
                     env = env(s)}
    local now = assetd.now()
    local function enqueue(page, expires)
      assert(d:json("POST", "/api/downloads", {body = {notionPageId = page, soraVideoId = "video_" .. page, batchId = "T",
        provider = "urls", expiresAt = iso(expires), assets = {{variant = "video", url = s.url .. "/files/slow-" .. page .. ".mp4?size=4000000"}}}}) == 202)
    end
    enqueue("first", now + 1000)                  -- runs
    daemon.eventually(function() return d:job_status("first") == "downloading" end, 10, "first downloading")
    enqueue("second", now + 2000)                 -- a slot, but its transfer waits for the engine
    daemon.eventually(function() return d:job_status("second") == "downloading" end, 10, "second downloading")
    enqueue("third", now + 1500)                  -- no slot: waits for one
    daemon.eventually(function() return d:job_status("third") == "pending" end, 10, "third pending")
  end)
  teardown(function()
    s:stop()
    d:stop_clean()
  end)

  it("lists the transfer held by the engine first, then the job waiting for a slot", function()
    local q = daemon.eventually(function()
      local status, v = d:json("GET", "/api/queue")
      return status == 200 and #v.queued == 2 and v
    end, 5, "two queued")
    assert.are.same({running = 1, queued = 1}, q.transfers)
    assert.are.equal(1, #q.running)
    assert.are.equal("first", q.running[1].notionPageId)
    local got = {}
    for i, e in ipairs(q.queued) do got[i] = {e.notionPageId, e.status, e.heldBy, e.position} end
    assert.are.same({{"second", "downloading", "transfers", 1}, {"third", "pending", "max_jobs", 2}}, got)
    assert.are.equal(2, q.queuedTotal)
  end)
end)
