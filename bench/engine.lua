-- The engine as a script author uses it: assetd.fetch{url = ..., to = ...} for every file of a
-- list, all at once from their own tasks, with the engine's defaults (its limits decide how
-- many run). Usage: assetd bench/engine.lua LIST OUT_DIR [OPTION=VALUE ...]
-- LIST: lines "URL NAME". An option (direct=false, say) is passed to every fetch, for an A/B.
local list, out = arg[1], arg[2]
local extra = {}
for i = 3, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  assert(k, "usage: engine.lua LIST OUT_DIR [OPTION=VALUE ...]")
  extra[k] = v == "true" or (v ~= "false" and (tonumber(v) or v))
end
local files = {}
for line in io.lines(list) do
  local url, name = line:match("^(%S+)%s+(%S+)$")
  if url then files[#files + 1] = {url = url, name = name} end
end
local left, failed = #files, {}
for _, f in ipairs(files) do
  assetd.spawn(function()
    local req = {url = f.url, to = out .. "/" .. f.name}
    for k, v in pairs(extra) do req[k] = v end
    local res, err = assetd.fetch(req)
    if not res then failed[#failed + 1] = f.name .. ": " .. tostring(err) end
    left = left - 1
  end)
end
while left > 0 do assetd.sleep(0.01) end
if #failed > 0 then
  io.stderr:write(#failed, " failed: ", failed[1], "\n")
  os.exit(1)
end
