-- `assetd pipeline.lua` and `assetd --check pipeline.lua` as a user runs them.
local sim = require "sim"

local bin = os.getenv("ASSETD_BIN") or "./assetd"

local run, script = sim.run, sim.script

describe("assetd pipeline.lua", function()
  it("--check prints the resolved configuration with secrets masked", function()
    local path = script('return {storage = {root = "/tmp/x"}, alerts = {warn_before = 120}}\n')
    local out, rc = run("OPENAI_API_KEY=sk-verysecretvalue " .. bin .. " --check " .. path .. " --data /tmp/assetd-check")
    os.remove(path)
    assert.are.equal(0, rc)
    assert.matches("pipeline OK", out)
    assert.matches("alerts.warn_before%s+120 s", out)
    assert.matches("storage.direct_io%s+true", out)           -- the default
    assert.matches("OPENAI_API_KEY%s+set %(18 chars%)", out)
    assert.is_nil(out:find("verysecret", 1, true))
  end)

  it("--check names every bad key and exits 1", function()
    local path = script('return {storage = {root = 5, direct_io = "yes"}, sora = {variants = "video"}, colour = "red", alerts = {expiring = 1}}\n')
    local out, rc = run(bin .. " --check " .. path)
    os.remove(path)
    assert.are.equal(1, rc)
    assert.matches("pipeline.storage.root: expected a string, got number", out)
    assert.matches("pipeline.storage.direct_io: expected a boolean, got string", out)
    assert.matches("pipeline.sora.variants: expected a table, got string", out)
    assert.matches("pipeline.colour: unknown key", out)
    assert.matches("pipeline.alerts.expiring: expected a function, got number", out)
  end)

  it("--check refuses intervals, rates and limits that would freeze the daemon, naming each key", function()
    -- poll interval 0: a tight polling loop; max_jobs 0: no job ever gets a slot; Notion rate
    -- 0: an endless pacing wait; retry floor 0: retries with no wait between them
    local path = script([[return {sora = {poll = {interval = 0, max = -5}, retry = {floor = 0, jitter = 2, attempts = 2.5}},
      notion = {rate = 0}, limits = {max_jobs = 0, max_active = "8"}, http = {max_conns = 0}, alerts = {warn_before = -1}}
]])
    local out, rc = run(bin .. " --check " .. path)
    os.remove(path)
    assert.are.equal(1, rc)
    for _, line in ipairs{"sora.poll.interval: expected a number > 0, got 0", "sora.poll.max: expected a number > 0, got -5",
                          "sora.retry.floor: expected a number > 0, got 0", "sora.retry.jitter: expected a number from 0 to 1, got 2",
                          "sora.retry.attempts: expected an integer > 0, got 2.5", "notion.rate: expected a number > 0, got 0",
                          "limits.max_jobs: expected an integer > 0, got 0", "limits.max_active: expected an integer > 0, got string",
                          "http.max_conns: expected an integer > 0, got 0", "alerts.warn_before: expected a number >= 0, got -1"} do
      assert.is_truthy(out:find("pipeline." .. line, 1, true), line .. "\n" .. out)
    end
  end)

  it("--check takes the zeros that mean something: no per-host limit, no byte cap, no margin", function()
    local path = script('return {limits = {per_host = 0, max_bytes_per_sec = 0}, sora = {retry = {margin = 0, jitter = 0}}}\n')
    local out, rc = run(bin .. " --check " .. path .. " --data /tmp/assetd-check")
    os.remove(path)
    assert.are.equal(0, rc, out)
    assert.matches("pipeline OK", out)
  end)

  it("runs a pipeline end to end: files stored, Notion updated, exit 0 (done, or on SIGTERM)", function()
    local s = sim.start("--openai-key sk-e2e --notion-token secret_e2e")
    s:video{{id = "video_p1", sizes = {video = 200000, thumbnail = 2000, spritesheet = 4000}},
            {id = "video_p2", sizes = {video = 100000, thumbnail = 2000, spritesheet = 4000}}}
    local dir = sim.tmpdir()
    local path = script(string.format([[
return {
  storage = {root = %q, public_base_url = "https://cdn.test/v"},
  sora = {poll = {interval = 0.2, max = 1}},
  jobs = {
    {notionPageId = "page-p1", soraVideoId = "video_p1", batchId = "demo"},
    {notionPageId = "page-p2", soraVideoId = "video_p2", batchId = "demo"},
  },
}
]], dir .. "/root"))
    os.execute(string.format("sh -c 'OPENAI_API_KEY=sk-e2e OPENAI_BASE_URL=%s NOTION_TOKEN=secret_e2e NOTION_BASE_URL=%s " ..
      "%s %s --listen 127.0.0.1:0 --data %s/data >%s/out 2>&1 & echo $! > %s/pid; wait $!; echo $? > %s/rc' &",
      s.openai, s.notion, bin, path, dir, dir, dir, dir))
    local pages
    for _ = 1, 100 do
      assetd.sleep(0.1)
      pages = s:call("GET", "/_control/notion").pages
      if pages["page-p1"] and pages["page-p2"] then break end
    end
    assert.is_not_nil(pages["page-p1"], "Notion was not updated")
    assert.are.same({url = "https://cdn.test/v/demo/video_p2_V1.mp4"}, pages["page-p2"]["Video URL"])
    assert.are.equal(s:info("video_p1").sha256.video, sim.sha256_file(dir .. "/root/demo/video_p1_V1.mp4"))
    local pid = assert(io.open(dir .. "/pid")):read("l")
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local rc
    for _ = 1, 100 do
      assetd.sleep(0.05)
      local f = io.open(dir .. "/rc")
      rc = f and tonumber(f:read("l"))
      if f then f:close() end
      if rc then break end
    end
    local out = assert(io.open(dir .. "/out")):read("a")
    s:stop()
    os.remove(path)
    os.execute("rm -rf " .. dir)
    assert.are.equal(0, rc, out)
    assert.is_nil(out:find("sk-e2e", 1, true))
    assert.is_nil(out:find("secret_e2e", 1, true))
  end)
end)
