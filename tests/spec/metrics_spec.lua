-- /metrics as a Prometheus server meets it (issue 16): read by a real parser (Debian's
-- python3-prometheus-client) and linted by `promtool check metrics`, with the families a
-- person watching the daemon needs: build, transfers, jobs per state, request latency, and
-- retries labelled by cause (a body cut short is the network's, whatever its status line).
local sim = require "sim"
local daemon = require "daemon"
local cjson = require "cjson"

local function samples(fam, name)
  local out = {}
  for _, s in ipairs(fam and fam.samples or {}) do
    if s[1] == name then out[#out + 1] = s end
  end
  return out
end

describe("/metrics", function()
  it("parses, passes promtool and carries build, transfers, latency and retry causes", function()
    local s = sim.start("--openai-key sk-m --notion-token secret_m")
    s:video{id = "vid_m", sizes = {video = 200000, thumbnail = 100, spritesheet = 100}}
    -- the video's first answer is a 200 whose body breaks off: a network failure, not "200"
    s:fault{path = [[vid_m/content\?variant=video$]], kind = "reset", after = 50000, count = 1}
    s:fault{path = [[vid_m/content\?variant=thumbnail$]], kind = "status", status = 503, count = 1}
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {OPENAI_API_KEY = "sk-m", OPENAI_BASE_URL = s.openai,
                                                                  NOTION_TOKEN = "secret_m", NOTION_BASE_URL = s.notion}}
    finally(function() d:stop(); s:stop() end)
    assert.are.equal(202, (d:json("POST", "/api/downloads", {body = {notionPageId = "p-m", soraVideoId = "vid_m", batchId = "bm"}})))
    daemon.eventually(function()
      local _, j = d:json("POST", "/api/downloads/status", {body = {notionPageId = "p-m"}})
      return type(j) == "table" and j.status == "completed" and j.notion == "synced"
    end, 20, "completed and synced")

    local status, text = d:request("GET", "/metrics")
    assert.are.equal(200, status)
    local fams = require("prom").parse(d.dir, text)

    local version = sim.run(daemon.bin .. " --version"):match("(%d+%.%d+%.%d+)")
    local build = samples(fams.assetd_build_info, "assetd_build_info")
    assert.are.equal(1, #build)
    assert.are.equal(1, build[1][3])
    assert.matches(version, build[1][2].version, 1, true)

    local transfers = {}
    for _, smp in ipairs(samples(fams.assetd_transfers, "assetd_transfers")) do transfers[smp[2].state] = smp[3] end
    assert.are.same({running = 0, queued = 0}, transfers)
    assert.are.equal("gauge", fams.assetd_jobs_stalled.type)
    assert.are.equal("gauge", fams.assetd_jobs_at_risk.type)
    assert.are.equal("gauge", fams.assetd_jobs_deadline_passed.type)
    assert.are.equal(0, samples(fams.assetd_jobs_deadline_passed, "assetd_jobs_deadline_passed")[1][3])

    local polls = samples(fams.assetd_provider_request_duration_seconds, "assetd_provider_request_duration_seconds_count")
    assert.are.equal("histogram", fams.assetd_provider_request_duration_seconds.type)
    assert.are.equal("openai", polls[1][2].provider)
    assert.is_true(polls[1][3] >= 1)
    local notion = samples(fams.assetd_notion_request_duration_seconds, "assetd_notion_request_duration_seconds_count")
    assert.is_true(notion[1][3] >= 1)

    local causes = {}
    for _, smp in ipairs(samples(fams.assetd_retries, "assetd_retries_total")) do causes[smp[2].cause] = smp[3] end
    assert.are.equal(1, causes.network, cjson.encode(causes))
    assert.are.equal(1, causes["5xx"], cjson.encode(causes))
    assert.is_nil(causes["200"])
    assert.is_nil(causes["206"])

    -- Prometheus's own linter: names, types, help, histogram suffixes
    local p = io.popen("promtool check metrics < " .. d.dir .. "/metrics.txt 2>&1; echo rc=$?")
    local lint = p:read("a")
    p:close()
    assert.truthy(lint:find("rc=0", 1, true), lint)
  end)
end)
