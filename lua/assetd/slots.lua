-- Download slots: at most `n` jobs hold one between reserving a version and committing their
-- assets; the others wait, earliest deadline first (the engine's own queue, deadline.c), each
-- asleep on an alarm. The jobs a restart resumes wait before this as data, earliest deadline
-- first too (runner.lua's backlog), so a long backlog costs no task per job. The waiters are
-- also kept in a Lua table, so the queue can be shown in the order it will be served
-- (GET /api/queue).
local assetd = require "assetd"

local M = {}
local Slots = {}
Slots.__index = Slots

function M.new(n)
  return setmetatable({size = n, free = n, queue = assetd.deadline_queue(), waiters = {}, by_who = {}, seq = 0}, Slots)
end

-- Wait for a slot (the calling task sleeps); false if the task was canceled meanwhile. WHO
-- (optional, a job id) names the waiter in Slots:order().
function Slots:acquire(deadline, who)
  if self.free > 0 then
    self.free = self.free - 1
    return true
  end
  self.seq = self.seq + 1
  local w = {alarm = assetd.alarm(), deadline = deadline or math.huge, seq = self.seq, who = who}
  self.queue:push(deadline, w)
  self.waiters[w] = true
  if who then self.by_who[who] = w end
  local granted = w.alarm:sleep(1e9)
  self.waiters[w] = nil
  if who and self.by_who[who] == w then self.by_who[who] = nil end
  if granted then return true end                     -- handed over by release()
  w.gone = true
  if w.granted then self:release() end               -- granted, then canceled before waking
  return false
end

-- Give the slot to the most urgent waiter, or back to the pool.
function Slots:release()
  while #self.queue > 0 do
    local w = self.queue:pop()
    if not w.gone then
      w.granted = true
      self.waiters[w] = nil
      w.alarm:ring()
      return
    end
  end
  self.free = self.free + 1
end

function Slots:waiting() return #self.queue end

-- Whether WHO waits for a slot now.
function Slots:queued(who) return self.by_who[who] ~= nil end

-- The waiters in the order release() will serve them (deadline, then arrival, as the heap
-- orders): {{who =, deadline =}}, deadline math.huge for none.
function Slots:order()
  local out = {}
  for w in pairs(self.waiters) do
    if not w.gone and not w.granted then out[#out + 1] = w end
  end
  table.sort(out, function(a, b)
    if a.deadline ~= b.deadline then return a.deadline < b.deadline end
    return a.seq < b.seq
  end)
  for i, w in ipairs(out) do out[i] = {who = w.who, deadline = w.deadline} end
  return out
end

return M
