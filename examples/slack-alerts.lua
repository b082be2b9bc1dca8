-- Alerts posted as JSON to a Slack incoming webhook (SLACK_WEBHOOK_URL). Hooks run in the
-- job's task, so they may wait on assetd.fetch; an error in one is recorded on the job.
local cjson = require "cjson"
local url = os.getenv("SLACK_WEBHOOK_URL")

local function post(text)
  if not url then return assetd.log.warn("SLACK_WEBHOOK_URL not set", {text = text}) end
  local res, err = assetd.fetch{url = url, method = "POST", sink = "memory", timeout = 10,
                                headers = {["Content-Type"] = "application/json"},
                                body = cjson.encode{text = text}}
  if not res then assetd.log.error("slack alert failed", {error = tostring(err)}) end
end

return {
  alerts = {
    warn_before = 900,
    expiring = function(job, left)
      post(string.format(":warning: %s expires in %d min and is not stored yet", job.soraVideoId, left // 60))
    end,
    expired = function(job) post(":x: " .. job.soraVideoId .. " expired: " .. (job.error or "")) end,
    failed = function(job, reason) post(":x: " .. job.soraVideoId .. " failed: " .. (reason or "")) end,
  },
}
