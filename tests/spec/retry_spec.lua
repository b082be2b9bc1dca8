-- The download retry policy (pure decisions, no waiting).
local retry = require "assetd.retry"

describe("assetd.retry", function()
  local function e(t) return setmetatable(t, {__tostring = function(x) return x.message or "err" end}) end
  local half = function() return 0.5 end

  it("fails at once on 401/403 and auth errors", function()
    assert.are.equal("fail", retry.decide(e{status = 401, category = "http"}, 1, nil, 0).action)
    assert.are.equal("fail", retry.decide(e{status = 403, category = "http"}, 1, nil, 0).action)
    assert.are.equal("fail", retry.decide(e{category = "auth", message = "check OPENAI_API_KEY"}, 1, nil, 0).action)
  end)

  it("honours Retry-After on 429", function()
    local d = retry.decide(e{status = 429, category = "http", retry_after = 7}, 1, nil, 0)
    assert.are.same({action = "retry", delay = 7}, d)
  end)

  it("backs off exponentially with jitter on 5xx, network errors and timeouts", function()
    local d1 = retry.decide(e{status = 500, category = "http"}, 1, nil, 0, nil, half).delay
    local d3 = retry.decide(e{category = "network"}, 3, nil, 0, nil, half).delay
    local d9 = retry.decide(e{category = "timeout"}, 7, nil, 0, {cap = 10, attempts = 20}, half).delay
    assert.are.equal(0.75, d1)
    assert.are.equal(3, d3)
    assert.are.equal(7.5, d9)
  end)

  it("never waits past the deadline, shortening the wait near it", function()
    local d = retry.decide(e{status = 429, category = "http", retry_after = 120}, 1, 1000, 900)
    assert.are.equal("retry", d.action)
    assert.are.equal(47.5, d.delay)            -- (1000 - 900 - 5) / 2
    assert.are.equal(1, retry.decide(e{category = "network"}, 3, 1000, 996, nil, half).delay)   -- the floor
  end)

  it("never retries sooner than a floor growing with the attempt, Retry-After: 0 included", function()
    for attempt, floor in ipairs{0.25, 0.5, 1, 2, 4, 4} do
      local d = retry.decide(e{status = 429, category = "http", retry_after = 0}, attempt, nil, 0)
      assert.are.same({action = "retry", delay = floor}, d)
    end
    assert.are.equal(0.1, retry.decide(e{category = "network"}, 1, nil, 0, {floor = 0.1, base = 0.01}).delay)
  end)

  it("inside the margin goes on trying at the floor, the last wait ending at the deadline", function()
    assert.are.equal(0.5, retry.decide(e{category = "network"}, 2, 1000, 997).delay)     -- not 0
    assert.are.equal(4, retry.decide(e{status = 503, category = "http"}, 9, 1000, 992).delay)
    assert.are.equal(1.5, retry.decide(e{status = 503, category = "http"}, 9, 1000, 998.5).delay)
    assert.are.equal("expire", retry.decide(e{status = 503, category = "http"}, 10, 1000, 1000).action)
  end)

  it("expires after the deadline, a 404 included", function()
    assert.are.equal("expire", retry.decide(e{status = 404, category = "http"}, 1, 1000, 1001).action)
    assert.are.equal("fail", retry.decide(e{status = 404, category = "http"}, 1, 1000, 900).action)
  end)

  it("gives up after its attempts and on other 4xx", function()
    assert.are.equal("fail", retry.decide(e{category = "network"}, 8, nil, 0).action)
    assert.are.equal("fail", retry.decide(e{status = 400, category = "http"}, 1, nil, 0).action)
    assert.are.equal("retry", retry.decide(e{category = "validation"}, 1, nil, 0).action)
    assert.are.equal("retry", retry.decide(e{category = "network"}, 50, 1000, 900).action)  -- the deadline decides
  end)
end)
