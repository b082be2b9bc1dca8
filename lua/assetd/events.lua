-- Job changes as news: a tiny publish/subscribe hub. The runner's job store is wrapped
-- (M.store) so that every write that went through (a new job, a transition, an event on its
-- history) publishes the job's id; the API's live stream (GET /api/events) subscribes. The
-- wrapper also keeps why an attempt ended on the job's history (a "cause" event), since a
-- retry clears the job's error and the dashboard's timeline must still say it.
local assetd = require "assetd"

local M = {}

local subscribers = {}        -- token -> fn(id)

-- FN(id) after each job change; returns a token for unsubscribe.
function M.subscribe(fn)
  local token = {}
  subscribers[token] = fn
  return token
end

function M.unsubscribe(token) subscribers[token] = nil end

-- Tell every subscriber that job ID changed. A subscriber that raises is dropped and logged:
-- it must never fail the store write that published.
function M.publish(id)
  for token, fn in pairs(subscribers) do
    local ok, err = pcall(fn, id)
    if not ok then
      subscribers[token] = nil
      assetd.log.error("job change subscriber failed; dropped", {error = tostring(err)})
    end
  end
end

-- The writes of a job store that change what a client sees of a job.
local WRITES = {create = true, transition = true, event = true, add_asset = true, complete_with_assets = true}

-- The id a store method was called with (a job table or an id), or the one it returned.
local function id_of(arg, result)
  if type(arg) == "table" and arg.id then return arg.id end
  if math.type(arg) == "integer" then return arg end
  return type(result) == "table" and result.id or nil
end

-- A transition that ended an attempt (to failed or expired) with an error: that error as a
-- "cause" event (the state event beside it says only "downloading -> failed").
local ENDS = {failed = true, expired = true}
local function keep_cause(store, job, to, fields)
  if ENDS[to] and type(fields) == "table" and type(fields.error) == "string" and fields.error ~= "" then
    store:event(job, "cause", fields.error)
  end
end

-- STORE with its writes published; every other method and field as it is. The behaviour of
-- each method is unchanged: same arguments, same results.
function M.store(store)
  return setmetatable({}, {__index = function(t, k)
    local f = store[k]
    if type(f) ~= "function" or not WRITES[k] then return f end
    local method = function(_, arg, ...)
      local r = table.pack(f(store, arg, ...))
      if k == "transition" and r[1] ~= nil then keep_cause(store, r[1], ...) end
      if r[1] ~= nil and next(subscribers) then
        local id = id_of(arg, r[1])
        if id then M.publish(id) end
      end
      return table.unpack(r, 1, r.n)
    end
    rawset(t, k, method)
    return method
  end})
end

return M
