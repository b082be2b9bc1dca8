-- The demo pipeline (`make run`): every video the OpenAI-compatible API lists becomes a job;
-- each is fetched as it completes (all three variants together), stored under versioned
-- names in public/generated-videos/demo/, and recorded on its Notion page. A bar per active
-- download and a summary line show on the terminal; the daemon stops when the batch is done.
-- scripts/run-demo points OPENAI_BASE_URL and NOTION_BASE_URL at the local simulator.
local assetd = require "assetd"
local cjson = require "cjson"

local base = assert(os.getenv("OPENAI_BASE_URL"), "OPENAI_BASE_URL is not set (scripts/run-demo sets it)")
local res = assert(assetd.fetch{url = base .. "/videos?limit=100&order=asc", sink = "memory",
                                headers = {Authorization = "Bearer " .. (os.getenv("OPENAI_API_KEY") or "")}})
local jobs = {}
for i, v in ipairs(cjson.decode(res.body).data) do
  jobs[i] = {notionPageId = string.format("demo-page-%03d", i), soraVideoId = v.id, batchId = "demo"}
end
print(string.format("demo: %d videos in the batch, completing over the next minute", #jobs))

return {
  storage = {root = os.getenv("DEMO_ROOT") or "public/generated-videos", public_base_url = "/generated-videos"},
  sora = {poll = {interval = 2, max = 4}},
  -- a bandwidth cap, so the bars have something to show on loopback
  limits = {max_active = 8, max_bytes_per_sec = 8 * 1024 * 1024},
  alerts = {completed = function() end},      -- the progress display says it instead of the log
  jobs = jobs,
  on_start = function(runner, info)
    if info.url then print("dashboard: " .. info.url) end
    require("assetd.progress").start(runner, {stop_when_done = true})
  end,
}
