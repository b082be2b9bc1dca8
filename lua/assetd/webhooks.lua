-- OpenAI webhooks: Standard Webhooks verification. The signed content is
-- "{webhook-id}.{webhook-timestamp}.{body}", HMAC-SHA256 with the base64 key after "whsec_";
-- webhook-signature holds one or more space-separated "v1,<base64>" (several during a secret
-- rotation). The timestamp must be within the tolerance, and a webhook-id seen before is a
-- replay: acknowledged, not acted on. Ids are kept in the job store (jobs:webhook_seen), so
-- a replay after a restart is still known.
local assetd = require "assetd"

local M = {}
local Verifier = {}
Verifier.__index = Verifier

-- Keys from a secret string: "whsec_<base64>" (several separated by spaces or commas, for
-- rotation); anything without the prefix is used as raw bytes. Also the error of the first
-- part that gives no key, so a mistyped secret is told as such, not taken for one not set.
local function keys_of(secret)
  local keys, why = {}, nil
  for s in tostring(secret or ""):gmatch("[^%s,]+") do
    local b64 = s:match("^whsec_(.+)$")
    local k, err = s, nil
    if b64 then k, err = assetd.base64_decode(b64) end
    if k and #k > 0 then keys[#keys + 1] = k
    elseif not why then why = err and err.message or "it decodes to nothing" end
  end
  if not why then return keys end
  return keys, assetd.error("config", string.format("OPENAI_WEBHOOK_SECRET: a whsec_ key that is not base64 (%s): %s",
    why, #keys > 0 and "that key is ignored" or "every webhook is refused (401)"))
end

-- check_secret(secret) -> true, or nil and the config error of its first unusable key.
function M.check_secret(secret)
  local _, bad = keys_of(secret)
  if bad then return nil, bad end
  return true
end

-- Ids in memory, for a verifier without a job store (tests, benchmarks): the same
-- webhook_seen(id, now, keep) as the store's (jobs:webhook_seen), forgotten at a restart.
-- Ids older than KEEP are dropped; the next sweep waits until the table has doubled, so that
-- a busy window (every id still young) costs one sweep per doubling rather than one per
-- delivery.
local Memory = {}
Memory.__index = Memory

function M.memory_ids() return setmetatable({seen = {}, count = 0, prune_at = 1024}, Memory) end

function Memory:webhook_seen(id, now, keep)
  if self.seen[id] then return true end
  if self.count >= self.prune_at then
    local n = 0
    for k, t in pairs(self.seen) do
      if now - t > keep then self.seen[k] = nil else n = n + 1 end
    end
    self.count, self.prune_at = n, math.max(1024, 2 * n)
  end
  self.seen[id] = now
  self.count = self.count + 1
  return false
end

-- new{secret=, tolerance = 300, now = assetd.now, ids = the job store (else memory_ids())}
function M.new(opts)
  local keys, bad = keys_of(opts.secret)
  return setmetatable({keys = keys, key_error = bad, tolerance = opts.tolerance or 300,
                       now = opts.now or assetd.now, ids = opts.ids or M.memory_ids()}, Verifier)
end

function Verifier:configured() return #self.keys > 0 end

local function fail(status, code, message) return nil, {status = status, code = code, message = message} end

-- The base64 HMAC-SHA256 of CONTENT under KEY, or nil and an error.
local function mac64(key, content)
  local mac, err = assetd.hmac_sha256(key, content)
  if not mac then return nil, err end
  return assetd.base64_encode(mac)
end

-- Whether a signature in HEADER is one of our keys', or nil and an error when none can be made.
function Verifier:signed_by_us(id, ts, body, header)
  local content = id .. "." .. ts .. "." .. body
  for _, key in ipairs(self.keys) do
    local want, err = mac64(key, content)
    if not want then return nil, err end
    for sig in header:gmatch("%S+") do
      local version, value = sig:match("^(v1),(.+)$")
      if version and assetd.secure_equal(value, want) then return true end
    end
  end
  return false
end

-- Verify a delivery. Returns true (act on it), false (a replay: acknowledge only), or nil and
-- {status, code, message} (503 when the id cannot be recorded: the sender retries later).
function Verifier:verify(headers, body)
  if not self:configured() then
    return fail(401, "webhook_not_configured", self.key_error and self.key_error.message or "OPENAI_WEBHOOK_SECRET is not set")
  end
  local id, ts, sig = headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
  if not (id and ts and sig) then
    return fail(400, "missing_signature_headers", "webhook-id, webhook-timestamp and webhook-signature are required")
  end
  if not ts:match("^%d+$") or #ts > 12 then return fail(400, "invalid_timestamp", "webhook-timestamp is not a unix time") end
  local now = self.now()
  if math.abs(now - tonumber(ts)) > self.tolerance then
    return fail(401, "timestamp_out_of_tolerance", "webhook-timestamp is more than 5 minutes from now")
  end
  if #id > 256 then return fail(400, "invalid_webhook_id", "webhook-id is too long") end
  local signed, serr = self:signed_by_us(id, ts, body, sig)
  if signed == nil then return fail(500, "internal", "cannot compute the webhook signature: " .. tostring(serr)) end
  if not signed then return fail(401, "invalid_signature", "no webhook-signature matches") end
  -- an id can pass again while its timestamp does: up to 2 * tolerance after it was seen
  local seen, err = self.ids:webhook_seen(id, now, 2 * self.tolerance)
  if seen == nil then return fail(503, "store_unavailable", "the webhook id cannot be recorded: " .. tostring(err)) end
  return not seen
end

-- Sign like a sender does (used by tests, the simulator's twin and examples): the header
-- value, or nil and an error (a secret with no usable key).
function M.sign(secret, id, ts, body)
  local keys, bad = keys_of(secret)
  if not keys[1] then return nil, bad or assetd.error("config", "webhooks.sign: the secret has no key") end
  local mac, err = mac64(keys[1], id .. "." .. ts .. "." .. body)
  if not mac then return nil, err end
  return "v1," .. mac
end

return M
