-- The daemon on a PostgreSQL job store (issue 18): selected by --database, ASSETD_DATABASE_URL or
-- database.url; jobs run, survive a restart and are seen in the database; the password never
-- shows. A real PostgreSQL (tests/lib/pg.lua) and the simulator, curl in front.
local sim = require "sim"
local daemon = require "daemon"
local pglib = require "pg"

local function env(s, extra)
  local e = {OPENAI_API_KEY = "sk-pg", OPENAI_BASE_URL = s.openai, NOTION_TOKEN = "secret_pg", NOTION_BASE_URL = s.notion}
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

describe("a daemon on PostgreSQL", function()
  local s, pg
  setup(function()
    pg = pglib.start()
    s = sim.start("--openai-key sk-pg --notion-token secret_pg")
    s:video{{id = "video_p1", sizes = {video = 200000, thumbnail = 3000, spritesheet = 5000}},
            {id = "video_p2", sizes = {video = 100000, thumbnail = 3000, spritesheet = 5000}}}
  end)
  teardown(function()
    s:stop()
    pg:stop()
  end)

  it("runs a job to completion with the store in the database, and keeps it across a restart", function()
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = env(s), args = "--database " .. sim.shq(pg.url)}
    local status = d:json("POST", "/api/downloads", {body = {notionPageId = "page-p1", soraVideoId = "video_p1", batchId = "pgb"}})
    assert.are.equal(202, status)
    daemon.eventually(function() return d:job_status("page-p1") == "completed" end, 30, "the job completed")
    assert.are.equal("completed", pg:psql("SELECT state FROM jobs WHERE page_id = 'page-p1'"):match("%a+"))
    assert.are.equal("3", pg:psql("SELECT count(*) FROM assets a JOIN jobs j ON j.id = a.job_id WHERE j.page_id = 'page-p1'"):match("%d+"))
    local _, job = d:json("POST", "/api/downloads/status", {body = {notionPageId = "page-p1"}})
    assert.are.equal(3, #job.downloadedAssets)
    for _, a in ipairs(job.downloadedAssets) do
      assert.are.equal(a.sha256, sim.sha256_file(a.filePath))
    end
    local _, metrics = d:request("GET", "/metrics")
    assert.is_true(tonumber(metrics:match("assetd_database_request_duration_seconds_count (%d+)")) > 10, metrics)
    assert.is_true(tonumber(metrics:match('assetd_cluster_claims_total{how="direct"} (%d+)')) >= 1)
    local _, st = d:json("GET", "/api/downloads/status")
    assert.are.equal(1, st.summary.completed)
    local _, health = d:json("GET", "/healthz")
    assert.are.equal("ok", health.status)
    local dir = d.dir
    d:kill9()
    -- the same store from ASSETD_DATABASE_URL, a new data directory: the job is there
    local d2 = daemon.start{pipeline = daemon.SIM_PIPELINE, env = env(s, {ASSETD_DATABASE_URL = pg.url})}
    assert.are.equal("completed", d2:job_status("page-p1"))
    d2:stop_clean()
    os.execute("rm -rf " .. dir)
  end)

  it("names the store at --check without its password, and refuses a URL of another kind", function()
    local pipeline = sim.script("return {database = {url = 'postgresql://assetd:hunter2222@/assetd?host=" .. pg.dir .. "'}}")
    local out, rc = sim.run(daemon.bin .. " --check " .. pipeline)
    assert.are.equal(0, rc, out)
    assert.matches("job store%s+PostgreSQL postgresql://%[redacted%]@/assetd", out)
    assert.is_nil(out:find("hunter2222", 1, true))
    out, rc = sim.run(daemon.bin .. " " .. pipeline .. " --listen 127.0.0.1:0 --database mysql://x/y --data " .. sim.tmpdir())
    assert.are.equal(1, rc)
    assert.matches("not a postgres:// or postgresql:// URL", out)
    assert.is_nil(out:find("stack traceback", 1, true))
  end)

  it("exits 1 naming the store when the database cannot be reached, without the password", function()
    local out, rc = sim.run("ASSETD_DATABASE_URL=" .. sim.shq("postgresql://assetd:hunter2222@/assetd?host=" .. pg.dir .. "/gone&connect_timeout=2") ..
      " " .. daemon.bin .. " " .. sim.script("return {}") .. " --listen 127.0.0.1:0 --data " .. sim.tmpdir())
    assert.are.equal(1, rc)
    assert.matches("job store PostgreSQL", out)
    assert.is_nil(out:find("hunter2222", 1, true), out)
    assert.is_nil(out:find("stack traceback", 1, true), out)
  end)
end)

