-- Resuming a backlog lazily (Runner:start): the unfinished jobs wait as data, at most max_jobs
-- of them with a task and at most polling.MAX_POLLS polls in flight, while every deadline is
-- armed at once and the operator's commands and webhooks work on the queued ones.
local sim = require "sim"
local runnerfix = require "runnerfix"
local runner = require "assetd.runner"
local versions = require "assetd.versions"
local openai = require "assetd.providers.openai"
local polling = require "assetd.polling"

describe("resuming a backlog", function()
  local s, dir, jobs, r, fired
  local ctx = runnerfix.install("--openai-key sk-test --notion-token secret_n")
  local note = ctx.note
  before_each(function() s, dir, jobs, fired = ctx.s, ctx.dir, ctx.jobs, ctx.fired end)

  local wait_for = sim.eventually
  local sizes = {video = 3000, thumbnail = 100, spritesheet = 100}
  local function count(name, prefix)
    local n = 0
    for _, f in ipairs(fired) do
      if f.name == name and (not prefix or f.job.notionPageId:sub(1, #prefix) == prefix) then n = n + 1 end
    end
    return n
  end
  -- Jobs with a task now (the queued ones have none).
  local function with_task()
    local n = 0
    for _, me in pairs(r.running) do
      if me.task and me.task:status() ~= "done" then n = n + 1 end
    end
    return n
  end
  local function content_requests(video)
    local n = 0
    for _, e in ipairs(s:log()) do
      if e.path:match("^/v1/videos/" .. video .. "/content") then n = n + 1 end
    end
    return n
  end

  -- A store of PENDING pending and WAITING waiting jobs (as a crash leaves them), then a
  -- runner started over it.
  local function start(pending, waiting, o)
    local now = assetd.now()
    for i = 1, pending do
      assert(jobs:create{notionPageId = "pp" .. i, soraVideoId = "vp" .. i, batchId = "b", provider = "openai",
                         status = "pending", completedAt = now, expiresAt = now + 60 + i})
    end
    for i = 1, waiting do
      assert(jobs:create{notionPageId = "pw" .. i, soraVideoId = "vw" .. i, batchId = "b", provider = "openai",
                         status = "waiting"})
    end
    r = runner.new{
      jobs = jobs, versions = assert(versions.open{root = dir .. "/root", jobs = jobs}),
      providers = {openai = openai.new{base_url = s.openai, api_key = "sk-test"}},
      alerts = {warn_before = 100, expiring = note("expiring"), expired = note("expired"), failed = note("failed"),
                completed = note("completed"), stall_after = o.stall_after or 600, stalled = note("stalled"),
                at_risk = note("at_risk")},
      retry = {base = 0.1, cap = 0.5, margin = 0.5},
      poll = o.poll or {interval = 0.2, max = 0.5}, max_jobs = o.max_jobs,
    }
    r:start()
  end

  it("gives at most max_jobs of them a task and polls a few at a time, arms every deadline at once, stores them all", function()
    for i = 1, 12 do s:video{id = "vp" .. i, sizes = sizes} end
    for i = 1, 20 do s:video{id = "vw" .. i, sizes = sizes} end
    s:fault{path = "content", kind = "slow", rate = 30000, count = 100}
    start(12, 20, {max_jobs = 2})
    assetd.sleep(0.3)
    -- the expiring alert (warn_before 100 s) of every pending job, queued or not
    assert.are.equal(12, count("expiring", "pp"))
    local most = 0
    for _ = 1, 60 do
      local n = with_task()
      most = math.max(most, n)
      if count("completed") == 32 then break end
      assetd.sleep(0.1)
    end
    wait_for(function() return count("completed") == 32 end, 20, "every job stored")
    assert.is_true(most <= 2 + polling.MAX_POLLS, "tasks at once: " .. most)
    for i = 1, 12 do assert.are.equal("completed", jobs:get("pp" .. i).status) end
    for i = 1, 20 do assert.are.equal("completed", jobs:get("pw" .. i).status) end
    wait_for(function() return next(r.running) == nil end, 5, "every run to end")
  end)

  it("a queued job canceled is never downloaded and a retry runs it; a webhook polls a queued waiting job at once", function()
    for i = 2, 4 do s:video{id = "vp" .. i, sizes = sizes} end
    s:video{id = "vp1", sizes = {video = 40000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = "vp1/content", kind = "slow", rate = 20000, count = 3}
    s:video{id = "vw1", completes_in = 600, sizes = sizes}
    start(4, 1, {max_jobs = 1, poll = {interval = 30, max = 30}})
    assetd.sleep(0.2)
    assert.are.equal("downloading", jobs:get("pp1").status)   -- the earliest deadline first
    assert.is_truthy(r.running[jobs:get("pp4").id], "a queued job counts as running")
    local job = assert(r:cancel_job("pp4"))
    assert.are.equal("failed", job.status)
    assert.are.equal("canceled by operator", job.error)
    assert.is_nil(r.running[job.id])
    wait_for(function() return jobs:get("pp3").status == "completed" end, 10, "the jobs before it")
    assetd.sleep(0.3)
    assert.are.equal("failed", jobs:get("pp4").status)
    assert.are.equal(0, content_requests("vp4"), "the canceled job was downloaded")
    assert(r:retry_job("pp4"))
    wait_for(function() return jobs:get("pp4").status == "completed" end, 10, "the retried job")
    -- the waiting job was polled once (in progress) and sleeps 30 s as data; a webhook wakes it
    assert.are.equal("waiting", jobs:get("pw1").status)
    s:video{id = "vw1", sizes = sizes}
    assert.is_true(r:on_video_event("vw1", "completed"))
    wait_for(function() return jobs:get("pw1").status == "completed" end, 5, "the woken job")
  end)

  it("a queued job waiting its turn is no stall; one whose polls fail is stalled, as its own watch would say", function()
    s:video{id = "vp1", sizes = {video = 30000, thumbnail = 100, spritesheet = 100}}
    s:video{id = "vp2", sizes = sizes}
    s:video{id = "vw1", sizes = sizes}
    s:fault{path = "vp1/content", kind = "slow", rate = 3000, count = 3}
    s:fault{path = "videos/vw1$", kind = "status", status = 503, count = -1}
    start(2, 1, {max_jobs = 1, stall_after = 1})
    wait_for(function() return count("stalled", "pw1") == 1 end, 5, "the failing queued job's stalled alert")
    local c = r:concerns()
    local found
    for _, x in ipairs(c) do if x.job.notionPageId == "pw1" then found = x end end
    assert.is_truthy(found and found.stalled)
    assetd.sleep(1.5)
    assert.are.equal(1, count("stalled", "pw1"), "fired once")
    -- pp2 waited for pp1's slot all along: its turn, not a stall
    assert.are.equal(0, count("stalled", "pp2"))
    assert.are.equal(0, count("at_risk", "pp2"))
    for _, page in ipairs{"pp1", "pp2", "pw1"} do
      local job = jobs:get(page)
      if job.status ~= "completed" then assert(r:cancel_job(page)) end
    end
    wait_for(function() return next(r.running) == nil and not r.sweeper end, 5, "every run and the watch to end")
    assert.are.same({}, r:concerns())
  end)
end)
