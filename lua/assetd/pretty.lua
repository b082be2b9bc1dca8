-- The REPL's value printer: sorted keys, a depth limit, cycles marked, times shown relative to
-- now (`in 8m12s`, `3m ago`), byte sizes in KiB/MiB/GiB, and secrets never shown: fields
-- named like secrets and any string equal to a secret from the environment are redacted.
-- A table whose metatable has `__pp` (the helpers' views) prints as that function says.
local assetd = require "assetd"

local M = {}

M.max_depth = 4       -- deeper tables print as {...}
M.max_items = 100     -- entries shown per table
M.width = 78          -- a table that fits on one line is printed on one line

M.secret_env = assetd.secret_env         -- one list, src/log.c's

-- The secret values set in the environment now.
function M.secrets()
  local out = {}
  for _, name in ipairs(M.secret_env) do
    local v = os.getenv(name)
    if v and v ~= "" then out[#out + 1] = v end
  end
  return out
end

function M.is_secret_value(s)
  for _, v in ipairs(M.secrets()) do
    if s == v then return true end
  end
  return false
end

-- TEXT with every secret value (4 bytes or more) and URL password in it replaced.
M.redact = assetd.redact                  -- the same redaction as the logs and the job store

-- ---- units -------------------------------------------------------------------------------

-- 492 -> "8m12s", 180 -> "3m", 7260 -> "2h01m"
function M.duration(s)
  if s ~= s then return "?" end
  if math.abs(s) == math.huge then return "forever" end
  s = math.floor(math.abs(s) + 0.5)
  local function two(a, ua, b, ub)
    return b == 0 and string.format("%d%s", a, ua) or string.format("%d%s%02d%s", a, ua, b, ub)
  end
  if s < 60 then return s .. "s" end
  if s < 3600 then return two(s // 60, "m", s % 60, "s") end
  if s < 86400 then return two(s // 3600, "h", s % 3600 // 60, "m") end
  return two(s // 86400, "d", s % 86400 // 3600, "h")
end

-- A unix time relative to NOW: "in 8m12s", "3m ago", "now".
function M.relative(t, now)
  local d = t - (now or assetd.now())
  if math.abs(d) < 1 then return "now" end
  return d > 0 and "in " .. M.duration(d) or M.duration(d) .. " ago"
end

function M.bytes(n)
  if n < 1024 then return string.format("%d B", n) end
  if n < 1024 ^ 2 then return string.format("%.1f KiB", n / 1024) end
  if n < 1024 ^ 3 then return string.format("%.1f MiB", n / 1024 ^ 2) end
  return string.format("%.2f GiB", n / 1024 ^ 3)
end

function M.iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

-- ---- values ------------------------------------------------------------------------------

local function is_time_key(k)
  return type(k) == "string" and (k:match("At$") or k == "t" or k == "time" or k == "deadline")
end

local function is_size_key(k)
  return type(k) == "string" and (k:match("[Ss]ize$") or k:match("[Bb]ytes$"))
end

local function secret_key(k) return type(k) == "string" and assetd.is_secret_key(k) end

local escapes = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t"}

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end

-- One non-table value, shown as it reads best under KEY.
function M.scalar(v, key, now)
  local t = type(v)
  if secret_key(key) and v ~= nil then return "[redacted]" end
  if t == "string" then return M.is_secret_value(v) and "[redacted]" or quote(v) end
  if t == "number" then
    if is_time_key(key) and v > 1e9 and v < 1e11 then
      return M.relative(v, now) .. " (" .. M.iso(v) .. ")"
    end
    if is_size_key(key) and v >= 1024 and math.type(v) == "integer" then
      return M.bytes(v) .. " (" .. v .. ")"
    end
    return tostring(v)
  end
  return tostring(v)
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return k end
  if type(k) == "string" then return "[" .. quote(k) .. "]" end
  return "[" .. tostring(k) .. "]"
end

local order = {number = 1, string = 2}

local function sorted_keys(t, n)
  local keys = {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    local ta, tb = order[type(a)] or 3, order[type(b)] or 3
    if ta ~= tb then return ta < tb end
    if ta == 3 then return tostring(a) < tostring(b) end
    return a < b
  end)
  return keys
end

local function is_error(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "assetd.error"
end

-- The value V as text. opts: {depth = max depth, now = time for relative times}
function M.format(v, opts)
  opts = opts or {}
  local max_depth, now = opts.depth or M.max_depth, opts.now or assetd.now()
  local path = {}
  local function fmt(x, key, depth, indent)
    if type(x) ~= "table" or secret_key(key) then return M.scalar(x, key, now) end
    local mt = getmetatable(x)
    if type(mt) == "table" and mt.__pp then return mt.__pp(x) end
    if is_error(x) then
      return string.format("error(%s): %s", tostring(rawget(x, "category")), M.redact(tostring(x)))
    end
    if path[x] then return "<cycle>" end
    if depth >= max_depth then return next(x) == nil and "{}" or "{...}" end
    path[x] = true
    local n, items = #x, {}
    for i = 1, math.min(n, M.max_items) do items[#items + 1] = fmt(x[i], nil, depth + 1, indent .. "  ") end
    local keys = sorted_keys(x, n)
    for i = 1, math.min(#keys, M.max_items - #items) do
      local k = keys[i]
      items[#items + 1] = key_text(k) .. " = " .. fmt(x[k], k, depth + 1, indent .. "  ")
    end
    local hidden = n + #keys - #items
    if hidden > 0 then items[#items + 1] = string.format("... (%d more)", hidden) end
    path[x] = nil
    if #items == 0 then return "{}" end
    local one = "{" .. table.concat(items, ", ") .. "}"
    if #one + #indent <= M.width and not one:find("\n", 1, true) then return one end
    return "{\n" .. indent .. "  " .. table.concat(items, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
  end
  return fmt(v, nil, 0, "")
end

-- ---- table views -------------------------------------------------------------------------

-- ROWS (lists of strings) under HEADERS, columns padded to their widest cell.
function M.columns(headers, rows)
  local w = {}
  for i, h in ipairs(headers) do w[i] = #h end
  for _, r in ipairs(rows) do
    for i = 1, #headers do w[i] = math.max(w[i], #tostring(r[i] or "")) end
  end
  local function line(cells)
    local out = {}
    for i = 1, #headers do
      local c = tostring(cells[i] or "")
      out[i] = i == #headers and c or c .. string.rep(" ", w[i] - #c)
    end
    return (table.concat(out, "  "):gsub("%s+$", ""))
  end
  local lines = {line(headers)}
  for _, r in ipairs(rows) do lines[#lines + 1] = line(r) end
  return table.concat(lines, "\n")
end

-- S cut to N characters.
function M.cut(s, n)
  -- control characters from an upstream's text (ESC, OSC sequences) must not reach a terminal
  s = tostring(s or ""):gsub("\n.*", ""):gsub("[%c\127]", "?")
  return #s > n and s:sub(1, n - 1) .. "~" or s
end

return M
