-- The HTTP API's answers and the checks of what a request brings: JSON bodies (with []
-- for an empty array), error answers, server faults as 503 with Retry-After, and the id
-- check. api.lua, views.lua and files.lua answer through these.
local cjson = require "cjson.safe"

local M = {}

M.ID = "^[A-Za-z0-9_-]+$"

-- Debian's lua-cjson 2.1.0 encodes every empty table as {}; an empty array is marked with a
-- sentinel string and turned into [] after encoding.
local EMPTY = "\1assetd-empty-array\1"
function M.array(t) return next(t) == nil and EMPTY or t end

function M.encode(value)
  return (cjson.encode(value):gsub('"\\u0001assetd%-empty%-array\\u0001"', "[]"))
end

function M.json(status, value, headers)
  local h = {["Content-Type"] = "application/json", ["Cache-Control"] = "no-store"}
  for k, v in pairs(headers or {}) do h[k] = v end
  return {status = status, headers = h, body = M.encode(value)}
end

function M.opt(v) if v == nil then return cjson.null end return v end

function M.err(status, code, message, headers)
  return M.json(status, {error = {code = code, message = message}}, headers)
end

function M.bad(field, what) return M.err(400, "validation_error", field .. ": " .. what) end

-- An error answer for a bad id field, or nothing for a good one.
function M.check_id(body, field)
  local v = body[field]
  if v == nil or v == cjson.null then return M.bad(field, "is required") end
  if type(v) ~= "string" then return M.bad(field, "must be a string, got " .. (type(v) == "table" and "an object or array" or type(v))) end
  if #v > 128 or not v:match(M.ID) then return M.bad(field, "must match ^[A-Za-z0-9_-]{1,128}$") end
end

-- Server faults, by the category of the error a binding returned: the request was fine and
-- may succeed later, so 503 with Retry-After; a 4xx would tell the client not to retry.
local FAULTS = {database = "store_unavailable", disk = "storage_unavailable"}
M.RETRY_AFTER = 5

function M.unavailable(code, message)
  return M.err(503, code, message, {["Retry-After"] = tostring(M.RETRY_AFTER)})
end

-- E as a 503 if it is a server fault; else nil.
function M.fault(e)
  local code = type(e) == "table" and FAULTS[e.category]
  return code and M.unavailable(code, tostring(e))
end

return M
