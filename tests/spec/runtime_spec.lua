-- The assetd core module: time, sleep, timers, tasks, errors, logging helpers.
describe("assetd runtime", function()
  it("sleep waits about as long as asked and lets other tasks run", function()
    local t0 = assetd.monotonic()
    local ran = false
    assetd.spawn(function() ran = true end)
    assert.is_true(assetd.sleep(0.05))
    local dt = assetd.monotonic() - t0
    assert.is_true(ran)
    assert.is_true(dt >= 0.045, "slept " .. dt)
  end)

  it("now is unix time with sub-second precision", function()
    local n = assetd.now()
    assert.is_true(math.abs(n - os.time()) < 2)
    assert.are_not.equal(math.floor(n), n + 0.5)
  end)

  it("timer fires its callback exactly once; a cancelled timer never fires", function()
    local fired, never = 0, 0
    assetd.timer(0.01, function() fired = fired + 1 end)
    local h = assetd.timer(0.01, function() never = never + 1 end)
    assert.is_true(h:cancel())
    assert.is_false(h:cancel())
    assetd.sleep(0.05)
    assert.are.equal(1, fired)
    assert.are.equal(0, never)
  end)

  it("at() fires at a wall-clock time", function()
    local when = assetd.now() + 0.05
    local got
    assetd.at(when, function() got = assetd.now() end)
    assetd.sleep(0.15)
    assert.is_not_nil(got)
    assert.is_true(got >= when - 0.005, "fired early")
  end)

  it("timer callbacks may wait, since they run as tasks", function()
    local done = false
    assetd.timer(0, function() assetd.sleep(0.01); done = true end)
    assetd.sleep(0.05)
    assert.is_true(done)
  end)

  it("spawn passes arguments and an error goes to the handler, not the caller", function()
    local got, msg
    assetd.spawn(function(a, b) got = a + b end, 2, 3)
    assert.are.equal(5, got)
    assetd.spawn({on_error = function(m) msg = m end}, function() error("boom") end)
    assert.matches("boom", msg)
    assert.matches("stack traceback", msg)
  end)

  it("a cancelled task's sleep returns a canceled error", function()
    local r1, r2
    local t = assetd.spawn(function() r1, r2 = assetd.sleep(10) end)
    assert.are.equal("waiting", t:status())
    t:cancel()
    assetd.sleep(0.02)
    assert.is_nil(r1)
    assert.are.equal("canceled", r2.category)
    assert.are.equal("done", t:status())
  end)

  it("refuses to wait outside a task with a clear error", function()
    local ok, err = coroutine.wrap(function() return pcall(assetd.sleep, 0) end)()
    assert.is_false(ok)
    assert.matches("must be called from an assetd task", err)
  end)

  it("error values print their message", function()
    local e = assetd.error("http", "HTTP 500", {status = 500})
    assert.are.equal("HTTP 500", tostring(e))
    assert.are.equal(500, e.status)
    assert.are.equal("http", e.category)
  end)

  it("knows which field names hold secrets", function()
    assert.is_true(assetd.is_secret_key("NOTION_TOKEN"))
    assert.is_true(assetd.is_secret_key("authorization"))
    assert.is_false(assetd.is_secret_key("batchId"))
  end)

  it("an alarm cuts a sleep short when rung, and only then", function()
    local a = assetd.alarm()
    local t0 = assetd.monotonic()
    assert.is_false(a:sleep(0.05))                            -- nobody rang: the time ran out
    assert.is_true(assetd.monotonic() - t0 >= 0.04)
    assetd.timer(0.05, function() a:ring() end)
    t0 = assetd.monotonic()
    assert.is_true(a:sleep(5))                                -- rung after 0.05 s of 5
    assert.is_true(assetd.monotonic() - t0 < 1)
    a:ring()                                                  -- rung while nobody slept
    t0 = assetd.monotonic()
    assert.is_true(a:sleep(5))
    assert.is_true(assetd.monotonic() - t0 < 0.5)
    local result = "pending"
    local task = assetd.spawn(function() result = {a:sleep(5)} end)
    assetd.sleep(0.02)
    task:cancel()
    assetd.sleep(0.02)
    assert.is_nil(result[1])
    assert.are.equal("canceled", result[2].category)
  end)

  -- A child daemon stops, then asks for a timer, an at() and a sleep: none may run Lua after
  -- the stop or keep the daemon from exiting (it waited for each, then ran the callback).
  it("after assetd.stop(), timers never fire and a sleep never ends; the daemon exits at once", function()
    local sim = require "sim"
    local script = sim.script([[
      assetd.stop()
      local t = assetd.timer(3, function() print("timer ran") end)
      assetd.at(assetd.now() + 3, function() print("at ran") end)
      print(tostring(t), t:cancel())
      assetd.spawn(function() assetd.sleep(3) print("sleep ended") end)
      local a = assetd.alarm()
      assetd.spawn(function() a:sleep(3) print("alarm sleep ended") end)
      collectgarbage() collectgarbage()
      assetd.timer(0, function() end)
      a:ring()
      print("done")
    ]])
    local t0 = assetd.monotonic()
    local out, rc = sim.run("timeout 10 " .. (os.getenv("ASSETD_BIN") or "./assetd") .. " " .. script)
    os.remove(script)
    assert.are.equal("assetd.timer(done)\tfalse\ndone\n", out)
    assert.are.equal(0, rc)
    assert.is_true(assetd.monotonic() - t0 < 2)
  end)

  it("preloads cjson from the binary", function()
    local cjson = require "cjson"
    assert.are.same({a = {1, 2}}, cjson.decode(cjson.encode({a = {1, 2}})))
  end)
end)
