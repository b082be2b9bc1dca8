-- Download slots: a fixed number, handed out earliest deadline first, robust to cancellation.
local slots = require "assetd.slots"

describe("download slots", function()
  it("hands slots out earliest deadline first, ties in arrival order", function()
    local s = slots.new(1)
    assert.is_true(s:acquire(100))
    local order = {}
    for i, d in ipairs{50, 10, 30, 10} do
      assetd.spawn(function()
        assert.is_true(s:acquire(d))
        order[#order + 1] = d .. "/" .. i           -- the spawn index tells the two 10s apart
        assetd.sleep(0.01)
        s:release()
      end)
    end
    assetd.sleep(0.01)
    assert.are.equal(4, s:waiting())
    s:release()
    local t0 = assetd.monotonic()
    while #order < 4 and assetd.monotonic() - t0 < 2 do assetd.sleep(0.01) end
    assert.are.same({"10/2", "10/4", "30/3", "50/1"}, order)
    assetd.sleep(0.05)                               -- the last holder releases after its sleep
    assert.are.equal(1, s.free)                      -- every slot came back (acquire would wait)
  end)

  it("skips a waiter canceled while queued, and a granted one canceled before waking", function()
    local s = slots.new(1)
    assert.is_true(s:acquire())
    local got = {}
    local a = assetd.spawn(function() got.a = s:acquire(1) end)
    local b = assetd.spawn(function() got.b = s:acquire(2) end)
    assetd.sleep(0.01)
    a:cancel()
    assetd.sleep(0.01)
    assert.is_false(got.a)
    s:release()                                        -- goes to b, not to the canceled a
    assetd.sleep(0.01)
    assert.is_true(got.b)
    local c = assetd.spawn(function() got.c = s:acquire(3) end)
    assetd.sleep(0.01)
    s:release()                                        -- granted to c ...
    c:cancel()                                         -- ... which is canceled before it runs
    assetd.sleep(0.01)
    assert.is_false(got.c)
    assert.are.equal(1, s.free)                        -- the slot was given back
  end)

  it("tells its waiters in the order it will serve them, without the canceled or the served", function()
    local s = slots.new(1)
    assert.is_true(s:acquire(100, "holder"))
    local tasks = {}
    for i, d in ipairs{50, 10, 30, false, 10} do
      tasks[i] = assetd.spawn(function() if s:acquire(d or nil, "job" .. i) then s.got = "job" .. i end end)
    end
    assetd.sleep(0.01)
    local function names()
      local out = {}
      for _, w in ipairs(s:order()) do out[#out + 1] = w.who .. "@" .. (w.deadline == math.huge and "none" or w.deadline) end
      return out
    end
    assert.are.same({"job2@10", "job5@10", "job3@30", "job1@50", "job4@none"}, names())
    tasks[3]:cancel()
    assetd.sleep(0.01)
    assert.are.same({"job2@10", "job5@10", "job1@50", "job4@none"}, names())
    s:release()                                      -- to job2, which keeps it
    assetd.sleep(0.01)
    assert.are.equal("job2", s.got)
    assert.are.same({"job5@10", "job1@50", "job4@none"}, names())
    for _, t in ipairs(tasks) do t:cancel() end
  end)
end)
