-- The engine demo: watch a batch of videos on an OpenAI-compatible API, and as each one
-- completes fetch its three assets together, streamed to disk before `expires_at`.
-- Usage: assetd examples/demo.lua BASE_URL [OUT_DIR]   (OPENAI_API_KEY from the environment)
local cjson = require "cjson"

local base = assert(arg[1], "usage: assetd examples/demo.lua BASE_URL [OUT_DIR]")
local out = arg[2] or "public/generated-videos/demo"
local auth = {Authorization = "Bearer " .. (os.getenv("OPENAI_API_KEY") or "sk-demo")}
local variants = {video = "mp4", thumbnail = "webp", spritesheet = "jpg"}
os.execute("mkdir -p '" .. out .. "'")

local function get_json(url)
  local res, err = assetd.fetch{url = url, headers = auth, sink = "memory", timeout = 10}
  if not res then return nil, err end
  return cjson.decode(res.body)
end

local progress, stored, failed = {}, {}, {}
local function show()
  local parts = {}
  for name, p in pairs(progress) do
    parts[#parts + 1] = string.format("%s %3d%%", name, p.total and p.total > 0 and math.floor(100 * p.bytes / p.total) or 0)
  end
  table.sort(parts)
  io.stderr:write(string.format("\r\27[K[%d stored] %s", #stored, table.concat(parts, "  ", 1, math.min(#parts, 4))))
end

local function fetch_video(v)
  local done = 0
  for variant, ext in pairs(variants) do
    assetd.spawn(function()
      local name = v.id .. "_V1" .. (variant == "video" and "" or "_" .. variant) .. "." .. ext
      progress[name] = {bytes = 0}
      local res, err = assetd.fetch{
        url = base .. "/videos/" .. v.id .. "/content?variant=" .. variant, headers = auth,
        to = out .. "/" .. name, resume = true, deadline = v.expires_at,
        on_progress = function(bytes, total) progress[name] = {bytes = bytes, total = total}; show() end,
      }
      progress[name] = nil
      if res then stored[#stored + 1] = {name = name, bytes = res.bytes, sha256 = res.sha256}
      else failed[#failed + 1] = name .. ": " .. tostring(err) end
      done = done + 1
      show()
    end)
  end
end

local seen, total = {}, nil
repeat
  local list = assert(get_json(base .. "/videos?limit=100"))
  total = #list.data
  for _, v in ipairs(list.data) do
    if v.status == "completed" and not seen[v.id] then
      seen[v.id] = true
      fetch_video(v)
    end
  end
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  if n < total then assetd.sleep(1) end
until n == total
while #stored + #failed < 3 * total do assetd.sleep(0.2) end

io.stderr:write("\n")
local bytes = 0
for _, s in ipairs(stored) do bytes = bytes + s.bytes end
print(string.format("stored %d files (%.1f MiB) for %d videos in %s", #stored, bytes / 1048576, total, out))
for _, f in ipairs(failed) do print("failed: " .. f) end
os.exit(#failed == 0 and 0 or 1)
