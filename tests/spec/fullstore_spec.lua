-- Full disks under a running daemon (issue 14, items 4 and 11): small tmpfs mounts (the tests
-- run as root, as CI does) for the storage root and for the job store. A full storage disk is
-- told (an error log line, the job's error) and retried from what the .part holds; a full
-- job-store disk holds the jobs where they are, and they go on by themselves, with no restart,
-- once there is room again.
local sim = require "sim"
local daemon = require "daemon"

local MiB = 1024 * 1024


local function job(d, page)
  local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = page}})
  return type(j) == "table" and j or {}
end

-- The simulator's answers for the video variant of VIDEO: {full = 200s, ranged = bytes of 206s}.
local function served(s, video)
  local n = {full = 0, ranged = 0}
  for _, e in ipairs(s:log()) do
    if e.path:find("/videos/" .. video .. "/content?variant=video", 1, true) then
      if e.status == 200 then n.full = n.full + 1 elseif e.status == 206 then n.ranged = n.ranged + (e.bytes or 0) end
    end
  end
  return n
end

describe("a full storage disk", function()
  local s, d, root
  setup(function()
    s = sim.start("--openai-key sk-f")
    root = sim.tmpfs("1m", sim.tmpdir() .. "/root")
    s:video{id = "bigvid", sizes = {video = 3 * MiB, thumbnail = 2000, spritesheet = 2000}}
    d = daemon.start{pipeline = ([[
return {storage = {root = "ROOT"}, sora = {retry = {base = 0.2, cap = 1}}}
]]):gsub("ROOT", root), env = {OPENAI_API_KEY = "sk-f", OPENAI_BASE_URL = s.openai}}
  end)
  teardown(function()
    if d then d:stop() end
    s:stop()
    sim.untmpfs(root)
  end)

  it("is logged at error and shown as the job's error while it retries", function()
    assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = "p-big", soraVideoId = "bigvid", batchId = "bf"}})))
    daemon.eventually(function()
      local j = job(d, "p-big")
      return j.status == "downloading" and type(j.error) == "string" and j.error:find("ENOSPC", 1, true)
    end, 20, "the job's error names ENOSPC")
    local log = d:log()
    assert.truthy(log:find('level=error msg="transfer failed; trying again"[^\n]*ENOSPC'), log:sub(-3000))
  end)

  it("completes once there is room, without downloading again what the .part holds", function()
    assetd.sleep(3)                                 -- several tries against the full disk
    assert(os.execute("mount -o remount,size=16m " .. root))
    daemon.eventually(function() return job(d, "p-big").status == "completed" end, 30, "completed")
    local j = job(d, "p-big")
    assert.are.equal(sim.sha256_file(root .. "/bf/bigvid_V1.mp4"), s:info("bigvid").sha256.video)
    assert.are.equal(require("cjson").null, j.error)
    -- the bytes before the disk filled are not fetched again: one full answer, then a resume
    -- from the .part for the rest (the first answer's count is what left the server's socket)
    local n = served(s, "bigvid")
    assert.are.equal(1, n.full)
    assert.is_true(n.ranged > 0 and n.ranged < 3 * MiB, "ranged bytes " .. n.ranged)
  end)
end)

describe("a full job-store disk", function()
  local s, d, data
  setup(function()
    s = sim.start("--openai-key sk-f")
    data = sim.tmpfs("8m", sim.tmpdir() .. "/data")
    local videos = {}
    for i = 1, 4 do videos[i] = {id = "dbvid" .. i, sizes = {video = 600000, thumbnail = 2000, spritesheet = 2000}} end
    s:video(videos)
    -- slow bodies: the transfers are still running when the disk fills
    s:fault{path = [[dbvid\d/content\?variant=video$]], kind = "slow", rate = 150000, count = -1}
    d = daemon.start{pipeline = daemon.SIM_PIPELINE, args = "--data " .. data,
                     env = {OPENAI_API_KEY = "sk-f", OPENAI_BASE_URL = s.openai}}
  end)
  teardown(function()
    if d then d:stop() end
    s:stop()
    sim.untmpfs(data)
  end)

  it("holds running jobs while it is full; they complete by themselves once there is room", function()
    for i = 1, 4 do
      assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = "p-db" .. i, soraVideoId = "dbvid" .. i, batchId = "bd"}})))
    end
    daemon.eventually(function() return job(d, "p-db1").status == "downloading" end, 10, "downloading")
    os.execute("dd if=/dev/zero of=" .. data .. "/filler bs=64k 2>/dev/null")   -- until the disk is full
    daemon.eventually(function() return d:log():find("job store write refused", 1, true) end, 20, "the refusal logged")
    assert.truthy(d:log():find('level=error msg="job store write refused', 1, true))
    os.remove(data .. "/filler")
    daemon.eventually(function()
      for i = 1, 4 do if job(d, "p-db" .. i).status ~= "completed" then return false end end
      return true
    end, 40, "every job completed after the space came back")
    for i = 1, 4 do
      assert.are.equal(s:info("dbvid" .. i).sha256.video, sim.sha256_file(d.dir .. "/root/bd/dbvid" .. i .. "_V1.mp4"))
    end
  end)
end)
