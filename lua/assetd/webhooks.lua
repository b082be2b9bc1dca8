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
-- rotation); anything without the prefix is used as raw bytes.
local function keys_of(secret)
  local keys = {}
  for s in tostring(secret or ""):gmatch("[^%s,]+") do
    local b64 = s:match("^whsec_(.+)$")
    local k = b64 and assetd.base64_decode(b64) or (not b64 and s) or nil
    if k and #k > 0 then keys[#keys + 1] = k end
  end
  return keys
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
  return setmetatable({keys = keys_of(opts.secret), tolerance = opts.tolerance or 300,
                       now = opts.now or assetd.now, ids = opts.ids or M.memory_ids()}, Verifier)
end

function Verifier:configured() return #self.keys > 0 end

local function fail(status, code, message) return nil, {status = status, code = code, message = message} end

function Verifier:signed_by_us(id, ts, body, header)
  local content = id .. "." .. ts .. "." .. body
  for _, key in ipairs(self.keys) do
    local want = assetd.base64_encode(assetd.hmac_sha256(key, content))
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
  if not self:configured() then return fail(401, "webhook_not_configured", "OPENAI_WEBHOOK_SECRET is not set") end
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
  if not self:signed_by_us(id, ts, body, sig) then
    return fail(401, "invalid_signature", "no webhook-signature matches")
  end
  -- an id can pass again while its timestamp does: up to 2 * tolerance after it was seen
  local seen, err = self.ids:webhook_seen(id, now, 2 * self.tolerance)
  if seen == nil then return fail(503, "store_unavailable", "the webhook id cannot be recorded: " .. tostring(err)) end
  return not seen
end

-- Sign like a sender does (used by tests, the simulator's twin and examples).
function M.sign(secret, id, ts, body)
  local key = keys_of(secret)[1]
  return "v1," .. assetd.base64_encode(assetd.hmac_sha256(key, id .. "." .. ts .. "." .. body))
end

return M
