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
