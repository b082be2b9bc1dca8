-- Properties of the asset Range parser (lua/assetd/files.lua, M.range) for fuzz_range.
-- The input is the file's size (6 bytes, little-endian) and then the header's value.
-- Properties: the answer is nil (serve it all), false (416) or an offset and a length that
-- are integers with 0 <= offset, 1 <= length, offset + length <= size; it round-trips
-- through "bytes=first-last"; and for numbers of 15 digits or fewer it is what RFC 9110
-- 14.1.2 says, by a reference written apart (a first position past the end and a zero suffix
-- are unsatisfiable, a last before the first is not a valid range, a last past the end is cut).
local files = require "assetd.files"

local function reference(header, size)
  local a, b = header:match("^bytes=(%d*)%-(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  if #a:gsub("^0+(.)", "%1") > 15 or #b:gsub("^0+(.)", "%1") > 15 then return "skip" end
  local first, last = tonumber(a), tonumber(b)
  if not first then                                  -- suffix: the last LAST bytes
    if last == 0 or size == 0 then return false end
    local n = math.min(last, size)
    return size - n, n
  end
  if last and last < first then return nil end
  if first >= size then return false end
  last = math.min(last or size - 1, size - 1)
  return first, last - first + 1
end

return function(input)
  local size = #input >= 6 and string.unpack("<I6", input) or #input
  local header = input:sub(7)
  local ok, off, len = pcall(files.range, header, size)
  assert(ok, "range raised: " .. tostring(off))
  if off == nil or off == false then
    assert(len == nil, "a second result without an offset")
  else
    assert(math.tointeger(off) and math.tointeger(len), "offset or length is not an integer")
    assert(off >= 0 and len >= 1 and off + len <= size,
           string.format("range %s of %d gave offset %s, length %s", header, size, off, len))
    local off2, len2 = files.range(string.format("bytes=%d-%d", off, off + len - 1), size)
    assert(off2 == off and len2 == len, "the range does not round-trip")
  end
  local want, wlen = reference(header, size)
  if want ~= "skip" then
    assert(off == want and len == wlen, string.format("range %q of %d gave %s, %s; RFC 9110 says %s, %s",
                                                      header, size, off, len, want, wlen))
  end
end
