-- The retry policy for downloads: what to do after a failed attempt. Pure: it decides, the
-- job runner waits. A pipeline may replace any of it (sora.retry = {...} or a function).
--   decide(err, attempt, deadline, now, opts) -> {action = "retry", delay = s}
--                                              | {action = "fail", reason = ...}
--                                              | {action = "expire", reason = ...}
local errors = require "assetd.errors"

local M = {}

M.defaults = require("assetd.defaults").pipeline.sora.retry

local function opt(opts, k) return (opts and opts[k]) or M.defaults[k] end

-- The one backoff of the daemon (downloads, polls, Notion, a store in fault): base *
-- factor^(attempt-1) (factor 2 unless given), capped, then up to `jitter` of it taken off at
-- random, so many jobs failing together do not come back together. OPTS fields missing fall
-- back to M.defaults, so a caller with its own schedule passes every field it means.
function M.backoff(attempt, opts, rand)
  local factor = opts and opts.factor or 2
  local d = math.min(opt(opts, "cap"), opt(opts, "base") * factor ^ math.min(attempt - 1, 60))
  local jitter = opts and opts.jitter or M.defaults.jitter
  if jitter == 0 then return d end
  return d * (1 - jitter * (rand or math.random)())
end

-- 4xx answers that asking again may change: 408 (Request Timeout), 429 (Too Many Requests).
M.TRANSIENT_4XX = {[408] = true, [429] = true}

-- An answer that asking again will not change: a 4xx other than those in TRANSIENT (default
-- M.TRANSIENT_4XX; a peer with its own, such as Notion's 409, passes it). A 404 is one; a
-- caller that allows for a lagging server counts them. ERR is an error value or a status.
function M.client_error(err, transient)
  local status = err
  if type(err) == "table" then status = err.status end
  return status ~= nil and status >= 400 and status < 500 and not (transient or M.TRANSIENT_4XX)[status]
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
  if cat == "canceled" then return {action = "fail", reason = "canceled"} end
  if errors.final(err) or status == 401 or status == 403 then return {action = "fail", reason = tostring(err)} end
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

-- Why an attempt failed, for a person reading the log: what the socket met ("dns",
-- "connect", "tls", "reset", "timeout", "short body"), "http 503", or the category.
function M.describe(err)
  if err.cause then return err.cause end
  if err.status and err.status >= 400 then return "http " .. err.status end
  return err.category or "other"
end

-- A short label for metrics: why an attempt is being retried. An error answer by its status
-- (429, 5xx, another 4xx as itself); a 200 or 206 whose body broke off is the network's fault,
-- so it is labelled by the error's category, like a refused connection or a timeout.
function M.cause(err)
  local status = err.status
  if status == 429 then return "429" end
  if status and status >= 500 then return "5xx" end
  if status and status >= 400 then return tostring(status) end
  return err.category or "other"
end

return M
