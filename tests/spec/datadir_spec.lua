-- One daemon per data directory (issue 16): a second `assetd` on the same --data exits 1 at
-- once naming the pid that holds it; the lock goes with the holder, kill -9 included.
local sim = require "sim"
local daemon = require "daemon"

local bin = os.getenv("ASSETD_BIN") or "./assetd"

describe("the data directory", function()
  local d
  teardown(function() if d then d:stop() end end)

  it("a second daemon on the same --data exits 1 naming the first's pid", function()
    d = daemon.start{pipeline = daemon.SIM_PIPELINE}
    local t0 = assetd.monotonic()
    local out, rc = sim.run(string.format("%s %s/pipeline.lua --listen 127.0.0.1:0 --data %s/data",
                                          bin, d.dir, d.dir))
    assert.are.equal(1, rc)
    assert.matches("data directory " .. d.dir:gsub("%p", "%%%0") .. "/data is in use by pid " .. d.pid, out)
    assert.is_nil(out:find("stack traceback", 1, true))
    assert.is_true(assetd.monotonic() - t0 < 5)
    assert.are.equal(200, (d:request("GET", "/healthz")))     -- the first one is untouched
  end)

  it("is free again once its daemon is gone, even by kill -9", function()
    os.execute("kill -9 " .. d.pid)
    assetd.sleep(0.3)
    local d2 = daemon.start{pipeline = daemon.SIM_PIPELINE, args = "--data " .. d.dir .. "/data"}
    assert.are.equal(200, (d2:request("GET", "/healthz")))
    d2:stop_clean()
    os.execute("rm -rf " .. d.dir)
    d = nil
  end)
end)
