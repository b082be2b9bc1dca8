-- Download slots: at most `n` jobs hold one between reserving a version and committing their
-- assets; the others wait, earliest deadline first, each asleep on an alarm, so a backlog of
-- thousands of pending jobs costs a sleeping task each, not transfers, timers and SQL.
local assetd = require "assetd"

local M = {}
local Slots = {}
Slots.__index = Slots

function M.new(n)
  return setmetatable({free = n, heap = {}, seq = 0}, Slots)
end

local function before(a, b)
  if a.deadline ~= b.deadline then return a.deadline < b.deadline end
  return a.seq < b.seq
end

local function push(h, w)
  h[#h + 1] = w
  local i = #h
  while i > 1 do
    local p = i // 2
    if not before(h[i], h[p]) then break end
    h[i], h[p] = h[p], h[i]
    i = p
  end
end

local function pop(h)
  local top, n = h[1], #h
  h[1] = h[n]
  h[n] = nil                                          -- in this order: n may be 1
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and before(h[l], h[m]) then m = l end
    if r <= n and before(h[r], h[m]) then m = r end
    if m == i then return top end
    h[i], h[m] = h[m], h[i]
    i = m
  end
end

-- Wait for a slot (the calling task sleeps); false if the task was canceled meanwhile.
function Slots:acquire(deadline)
  if self.free > 0 then
    self.free = self.free - 1
    return true
  end
  self.seq = self.seq + 1
  local w = {deadline = deadline or math.huge, seq = self.seq, alarm = assetd.alarm()}
  push(self.heap, w)
  if w.alarm:sleep(1e9) then return true end          -- handed over by release()
  w.gone = true
  if w.granted then self:release() end               -- granted, then canceled before waking
  return false
end

-- Give the slot to the most urgent waiter, or back to the pool.
function Slots:release()
  while #self.heap > 0 do
    local w = pop(self.heap)
    if not w.gone then
      w.granted = true
      w.alarm:ring()
      return
    end
  end
  self.free = self.free + 1
end

function Slots:waiting() return #self.heap end

return M
