-- SIGHUP reloads the pipeline script (issue 16): new hooks take effect, a change that needs a
-- restart or a script that does not load is refused with a log line and the old configuration
-- stays; the daemon never dies of the signal.
local sim = require "sim"
local daemon = require "daemon"

local BASE = [[
local naming = require "assetd.naming"
return {
  storage = {root = "{DIR}/ROOT"},
  sora = {poll = {interval = 0.2, max = 0.5}, retry = {base = 0.2, cap = 0.5}},
  NAMING
}
]]

local function pipeline(root, naming)
  return (BASE:gsub("ROOT", root):gsub("NAMING", function() return naming or "" end))
end

describe("SIGHUP", function()
  local s, d
  setup(function()
    s = sim.start("--openai-key sk-r")
    local sizes = {video = 3000, thumbnail = 100, spritesheet = 100}
    s:video{{id = "vid_before", sizes = sizes}, {id = "vid_after", sizes = sizes}, {id = "vid_last", sizes = sizes}}
    d = daemon.start{pipeline = pipeline("root"), env = {OPENAI_API_KEY = "sk-r", OPENAI_BASE_URL = s.openai}}
  end)
  teardown(function() s:stop() end)

  local function write(src)
    local f = assert(io.open(d.dir .. "/pipeline.lua", "w"))
    f:write((src:gsub("{DIR}", d.dir)))
    f:close()
  end
  local function hup() os.execute("kill -HUP " .. d.pid) end
  local function download(page, video)
    assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = page, soraVideoId = video, batchId = "br"}})))
    daemon.eventually(function() return d:job_status(page) == "completed" end, 15, page .. " completed")
  end

  it("swaps in a changed naming hook without a restart", function()
    download("p-before", "vid_before")
    assert.truthy(io.open(d.dir .. "/root/br/vid_before_V1.mp4"))
    write(pipeline("root", [[naming = function(a) return string.format("%s-r%d-%s.%s", a.videoId, a.version, a.variant, a.ext) end,]]))
    hup()
    daemon.eventually(function() return d:log():find('msg="pipeline reloaded"', 1, true) end, 5, "reloaded")
    download("p-after", "vid_after")
    assert.truthy(io.open(d.dir .. "/root/br/vid_after-r1-video.mp4"))
  end)

  it("refuses a change that needs a restart, and a script that does not load, keeping the running one", function()
    write(pipeline("elsewhere"))
    hup()
    daemon.eventually(function() return d:log():find("storage.root changes only with a restart", 1, true) end, 5, "refused")
    write("return {naming = function(a) return a.videoId end}\n")      -- breaks the naming rules
    hup()
    daemon.eventually(function() return d:log():find("each variant needs its own name", 1, true) end, 5, "refused")
    assert.truthy(d:log():find('level=error msg="pipeline not reloaded; the running configuration stays"', 1, true))
    download("p-last", "vid_last")
    assert.truthy(io.open(d.dir .. "/root/br/vid_last-r1-video.mp4"))      -- still the reloaded hook
  end)

  it("stops cleanly afterwards", function() d:stop_clean() end)
end)

describe("SIGHUP with Notion and alert hooks", function()
  it("swaps in a changed notion.properties mapping and alerts.completed hook", function()
    local s = sim.start("--openai-key sk-r --notion-token secret_r")
    local sizes = {video = 3000, thumbnail = 100, spritesheet = 100}
    s:video{{id = "vid_m1", sizes = sizes}, {id = "vid_m2", sizes = sizes}}
    local function script(tag)
      return [[
return {
  storage = {root = "{DIR}/root"},
  sora = {poll = {interval = 0.2, max = 0.5}, retry = {base = 0.2, cap = 0.5}},
  notion = {properties = function(job) return {Tag = {rich_text = {{text = {content = "]] .. tag .. [["}}}}} end},
  alerts = {completed = function(job)
    local f = assert(io.open("{DIR}/alerts.txt", "a")); f:write("]] .. tag .. [[ ", job.notionPageId, "\n"); f:close()
  end},
}
]]
    end
    local d = daemon.start{pipeline = script("one"), env = {OPENAI_API_KEY = "sk-r", OPENAI_BASE_URL = s.openai,
                                                            NOTION_TOKEN = "secret_r", NOTION_BASE_URL = s.notion}}
    finally(function() d:stop(); s:stop() end)
    local function download(page, video)
      assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = page, soraVideoId = video, batchId = "bm"}})))
      daemon.eventually(function()
        local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = page}})
        return type(j) == "table" and j.notion == "synced"
      end, 15, page .. " synced")
    end
    local function tag(page)
      local p = s:call("GET", "/_control/notion").pages[page]
      return p and p.Tag and p.Tag.rich_text[1].text.content
    end
    download("p-m1", "vid_m1")
    assert.are.equal("one", tag("p-m1"))
    local f = assert(io.open(d.dir .. "/pipeline.lua", "w"))
    f:write((script("two"):gsub("{DIR}", d.dir)))
    f:close()
    os.execute("kill -HUP " .. d.pid)
    daemon.eventually(function() return d:log():find('msg="pipeline reloaded"', 1, true) end, 5, "reloaded")
    download("p-m2", "vid_m2")
    assert.are.equal("two", tag("p-m2"))
    daemon.eventually(function() return (sim.read(d.dir .. "/alerts.txt") or ""):find("two p-m2", 1, true) end, 5, "the new alert")
    assert.truthy(sim.read(d.dir .. "/alerts.txt"):find("one p-m1", 1, true))
    d:stop_clean()
  end)
end)
