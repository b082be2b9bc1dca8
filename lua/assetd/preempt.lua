-- Preemptive earliest-deadline-first (limits.order = "edf"): the engine starts downloads
-- earliest deadline first; this policy also takes slots and bandwidth from later deadlines,
-- holding them (assetd.hold_download: they stop, and go on by Range once released).
local assetd = require "assetd"

local M = {}

-- Seconds kept in hand before a deadline: the commit (fsync, rename) and the record after
-- the last byte, and a tick of this policy.
M.margin = 1
-- Running more than run now (a held or waiting one let in) must leave this much room (each
-- finish at the shared rate times this), so that the set does not shrink and grow tick after
-- tick at the line.
M.regrow = 1.5
M.tick, M.idle_tick = 0.1, 0.5

local function earlier(a, b)
  if a.deadline ~= b.deadline then return a.deadline < b.deadline end
  return a.id < b.id
end

-- Whether D, one of N sharing CAP bytes a second equally, would miss its deadline (with
-- FACTOR to spare). One that would miss even alone is not counted: it is lost either way,
-- and letting it shrink the share would lose others with it.
local function misses(d, n, cap, now, factor)
  if d.total < 0 or d.deadline == math.huge then return false end
  local left, slack = d.total - d.bytes, d.deadline - now - M.margin
  if left / cap > slack then return false end
  return left * n * factor / cap > slack
end

-- How many of DS (sorted) may run: all the slots, fewer when at an equal share of the cap
-- one of the first n would miss its deadline, and at least one.
local function running(ds, slots, cap, now)
  local n = math.min(slots, #ds)
  if cap <= 0 then return n end
  while n > 1 do
    local factor = 1
    for i = 1, n do
      if ds[i].state ~= "active" then factor = M.regrow end
    end
    local fits = true
    for i = 1, n do
      if misses(ds[i], n, cap, now, factor) then fits = false break end
    end
    if fits then break end
    n = n - 1
  end
  return n
end

-- The plan for the downloads DS (assetd.downloads()) at NOW under SLOTS and CAP (bytes a
-- second, 0 = none): {[id] = true to hold, false to release}, only for those that change.
-- The first n by deadline run; the others that run are held, and those that wait too when
-- fewer than the slots may run (else the engine would start them in the room left).
function M.plan(ds, slots, cap, now)
  table.sort(ds, earlier)
  local n = running(ds, slots, cap, now)
  local changes = {}
  for i, d in ipairs(ds) do
    local hold = i > n and (d.state == "active" or n < slots)
    if hold ~= (d.state == "held") and d.holdable then changes[d.id] = hold end
  end
  return changes
end

-- One look at the engine's downloads; returns how many there are.
function M.step()
  local lim = assetd.fetch_limits()
  if not lim then return 0 end                 -- the daemon is stopping
  local ds = assetd.downloads()
  if lim.order ~= "edf" then                  -- switched to fifo: nothing stays held
    for _, d in ipairs(ds) do
      if d.state == "held" then assetd.hold_download(d.id, false) end
    end
    return #ds
  end
  for id, hold in pairs(M.plan(ds, lim.max_active, lim.max_bytes_per_sec, assetd.now())) do
    assetd.hold_download(id, hold)
  end
  return #ds
end

-- The policy's task: a look every tick while there are downloads, until it is canceled (or
-- the daemon stops). Returns the task.
function M.start()
  return assetd.spawn({name = "preempt", detached = true}, function()
    repeat
      local n = M.step()
    until assetd.sleep(n > 0 and M.tick or M.idle_tick) == nil
  end)
end

return M
