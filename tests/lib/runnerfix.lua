-- The set-up the runner's specs share (runner_spec, resume_spec): one simulator for the
-- describe block, and for each test a fresh data directory with its job store and a list of
-- the alerts fired. Call it inside describe; it returns the context those hooks fill.
local sim = require "sim"
local busted = require "busted"
local setup, teardown, before_each, after_each = busted.setup, busted.teardown, busted.before_each, busted.after_each

local M = {}

function M.install(sim_args)
  local ctx = {}
  setup(function() ctx.s = sim.start(sim_args) end)
  teardown(function() ctx.s:stop() end)
  before_each(function()
    ctx.s:reset()
    ctx.dir = sim.tmpdir()
    ctx.jobs = assert(assetd.jobdb.open(ctx.dir .. "/data"))
    ctx.fired = {}
  end)
  after_each(function()
    ctx.jobs:close()
    os.execute("rm -rf " .. ctx.dir)
  end)
  -- An alert hook that records what it was called with, and when.
  function ctx.note(name)
    return function(job, x) ctx.fired[#ctx.fired + 1] = {name = name, job = job, x = x, t = assetd.now()} end
  end
  return ctx
end

return M
