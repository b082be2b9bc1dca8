-- Pipeline hooks that break the rules or never return (issue 14, items 1-3): a naming hook
-- without the version or with one name for two variants is refused at --check and at load;
-- every loop over versions is bounded; a hook that loops is cut by its time budget while the
-- daemon goes on answering, downloading and stopping on SIGTERM.
local sim = require "sim"
local daemon = require "daemon"
local versions = require "assetd.versions"
local naming = require "assetd.naming"

local bin = os.getenv("ASSETD_BIN") or "./assetd"
local run, script = sim.run, sim.script

local function check(src)
  local path = script(src)
  local out, rc = run(bin .. " --check " .. path .. " --data /tmp/assetd-check-hooks")
  os.remove(path)
  return out, rc
end

describe("naming rules at --check and at load", function()
  it("refuses a naming hook that leaves the version out, naming the rule", function()
    local out, rc = check('return {naming = function(a) return a.videoId .. "_" .. a.variant .. "." .. a.ext end}\n')
    assert.are.equal(1, rc)
    assert.matches("pipeline.naming", out)
    assert.matches("every name must contain the version", out)
    assert.is_nil(out:find("pipeline OK", 1, true))
  end)

  it("refuses one name for every variant", function()
    local out, rc = check('return {naming = function(a) return "same_V" .. a.version .. ".mp4" end}\n')
    assert.are.equal(1, rc)
    assert.matches("same file name", out)
    assert.matches("each variant needs its own name", out)
  end)

  it("refuses a naming hook that never returns, within its time budget", function()
    local t0 = assetd.monotonic()
    local out, rc = check('return {limits = {hook_budget = 0.5}, naming = function(a) while true do end end}\n')
    assert.are.equal(1, rc)
    assert.matches("time budget exceeded", out)
    assert.is_true(assetd.monotonic() - t0 < 5)
  end)

  it("accepts the default names and a custom hook that keeps the rules", function()
    local out, rc = check('return {naming = function(a) return string.format("%s-v%03d-%s.%s", a.videoId, a.version, a.variant, a.ext) end}\n')
    assert.are.equal(0, rc, out)
    assert.matches("pipeline OK", out)
    assert.matches("limits.hook_budget%s+5 s", out)
  end)

  it("a daemon started with a versionless naming hook exits 1 with the rule, before serving", function()
    local dir = sim.tmpdir()
    local path = dir .. "/p.lua"
    local f = assert(io.open(path, "w"))
    f:write('return {naming = function(a) return a.videoId .. "." .. a.ext end}\n')
    f:close()
    local out, rc = run(bin .. " " .. path .. " --listen 127.0.0.1:0 --data " .. dir .. "/data")
    os.execute("rm -rf " .. dir)
    assert.are.equal(1, rc)
    assert.matches("every name must contain the version", out)
    assert.is_nil(out:find("http listening", 1, true))
    assert.is_nil(out:find("stack traceback", 1, true))
  end)
end)

describe("versions under a naming hook that breaks the rules at run time", function()
  local dir, jobs, store
  local assets = {{variant = "video", ext = "mp4"}, {variant = "thumbnail", ext = "webp"}}
  before_each(function()
    dir = sim.tmpdir()
    jobs = assert(assetd.jobdb.open(dir .. "/data"))
    -- the rules hold for the sample ids --check tries, not for this video
    store = assert(versions.open{root = dir .. "/root", jobs = jobs, naming = function(a)
      if a.videoId == "novers" then return "novers_" .. a.variant .. "." .. a.ext end
      if a.videoId == "onename" then return "onename_V" .. a.version .. ".bin" end
      return naming.default(a)
    end})
  end)
  after_each(function()
    jobs:close()
    os.execute("rm -rf " .. dir)
  end)

  it("reserve gives up after MAX_SKIPPED versions that all look taken, instead of looping for good", function()
    assert.are.equal(1, assert(store:reserve("b1", "novers", assets)))
    local p = assert(store:path{batchId = "b1", videoId = "novers", version = 1, variant = "video", ext = "mp4"})
    assert(io.open(p, "w")):close()
    local t0 = assetd.monotonic()
    local v, err = store:reserve("b1", "novers", assets)
    assert.is_nil(v)
    assert.are.equal("naming", err.category)
    assert.matches("does the naming function put the version in every name", err.message)
    assert.is_true(assetd.monotonic() - t0 < 10)
  end)

  it("names() refuses two variants under one name", function()
    local names, err = store:names("b1", "onename", 1, assets)
    assert.is_nil(names)
    assert.matches("same file name \"onename_V1.bin\"", err.message)
    local ok = assert(store:names("b1", "fine", 1, assets))
    assert.same({"fine_V1.mp4", "fine_V1_thumbnail.webp"}, ok)
  end)
end)

