-- Providers against the simulator: the OpenAI-compatible videos API and signed URLs.
local sim = require "sim"
local openai = require "assetd.providers.openai"
local urls = require "assetd.providers.urls"

describe("providers", function()
  local s
  setup(function() s = sim.start("--openai-key sk-test") end)
  teardown(function() s:stop() end)
  before_each(function() s:reset() end)

  local function p(key) return openai.new{base_url = s.openai, api_key = key or "sk-test"} end

  it("openai: a completed video gives its API expires_at", function()
    s:video{id = "video_ok", expires_in = 1800}
    local st = assert(p():status{soraVideoId = "video_ok"})
    assert.are.equal("completed", st.state)
    assert.is_true(math.abs(st.expiresAt - (st.completedAt + 1800)) < 1)
  end)

  it("openai: in progress is waiting; failed carries the API's message", function()
    s:video{{id = "video_wip", completes_in = 60}, {id = "video_bad", status = "failed",
            error = {code = "moderation_blocked", message = "Your request was blocked"}}}
    assert.are.equal("waiting", p():status{soraVideoId = "video_wip"}.state)
    local st = p():status{soraVideoId = "video_bad"}
    assert.are.equal("failed", st.state)
    assert.are.equal("Your request was blocked", st.error)
  end)

  it("openai: no expires_at leaves the deadline to the caller", function()
    s:video{id = "video_ne", no_expires_at = true}
    local st = assert(p():status{soraVideoId = "video_ne"})
    assert.is_nil(st.expiresAt)
    assert.is_not_nil(st.completedAt)
  end)

  it("openai: ISO 8601 times are read; milliseconds, far-off years and junk are ignored", function()
    -- a gateway's ISO strings failed the job ("bad argument #-2 to 'transition'"), and
    -- milliseconds put the deadline in the year 55000, where no alert or expiry ever fires
    local now = math.floor(assetd.now())
    local function answer(id, completed, expires)
      s:fault{path = "/videos/" .. id .. "$", kind = "status", status = 200, count = -1, body = {
        id = id, object = "video", status = "completed", progress = 100, completed_at = completed, expires_at = expires}}
    end
    answer("video_iso", os.date("!%Y-%m-%dT%H:%M:%SZ", now), os.date("!%Y-%m-%dT%H:%M:%S.5+00:00", now + 3600))
    answer("video_ms", now * 1000, (now + 3600) * 1000)
    answer("video_far", now, now + 20 * 365 * 86400)
    answer("video_junk", "yesterday", true)
    local st = assert(p():status{soraVideoId = "video_iso"})
    assert.are.same({now, now + 3600.5}, {st.completedAt, st.expiresAt})
    for id, completed in pairs{video_ms = false, video_far = now, video_junk = false} do
      st = assert(p():status{soraVideoId = id})
      assert.are.equal("completed", st.state)
      assert.are.equal(completed or nil, st.completedAt, id)
      assert.is_nil(st.expiresAt, id)
    end
  end)

  it("openai: a wrong key is an auth error naming the credential, never the key", function()
    s:video{id = "video_k"}
    local st, err = p("sk-wrong"):status{soraVideoId = "video_k"}
    assert.is_nil(st)
    assert.are.equal("auth", err.category)
    assert.matches("OPENAI_API_KEY", tostring(err))
    assert.is_nil(tostring(err):find("sk-wrong", 1, true))
    assert.is_nil(tostring(p("sk-wrong")):find("sk-wrong", 1, true))
  end)

  it("openai: asset URLs for the configured variants, fetchable", function()
    s:video{id = "video_a"}
    local list = openai.new{base_url = s.openai, api_key = "sk-test", variants = {"video", "thumbnail"}}:assets{soraVideoId = "video_a"}
    assert.are.equal(2, #list)
    assert.are.equal("webp", list[2].ext)
    local res = assert(assetd.fetch{url = list[2].url, headers = list[2].headers, sink = "memory"})
    assert.are.equal(s:info("video_a").sha256.thumbnail, res.sha256)
  end)

  it("urls: complete at once with the job's own deadline and URLs", function()
    local job = {expiresAt = assetd.now() + 600, assets = {
      {variant = "video", url = s.url .. "/files/x.mp4?size=1000"},
      {variant = "thumbnail", url = s.url .. "/files/x.webp?kind=thumbnail&size=100"}}}
    local p = urls.new{allow_private = true}      -- the simulator is on 127.0.0.1
    local st = p:status(job)
    assert.are.equal("completed", st.state)
    assert.are.equal(job.expiresAt, st.expiresAt)
    local list = p:assets(job)
    assert.are.equal("mp4", list[1].ext)
    assert(assetd.fetch{url = list[1].url, sink = "memory"})
    assert.are.equal("failed", urls.new():status{assets = {}}.state)
    local dup = urls.new():status{assets = {{variant = "video", url = "http://x/a"}, {variant = "video", url = "http://x/b"}}}
    assert.are.equal("failed", dup.state)
    assert.matches("repeats variant video", dup.error)
  end)
end)
