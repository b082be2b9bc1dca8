-- Crash safety: a batch download killed with SIGKILL at random moments, restarted each time,
-- ends with every job completed, every file byte-exact, no .part left and one version per video.
local sim = require "sim"
local cjson = require "cjson"

describe("kill -9 at random moments", function()
  local s, dir
  setup(function()
    s = sim.start()
    dir = sim.tmpdir()
  end)
  teardown(function()
    s:stop()
    os.execute("rm -rf " .. dir)
  end)

  it("loses nothing, duplicates nothing, leaves nothing half-written", function()
    local n = 12
    local specs = {}
    for i = 1, n do
      specs[i] = {id = string.format("vid_%03d", i),
                  sizes = {video = 2 * 1024 * 1024 + i * 1000, thumbnail = 30000 + i, spritesheet = 90000 + i}}
    end
    s:video(specs)
    local bin = os.getenv("ASSETD_BIN") or "./assetd"
    local cmd = string.format("%s tests/crash/worker.lua %s %s/root %s/data %d", bin, s.openai, dir, dir, n)
    math.randomseed(os.time())
    local kills = 0
    for round = 1, 10 do
      os.execute(string.format("%s >>%s/log 2>&1 & echo $! > %s/pid", cmd, dir, dir))
      local pid = assert(io.open(dir .. "/pid")):read("l")
      assetd.sleep(0.15 + math.random() * 0.35)
      if os.execute("kill -9 " .. pid .. " 2>/dev/null") then kills = kills + 1 end
      assetd.sleep(0.05)
      _ = round
    end
    assert.is_true(kills >= 9, "only " .. kills .. " kills landed on a running worker")
    assert.is_true(os.execute(cmd .. " >>" .. dir .. "/log 2>&1"), "final run failed")

    local jobs = assert(assetd.jobdb.open(dir .. "/data"))
    local summary = jobs:summary()
    assert.are.equal(n, summary.completed)
    local listing = io.popen("ls -A " .. dir .. "/root/crash"):read("a")
    assert.is_nil(listing:find("%.part"), "a .part file was left: " .. listing)
    for _, spec in ipairs(specs) do
      local job = assert(jobs:get(spec.id:gsub("vid_0*", "page")))
      local sums = s:info(spec.id).sha256
      local assets = jobs:assets(job)
      assert.are.equal(3, #assets, spec.id .. " assets recorded")
      for _, a in ipairs(assets) do
        assert.are.equal(job.version, a.version)
        assert.are.equal(sums[a.type], a.sha256)
      end
      local files = {}
      for name in listing:gmatch("[^\n]+") do
        if name:sub(1, #spec.id + 2) == spec.id .. "_V" then files[#files + 1] = name end
      end
      assert.are.equal(3, #files, spec.id .. ": " .. cjson.encode(files))
      local ext = {video = "", thumbnail = "_thumbnail", spritesheet = "_spritesheet"}
      local suffix = {video = ".mp4", thumbnail = ".webp", spritesheet = ".jpg"}
      for variant, sum in pairs(sums) do
        local path = string.format("%s/root/crash/%s_V%d%s%s", dir, spec.id, job.version, ext[variant], suffix[variant])
        assert.are.equal(sum, sim.sha256_file(path), path)
      end
    end
    jobs:close()
  end)
end)
