-- Preemptive earliest-deadline-first: the engine's hold (a download stopped, its slot given
-- back, going on by Range), the policy's plan (preempt.lua), and issue 20's scenario end to
-- end: urgent videos arriving behind a batch with long windows, under a bandwidth cap.
local sim = require "sim"
local preempt = require "assetd.preempt"

local MB = 1000 * 1000

describe("preemptive earliest deadline first", function()
  local s, dir
  setup(function()
    s = sim.start("--openai-key sk-test")
    dir = sim.tmpdir()
  end)
  teardown(function()
    s:stop()
    os.execute("rm -rf " .. dir)
  end)
  before_each(function() s:reset() end)
  after_each(function() assetd.fetch_limits{max_active = 8, per_host = 8, max_bytes_per_sec = 0, order = "edf"} end)

  local auth = {Authorization = "Bearer sk-test"}
  local function content(id) return s.openai .. "/videos/" .. id .. "/content?variant=video" end
  local function download(state)
    for _, d in ipairs(assetd.downloads()) do
      if d.state == state then return d end
    end
  end

  it("holds a running download: its slot goes to another, and it goes on by Range, byte-exact", function()
    s:video{{id = "vid_long", sizes = {video = 2 * MB}}, {id = "vid_short", sizes = {video = 100000}}}
    assetd.fetch_limits{max_active = 1, max_bytes_per_sec = 2 * MB}
    local got = {}
    local function fetch(id)
      assetd.spawn(function()
        got[id] = {assetd.fetch{url = content(id), headers = auth, to = dir .. "/" .. id, resume = true}}
      end)
    end
    fetch("vid_long")
    local long = sim.eventually(function()
      local d = download("active")
      return d and d.bytes > 200000 and d
    end, 5, "the long download to be under way")
    fetch("vid_short")
    assetd.sleep(0.05)
    assert.are.equal("queued", download("queued").state)         -- the one slot is taken
    assert.is_true(assetd.hold_download(long.id, true))
    sim.eventually(function() return got.vid_short end, 5, "the short one, in the slot given back")
    assert.is_nil(got.vid_long)
    assert.are.equal("held", download("held").state)
    assert.is_true(assetd.hold_download(long.id, false))
    sim.eventually(function() return got.vid_long end, 10, "the long one, released")
    local res = assert(got.vid_long[1], tostring(got.vid_long[2]))
    assert.are.equal(s:info("vid_long").sha256.video, res.sha256)
    assert.are.equal(res.sha256, sim.sha256_file(dir .. "/vid_long"))
    local ranges = {}
    for _, e in ipairs(s:log()) do
      if e.path:match("vid_long") and type(e.headers.range) == "string" then ranges[#ranges + 1] = e end
    end
    assert.are.equal(1, #ranges)
    assert.matches("^bytes=%d+%-$", ranges[1].headers.range)
    assert.are.equal("string", type(ranges[1].headers["if-range"]))
    assert.are.equal(206, ranges[1].status)
  end)

  it("refuses to hold what is gone, and cancels a held download", function()
    assert.is_false(assetd.hold_download(12345678, true))
    s:video{id = "vid_c", sizes = {video = 2 * MB}}
    assetd.fetch_limits{max_bytes_per_sec = 2 * MB}
    local got
    local t = assetd.spawn(function() got = {assetd.fetch{url = content("vid_c"), headers = auth, to = dir .. "/c", resume = true}} end)
    local d = sim.eventually(function() return download("active") end, 5, "the download")
    assert.is_true(assetd.hold_download(d.id, true))
    t:cancel()
    sim.eventually(function() return got end, 5, "the canceled fetch's answer")
    assert.are.equal("canceled", got[2].category)
    assert.is_nil(download("held"))
    assert.is_nil(io.open(dir .. "/c"))
    assert.is_truthy(io.open(sim.part_of(dir .. "/c")))           -- kept for a resume, as any cancel
  end)

  it("holds a download that waits, and cancels it before it ever started", function()
    s:video{{id = "vid_a", sizes = {video = 2 * MB}}, {id = "vid_q", sizes = {video = 1000}}}
    assetd.fetch_limits{max_active = 1, max_bytes_per_sec = 2 * MB}
    local got = {}
    local ta = assetd.spawn(function() got.a = {assetd.fetch{url = content("vid_a"), headers = auth, to = dir .. "/a"}} end)
    sim.eventually(function() return download("active") end, 5, "the first download")
    local tq = assetd.spawn(function() got.q = {assetd.fetch{url = content("vid_q"), headers = auth, to = dir .. "/q"}} end)
    local q = sim.eventually(function() return download("queued") end, 5, "the second to wait")
    assert.is_true(assetd.hold_download(q.id, true))
    assert.are.equal("held", download("held").state)
    tq:cancel()
    sim.eventually(function() return got.q end, 5, "the held one's answer")
    assert.are.equal("canceled", got.q[2].category)
    assert.is_nil(download("held"))
    ta:cancel()
    sim.eventually(function() return got.a end, 5, "the first one's answer")
  end)

  describe("the plan", function()
    local function d(id, state, deadline, bytes, total)
      return {id = id, state = state, deadline = deadline, bytes = bytes or 0, total = total or -1, holdable = true}
    end

    it("gives the slot of the latest deadline to an earlier one that waits", function()
      local plan = preempt.plan({d(1, "active", 600), d(2, "active", 500), d(3, "queued", 10)}, 2, 0, 0)
      assert.are.same({[1] = true}, plan)
    end)

    it("holds later deadlines while an earlier one would miss at its share of the cap", function()
      -- the first has 3 MB left and 2 s past the margin: at a third of 4 MB/s it needs
      -- 2.25 s, at half 1.5 s
      local ds = {d(1, "active", 3, 0, 3 * MB), d(2, "active", 600, 0, 4 * MB), d(3, "active", 700, 0, 4 * MB)}
      assert.are.same({[3] = true}, preempt.plan(ds, 8, 4 * MB, 0))
      -- and when fewer than the slots may run, those waiting are held too
      ds = {d(1, "active", 3, 0, 3 * MB), d(2, "active", 600, 0, 4 * MB), d(3, "queued", 700)}
      assert.are.same({[3] = true}, preempt.plan(ds, 8, 4 * MB, 0))
    end)

    it("releases a held one only with room to spare, and never lets a lost cause shrink the share", function()
      -- sharing with the held one, the first would need 0.5 s of its 0.6: too near the line
      local ds = {d(1, "active", 1.6, 0, 1 * MB), d(2, "held", 600, 0, 4 * MB)}
      assert.are.same({}, preempt.plan(ds, 8, 4 * MB, 0))
      ds = {d(1, "active", 3, 0, 1 * MB), d(2, "held", 600, 0, 4 * MB)}
      assert.are.same({[2] = false}, preempt.plan(ds, 8, 4 * MB, 0))
      -- 100 MB due in 2 s at 4 MB/s is lost whatever happens: the others keep their share
      ds = {d(1, "active", 3, 0, 100 * MB), d(2, "active", 600, 0, 4 * MB)}
      assert.are.same({}, preempt.plan(ds, 8, 4 * MB, 0))
    end)

    it("never holds what cannot go on without losing its bytes", function()
      local ds = {d(1, "active", 600), d(2, "queued", 10)}
      ds[1].holdable = false
      assert.are.same({}, preempt.plan(ds, 1, 0, 0))
    end)
  end)

  describe("issue 20's scenario", function()
    local runner = require "assetd.runner"
    local versions = require "assetd.versions"
    local openai = require "assetd.providers.openai"

    -- Ten 4 MB videos with 10-minute windows start first; then ten 0.9 MB ones whose windows
    -- close 4 s after they complete, under a 4 MB/s cap. Returns the urgent jobs' states.
    local function scenario(order)
      local root = sim.tmpdir()
      local jobs = assert(assetd.jobdb.open(root .. "/data"))
      local r = runner.new{jobs = jobs, versions = assert(versions.open{root = root .. "/store", jobs = jobs}),
                           providers = {openai = openai.new{base_url = s.openai, api_key = "sk-test"}},
                           retry = {base = 0.1, cap = 0.5, margin = 0.5}, poll = {interval = 0.2, max = 0.5}}
      assetd.fetch_limits{max_active = 8, per_host = 8, max_bytes_per_sec = 4 * MB, order = order}
      local task = order == "edf" and preempt.start()
      local small = {thumbnail = 20000, spritesheet = 30000}
      for i = 1, 10 do
        s:video{id = "big" .. i, expires_in = 600, sizes = {video = 4 * MB, thumbnail = small.thumbnail, spritesheet = small.spritesheet}}
        assert(r:enqueue{notionPageId = "page-big" .. i, soraVideoId = "big" .. i, batchId = "b", completedAt = assetd.now()})
      end
      sim.eventually(function() return assetd.fetch_limits().active == 8 end, 5, "the big ones to hold the slots")
      assetd.sleep(0.5)
      for i = 1, 10 do
        s:video{id = "urgent" .. i, expires_in = 4, sizes = {video = 900000, thumbnail = small.thumbnail, spritesheet = small.spritesheet}}
        assert(r:enqueue{notionPageId = "page-u" .. i, soraVideoId = "urgent" .. i, batchId = "b", completedAt = assetd.now()})
      end
      local stored
      sim.eventually(function()
        local ended = 0
        stored = 0
        for i = 1, 10 do
          local st = jobs:get("page-u" .. i).status
          if st == "completed" or st == "expired" or st == "failed" then ended = ended + 1 end
          if st == "completed" then stored = stored + 1 end
        end
        return ended == 10
      end, 20, "the urgent jobs to end")
      sim.eventually(function()
        for i = 1, 10 do
          if jobs:get("page-big" .. i).status ~= "completed" then return false end
        end
        return true
      end, 30, "the big ones, after")
      for i = 1, 10 do
        local job = jobs:get("page-big" .. i)
        for _, a in ipairs(jobs:assets(job)) do
          assert.are.equal(s:info("big" .. i).sha256[a.type], sim.sha256_file(a.filePath))
        end
      end
      if task then task:cancel() end
      jobs:close()
      os.execute("rm -rf " .. root)
      return stored
    end

    it("stores every urgent video, and the big ones after, byte-exact", function()
      assert.are.equal(10, scenario("edf"))
    end)
  end)
end)
