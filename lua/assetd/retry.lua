-- The retry policy for downloads: what to do after a failed attempt. Pure: it decides, the
-- job runner waits. A pipeline may replace any of it (sora.retry = {...} or a function).
--   decide(err, attempt, deadline, now, opts) -> {action = "retry", delay = s}
--                                              | {action = "fail", reason = ...}
--                                              | {action = "expire", reason = ...}
local M = {}

M.defaults = {attempts = 8, base = 1, cap = 60, jitter = 0.5, margin = 5, floor = 0.25}

local function opt(opts, k) return (opts and opts[k]) or M.defaults[k] end

-- Exponential backoff with jitter: base * 2^(attempt-1), capped, then up to `jitter` of it
-- taken off at random, so many jobs failing together do not come back together.
function M.backoff(attempt, opts, rand)
  local d = math.min(opt(opts, "cap"), opt(opts, "base") * 2 ^ (attempt - 1))
  return d * (1 - opt(opts, "jitter") * (rand or math.random)())
end

-- An answer that asking again will not change: a 4xx other than 408 (Request Timeout) and
-- 429 (Too Many Requests). A 404 is one; a caller that allows for a lagging server counts them.
function M.client_error(err)
  local status = err.status
  return status ~= nil and status >= 400 and status < 500 and status ~= 408 and status ~= 429
end

-- The shortest wait after try ATTEMPT: `floor`, doubling with each try up to 16 times it.
-- Whatever the server says (Retry-After: 0) and however near the deadline, tries never come
-- closer together than this, so a server that fails instantly never gets a tight loop.
function M.floor(attempt, opts)
  return opt(opts, "floor") * 2 ^ math.min(attempt - 1, 4)
end

-- Near the deadline the wait shrinks to leave room for more tries, but not below the floor:
-- inside the last `margin` seconds the tries go on at the floor, each a chance to save the
-- video, and no wait ends past the deadline (a try there is the last; then it expires).
local function before_deadline(delay, floor, deadline, now, opts)
  local room = deadline - now - opt(opts, "margin")
  if room <= 0 then delay = floor elseif delay > room / 2 then delay = math.max(room / 2, floor) end
  return math.min(delay, deadline - now)
end

function M.decide(err, attempt, deadline, now, opts, rand)
  local status, cat = err.status, err.category
  if cat == "auth" or status == 401 or status == 403 then
    return {action = "fail", reason = tostring(err)}
  end
  if cat == "canceled" then return {action = "fail", reason = "canceled"} end
  if cat == "invalid" or cat == "config" or cat == "exists" then return {action = "fail", reason = tostring(err)} end
  if deadline and now >= deadline then
    return {action = "expire", reason = "the deadline passed: " .. tostring(err)}
  end
  if M.client_error(err) then return {action = "fail", reason = tostring(err)} end
  -- with a deadline, retry while it allows; without one, a bounded number of attempts
  if not deadline and attempt >= opt(opts, "attempts") then
    return {action = "fail", reason = "gave up after " .. attempt .. " attempts: " .. tostring(err)}
  end
  local floor = M.floor(attempt, opts)
  local delay
  if status == 429 and err.retry_after then delay = err.retry_after
  else delay = M.backoff(attempt, opts, rand) end
  delay = math.max(delay, floor)
  if deadline then delay = before_deadline(delay, floor, deadline, now, opts) end
  return {action = "retry", delay = delay}
end

-- A short label for metrics: why an attempt is being retried.
function M.cause(err)
  local status = err.status
  if status == 429 then return "429" end
  if status and status >= 500 then return "5xx" end
  if status then return tostring(status) end
  return err.category or "other"
end

return M
