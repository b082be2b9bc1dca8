-- Webhooks (Standard Webhooks signatures), the API token and /metrics, against a real daemon.
-- Signatures are made by Python's hmac, independently of assetd's own crypto.
local sim = require "sim"
local daemon = require "daemon"
local cjson = require "cjson"

local KEY1, KEY2 = "first-signing-key-0123456789", "second-signing-key-9876543210"
local TOKEN = "tok-api-4f9b2c"

local function b64(s)
  local p = io.popen("printf %s '" .. s .. "' | base64 -w0")
  local out = p:read("a")
  p:close()
  return out
end

local SECRET2 = "whsec_" .. b64(KEY2)          -- the daemon holds only the new key

local function sign(key, id, ts, body, dir)
  local f = assert(io.open(dir .. "/wh-body", "wb"))
  f:write(body)
  f:close()
  local p = io.popen(string.format([[python3 -c "
import base64, hmac, hashlib, sys
body = open('%s/wh-body', 'rb').read()
mac = hmac.new(b'%s', b'%s.%s.' + body, hashlib.sha256).digest()
print('v1,' + base64.b64encode(mac).decode())"]], dir, key, id, ts))
  local sig = p:read("l")
  p:close()
  return sig
end

local function event(kind, video, id)
  return cjson.encode{id = id or ("evt_" .. video), object = "event", type = kind,
                      created_at = math.floor(assetd.now()), data = {id = video}}
end

describe("webhooks, token and metrics", function()
  local s, d
  local function post_webhook(body, headers)
    return d:json("POST", "/webhooks/openai", {body = body, headers = headers})
  end
  local function signed(body, id, key, ts)
    ts = ts or tostring(math.floor(assetd.now()))
    return {["webhook-id"] = id, ["webhook-timestamp"] = ts, ["webhook-signature"] = sign(key or KEY2, id, ts, body, d.dir)}
  end
  local function status_of(page) return d:job_status(page, {Authorization = "Bearer " .. TOKEN}) end

  setup(function()
    s = sim.start("--openai-key sk-wh --notion-token secret_wh")
    d = daemon.start{
      pipeline = [[return {storage = {root = "{DIR}/root"}, sora = {poll = {interval = 30, max = 60}}}]],
      env = {OPENAI_API_KEY = "sk-wh", OPENAI_BASE_URL = s.openai, NOTION_TOKEN = "secret_wh", NOTION_BASE_URL = s.notion,
             OPENAI_WEBHOOK_SECRET = SECRET2, ASSETD_API_TOKEN = TOKEN}}
  end)
  teardown(function()
    s:stop()
    d:stop_clean()
  end)

  it("requires the bearer token everywhere but /healthz and /webhooks/openai", function()
    local status, body, h = d:json("GET", "/api/downloads/status")
    assert.are.equal(401, status)
    assert.are.equal("unauthorized", body.error.code)
    assert.are.equal("Bearer", h["www-authenticate"])
    assert.are.equal(401, (d:json("GET", "/api/downloads/status", {headers = {Authorization = "Bearer wrong"}})))
    assert.are.equal(401, (d:json("GET", "/api/downloads/status", {headers = {Authorization = "Bearer " .. TOKEN .. "x"}})))
    assert.are.equal(401, (d:json("GET", "/api/downloads/status", {headers = {Authorization = TOKEN}})))
    assert.are.equal(401, (d:json("GET", "/metrics")))
    assert.are.equal(401, (d:json("GET", "/generated-videos/b/x.mp4")))
    assert.are.equal(200, (d:json("GET", "/api/downloads/status", {headers = {Authorization = "Bearer " .. TOKEN}})))
    assert.are.equal(200, (d:json("GET", "/healthz")))
  end)

  it("a verified video.completed wakes the waiting job long before its next poll", function()
    s:video{{id = "video_w1", completes_in = 1.5, sizes = {video = 50000, thumbnail = 2000, spritesheet = 3000}}}
    d:json("POST", "/api/downloads", {body = {notionPageId = "page-w1", soraVideoId = "video_w1", batchId = "wb"},
                                      headers = {Authorization = "Bearer " .. TOKEN}})
    assetd.sleep(2)
    assert.are.equal("waiting", status_of("page-w1"))     -- polled once, in progress; next poll in 30 s
    local body = event("video.completed", "video_w1")
    local t0 = assetd.now()
    local status, res = post_webhook(body, signed(body, "msg_w1"))
    assert.are.equal(200, status)
    assert.is_true(res.received)
    daemon.eventually(function() return status_of("page-w1") == "completed" end, 8, "the webhook to wake page-w1")
    assert.is_true(assetd.now() - t0 < 8)
    -- the same delivery again is a replay: acknowledged, not acted on
    local st2, res2 = post_webhook(body, signed(body, "msg_w1"))
    assert.are.equal(200, st2)
    assert.is_true(res2.replay)
  end)

  it("refuses bad signatures, old timestamps and missing headers, changing nothing", function()
    s:video{{id = "video_w2", completes_in = 1, sizes = {video = 50000, thumbnail = 2000, spritesheet = 3000}}}
    d:json("POST", "/api/downloads", {body = {notionPageId = "page-w2", soraVideoId = "video_w2", batchId = "wb"},
                                      headers = {Authorization = "Bearer " .. TOKEN}})
    assetd.sleep(1.5)
    local body = event("video.completed", "video_w2")
    local h = signed(body, "msg_w2")
    h["webhook-signature"] = "v1," .. b64("not the right mac at all, 32 byt")
    local status, res = post_webhook(body, h)
    assert.are.equal(401, status)
    assert.are.equal("invalid_signature", res.error.code)
    -- signed with a key we do not hold
    status = post_webhook(body, signed(body, "msg_w2b", "some-other-key"))
    assert.are.equal(401, status)
    -- a body changed after signing
    local hb = signed(body, "msg_w2c")
    assert.are.equal(401, (post_webhook(body:gsub("video_w2", "video_w1"), hb)))
    -- ten minutes old, correctly signed
    local old = tostring(math.floor(assetd.now()) - 600)
    status, res = post_webhook(body, signed(body, "msg_w2d", KEY2, old))
    assert.are.equal(401, status)
    assert.are.equal("timestamp_out_of_tolerance", res.error.code)
    status, res = post_webhook(body, {["webhook-id"] = "msg_w2e"})
    assert.are.equal(400, status)
    assert.are.equal("missing_signature_headers", res.error.code)
    assetd.sleep(1.5)
    assert.are.equal("waiting", status_of("page-w2"))
    -- each refusal is a warn line naming why (it was only a metric)
    local log = d:log()
    assert.truthy(log:find('level=warn msg="webhook refused" code=invalid_signature[^\n]*webhook_id=msg_w2\n'), log)
    assert.truthy(log:find('level=warn msg="webhook refused" code=timestamp_out_of_tolerance[^\n]*webhook_id=msg_w2d'), log)
    assert.truthy(log:find('level=warn msg="webhook refused" code=missing_signature_headers', 1, true), log)
  end)

  it("accepts a delivery signed during a rotation (two signatures, one by the current key)", function()
    local body = event("video.completed", "video_w2", "evt_rot")
    local ts = tostring(math.floor(assetd.now()))
    local old_sig = sign(KEY1, "msg_rot", ts, body, d.dir)
    local new_sig = sign(KEY2, "msg_rot", ts, body, d.dir)
    local status = post_webhook(body, {["webhook-id"] = "msg_rot", ["webhook-timestamp"] = ts,
                                       ["webhook-signature"] = old_sig .. " " .. new_sig})
    assert.are.equal(200, status)
    daemon.eventually(function() return status_of("page-w2") == "completed" end, 8, "the rotated-signature webhook")
    -- only the old key's signature: refused
    local body2 = event("video.completed", "video_x", "evt_rot2")
    assert.are.equal(401, (post_webhook(body2, signed(body2, "msg_rot2", KEY1))))
  end)

  it("/metrics is valid Prometheus text with the daemon's families", function()
    local status, text, h = d:request("GET", "/metrics", {headers = {Authorization = "Bearer " .. TOKEN}})
    assert.are.equal(200, status)
    assert.matches("^text/plain; version=0.0.4", h["content-type"])
    local fams = require("prom").parse(d.dir, text)
    assert.are.equal("gauge", fams.assetd_jobs.type)
    local completed
    for _, smp in ipairs(fams.assetd_jobs.samples) do
      if smp[2].state == "completed" then completed = smp[3] end
    end
    assert.is_true(completed >= 2)
    assert.are.equal("histogram", fams.assetd_transfer_duration_seconds.type)
    assert.are.equal("histogram", fams.assetd_deadline_slack_seconds.type)
    assert.are.equal("counter", fams.assetd_notion_requests.type)
    local outcomes = {}
    for _, smp in ipairs(fams.assetd_webhooks.samples) do outcomes[smp[2].outcome] = smp[3] end
    assert.are.equal(2, outcomes.accepted)
    assert.are.equal(1, outcomes.replay)
    assert.is_true(outcomes.invalid_signature >= 3)
    for _, name in ipairs{"assetd_downloaded_bytes", "assetd_retries", "assetd_alerts", "assetd_assets_stored"} do
      assert.is_not_nil(fams[name], name)
    end
  end)

  it("never shows a secret in the log or an answer", function()
    local log = d:log()
    for _, secret in ipairs{TOKEN, "sk-wh", "secret_wh", SECRET2, KEY2} do
      assert.is_nil(log:find(secret, 1, true), secret)
    end
    local _, body = d:request("GET", "/api/downloads?limit=100", {headers = {Authorization = "Bearer " .. TOKEN}})
    assert.is_nil(body:find(TOKEN, 1, true))
    assert.is_nil(body:find("sk-wh", 1, true))
  end)
end)

-- The replay table on its own, with a clock the test moves: ids are remembered for as long as
-- their timestamp can pass, through the sweeps that drop older ones, and no longer.
describe("webhook replay table", function()
  local webhooks = require "assetd.webhooks"
  local secret = "whsec_" .. assetd.base64_encode(KEY1)
  local now = 1e9
  local v = webhooks.new{secret = secret, now = function() return now end}
  local function deliver(id)
    local ts = tostring(math.floor(now))
    return v:verify({["webhook-id"] = id, ["webhook-timestamp"] = ts,
                     ["webhook-signature"] = webhooks.sign(secret, id, ts, "{}")}, "{}")
  end

  it("knows every id in the window as a replay, through its sweeps, and forgets the old ones", function()
    for i = 1, 5000 do assert.is_true(deliver("a" .. i)) end
    for _, i in ipairs{1, 1024, 2048, 5000} do assert.is_false(deliver("a" .. i)) end
    assert.are.equal(5000, v.ids.count)
    now = now + 2 * v.tolerance + 1                  -- every "a" id is too old to pass now
    for i = 1, 6000 do assert.is_true(deliver("b" .. i)) end
    assert.is_true(v.ids.count <= 6000, v.ids.count)
    local left = 0
    for id in pairs(v.ids.seen) do if id:sub(1, 1) == "a" then left = left + 1 end end
    assert.are.equal(0, left)
    assert.is_false(deliver("b1"))
  end)
end)

-- A secret that is not base64 is told as such, with the reason, wherever it is read: the
-- decoder returns nil and an error value (never nothing), the verifier refuses with that
-- reason instead of "not set", and --check warns.
describe("a webhook secret that is not base64", function()
  local webhooks = require "assetd.webhooks"

  it("base64_decode gives nil and an invalid error saying what is wrong", function()
    assert.are.equal("hello", assetd.base64_decode("aGVsbG8="))
    assert.are.equal("", assetd.base64_decode(""))
    for input, why in pairs{["abc"] = "not a multiple of 4", ["ab!c"] = "a character outside",
                            ["ab=c"] = "'=' before the end", ["a==="] = "'=' before the end"} do
      local v, err = assetd.base64_decode(input)
      assert.is_nil(v, input)
      assert.are.equal("invalid", err.category, input)
      assert.truthy(tostring(err):find(why, 1, true), input .. ": " .. tostring(err))
    end
  end)

  it("the verifier refuses every delivery naming the bad key, and sign says why it cannot", function()
    local v = webhooks.new{secret = "whsec_not*base64"}
    assert.is_false(v:configured())
    local ok, why = v:verify({["webhook-id"] = "msg_1", ["webhook-timestamp"] = tostring(math.floor(assetd.now())),
                              ["webhook-signature"] = "v1,AAAA"}, "{}")
    assert.is_nil(ok)
    assert.are.equal(401, why.status)
    assert.are.equal("webhook_not_configured", why.code)
    assert.truthy(why.message:find("not base64", 1, true), why.message)
    local sig, err = webhooks.sign("whsec_not*base64", "msg_1", "1", "{}")
    assert.is_nil(sig)
    assert.are.equal("config", err.category)
    local good = "whsec_" .. assetd.base64_encode(KEY1)
    assert.is_true(webhooks.check_secret(good))
    local cok, cerr = webhooks.check_secret(good .. " whsec_abc")
    assert.is_nil(cok)
    assert.truthy(cerr.message:find("that key is ignored", 1, true), cerr.message)
  end)

  it("--check warns about it, without showing the secret", function()
    local dir = sim.tmpdir()
    local path = sim.script('return {storage = {root = "' .. dir .. '/root"}}\n')
    local out, rc = sim.run("OPENAI_WEBHOOK_SECRET='whsec_c2Vj!mV0' " .. (os.getenv("ASSETD_BIN") or "./assetd") ..
                            " --check " .. path)
    os.remove(path)
    os.execute("rm -rf " .. dir)
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("warning: OPENAI_WEBHOOK_SECRET: a whsec_ key that is not base64 (base64: a character " ..
                           "outside A-Z a-z 0-9 + / =): every webhook is refused (401)", 1, true), out)
    assert.is_nil(out:find("c2Vj!mV0", 1, true), out)
  end)
end)
