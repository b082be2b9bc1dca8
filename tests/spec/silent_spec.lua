-- Never silent (issue 16): a provider that cannot be reached, a base URL without its API
-- version and a Retry-After on a status poll are each told or honoured, with webhooks or not.
local sim = require "sim"
local daemon = require "daemon"

local function job(d, page)
  local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = page}})
  return type(j) == "table" and j or {}
end

local function enqueue(d, page, video)
  assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = page, soraVideoId = video, batchId = "bs"}})))
end

describe("status polls that fail", function()
  it("a provider on a closed port: the waiting job's error and a warn line name the host and the cause", function()
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = "http://127.0.0.1:1/v1"}}
    enqueue(d, "p-closed", "vid_closed")
    daemon.eventually(function()
      local e = job(d, "p-closed").error
      return type(e) == "string" and e:find("127.0.0.1:1", 1, true)
    end, 10, "the job's error names the host")
    daemon.eventually(function() return job(d, "p-closed").retryCount >= 2 end, 10, "the failed polls counted")
    local j = job(d, "p-closed")
    assert.are.equal("waiting", j.status)
    assert.matches("status poll of 127%.0%.0%.1:1 failed", j.error)
    assert.truthy(d:log():find('level=warn msg="status poll failed; polling again"[^\n]*host=127.0.0.1:1'), d:log())
    d:stop_clean()
  end)

  it("a base URL without /v1 ends naming the URL, not only the video id", function()
    local s = sim.start("--openai-key sk-s")
    s:video{id = "vid_nov1", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    local base = s.openai:gsub("/v1$", "")
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = base}}
    enqueue(d, "p-nov1", "vid_nov1")
    daemon.eventually(function() return job(d, "p-nov1").status == "failed" end, 15, "failed")
    assert.matches("has no API version %(/v1%)", job(d, "p-nov1").error)
    d:stop_clean()
    s:stop()
  end)

  it("a 429 poll is tried again after its Retry-After when webhooks are configured, not a minute later", function()
    local s = sim.start("--openai-key sk-s")
    s:video{id = "vid_429", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = [[^/v1/videos/vid_429$]], kind = "429", retry_after = 1, count = 1}
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE,
      env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai, OPENAI_WEBHOOK_SECRET = "whsec_" .. ("QUJD"):rep(8)}}
    local t0 = assetd.monotonic()
    enqueue(d, "p-429", "vid_429")
    daemon.eventually(function() return job(d, "p-429").status == "completed" end, 10, "completed after the Retry-After")
    assert.is_true(assetd.monotonic() - t0 >= 0.9)
    assert.are.equal(require("cjson").null, job(d, "p-429").error)
    d:stop_clean()
    s:stop()
  end)
end)

describe("missing credentials", function()
  it("--check warns of each, and still says the pipeline is OK", function()
    local path = sim.script('return {}\n')
    local bin = os.getenv("ASSETD_BIN") or "./assetd"
    local out, rc = sim.run("env -u OPENAI_API_KEY -u NOTION_TOKEN " .. bin .. " --check " .. path .. " --data /tmp/assetd-check-silent")
    os.remove(path)
    assert.are.equal(0, rc)
    assert.matches("warning: OPENAI_API_KEY is not set", out)
    assert.matches("warning: NOTION_TOKEN is not set", out)
    local out2 = sim.run("OPENAI_API_KEY=sk-x NOTION_TOKEN=secret_x " .. bin .. " --check " .. sim.script('return {}\n') .. " --data /tmp/assetd-check-silent")
    assert.is_nil(out2:find("warning:", 1, true))
  end)
end)

