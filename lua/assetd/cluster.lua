-- Several daemons on one PostgreSQL job store (issue 18), the policy: a daemon runs only the
-- jobs it holds. It claims free ones (earliest deadline first, up to `capacity` held), renews
-- its claims every third of the lease, stops a run whose claim another daemon has taken, takes
-- over the jobs of a daemon that stopped renewing, and fires each alert once. The mechanism
-- (claims, leases, fenced writes, NOTIFY) is pgstore.lua's.
local assetd = require "assetd"
local states = require "assetd.states"
local events = require "assetd.events"

local M = {}

local Cluster = {}
Cluster.__index = Cluster

-- The instance id: ASSETD_INSTANCE, else hostname:pid.
function M.instance()
  local id = os.getenv("ASSETD_INSTANCE")
  if id and id ~= "" then return id end
  local host, pid = assetd.process()
  return host .. ":" .. pid
end

-- M.new{store = pgstore (raw: no patience), lease = seconds, capacity = jobs held at most, metrics =}
function M.new(o)
  local self = setmetatable({store = o.store, lease = o.lease, capacity = o.capacity, metrics = o.metrics,
                             instance = o.instance or M.instance()}, Cluster)
  return self
end

function Cluster:join()
  return self.store:join(self.instance, self.lease)
end

function Cluster:holds(id) return self.store:holds(id) end

function Cluster:count(name, labels)
  if self.metrics then self.metrics:inc(name, labels) end
end

function Cluster:held()
  local n = 0
  for _ in pairs(self.store.held) do n = n + 1 end
  return n
end

-- Take job ID now (enqueued or retried here): the claimed job, or nil if another daemon has it
-- or this one is full. A full daemon leaves it free: one with room takes it (woken by NOTIFY),
-- so a daemon that dies holds no more than its capacity, all of it rescued within a lease.
function Cluster:claim(id)
  if self:held() >= self.capacity then return nil end
  local job = self.store:claim_one(id)
  if job then self:count("assetd_cluster_claims_total", {how = "direct"}) end
  return job
end

function Cluster:release(id)
  local ok, err = self.store:release(id)
  if not ok then assetd.log.warn("job claim not released; it lapses with its lease", {job = id, error = tostring(err)}) end
end

-- Whether this daemon fires alert NAME for JOB (once per job version across the cluster). A
-- store that cannot answer: fired here (a duplicate alert beats a lost one).
function Cluster:alert(job, name)
  local mine, err = self.store:claim_alert(job, name)
  if mine == nil then
    assetd.log.warn("alert claim not recorded; firing it here", {alert = name, job = job.notionPageId, error = tostring(err)})
    return true
  end
  return mine
end

-- The runs of jobs this daemon no longer holds stop (their assets start again on the holder).
function Cluster:drop(runner, ids)
  for _, id in ipairs(ids) do
    local run = runner.running[id]
    runner.running[id] = nil
    if run and run.task then run.task:cancel() end
    for _, t in ipairs(run and run.variants or {}) do t:cancel() end
    assetd.log.warn("job taken over by another daemon; its run here stops", {job = id})
    self:count("assetd_cluster_leases_lost_total")
  end
end

-- One round: renew what is held, then claim free jobs up to capacity and start them.
function Cluster:round(runner)
  local lost, err = self.store:renew()
  if not lost then
    assetd.log.warn("job claims not renewed; the database is unreachable", {error = tostring(err)})
    return
  end
  self:count("assetd_cluster_renewals_total")
  self:drop(runner, lost)
  local held = self:held()
  if held >= self.capacity then return end
  local jobs, cerr = self.store:claim(self.capacity - held)
  if not jobs then
    assetd.log.warn("no jobs claimed; the database is unreachable", {error = tostring(cerr)})
    return
  end
  for _, job in ipairs(jobs) do
    if job.rescuedFrom then
      self:count("assetd_cluster_rescues_total")
      assetd.log.info("job taken over from a daemon that stopped renewing", {job = job.notionPageId, from = job.rescuedFrom})
    end
    self:count("assetd_cluster_claims_total", {how = job.rescuedFrom and "rescue" or "free"})
    runner:run(job)
  end
end

-- A change another daemon (or this one) made: a job this daemon runs that was moved to an end
-- (canceled elsewhere) stops here; any change wakes the claim loop (a new job may be free).
function Cluster:notice(payload, mine)
  if self.runner then self:notified(self.runner, payload, mine) end
end

function Cluster:notified(runner, payload, mine)
  local id, state = payload:match("^(%d+) (%a+)$")
  id = tonumber(id)
  if not id then return end
  if not mine then events.publish(id) end         -- this daemon's SSE clients see every daemon's changes
  local run = runner.running[id]
  if run and not states.live[state] and state ~= "completed" and run.task then
    runner.running[id] = nil
    run.task:cancel()
    for _, t in ipairs(run.variants or {}) do t:cancel() end
  end
  if self.alarm then self.alarm:ring() end
end

-- The claim loop, in its own task: a round every third of the lease, or when woken by a
-- change, but not more often than every M.MIN_ROUND seconds (a burst of changes is one round).
M.MIN_ROUND = 0.25

function Cluster:start(runner)
  self.alarm = assetd.alarm()
  assetd.spawn({name = "cluster", detached = true}, function()
    while true do
      local t0 = assetd.monotonic()
      local ok, err = pcall(self.round, self, runner)     -- the loop must outlive any one round
      if not ok then assetd.log.error("cluster round failed", {error = tostring(err)}) end
      self.alarm:sleep(self.lease / 3)
      local left = M.MIN_ROUND - (assetd.monotonic() - t0)
      if left > 0 then assetd.sleep(left) end
    end
  end)
end

return M
