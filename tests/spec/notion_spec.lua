-- The Notion client against the simulator: pacing, 429, 5xx, 400, the default mapping.
local sim = require "sim"
local notion = require "assetd.notion"

describe("assetd.notion", function()
  local s
  setup(function() s = sim.start("--notion-token secret_test") end)
  teardown(function() s:stop() end)
  before_each(function() s:reset() end)

  local function client(opts)
    opts = opts or {}
    opts.token, opts.base_url = "secret_test", s.notion
    opts.retry = opts.retry or {base = 0.05, cap = 0.2}
    return notion.new(opts)
  end

  local function patches() return s:call("GET", "/_control/notion").patches end

  it("patches a page with the token and Notion-Version", function()
    local page = assert(client():update_page("page-1", {Version = {number = 2}}))
    assert.are.equal("page-1", page.id)
    local p = patches()
    assert.are.equal(1, #p)
    assert.are.equal("2026-03-11", p[1].notion_version)
    assert.are.same({Version = {number = 2}}, p[1].properties)
  end)

  it("keeps all requests of a client under its rate", function()
    local c = client{rate = 10}
    local t0, done = assetd.monotonic(), 0
    for i = 1, 10 do
      assetd.spawn(function() assert(c:update_page("p" .. i, {})); done = done + 1 end)
    end
    while done < 10 do assetd.sleep(0.02) end
    assert.is_true(assetd.monotonic() - t0 >= 0.85, "10 requests at 10/s took under 0.9 s")
  end)

  -- N concurrent updates of pages PREFIX..i, each setting {N = i}; returns once all succeeded.
  local function update_all(c, prefix, n)
    local done = 0
    for i = 1, n do
      assetd.spawn(function() assert(c:update_page(prefix .. i, {N = {number = i}})); done = done + 1 end)
    end
    sim.eventually(function() return done == n end, 10, n .. " updates")
  end

  it("rides out a burst of 429s without losing an update", function()
    s:fault{path = "/notion/v1/pages", kind = "429", retry_after = "1", count = 3}
    update_all(client{rate = 50}, "q", 5)
    local pages = s:call("GET", "/_control/notion").pages
    for i = 1, 5 do assert.are.same({N = {number = i}}, pages["q" .. i]) end
  end)

  it("sends nothing inside a 429's Retry-After, not even requests that were already waiting", function()
    s:fault{path = "/notion/v1/pages", kind = "429", retry_after = "1", count = 1}
    update_all(client{rate = 10}, "w", 6)
    local limited, after = nil, {}
    for _, e in ipairs(s:log()) do
      if e.status == 429 then limited = e elseif limited then after[#after + 1] = e.t end
    end
    assert.are.equal(6, #after)
    for i, t in ipairs(after) do
      assert.is_true(t >= limited.t + 1, string.format("request %d went %.3f s into the window", i, t - limited.t))
    end
    -- the held requests leave at the client's rate, not all together when the window ends
    for i = 2, #after do
      local gap = after[i] - after[i - 1]
      assert.is_true(gap >= 0.07, string.format("requests %d and %d went %.3f s apart", i - 1, i, gap))
    end
  end)

  it("caps a Retry-After, so a huge one cannot stall every update", function()
    local wait = client():block(99999999)
    assert.are.equal(notion.MAX_RETRY_AFTER, wait)
    assert.is_true(wait <= 300)
    s:fault{path = "/notion/v1/pages", kind = "429", retry_after = "99999999", count = 1}
    local c, page = client{max_retry_after = 0.5}, nil
    local t0 = assetd.monotonic()
    local task = assetd.spawn(function() page = c:update_page("w9", {}) end)
    finally(function() task:cancel() end)
    sim.eventually(function() return page end, 5, "the update after a capped Retry-After")
    assert.is_true(assetd.monotonic() - t0 >= 0.45)
  end)

  it("backs off on 5xx and succeeds", function()
    s:fault{path = "/notion/v1/pages", kind = "status", status = 502, count = 2}
    local c = client()
    assert(c:update_page("r1", {}))
    assert.are.equal(3, c.requests)
  end)

  it("retries a 409 conflict and a 408 timeout like a 5xx", function()
    -- Notion's reference: 409 conflict_error is a data collision, "try again"
    s:fault{path = "/notion/v1/pages", kind = "status", status = 409, count = 1,
            body = '{"object":"error","status":409,"code":"conflict_error","message":"Conflict occurred while saving."}'}
    s:fault{path = "/notion/v1/pages", kind = "status", status = 408, count = 1}
    local c = client()
    assert(c:update_page("r4", {N = {number = 4}}))
    assert.are.equal(3, c.requests)
    s:fault{path = "/notion/v1/pages", kind = "status", status = 409, count = -1}
    c = client{retry = {attempts = 2, base = 0.01, cap = 0.02}}
    local _, err = c:update_page("r5", {})
    assert.are.equal(2, c.requests)
    assert.is_true(err.retryable)
    assert.are.equal(409, err.status)
  end)

  it("reports a 400 with Notion's own message, without retrying", function()
    s:fault{path = "/notion/v1/pages", kind = "status", status = 400,
            body = '{"object":"error","status":400,"code":"validation_error","message":"Video URL is not a property that exists."}'}
    local c = client()
    local r, err = c:update_page("r2", {})
    assert.is_nil(r)
    assert.are.equal(1, c.requests)
    assert.matches("Video URL is not a property that exists", tostring(err))
    assert.is_false(err.retryable)
  end)

  it("gives up after its attempts with a retryable error, never showing the token", function()
    s:fault{path = "/notion/v1/pages", kind = "status", status = 503, count = -1}
    local c = client{retry = {attempts = 3, base = 0.01, cap = 0.02}}
    local _, err = c:update_page("r3", {})
    assert.is_true(err.retryable)
    assert.matches("after 3 attempts", tostring(err))
    assert.is_nil(tostring(err):find("secret_test", 1, true))
    assert.is_nil(tostring(c):find("secret_test", 1, true))
  end)

  it("retries a 2xx answer that is not JSON (a proxy's page) and reports it as a value", function()
    s:fault{path = "/notion/v1/pages", kind = "status", status = 200, body = "<html>gateway</html>", count = 1}
    local c = client()
    assert(c:update_page("j1", {N = {number = 1}}))
    assert.are.equal(2, c.requests)
    s:fault{path = "/notion/v1/pages", kind = "status", status = 200, body = "", count = -1}
    c = client{retry = {attempts = 2, base = 0.01, cap = 0.02}}
    local page, err = c:update_page("j2", {})
    assert.is_nil(page)
    assert.is_true(err.retryable)
    assert.matches("not JSON", tostring(err))
  end)

  it("refuses properties that cannot be encoded as JSON, without a request", function()
    local c = client()
    for _, bad in ipairs{{Version = {number = 0/0}}, {Hook = {url = print}}} do
      local page, err = c:update_page("j3", bad)
      assert.is_nil(page)
      assert.is_false(err.retryable)
      assert.matches("Cannot serialise", tostring(err))
    end
    assert.are.equal(0, c.requests)
    assert.are.equal(0, #patches())
  end)

  it("builds the default property payload exactly", function()
    local job = {batchId = "b1", version = 2, assets = {
      {type = "video", fileName = "v_V2.mp4", filePath = "/srv/b1/v_V2.mp4"},
      {type = "thumbnail", fileName = "v_V2_thumbnail.webp", filePath = "/srv/b1/v_V2_thumbnail.webp"},
      {type = "spritesheet", fileName = "v_V2_spritesheet.jpg", filePath = "/srv/b1/v_V2_spritesheet.jpg"}}}
    local props = notion.properties(job, "https://cdn.example/generated-videos/")
    assert.are.same({
      ["Video URL"] = {url = "https://cdn.example/generated-videos/b1/v_V2.mp4"},
      ["Thumbnail URL"] = {url = "https://cdn.example/generated-videos/b1/v_V2_thumbnail.webp"},
      ["Spritesheet URL"] = {url = "https://cdn.example/generated-videos/b1/v_V2_spritesheet.jpg"},
      ["Video Path"] = {rich_text = {{type = "text", text = {content = "/srv/b1/v_V2.mp4"}}}},
      ["Thumbnail Path"] = {rich_text = {{type = "text", text = {content = "/srv/b1/v_V2_thumbnail.webp"}}}},
      ["Spritesheet Path"] = {rich_text = {{type = "text", text = {content = "/srv/b1/v_V2_spritesheet.jpg"}}}},
      Version = {number = 2},
      Status = {select = {name = "Completed"}},
    }, props)
    local renamed = notion.properties(job, "", {status = {name = "State", type = "status", value = "Done"},
                                                video_path = false})
    assert.are.same({status = {name = "Done"}}, renamed.State)
    assert.is_nil(renamed["Video Path"])
  end)

  it("an overridden status field keeps the default failed and expired values", function()
    local props = notion.error_properties({status = "failed"}, "boom", {status = {name = "State", type = "select"}})
    assert.are.equal("Download Failed", props.State.select.name)
    props = notion.error_properties({status = "expired"}, "late", {status = {name = "State", type = "select"}})
    assert.are.equal("Expired", props.State.select.name)
  end)

  it("cuts text to Notion's 2,000 characters on a character boundary", function()
    local s2 = notion.truncate(string.rep("é", 1500))
    assert.is_true(#s2 <= 2000 + 3)
    assert.is_truthy(utf8.len(s2))
    assert.are.equal("short", notion.truncate("short"))
  end)
end)