describe("alerts before the loss", function()
  local function count(s, pat)
    local n = 0
    for _ in s:gmatch(pat) do n = n + 1 end
    return n
  end

  it("stalled fires once when a job makes no progress for alerts.stall_after seconds", function()
    local d = daemon.start{pipeline = [[
return {storage = {root = "{DIR}/root"}, sora = {poll = {interval = 0.2, max = 0.5}}, alerts = {stall_after = 1}}
]], env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = "http://127.0.0.1:1/v1"}}
    local done
    finally(function() if not done then d:stop() end end)
    enqueue(d, "p-stall", "vid_stall")
    daemon.eventually(function() return d:log():find('msg="download stalled"', 1, true) end, 10, "stalled")
    assetd.sleep(2.5)
    local log = d:log()
    assert.are.equal(1, count(log, 'msg="download stalled"'))
    assert.truthy(log:find('level=warn msg="download stalled"[^\n]*reason="status poll of 127.0.0.1:1 failed'), log)
    -- and while it stays stalled, the status summary, its concerns and /metrics say so
    local _, st = d:json("GET", "/api/downloads/status")
    assert.are.equal(1, st.summary.stalled)
    assert.are.equal("p-stall", st.concerns[1].notionPageId)
    assert.matches("status poll of 127.0.0.1:1 failed", st.concerns[1].stalled, 1, true)
    local _, text = d:request("GET", "/metrics")
    assert.truthy(text:find("\nassetd_jobs_stalled 1\n", 1, true), text)
    done = true
    d:stop_clean()
  end)

  it("at_risk fires before the deadline when the observed rate cannot finish in time", function()
    local s = sim.start("--openai-key sk-s")
    s:video{id = "vid_risk", expires_in = 12, sizes = {video = 4 * 1024 * 1024, thumbnail = 100, spritesheet = 100}}
    s:fault{path = [[vid_risk/content\?variant=video$]], kind = "slow", rate = 150000, count = -1}
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai}}
    local done
    finally(function() s:stop(); if not done then d:stop() end end)
    local t0 = assetd.monotonic()
    enqueue(d, "p-risk", "vid_risk")
    daemon.eventually(function() return d:log():find('msg="download at risk of missing its deadline"', 1, true) end, 11, "at risk")
    assert.is_true(assetd.monotonic() - t0 < 11, "before the deadline")
    assert.matches("s after the deadline", d:log():match('msg="download at risk[^\n]*'))
    done = true
    d:stop_clean()
  end)
end)

describe("alerts before the loss, from the transfer itself", function()
  it("stalled fires once for a transfer whose server stops sending after its first bytes", function()
    local s = sim.start("--openai-key sk-s")
    s:video{id = "vid_drip", sizes = {video = 1024 * 1024, thumbnail = 100, spritesheet = 100}}
    s:fault{path = [[vid_drip/content\?variant=video$]], kind = "slow", rate = 0.2, count = -1}   -- a byte every 5 s
    local d = daemon.start{pipeline = [[
return {storage = {root = "{DIR}/root"}, sora = {poll = {interval = 0.2, max = 0.5}}, alerts = {stall_after = 1}}
]], env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai}}
    finally(function() d:stop(); s:stop() end)
    enqueue(d, "p-drip", "vid_drip")
    daemon.eventually(function() return d:log():find('msg="download stalled"', 1, true) end, 10, "stalled")
    assert.are.equal("downloading", job(d, "p-drip").status)
    local _, st = d:json("GET", "/api/downloads/status")
    assert.are.equal(1, st.summary.stalled)
    assert.are.equal("p-drip", st.concerns[1].notionPageId)
  end)

  it("waiting its turn is no stall: jobs queued for a slot or behind the engine's limits are not flagged", function()
    local s = sim.start("--openai-key sk-s")
    local sizes = {video = 1024 * 1024, thumbnail = 100, spritesheet = 100}
    s:video{{id = "vid_q1", sizes = sizes}, {id = "vid_q2", sizes = sizes}, {id = "vid_q3", sizes = sizes}}
    s:fault{path = [[vid_q1/content\?variant=video$]], kind = "slow", rate = 250000, count = 1}   -- about 4 s
    local d = daemon.start{pipeline = [[
return {storage = {root = "{DIR}/root"}, sora = {poll = {interval = 0.2, max = 0.5}}, alerts = {stall_after = 1},
        limits = {max_active = 1, max_jobs = 2}}
]], env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai}}
    finally(function() d:stop(); s:stop() end)
    enqueue(d, "p-q1", "vid_q1")
    daemon.eventually(function() return job(d, "p-q1").status == "downloading" end, 10, "the first one downloading")
    enqueue(d, "p-q2", "vid_q2")      -- holds the second slot, its transfers behind max_active
    enqueue(d, "p-q3", "vid_q3")      -- waits for a slot
    for _, p in ipairs{"p-q1", "p-q2", "p-q3"} do
      daemon.eventually(function() return job(d, p).status == "completed" end, 30, p .. " completed")
    end
    assert.is_nil(d:log():find('msg="download stalled"', 1, true), d:log())
  end)

  it("at_risk fires when the daemon's own bandwidth cap cannot finish before the deadline", function()
    local s = sim.start("--openai-key sk-s")
    s:video{id = "vid_cap", expires_in = 12, sizes = {video = 8 * 1024 * 1024, thumbnail = 100, spritesheet = 100}}
    local d = daemon.start{pipeline = [[
return {storage = {root = "{DIR}/root"}, sora = {poll = {interval = 0.2, max = 0.5}},
        limits = {max_bytes_per_sec = 200000}}
]], env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai}}
    finally(function() d:stop(); s:stop() end)
    local t0 = assetd.monotonic()
    enqueue(d, "p-cap", "vid_cap")
    daemon.eventually(function() return d:log():find('msg="download at risk of missing its deadline"', 1, true) end, 11, "at risk")
    assert.is_true(assetd.monotonic() - t0 < 11, "before the deadline")
    local _, st = d:json("GET", "/api/downloads/status")
    assert.are.equal(1, st.summary.atRisk)
  end)
