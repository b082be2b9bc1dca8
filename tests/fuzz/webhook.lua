-- Properties of webhook verification (lua/assetd/webhooks.lua) for fuzz_webhook.
-- The input is MODE, then webhook-id, webhook-timestamp and webhook-signature separated by
-- NULs, then the body. MODE bit 1 puts the right signature (for the second of two rotated
-- keys) into the header at a place the input chooses; bit 2 swaps the timestamp for one
-- within the tolerance; bit 4 leaves out the headers that are empty.
-- Properties: verify never raises; a refusal is 400 or 401 with a code; an acceptance (true,
-- or false for a replay) needs a whitespace-separated token that is exactly "v1," and the
-- base64 HMAC of "id.ts.body" under a configured key (a reference written without the
-- module's patterns), a timestamp of digits within the tolerance and an id of at most 256
-- bytes; a delivery carrying the right token so is accepted once, then is a replay, and the
-- same headers with another body are refused.
local assetd = require "assetd"
local webhooks = require "assetd.webhooks"

local OLD, KEY = "an-old-key-still-in-rotation", "fuzz-webhook-key-0123456789abcdef"
local SECRET = "whsec_" .. assetd.base64_encode(OLD) .. " whsec_" .. assetd.base64_encode(KEY)
local NOW, TOLERANCE = 1750000000, 300

local function token(key, id, ts, body)
  return "v1," .. assetd.base64_encode(assetd.hmac_sha256(key, id .. "." .. ts .. "." .. body))
end

local SPACE = {[" "] = true, ["\t"] = true, ["\n"] = true, ["\v"] = true, ["\f"] = true, ["\r"] = true}
-- Whether HEADER holds a good token as a whole whitespace-delimited word (plain find).
local function ref_signed(header, id, ts, body)
  for _, key in ipairs{OLD, KEY} do
    local want, from = token(key, id, ts, body), 1
    while true do
      local i, j = header:find(want, from, true)
      if not i then break end
      if (i == 1 or SPACE[header:sub(i - 1, i - 1)]) and (j == #header or SPACE[header:sub(j + 1, j + 1)]) then
        return true
      end
      from = i + 1
    end
  end
  return false
end

local function fresh_verifier() return webhooks.new{secret = SECRET, tolerance = TOLERANCE, now = function() return NOW end} end

local function verify(headers, body)
  local v = fresh_verifier()
  local ok, res, why = pcall(v.verify, v, headers, body)
  assert(ok, "verify raised: " .. tostring(res))
  if res == nil then
    assert(type(why) == "table" and (why.status == 400 or why.status == 401) and type(why.code) == "string",
           "a refusal without a 400/401 status and a code")
  end
  return res, why, v
end

local function within(ts)
  return ts:match("^%d+$") and #ts <= 12 and math.abs(NOW - tonumber(ts)) <= TOLERANCE
end

return function(input)
  local mode = input:byte(1) or 0
  local id, ts, sig, body = input:sub(2):match("^([^%z]*)%z([^%z]*)%z([^%z]*)%z(.*)$")
  if not id then id, ts, sig, body = input:sub(2), "", "", "" end
  if mode & 2 ~= 0 then ts = tostring(NOW - TOLERANCE + (#ts * 37) % (2 * TOLERANCE + 1)) end
  local signed = mode & 1 ~= 0
  if signed then
    local at = (mode >> 3) % (#sig + 1)
    sig = sig:sub(1, at) .. " " .. token(KEY, id, ts, body) .. " " .. sig:sub(at + 1)
  end
  local headers = {["webhook-id"] = id, ["webhook-timestamp"] = ts, ["webhook-signature"] = sig}
  if mode & 4 ~= 0 then
    for k, val in pairs(headers) do if val == "" then headers[k] = nil end end
  end
  local res, _, v = verify(headers, body)
  if res ~= nil then
    assert(headers["webhook-id"] and headers["webhook-timestamp"] and headers["webhook-signature"], "accepted without every header")
    assert(ref_signed(sig, id, ts, body), "accepted without the right HMAC")
    assert(within(ts), "accepted a timestamp out of tolerance: " .. ts)
    assert(#id <= 256, "accepted an id of " .. #id .. " bytes")
    assert(res == true, "a first delivery taken as a replay")
    assert(v:verify(headers, body) == false, "a second delivery not taken as a replay")
    local again = verify(headers, body .. "x")
    assert(again == nil, "the same signature accepted for another body")
  elseif signed and headers["webhook-id"] and within(ts) and #id <= 256 then
    error("a delivery with the right signature was refused")
  end
end
