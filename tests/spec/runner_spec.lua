-- The job runner end to end against the simulator (OpenAI videos + Notion).
local sim = require "sim"
local runnerfix = require "runnerfix"
local runner = require "assetd.runner"
local versions = require "assetd.versions"
local notion = require "assetd.notion"
local openai = require "assetd.providers.openai"
local urls = require "assetd.providers.urls"

describe("job runner", function()
  local s, dir, jobs, r, fired
  local ctx = runnerfix.install("--openai-key sk-test --notion-token secret_n")
  local note = ctx.note

  before_each(function()
    s, dir, jobs, fired = ctx.s, ctx.dir, ctx.jobs, ctx.fired
    r = runner.new{
      jobs = jobs, versions = assert(versions.open{root = dir .. "/root", jobs = jobs}),
      providers = {openai = openai.new{base_url = s.openai, api_key = "sk-test"}, urls = urls.new{allow_private = true}},
      notion = notion.new{base_url = s.notion, token = "secret_n", rate = 20, retry = {base = 0.05, cap = 0.1, attempts = 2}},
      properties = function(job) return notion.properties(job, "http://cdn.test/generated-videos") end,
      alerts = {warn_before = 3, expiring = note("expiring"), expired = note("expired"),
                failed = note("failed"), completed = note("completed")},
      retry = {base = 0.1, cap = 0.5, margin = 0.5},
      poll = {interval = 0.2, max = 0.5},
    }
  end)

  local wait_for = sim.eventually
  local function status(page) return jobs:get(page).status end
  -- The simulator's requests whose path PRED accepts.
  local function requests(pred)
    local n = {}
    for _, e in ipairs(s:log()) do
      if pred(e.path) then n[#n + 1] = e end
    end
    return n
  end
  local function content_requests() return requests(function(path) return path:match("/content") end) end
  local function status_polls(id) return #requests(function(path) return path == "/v1/videos/" .. id end) end

  it("downloads all variants together, stores V1 byte-exact, records it on Notion", function()
    s:video{id = "video_1", sizes = {video = 300000, thumbnail = 100000, spritesheet = 100000}}
    s:fault{path = "video_1/content", kind = "slow", rate = 400000, count = 3}
    assert(r:enqueue{notionPageId = "page-1", soraVideoId = "video_1", batchId = "batch1", completedAt = assetd.now()})
    wait_for(function() return jobs:get("page-1").data and jobs:get("page-1").data:match('"synced"') end)
    local job = jobs:get("page-1")
    assert.are.equal("completed", job.status)
    assert.are.equal(1, job.version)
    local sums = s:info("video_1").sha256
    for _, a in ipairs(jobs:assets(job)) do
      assert.are.equal(sums[a.type], a.sha256)
      assert.are.equal(sums[a.type], sim.sha256_file(a.filePath))
    end
    local reqs = content_requests()
    assert.are.equal(3, #reqs)
    -- started together: each takes >= 0.25 s, yet all three arrived within 0.2 s
    assert.is_true(reqs[3].t - reqs[1].t < 0.2, "variants were not started together")
    local page = s:call("GET", "/_control/notion").pages["page-1"]
    assert.are.same({url = "http://cdn.test/generated-videos/batch1/video_1_V1.mp4"}, page["Video URL"])
    assert.are.same({select = {name = "Completed"}}, page.Status)
    assert.are.same({number = 1}, page.Version)
    assert.are.equal("completed", fired[1].name)
  end)

  it("records a variant committed before a crash from its file, without downloading it", function()
    local job = assert(jobs:create{notionPageId = "page-c", soraVideoId = "video_c", batchId = "batch1",
                                   provider = "openai", status = "waiting"})
    job = assert(jobs:transition(job.id, "pending", {version = 1}))
    local path = assert(r.versions:path{batchId = "batch1", videoId = "video_c", version = 1, variant = "video"})
    local f = assert(io.open(path, "wb"))
    f:write(string.rep("committed", 50000))
    f:close()
    local part = path:gsub("([^/]+)$", ".%1.part")        -- left by a crash between link and unlink
    assert(os.execute("ln " .. path .. " " .. part))
    assert(r:download_variant(job, {variant = "video", url = s.openai .. "/videos/video_c/content"}))
    assert.is_nil(io.open(part))
    local a = jobs:assets(job)
    assert.are.equal(1, #a)
    assert.are.equal(sim.sha256_file(path), a[1].sha256)
    assert.are.equal(450000, a[1].fileSize)
    assert.are.equal(0, #content_requests())
  end)

  it("does not take over a file put under a version's name after its batch was read", function()
    s:video{id = "video_r", sizes = {video = 2000, thumbnail = 100, spritesheet = 100}}
    r:enqueue{notionPageId = "page-r1", soraVideoId = "video_r", batchId = "br"}
    wait_for(function() return status("page-r1") == "completed" end)
    local v2 = dir .. "/root/br/video_r_V2.mp4"            -- restored from a backup, say
    local f = assert(io.open(v2, "wb"))
    f:write("an older generation")
    f:close()
    r:enqueue{notionPageId = "page-r2", soraVideoId = "video_r", batchId = "br"}
    wait_for(function() return status("page-r2") == "completed" end)
    local job = jobs:get("page-r2")
    assert.are.equal(3, job.version)
    for _, a in ipairs(jobs:assets(job)) do assert.are.equal(s:info("video_r").sha256[a.type], a.sha256) end
    assert.are.equal("an older generation", sim.read(v2))
  end)

  it("a file that appears under its name during the download is recorded, not fought over", function()
    -- as when a run canceled in its commit renames the .part this run resumed
    s:video{id = "video_e", sizes = {video = 200000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = "video_e/content", kind = "slow", rate = 100000, count = 1}
    local job = assert(jobs:create{notionPageId = "page-e", soraVideoId = "video_e", batchId = "be",
                                   provider = "openai", status = "waiting"})
    job = assert(jobs:transition(job.id, "pending", {version = 1, expiresAt = assetd.now() + 30}))
    local path = assert(r.versions:path{batchId = "be", videoId = "video_e", version = 1, variant = "video"})
    local done
    assetd.spawn(function()
      done = {r:download_variant(job, {variant = "video", url = s.openai .. "/videos/video_e/content?variant=video",
                                       headers = {Authorization = "Bearer sk-test"}})}
    end)
    assetd.sleep(0.5)
    local f = assert(io.open(path, "wb"))
    f:write("committed by the other run")
    f:close()
    wait_for(function() return done end, 10)
    assert.is_truthy(done[1], tostring(done[2]))
    assert.are.equal("committed by the other run", sim.read(path))
    assert.are.equal(1, #jobs:assets(job))
  end)

  it("downloads a completed job again only while its window is open and it is completed", function()
    local job = assert(jobs:create{notionPageId = "page-x", soraVideoId = "video_x", batchId = "b", status = "completed",
                                   completedAt = assetd.now() - 4000, expiresAt = assetd.now() - 400})
    local res, err = r:redownload_job("page-x")
    assert.is_nil(res)
    assert.are.equal("expired", err.category)
    assert.are.equal("completed", status("page-x"))
    job = assert(jobs:create{notionPageId = "page-y", soraVideoId = "video_y", batchId = "b", status = "failed"})
    res, err = r:redownload_job(job.id)
    assert.is_nil(res)
    assert.matches("not completed", err.message)
    assert.are.equal("failed", status("page-y"))
  end)

  it("polls a waiting video until it completes", function()
    s:video{id = "video_w", completes_in = 1, sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    r:enqueue{notionPageId = "page-w", soraVideoId = "video_w", batchId = "b"}
    assert.are.equal("waiting", status("page-w"))
    wait_for(function() return status("page-w") == "completed" end)
  end)

  it("a video the provider keeps answering 404 for fails its waiting job, naming the id", function()
    -- a gateway may not know a video for a moment after its creation: two 404s are waited out
    s:video{id = "video_lag", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = "/videos/video_lag$", kind = "status", status = 404, count = 2}
    r:enqueue{notionPageId = "page-lag", soraVideoId = "video_lag", batchId = "b"}
    r:enqueue{notionPageId = "page-typo", soraVideoId = "video_typo", batchId = "b"}   -- no such video
    wait_for(function() return status("page-typo") == "failed" end, 10)
    local err = jobs:get("page-typo").error
    assert.matches("video_typo not found", err, 1, true)
    assert.matches("soraVideoId", err, 1, true)
    assert.are.equal(3, status_polls("video_typo"))
    local hooked
    for _, f in ipairs(fired) do hooked = hooked or (f.name == "failed" and f.job.notionPageId == "page-typo") end
    assert.is_true(hooked, "the failed hook did not fire")
    wait_for(function() return status("page-lag") == "completed" end, 10)
  end)

  it("another 4xx while waiting fails at once; 408 and 429 are polled again", function()
    s:video{{id = "video_400", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}},
            {id = "video_408", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}}
    s:fault{{path = "/videos/video_400$", kind = "status", status = 400, count = -1},
            {path = "/videos/video_408$", kind = "status", status = 408, count = 2},
            {path = "/videos/video_408$", kind = "429", retry_after = "0", count = 1}}
    r:enqueue{notionPageId = "page-400", soraVideoId = "video_400", batchId = "b"}
    r:enqueue{notionPageId = "page-408", soraVideoId = "video_408", batchId = "b"}
    wait_for(function() return status("page-408") == "completed" end, 10)
    assert.are.equal("failed", status("page-400"))
    assert.matches("HTTP 400", jobs:get("page-400").error)
    assert.are.equal(1, status_polls("video_400"))
  end)

  it("a waiting job honours a Retry-After only up to poll.max", function()
    -- an hour's Retry-After would sleep past the whole download window of the video
    s:video{id = "video_ra", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = "/videos/video_ra$", kind = "429", retry_after = "3600", count = 1}
    r:enqueue{notionPageId = "page-ra", soraVideoId = "video_ra", batchId = "b"}
    wait_for(function() return status("page-ra") == "completed" end, 5)
    assert.are.equal(2, status_polls("video_ra"))
  end)

  it("a Notion outage never re-downloads; the sync catches up", function()
    s:video{id = "video_n", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = "/notion/v1/pages", kind = "status", status = 503, count = 4}
    r:enqueue{notionPageId = "page-n", soraVideoId = "video_n", batchId = "b"}
    wait_for(function() return (jobs:get("page-n").data or ""):match('"synced"') end, 20)
    assert.are.equal(3, #content_requests())
    assert.are.equal("completed", status("page-n"))
  end)

  it("a Notion answer that is not JSON is retried by the sync instead of crashing it", function()
    s:video{id = "video_j", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    -- both attempts of the first update get a proxy's page; the sync's own retry then gets through
    s:fault{path = "/notion/v1/pages", kind = "status", status = 200, body = "<html>gateway</html>", count = 2}
    r:enqueue{notionPageId = "page-j", soraVideoId = "video_j", batchId = "b"}
    wait_for(function() return (jobs:get("page-j").data or ""):match('"synced"') end, 15)
    assert.are.equal("completed", status("page-j"))
    assert.are.equal(3, #content_requests())
  end)

  it("properties that cannot be encoded mark the Notion sync failed, naming why", function()
    r.properties = function() return {Hook = {url = print}} end
    s:video{id = "video_k", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    r:enqueue{notionPageId = "page-k", soraVideoId = "video_k", batchId = "b"}
    local d = wait_for(function()
      local data = r:data(jobs:get("page-k"))
      return data.notion == "failed" and data
    end)
    assert.matches("Cannot serialise function", d.notionError)
    assert.are.equal(0, #s:call("GET", "/_control/notion").patches)
  end)

  it("syncs a completed job left pending on Notion without arming its deadline timers", function()
    local job = assert(jobs:create{notionPageId = "page-c", soraVideoId = "video_c", batchId = "b", status = "completed",
                                   completedAt = assetd.now(), expiresAt = assetd.now() + 3600})
    assert(jobs:transition(job, "completed", {data = '{"notion":"pending"}'}))
    r:start()
    wait_for(function() return (jobs:get("page-c").data or ""):match('"synced"') and not r.running[job.id] end)
    assert.is_nil(r.timers[job.id])
    assert.are.equal(0, #content_requests())
  end)

  it("fires expiring at expiresAt - warn_before, then expires what cannot finish", function()
    local expires = assetd.now() + 5
    s:fault{path = "/files/slow", kind = "429", retry_after = "1", count = -1}
    r:enqueue{notionPageId = "page-e", soraVideoId = "video_e", batchId = "b", provider = "urls",
              expiresAt = expires, assets = {{variant = "video", url = s.url .. "/files/slow.mp4?size=1000"}}}
    wait_for(function() return status("page-e") == "expired" end, 15)
    local warn
    for _, f in ipairs(fired) do if f.name == "expiring" then warn = f end end
    assert.is_not_nil(warn, "expiring did not fire")
    assert.is_true(math.abs(warn.t - (expires - 3)) < 1, "expiring fired at the wrong time")
    assert.are.equal("expired", fired[#fired].name)
  end)

  it("checks a new provider's variant by the signature formats.lua gives it, no C: a wrong file is retried, the right one stored", function()
    local formats = require "assetd.formats"
    formats.variants.audio = {ext = "mp3", content_type = "audio/mpeg", head = {{0, "ID3"}}}
    finally(function() formats.variants.audio = nil end)
    local good = "ID3\4\0\0" .. string.rep("a", 5000)
    s:fault{{path = "^/files/song", kind = "status", status = 200, count = 1,
             body_base64 = assetd.base64_encode("RIFF" .. good:sub(5))},
            {path = "^/files/song", kind = "status", status = 200, count = -1, body_base64 = assetd.base64_encode(good)}}
    r:enqueue{notionPageId = "page-au", soraVideoId = "video_au", batchId = "b", provider = "urls",
              expiresAt = assetd.now() + 60, assets = {{variant = "audio", url = s.url .. "/files/song.mp3"}}}
    wait_for(function() return status("page-au") == "completed" end, 15)
    local refused
    for _, e in ipairs(jobs:events(jobs:get("page-au"))) do
      if e.kind == "retry" and e.detail:find('audio: bytes at 0 are not "ID3"', 1, true) then refused = true end
    end
    assert.is_true(refused, "the wrong file was not refused")
    local a = jobs:assets(jobs:get("page-au"))
    assert.are.equal(1, #a)
    assert.are.equal(good, sim.read(a[1].filePath))
  end)

  it("a server failing instantly near the deadline gets a few dozen tries, not a tight loop", function()
    -- the default policy, whose 5 s margin holds the whole 4 s left: every wait there used to
    -- be 0 (thousands of requests and retry events); a 429 saying Retry-After: 0 did the same
    r.retry = nil
    local expires = assetd.now() + 4
    s:fault{{path = "/files/busy", kind = "status", status = 503, count = -1},
            {path = "/files/hurry", kind = "429", retry_after = "0", count = -1}}
    for _, name in ipairs{"busy", "hurry"} do
      r:enqueue{notionPageId = "page-" .. name, soraVideoId = "video_" .. name, batchId = "b", provider = "urls",
                expiresAt = expires, assets = {{variant = "video", url = s.url .. "/files/" .. name .. ".mp4?size=1000"}}}
    end
    wait_for(function() return status("page-busy") == "expired" and status("page-hurry") == "expired" end, 10)
    for _, name in ipairs{"busy", "hurry"} do
      local tries, last, retries = 0, 0, 0
      for _, e in ipairs(s:log()) do
        if e.path:match("^/files/" .. name) then tries, last = tries + 1, e.t end
      end
      for _, e in ipairs(jobs:events(jobs:get("page-" .. name))) do
        if e.kind == "retry" then retries = retries + 1 end
      end
      assert.is_true(tries >= 4 and tries <= 24, name .. ": " .. tries .. " requests in 4 s")
      assert.is_true(retries <= 24, name .. ": " .. retries .. " retry events")
      assert.is_true(last > expires - 1, name .. ": gave up before the deadline")   -- every chance taken
    end
  end)

  it("a failed generation fails the job with the API's message", function()
    s:video{id = "video_f", status = "failed", error = {code = "moderation_blocked", message = "blocked by moderation"}}
    r:enqueue{notionPageId = "page-f", soraVideoId = "video_f", batchId = "b"}
    wait_for(function() return status("page-f") == "failed" end)
    assert.are.equal("blocked by moderation", jobs:get("page-f").error)
    assert.are.equal("failed", fired[1].name)
  end)

  it("a hook that raises is recorded on the job and the job goes on", function()
    r.alerts.completed = function() error("hook exploded") end
    s:video{id = "video_h", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    r:enqueue{notionPageId = "page-h", soraVideoId = "video_h", batchId = "b"}
    wait_for(function() return (jobs:get("page-h").data or ""):match('"synced"') end)
    local found
    for _, e in ipairs(jobs:events(jobs:get("page-h"))) do
      if e.kind == "hook_error" and e.detail:match("hook exploded") then found = true end
    end
    assert.is_true(found)
  end)

  it("names files with a custom naming hook, versions intact", function()
    r.versions = assert(versions.open{root = dir .. "/root", jobs = jobs, naming = function(a)
      return string.format("%s-v%03d-%s.%s", a.videoId, a.version, a.variant, a.ext or "bin")
    end})
    s:video{id = "video_c", sizes = {video = 5000, thumbnail = 500, spritesheet = 700}}
    r:enqueue{notionPageId = "page-c", soraVideoId = "video_c", batchId = "bc"}
    wait_for(function() return status("page-c") == "completed" end)
    local names = {}
    for _, a in ipairs(jobs:assets(jobs:get("page-c"))) do names[a.type] = a.fileName end
    assert.are.same({video = "video_c-v001-video.mp4", thumbnail = "video_c-v001-thumbnail.webp",
                     spritesheet = "video_c-v001-spritesheet.jpg"}, names)
    assert.are.equal(s:info("video_c").sha256.video, sim.sha256_file(dir .. "/root/bc/video_c-v001-video.mp4"))
    local page = s:call("GET", "/_control/notion").pages["page-c"]
    assert.are.same({url = "http://cdn.test/generated-videos/bc/video_c-v001-video.mp4"}, page["Video URL"])
  end)

  it("a burst of Notion 429s loses no update and downloads nothing twice", function()
    s:fault{path = "/notion/v1/pages", kind = "429", retry_after = "0.3", count = 6}
    for i = 1, 4 do
      s:video{id = "video_q" .. i, sizes = {video = 2000, thumbnail = 200, spritesheet = 300}}
      r:enqueue{notionPageId = "page-q" .. i, soraVideoId = "video_q" .. i, batchId = "bq"}
    end
    wait_for(function()
      for i = 1, 4 do
        if not (jobs:get("page-q" .. i).data or ""):match('"synced"') then return false end
      end
      return true
    end, 20)
    local pages = s:call("GET", "/_control/notion").pages
    for i = 1, 4 do
      assert.are.same({url = string.format("http://cdn.test/generated-videos/bq/video_q%d_V1.mp4", i)},
                      pages["page-q" .. i]["Video URL"])
    end
    assert.are.equal(12, #content_requests())
  end)

  it("expires a job whose content became unavailable at its deadline (404 after expires_at)", function()
    -- the video's window closes 2 s after it completes; its first content request is held 3 s,
    -- so the answer that finally comes is the API's 404 for expired content
    s:video{id = "video_x", expires_in = 2, sizes = {video = 4000, thumbnail = 200, spritesheet = 300}}
    s:fault{path = "video_x/content", kind = "delay", seconds = 3, count = 1}
    r:enqueue{notionPageId = "page-x", soraVideoId = "video_x", batchId = "bx"}
    wait_for(function() return status("page-x") == "expired" end, 15)
    assert.matches("deadline passed", jobs:get("page-x").error)
    assert.are.equal("expired", fired[#fired].name)
  end)

  it("writes a failed job's error to its Notion page through on_error", function()
    r.on_error = function(job, message) return notion.error_properties(job, message) end
    s:video{id = "video_g", status = "failed", error = {code = "moderation_blocked", message = string.rep("x", 2500)}}
    r:enqueue{notionPageId = "page-g", soraVideoId = "video_g", batchId = "b"}
    local page = wait_for(function() return s:call("GET", "/_control/notion").pages["page-g"] end)
    assert.are.same({select = {name = "Download Failed"}}, page.Status)
    local text = page["Download Error"].rich_text[1].text.content
    assert.is_true(utf8.len(text) <= 2000)
    assert.matches("^xxxx", text)
  end)

  it("with one download slot, the earliest deadline downloads first", function()
    r.slots = require("assetd.slots").new(1)
    local now = assetd.now()
    local order = {}
    r.alerts.completed = function(job) order[#order + 1] = job.notionPageId end
    s:fault{path = "/files/first", kind = "slow", rate = 200000, count = 1}
    r:enqueue{notionPageId = "page-s0", soraVideoId = "video_s0", batchId = "bs", provider = "urls",
              expiresAt = now + 900, assets = {{variant = "video", url = s.url .. "/files/first.mp4?size=100000"}}}
    assetd.sleep(0.1)                                  -- s0 holds the slot for ~0.5 s
    for i, left in ipairs{600, 60, 300} do
      r:enqueue{notionPageId = "page-s" .. i, soraVideoId = "video_s" .. i, batchId = "bs", provider = "urls",
                expiresAt = now + left, assets = {{variant = "video", url = s.url .. "/files/s" .. i .. ".mp4?size=1000"}}}
    end
    wait_for(function() return #order == 4 end)
    assert.are.same({"page-s0", "page-s2", "page-s3", "page-s1"}, order)
  end)

  it("a variant that raises fails its job instead of leaving it hanging", function()
    r.versions = assert(versions.open{root = dir .. "/root", jobs = jobs, naming = function(a)
      if a.variant == "thumbnail" then error("naming exploded") end
      return require("assetd.naming").default(a)
    end})
    s:video{id = "video_r", sizes = {video = 2000, thumbnail = 200, spritesheet = 300}}
    r:enqueue{notionPageId = "page-r", soraVideoId = "video_r", batchId = "b"}
    wait_for(function() return status("page-r") == "failed" end)
    assert.matches("naming exploded", jobs:get("page-r").error)
    assert.are.equal(32, r.slots.free)                 -- its slot was given back
  end)

  it("a URL that can never work fails at once, without retries", function()
    r.providers.broken = {status = function() return {state = "completed", expiresAt = assetd.now() + 600} end,
                          assets = function() return {{variant = "video", url = "42", ext = "mp4"}} end}
    r:enqueue{notionPageId = "page-u", soraVideoId = "video_u", batchId = "b", provider = "broken"}
    wait_for(function() return status("page-u") == "failed" end, 3)
    assert.matches("no host name", jobs:get("page-u").error)
  end)

  it("a 401 fails at once naming the credential; a manual retry starts again", function()
    s:video{id = "video_a", sizes = {video = 1000, thumbnail = 100, spritesheet = 100}}
    r.providers.openai = openai.new{base_url = s.openai, api_key = "sk-wrong"}
    r:enqueue{notionPageId = "page-a", soraVideoId = "video_a", batchId = "b"}
    wait_for(function() return status("page-a") == "failed" end)
    assert.matches("OPENAI_API_KEY", jobs:get("page-a").error)
    r.providers.openai = openai.new{base_url = s.openai, api_key = "sk-test"}
    assert(r:retry_job("page-a"))
    wait_for(function() return status("page-a") == "completed" end)
    assert.are.equal(1, jobs:get("page-a").retryCount)
  end)
end)