end)

describe("transfer retries", function()
  it("are each a warn line naming the host, the cause and the next try, and counted in retryCount and attempts", function()
    local s = sim.start("--openai-key sk-s")
    s:video{id = "vid_r503", sizes = {video = 20000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = [[vid_r503/content\?variant=video$]], kind = "status", status = 503, count = 3}
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai}}
    finally(function() d:stop(); s:stop() end)
    enqueue(d, "p-r503", "vid_r503")
    daemon.eventually(function() return job(d, "p-r503").status == "completed" end, 20, "completed")
    local j = job(d, "p-r503")
    assert.are.equal(3, j.retryCount)
    local tries = {}
    for _, a in ipairs(j.downloadedAssets) do tries[a.type] = a.attempts end
    assert.are.same({video = 4, thumbnail = 1, spritesheet = 1}, tries)
    assert.are.equal(4, j.attempts.video)
    local host = s.openai:match("^http://([^/]+)")
    local lines = 0
    for line in d:log():gmatch("[^\n]+") do
      if line:find('msg="transfer failed; trying again"', 1, true) then
        lines = lines + 1
        assert.truthy(line:find("host=" .. host, 1, true), line)
        assert.truthy(line:find('cause="http 503"', 1, true), line)
        assert.truthy(line:find("retry_in=", 1, true), line)
      end
    end
    assert.are.equal(3, lines)
  end)

  it("to a closed port say connect, and to a name that does not resolve say dns", function()
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s"}}
    finally(function() d:stop() end)
    local expires = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(assetd.now()) + 600)
    for page, url in pairs{["p-conn"] = "http://127.0.0.1:9/v.mp4", ["p-dns"] = "http://no-such-host.invalid/v.mp4"} do
      assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = page, soraVideoId = page, batchId = "bc",
        provider = "urls", expiresAt = expires, assets = {{variant = "video", url = url}}}})))
    end
    daemon.eventually(function()
      local log = d:log()
      return log:find('msg="transfer failed; trying again"[^\n]*cause=connect[^\n]*host=127.0.0.1:9')
         and log:find('msg="transfer failed; trying again"[^\n]*cause=dns[^\n]*host=no%-such%-host%.invalid')
    end, 10, "connect and dns causes")
    assert.is_true(job(d, "p-conn").retryCount >= 1)
  end)
end)

describe("Notion failures are visible", function()
  it("a 400 from Notion: a warn line, the job's notion state failed with the message; no token: skipped", function()
    local s = sim.start("--openai-key sk-s --notion-token secret_s")
    s:video{{id = "vid_n400", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}},
            {id = "vid_nskip", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}}
    s:fault{path = [[^/notion/v1/pages/]], method = "PATCH", kind = "status", status = 400, count = -1,
            body = [[{"object":"error","status":400,"code":"validation_error","message":"Video URL is not a property that exists."}]]}
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai,
                                                                  NOTION_TOKEN = "secret_s", NOTION_BASE_URL = s.notion}}
    local d2 = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai}}
    finally(function() d:stop(); d2:stop(); s:stop() end)
    enqueue(d, "p-n400", "vid_n400")
    daemon.eventually(function() return job(d, "p-n400").notion == "failed" end, 15, "notion failed")
    assert.are.equal("completed", job(d, "p-n400").status)
    assert.truthy(d:log():find('level=warn msg="Notion page not updated"[^\n]*is not a property that exists'), d:log())
    assert.matches("is not a property that exists", job(d, "p-n400").notionError, 1, true)
    -- the REPL's job view names the Notion state and its message
    local f = assert(io.open(d.dir .. "/repl.in", "w"))
    f:write('job("p-n400")\n')
    f:close()
    local out = sim.run(string.format("%s attach --data %s/data < %s/repl.in", daemon.bin, d.dir, d.dir))
    assert.truthy(out:find("notion: failed: Notion 400 (validation_error): Video URL is not a property that exists.", 1, true), out)
    enqueue(d2, "p-nskip", "vid_nskip")
    daemon.eventually(function() return job(d2, "p-nskip").status == "completed" end, 15, "completed")
    assert.are.equal("skipped", job(d2, "p-nskip").notion)
    assert.truthy(d2:log():find("NOTION_TOKEN is not set", 1, true))
  end)
end)