-- Three daemons share a batch; one is killed mid-batch. Each daemon has its own storage root,
-- as daemons on different machines would; the database says who held what and when.
describe("three daemons on one PostgreSQL", function()
  local s, pg, ds = nil, nil, {}
  local N, LEASE = 200, 3
  setup(function()
    pg = pglib.start()
    s = sim.start("--openai-key sk-pg --notion-token secret_pg")
    local videos = {}
    for i = 1, N do videos[i] = {id = ("video_c%03d"):format(i), sizes = {video = 150000, thumbnail = 2000, spritesheet = 3000}} end
    s:video(videos)
    -- every video body trickles (about 1 s each), so the batch is still running at the kill
    s:fault{{kind = "slow", path = "variant=video", rate = 150000, count = 10 * N}}
  end)
  teardown(function()
    for _, d in pairs(ds) do pcall(d.stop, d) end
    s:stop()
    pg:stop()
  end)

  local function pipeline(alerts_file)
    return [[
return {
  storage = {root = "{DIR}/root", public_base_url = "/generated-videos"},
  sora = {poll = {interval = 0.2, max = 0.5}, retry = {base = 0.2, cap = 0.5}},
  database = {lease = ]] .. LEASE .. [[},
  limits = {max_active = 6, max_jobs = 12},
  alerts = {completed = function(job)
    local f = assert(io.open("]] .. alerts_file .. [[", "a"))
    f:write(job.notionPageId, "\n")
    f:close()
  end},
}]]
  end

  it("stores every asset exactly once, never lets two daemons hold a job, rescues a killed one's jobs within a lease, and fires each alert once", function()
    local alerts_file = sim.tmpdir() .. "/alerts"
    for i = 1, 3 do
      ds[i] = daemon.start{pipeline = pipeline(alerts_file), env = env(s, {ASSETD_DATABASE_URL = pg.url, ASSETD_INSTANCE = "d" .. i})}
    end
    local now = assetd.now()
    for i = 1, N do
      local d = ds[(i % 3) + 1]                    -- enqueued through every daemon's API
      local st = d:json("POST", "/api/downloads", {body = {notionPageId = ("page-c%03d"):format(i),
        soraVideoId = ("video_c%03d"):format(i), batchId = "cluster", completedAt = now - 5, expiresAt = now + 3600}})
      assert.are.equal(202, st)
    end
    local function completed() return tonumber(pg:psql("SELECT count(*) FROM jobs WHERE state = 'completed'"):match("%d+")) end
    daemon.eventually(function() return completed() >= N // 4 end, 60, "a quarter of the batch")
    local held = tonumber(pg:psql("SELECT count(*) FROM jobs WHERE owner = 'd2' AND state <> 'completed'"):match("%d+"))
    assert.is_true(held > 0, "d2 held nothing unfinished at the kill")
    ds[2]:kill9()
    local killed_at = assetd.now()
    ds[2] = nil
    daemon.eventually(function() return completed() == N end, 90, "the whole batch")

    -- every job has its three assets, once, and each recorded file is there, byte for byte
    assert.are.equal("0", pg:psql("SELECT count(*) FROM (SELECT job_id FROM assets GROUP BY job_id HAVING count(*) <> 3) x"):match("%d+"))
    assert.are.equal(tostring(N), pg:psql("SELECT count(DISTINCT job_id) FROM assets"):match("%d+"))
    for line in pg:psql("SELECT path || ' ' || sha256 FROM assets"):gmatch("[^\n]+") do
      local path, sha = line:match("^(%S+) (%x+)$")
      assert.are.equal(sha, sim.sha256_file(path), path)
    end
    -- claims: one per job, or a second that rescued it from the killed daemon
    local rescued = 0
    for line in pg:psql("SELECT string_agg(detail, '|' ORDER BY id) FROM events WHERE kind = 'claimed' GROUP BY job_id"):gmatch("[^\n]+") do
      local first, second, more = line:match("^([^|]+)|?([^|]*)|?(.*)$")
      assert.matches("^d%d$", first)
      if second ~= "" then
        assert.are.equal("d2", first, line)
        assert.matches("^d[13] %(rescued from d2%)$", second)
        assert.are.equal("", more, line)
        rescued = rescued + 1
      end
    end
    assert.is_true(rescued > 0, "no job was rescued from d2")    -- d2 claimed more after the count above
    -- the rescued jobs were finished within a lease plus 10 s of the kill
    local last = tonumber(pg:psql("SELECT max(e.t) FROM events e WHERE e.kind = 'state' AND e.detail LIKE '% -> completed'" ..
      " AND e.job_id IN (SELECT job_id FROM events WHERE kind = 'claimed' AND detail LIKE '%rescued from d2%')"):match("[%d.]+"))
    assert.is_true(last - killed_at <= LEASE + 10, ("the last rescued job completed %.1f s after the kill"):format(last - killed_at))
    -- each completed alert once: claimed once in the database, and the hook ran at most once a job
    assert.are.equal(tostring(N), pg:psql("SELECT count(*) FROM alerts_fired WHERE alert = 'completed'"):match("%d+"))
    local seen, lines = {}, 0
    for page in (sim.read(alerts_file) or ""):gmatch("[^\n]+") do
      assert.is_nil(seen[page], page .. " alerted twice")
      seen[page], lines = true, lines + 1
    end
    assert.is_true(lines >= N - 1, lines .. " completed alerts for " .. N .. " jobs")
    -- the Notion update once per job: a second PATCH only for a job rescued from d2 (whose
    -- PATCH may have gone out before d2 could record it; the same properties, so harmless)
    local rescued_pages = {}
    for page in pg:psql("SELECT j.page_id FROM jobs j JOIN events e ON e.job_id = j.id" ..
                        " WHERE e.kind = 'claimed' AND e.detail LIKE '%rescued from d2%'"):gmatch("[^\n]+") do
      rescued_pages[page] = true
    end
    daemon.eventually(function()
      local n = 0
      for _ in pairs(s:call("GET", "/_control/notion").pages) do n = n + 1 end
      return n >= N
    end, 20, "every page updated")
    local per_page = {}
    for _, p in ipairs(s:call("GET", "/_control/notion").patches) do per_page[p.page_id] = (per_page[p.page_id] or 0) + 1 end
    local twice = 0
    for page, n in pairs(per_page) do
      if n > 1 then
        assert.is_true(rescued_pages[page] and n == 2, page .. " updated " .. n .. " times")
        twice = twice + 1
      end
    end
    assert.is_true(twice <= 1, twice .. " pages updated twice")    -- at most the one d2 was syncing at the kill
    -- the survivors say so in /metrics
    local rescues = 0
    for _, i in ipairs{1, 3} do
      local _, body = ds[i]:request("GET", "/metrics")
      rescues = rescues + (tonumber(body:match("assetd_cluster_rescues_total (%d+)")) or 0)
    end
    assert.are.equal(rescued, rescues)
    -- every daemon lists the cluster: the living with fresh heartbeats, the dead one's gone stale
    local _, inst = ds[1]:json("GET", "/api/instances")
    local by = {}
    for _, d in ipairs(inst.instances) do by[d.id] = d end
    assert.is_true(by.d1.self)
    assert.is_false(by.d3.self)
    assert.is_not_nil(by.d2)
    assert.are.equal(0, by.d2.jobsHeld)
    -- and so does the REPL of any of them
    local repl_in = ds[3].dir .. "/repl.in"
    local f = assert(io.open(repl_in, "w"))
    f:write("instances()\n")
    f:close()
    local out = sim.run(string.format("%s attach --data %s/data < %s", daemon.bin, ds[3].dir, repl_in))
    assert.matches("d3 %(this one%)", out)
    assert.matches("\nd1%s", out)
    assert.matches("\nd2%s+.-%s0%s*\n", out)
    for _, i in ipairs{1, 3} do ds[i]:stop_clean(); ds[i] = nil end
  end)
end)

describe("daemons whose database restarts mid-batch", function()
  local s, pg, ds = nil, nil, {}
  local N = 30
  setup(function()
    pg = pglib.start()
    s = sim.start("--openai-key sk-pg --notion-token secret_pg")
    local videos = {}
    for i = 1, N do videos[i] = {id = ("video_r%03d"):format(i), sizes = {video = 120000, thumbnail = 2000, spritesheet = 3000}} end
    s:video(videos)
    s:fault{{kind = "slow", path = "variant=video", rate = 60000, count = 10 * N}}
  end)
  teardown(function()
    for _, d in pairs(ds) do pcall(d.stop_clean, d) end
    s:stop()
    pg:stop()
  end)

  it("say so on /healthz while it is gone, reconnect, and finish every job", function()
    local p = daemon.SIM_PIPELINE:gsub("providers =", "database = {lease = 3}, limits = {max_active = 4, max_jobs = 8},\n  providers =")
    for i = 1, 2 do ds[i] = daemon.start{pipeline = p, env = env(s, {ASSETD_DATABASE_URL = pg.url, ASSETD_INSTANCE = "r" .. i})} end
    local now = assetd.now()
    for i = 1, N do
      assert.are.equal(202, (ds[(i % 2) + 1]:json("POST", "/api/downloads", {body = {notionPageId = ("page-r%03d"):format(i),
        soraVideoId = ("video_r%03d"):format(i), batchId = "restart", completedAt = now - 5, expiresAt = now + 3600}})))
    end
    local function completed() return tonumber(pg:psql("SELECT count(*) FROM jobs WHERE state = 'completed'"):match("%d+")) end
    daemon.eventually(function() return completed() >= 3 end, 60, "a few completed")
    pg:down("fast")
    daemon.eventually(function() return ds[1]:request("GET", "/healthz") == 500 end, 10, "/healthz to report the store")
    local st, body = ds[1]:request("GET", "/healthz")
    assert.are.equal(500, st)
    assert.matches("database", body)
    assetd.sleep(2)
    pg:up()
    daemon.eventually(function() return completed() == N end, 90, "the whole batch after the restart")
    assert.are.equal("0", pg:psql("SELECT count(*) FROM (SELECT job_id FROM assets GROUP BY job_id HAVING count(*) <> 3) x"):match("%d+"))
    assert.are.equal(200, (ds[2]:request("GET", "/healthz")))
    for _, line in ipairs{ds[1]:log(), ds[2]:log()} do
      assert.is_truthy(line:find("job store write refused; the job waits and tries again", 1, true) or
                       line:find("job claims not renewed", 1, true), "no daemon said the store was gone")
    end
    for i = 1, 2 do ds[i]:stop_clean(); ds[i] = nil end
  end)
end)