describe("hooks under a time budget in a running daemon", function()
  local s, d
  local PIPELINE = [[
local naming = require "assetd.naming"
return {
  storage = {root = "{DIR}/root"},
  sora = {poll = {interval = 0.2, max = 0.5}, retry = {base = 0.2, cap = 0.5}},
  limits = {hook_budget = 1},
  naming = function(a)
    if a.videoId == "loopname" then while true do end end
    if a.videoId == "onename" then return "onename_V" .. a.version .. ".bin" end
    return naming.default(a)
  end,
  alerts = {completed = function(job)
    if job.soraVideoId == "loopalert" then while true do pcall(function() while true do end end) end end
  end},
}
]]
  setup(function()
    s = sim.start("--openai-key sk-h")
    local sizes = {video = 20000, thumbnail = 2000, spritesheet = 2000}
    s:video{{id = "loopname", sizes = sizes}, {id = "loopalert", sizes = sizes}, {id = "onename", sizes = sizes},
            {id = "plain", sizes = sizes}}
    d = daemon.start{pipeline = PIPELINE, env = {OPENAI_API_KEY = "sk-h", OPENAI_BASE_URL = s.openai}}
  end)
  teardown(function() s:stop() end)

  local function enqueue(page, video)
    local status = d:json("POST", "/api/downloads", {body = {notionPageId = page, soraVideoId = video, batchId = "bh"}})
    assert.are.equal(202, status)
  end
  local function job(page)
    local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = page}})
    return j
  end

  it("a looping alert hook is cut; its job and the others complete; the API keeps answering", function()
    enqueue("p-loopalert", "loopalert")
    enqueue("p-plain", "plain")
    local answered = 0
    for _ = 1, 10 do
      local t0 = assetd.monotonic()
      local status = d:request("GET", "/healthz")
      if status == 200 and assetd.monotonic() - t0 < 3 then answered = answered + 1 end
      assetd.sleep(0.3)
    end
    assert.are.equal(10, answered)
    daemon.eventually(function() return job("p-loopalert").status == "completed" and job("p-plain").status == "completed" end,
                      20, "both completed")
    daemon.eventually(function() return d:log():find("time budget exceeded", 1, true) end, 10, "the hook error logged")
  end)

  it("a looping naming hook fails its own job with the budget named", function()
    enqueue("p-loopname", "loopname")
    daemon.eventually(function() return job("p-loopname").status == "failed" end, 20, "p-loopname failed")
    assert.matches("time budget exceeded", job("p-loopname").error)
  end)

  it("two variants under one name fail the job before any byte is written", function()
    enqueue("p-onename", "onename")
    daemon.eventually(function() return job("p-onename").status == "failed" end, 20, "p-onename failed")
    assert.matches("same file name", job("p-onename").error)
    assert.is_nil(io.open(d.dir .. "/root/bh/onename_V1.bin"))
    assert.is_nil(io.open(d.dir .. "/root/bh/.onename_V1.bin.part"))
  end)

  it("stops on SIGTERM with exit 0", function()
    d:stop_clean()
  end)
end)
