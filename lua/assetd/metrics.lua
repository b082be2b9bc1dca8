-- Metrics in the Prometheus text format: counters and histograms kept in Lua tables, fed by the
-- runner and the Notion client, rendered by GET /metrics together with gauges read at scrape
-- time (jobs by state). No labels beyond the few the issue names, so cardinality stays fixed.
local M = {}
local Registry = {}
Registry.__index = Registry

function M.new()
  return setmetatable({families = {}, order = {}}, Registry)
end

local function family(self, name, kind, help, buckets)
  local f = self.families[name]
  if f then return f end
  f = {name = name, kind = kind, help = help, series = {}, keys = {}, buckets = buckets}
  self.families[name] = f
  self.order[#self.order + 1] = name
  return f
end

local function escape(v)
  return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function label_text(labels)
  if not labels then return "" end
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = string.format('%s="%s"', k, escape(labels[k])) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function series(f, labels)
  local key = label_text(labels)
  local s = f.series[key]
  if not s then
    s = {labels = labels, value = 0, counts = {}, sum = 0, count = 0}
    f.series[key] = s
    f.keys[#f.keys + 1] = key
    table.sort(f.keys)
  end
  return s
end

function Registry:counter(name, help) family(self, name, "counter", help) return self end

function Registry:histogram(name, help, buckets)
  family(self, name, "histogram", help, buckets)
  return self
end

function Registry:inc(name, labels, v)
  local f = assert(self.families[name], "unknown metric " .. name)
  local s = series(f, labels)
  s.value = s.value + (v or 1)
end

function Registry:observe(name, v, labels)
  local f = assert(self.families[name], "unknown metric " .. name)
  local s = series(f, labels)
  for i, b in ipairs(f.buckets) do
    if v <= b then s.counts[i] = (s.counts[i] or 0) + 1 end
  end
  s.sum = s.sum + v
  s.count = s.count + 1
end

local function num(v)
  if v == math.huge then return "+Inf" end
  if math.type(v) == "integer" or v == math.floor(v) and math.abs(v) < 2 ^ 53 then
    return string.format("%d", v)
  end
  return string.format("%.6g", v)
end

local function with_le(labels, le)
  local l = {le = le}
  for k, v in pairs(labels or {}) do l[k] = v end
  return label_text(l)
end

local function render_family(f, out)
  out[#out + 1] = string.format("# HELP %s %s", f.name, f.help)
  out[#out + 1] = string.format("# TYPE %s %s", f.name, f.kind)
  for _, key in ipairs(f.keys) do
    local s = f.series[key]
    if f.kind == "histogram" then
      for i, b in ipairs(f.buckets) do
        out[#out + 1] = string.format("%s_bucket%s %s", f.name, with_le(s.labels, num(b)), num(s.counts[i] or 0))
      end
      out[#out + 1] = string.format("%s_bucket%s %s", f.name, with_le(s.labels, "+Inf"), num(s.count))
      out[#out + 1] = string.format("%s_sum%s %s", f.name, key, num(s.sum))
      out[#out + 1] = string.format("%s_count%s %s", f.name, key, num(s.count))
    else
      out[#out + 1] = string.format("%s%s %s", f.name, key, num(s.value))
    end
  end
end

-- GAUGES: {{name=, help=, series = {{labels=, value=}, ...}}} read at scrape time.
function Registry:render(gauges)
  local out = {}
  for _, g in ipairs(gauges or {}) do
    out[#out + 1] = string.format("# HELP %s %s", g.name, g.help)
    out[#out + 1] = string.format("# TYPE %s gauge", g.name)
    for _, s in ipairs(g.series) do
      out[#out + 1] = string.format("%s%s %s", g.name, label_text(s.labels), num(s.value))
    end
  end
  for _, name in ipairs(self.order) do render_family(self.families[name], out) end
  return table.concat(out, "\n") .. "\n"
end

-- Seconds an API request takes, from a fast answer to a timeout.
local REQUEST_BUCKETS = {0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

-- The daemon's own metric families.
function M.standard()
  return M.new()
    :counter("assetd_downloaded_bytes_total", "Bytes of assets stored")
    :counter("assetd_assets_stored_total", "Assets committed to the store, by variant")
    :histogram("assetd_transfer_duration_seconds", "Duration of successful asset transfers",
               {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})
    :counter("assetd_retries_total", "Download retries, by cause")
    :counter("assetd_uploaded_bytes_total", "Bytes sent to the bucket (storage.s3)")
    :counter("assetd_upload_retries_total", "Upload retries, by cause")
    :histogram("assetd_upload_duration_seconds", "Duration of verified asset uploads",
               {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})
    :counter("assetd_alerts_total", "Alert hooks fired, by alert")
    :counter("assetd_notion_requests_total", "Notion API requests, by HTTP status (or error category)")
    :histogram("assetd_deadline_slack_seconds", "Seconds left before expiresAt when a job completed",
               {0, 60, 300, 600, 1200, 1800, 2700, 3600, 7200})
    :counter("assetd_webhooks_total", "Webhook deliveries, by outcome")
    :histogram("assetd_provider_request_duration_seconds", "Status polls of the video provider, by provider",
               REQUEST_BUCKETS)
    :histogram("assetd_notion_request_duration_seconds", "Notion API requests, answered or not",
               REQUEST_BUCKETS)
    :counter("assetd_cluster_claims_total", "Jobs claimed from the shared store, by how (free, direct, rescue)")
    :counter("assetd_cluster_rescues_total", "Jobs taken over from a daemon that stopped renewing its lease")
    :counter("assetd_cluster_renewals_total", "Rounds of lease renewal that reached the store")
    :counter("assetd_cluster_leases_lost_total", "Jobs whose claim another daemon took (their run here stopped)")
    :histogram("assetd_database_request_duration_seconds", "PostgreSQL requests of the job store, answered or not",
               REQUEST_BUCKETS)
end

return M
