-- Webhook verification with N deliveries inside the replay window (default 20,000: 33 a second
-- for the 10 minutes an id is kept): the cost per delivery. Usage: assetd bench/webhooks.lua [N]
local webhooks = require "assetd.webhooks"
local now = 1e9
local v = webhooks.new{secret = "whsec_" .. assetd.base64_encode("k123456789"), now = function() return now end}
local body = "{}"
local n = tonumber(arg[1] or 20000)
local t0 = assetd.monotonic()
for i = 1, n do
  local id, ts = "msg_" .. i, tostring(math.floor(now))
  local ok = v:verify({["webhook-id"] = id, ["webhook-timestamp"] = ts,
                      ["webhook-signature"] = webhooks.sign("whsec_" .. assetd.base64_encode("k123456789"), id, ts, body)}, body)
  assert(ok == true)
end
print(string.format("%d webhooks in the window: %.1f us each", n, (assetd.monotonic() - t0) / n * 1e6))
