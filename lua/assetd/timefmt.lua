-- Times as the API shows them: ISO 8601 UTC strings with milliseconds, and the parsing of
-- what clients send (ISO 8601 with Z or an offset, or unix seconds). Pure arithmetic, no
-- os.time, so the local time zone never leaks in.
local M = {}

-- Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

function M.iso(t)
  if not t then return nil end
  local s = math.floor(t)
  local ms = math.floor((t - s) * 1000 + 0.5)
  if ms >= 1000 then s, ms = s + 1, 0 end
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", ms)
end

-- A number of unix seconds or an ISO 8601 string -> unix seconds, or nil.
function M.parse(v)
  if type(v) == "number" then
    if v ~= v or v <= 0 or v > 1e11 then return nil end
    return v
  end
  if type(v) ~= "string" or #v > 40 then return nil end
  local y, mo, d, h, mi, sec, frac, tz = v:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
  if not y then return nil end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  local leap = y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)
  local mdays = mo == 2 and (leap and 29 or 28) or ((mo == 4 or mo == 6 or mo == 9 or mo == 11) and 30 or 31)
  if mo < 1 or mo > 12 or d < 1 or d > mdays or h > 23 or mi > 59 or sec > 60 then return nil end
  if frac ~= "" and frac:sub(1, 1) ~= "." then return nil end
  local offset = 0
  if tz ~= "Z" and tz ~= "z" then
    local sign, oh, om = tz:match("^([+-])(%d%d):?(%d%d)$")
    if not sign or tonumber(oh) > 23 or tonumber(om) > 59 then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  local t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  t = t + (tonumber("0" .. frac) or 0)
  if t <= 0 then return nil end              -- as for numbers: no time before 1970 is a deadline
  return t
end

-- A time a job can have: one within ten years of NOW. Beyond that it is a mistake (unix
-- milliseconds, say, or "9999-12-31"), and a deadline there would never fire an alert or expire.
M.TEN_YEARS = 10 * 365 * 86400

-- parse(V) when that lies within TEN_YEARS of NOW, else nil.
function M.near(v, now)
  local t = M.parse(v)
  if t and math.abs(t - now) <= M.TEN_YEARS then return t end
  return nil
end

return M
