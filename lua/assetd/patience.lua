-- Patience with a job store that is full or failing. On a job's own thread a write the store
-- refused for a database fault waits and tries again until it goes through, so the job resumes
-- by itself where it was once the disk has room; elsewhere (the API, the REPL) the error comes
-- back at once, for a 503 or a message.
local assetd = require "assetd"
local retry = require "assetd.retry"

local M = {}

local job_threads = setmetatable({}, {__mode = "k"})

-- The calling thread is a job's: its store writes wait out a fault.
function M.adopt() job_threads[coroutine.running()] = true end

local function is_fault(err) return type(err) == "table" and err.category == "database" end

-- The wait before the next try at a store in fault: 0.5 s doubling to 30 s.
local FAULT_BACKOFF = {base = 0.5, cap = 30, jitter = 0}

-- FN(...), tried again while it fails with a store fault, on a job's thread (elsewhere once),
-- logged at error now and then.
function M.call(what, fn, ...)
  local attempt = 0
  while true do
    local r = table.pack(fn(...))
    if r[1] ~= nil or not is_fault(r[2]) or not job_threads[coroutine.running()] then
      return table.unpack(r, 1, r.n)
    end
    attempt = attempt + 1
    local delay = retry.backoff(attempt, FAULT_BACKOFF)
    if attempt == 1 or attempt % 10 == 0 then
      assetd.log.error("job store write refused; the job waits and tries again",
                       {method = what, error = tostring(r[2]), attempt = attempt, retry_in = delay})
    end
    assetd.sleep(delay)
  end
end

-- STORE with that patience on every method.
function M.store(store)
  return setmetatable({}, {__index = function(t, k)
    local f = store[k]
    if type(f) ~= "function" then return f end
    local method = function(_, ...) return M.call(k, f, store, ...) end
    rawset(t, k, method)
    return method
  end})
end

return M