describe("Notion that does not answer or is overloaded", function()
  it("a Notion on a closed port: each failed try is a warn line naming the host and connect, the job shows it while pending", function()
    local s = sim.start("--openai-key sk-s")
    s:video{id = "vid_ndead", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai,
                                                                  NOTION_TOKEN = "secret_nd", NOTION_BASE_URL = "http://127.0.0.1:1/v1"}}
    finally(function() d:stop(); s:stop() end)
    enqueue(d, "p-ndead", "vid_ndead")
    -- the client's first retry comes after half a second: told then, not when the step gives up
    daemon.eventually(function()
      local e = job(d, "p-ndead").notionError
      return type(e) == "string" and e ~= ""
    end, 5, "the job's latest Notion failure")
    local j = job(d, "p-ndead")
    assert.are.equal("completed", j.status)
    assert.are.equal("pending", j.notion)
    assert.is_true(j.retryCount >= 1, "the Notion retry counted")
    local line = d:log():match('level=warn msg="Notion update failed; trying again"[^\n]*')
    assert(line, d:log())
    assert.truthy(line:find("host=127.0.0.1:1", 1, true), line)
    assert.truthy(line:find("cause=connect", 1, true), line)
    assert.is_nil(d:log():find("secret_nd", 1, true))
  end)

  it("a 529 with Retry-After holds the update for it, then the page is synced", function()
    local s = sim.start("--openai-key sk-s --notion-token secret_s")
    s:video{id = "vid_n529", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = [[^/notion/v1/pages/]], method = "PATCH", kind = "status", status = 529, count = 1,
            headers = {["Retry-After"] = "2"}}
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai,
                                                                  NOTION_TOKEN = "secret_s", NOTION_BASE_URL = s.notion}}
    finally(function() d:stop(); s:stop() end)
    enqueue(d, "p-n529", "vid_n529")
    daemon.eventually(function() return job(d, "p-n529").notion == "synced" end, 15, "synced")
    local line = d:log():match('level=warn msg="Notion update failed; trying again"[^\n]*')
    assert(line, d:log())
    assert.matches("cause=\"http 529\"", line)
    assert.matches('retry_in="2%.0 s"', line)        -- Retry-After, not the client's 0.5 s backoff
  end)

  it("a Notion that refuses the update calls notion.on_error with the reason", function()
    local s = sim.start("--openai-key sk-s --notion-token secret_s")
    s:video{id = "vid_noe", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = [[^/notion/v1/pages/]], method = "PATCH", kind = "status", status = 400, count = 1,
            body = [[{"object":"error","status":400,"code":"validation_error","message":"Video URL is not a property that exists."}]]}
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-s", OPENAI_BASE_URL = s.openai,
                                                                  NOTION_TOKEN = "secret_s", NOTION_BASE_URL = s.notion}}
    finally(function() d:stop(); s:stop() end)
    enqueue(d, "p-noe", "vid_noe")
    daemon.eventually(function() return job(d, "p-noe").notion == "failed" end, 15, "notion failed")
    -- the error went to the page through on_error: a second PATCH, which the fault let through
    daemon.eventually(function()
      local _, evs = d:json("POST", "/api/downloads/status", {body = {notionPageId = "p-noe", events = true}})
      for _, e in ipairs(type(evs) == "table" and evs.events or {}) do
        if e.kind == "notion" and e.detail == "error reported" then return true end
      end
    end, 10, "the error reported to the page")
  end)
end)

describe("--listen", function()
  local bin = os.getenv("ASSETD_BIN") or "./assetd"
  local function start(listen)
    local dir = sim.tmpdir()
    local path = dir .. "/p.lua"
    local f = assert(io.open(path, "w"))
    f:write('return {storage = {root = "' .. dir .. '/root"}}\n')
    f:close()
    -- the daemon is stopped by timeout when it does start; `assetd: ...` is its start-up error
    local out, rc = sim.run("timeout --preserve-status -s TERM 2 " .. bin .. " " .. path .. " --listen " .. listen .. " --data " .. dir .. "/data")
    os.execute("rm -rf " .. dir)
    return out, rc
  end

  it("takes localhost", function()
    local out, rc = start("localhost:0")
    assert.are.equal(0, rc, out)
    assert.matches('msg="http listening" addr=localhost:%d+', out)
  end)

  it("names what is wrong with an address it cannot take, without a traceback", function()
    local cases = {
      ["127.0.0.1:99999"] = "the port '99999' is not a number from 0 to 65535",
      ["example.com:80"] = "the host is not an IP address or localhost",
      ["8787"] = "is not HOST:PORT",
    }
    for listen, msg in pairs(cases) do
      local out, rc = start(listen)
      assert.are.equal(1, rc, out)
      assert.truthy(out:find(msg, 1, true), out)
      assert.is_nil(out:find("stack traceback", 1, true), out)
    end
  end)
end)
