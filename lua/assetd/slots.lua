-- Download slots: at most `n` jobs hold one between reserving a version and committing their
-- assets; the others wait, earliest deadline first (the engine's own queue, deadline.c), each
-- asleep on an alarm. The jobs a restart resumes wait before this as data, earliest deadline
-- first too (runner.lua's backlog), so a long backlog costs no task per job.
local assetd = require "assetd"

local M = {}
local Slots = {}
Slots.__index = Slots

function M.new(n)
  return setmetatable({free = n, queue = assetd.deadline_queue()}, Slots)
end

-- Wait for a slot (the calling task sleeps); false if the task was canceled meanwhile.
function Slots:acquire(deadline)
  if self.free > 0 then
    self.free = self.free - 1
    return true
  end
  local w = {alarm = assetd.alarm()}
  self.queue:push(deadline, w)
  if w.alarm:sleep(1e9) then return true end          -- handed over by release()
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
      w.alarm:ring()
      return
    end
  end
  self.free = self.free + 1
end

function Slots:waiting() return #self.queue end

return M
