-- Stored assets over HTTP, under the public path the Notion links use (default
-- /generated-videos/{batchId}/{fileName}): Content-Type by extension (formats.lua), single byte ranges (206)
-- for video seeking, ETag and Last-Modified. Names are checked here and the file is opened
-- beneath the storage root without following symlinks (l_httpd.c), so nothing outside it is served.
local assetd = require "assetd"
local formats = require "assetd.formats"

local M = {}
local Files = {}
Files.__index = Files

-- The path part of the public base URL: "/generated-videos", or "/x" of "https://cdn/x".
local function path_of(base)
  local p = base:match("^https?://[^/]+(/.*)$") or (base:match("^https?://") and "" or base)
  return (p:gsub("/+$", ""))
end

function M.new(opts)
  return setmetatable({root = opts.root, prefix = path_of(opts.public_base_url or "/generated-videos")}, Files)
end

function Files:match(path)
  if path:sub(1, #self.prefix + 1) ~= self.prefix .. "/" then return nil end
  local batch, name = path:sub(#self.prefix + 2):match("^([^/]+)/([^/]+)$")
  if batch then return {batch = batch, name = name} end
  return {}                                      -- under the prefix but not batch/name: 404
end

local function http_date(t) return os.date("!%a, %d %b %Y %H:%M:%S GMT", t) end

-- "bytes=a-b" | "bytes=a-" | "bytes=-n" against SIZE -> offset, length; false if
-- unsatisfiable; nil to ignore (absent, malformed or several ranges: the whole file).
function M.range(header, size)
  if not header then return nil end
  local a, b = header:match("^bytes=(%d*)%-(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  local first, last
  if a == "" then
    local n = tonumber(b)
    if n == 0 then return false end
    first, last = math.max(0, size - n), size - 1
  else
    first, last = tonumber(a), b ~= "" and math.min(tonumber(b), size - 1) or size - 1
    if b ~= "" and tonumber(b) < first then return nil end
  end
  if first >= size then return false end
  return first, last - first + 1
end

local err = require("assetd.reply").err

-- If-None-Match: "*" or a list of tags, each compared weakly (RFC 9110 13.1.2: W/ ignored).
local function etag_matches(header, etag)
  for tag in header:gmatch("[^,]+") do
    tag = tag:match("^%s*(.-)%s*$"):gsub("^W/", "")
    if tag == "*" or tag == etag then return true end
  end
  return false
end

function Files:serve(req)
  local m = self:match(req.path)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return err(405, "method_not_allowed", req.method .. " is not allowed on assets", {Allow = "GET, HEAD"})
  end
  -- a dot-name is a download still being written (.NAME.part): never served
  if not m.batch or not assetd.store.valid_id(m.batch) or not assetd.store.valid_name(m.name) or m.name:sub(1, 1) == "." then
    return err(404, "not_found", "no such asset")
  end
  local rel = m.batch .. "/" .. m.name
  local info = assetd.file_info(self.root, rel)
  if not info then return err(404, "not_found", "no such asset") end
  local etag = string.format('"%x-%x-%x"', info.inode, info.size, info.mtime)
  local headers = {
    ["Content-Type"] = formats.content_type(m.name),
    ["Accept-Ranges"] = "bytes", ETag = etag, ["Last-Modified"] = http_date(info.mtime),
    -- private: with ASSETD_API_TOKEN set an asset needs the token, which a shared cache would skip
    ["Cache-Control"] = "private, max-age=3600", ["X-Content-Type-Options"] = "nosniff",
  }
  local inm = req.headers["if-none-match"]
  if (inm and etag_matches(inm, etag)) or (not inm and req.headers["if-modified-since"] == headers["Last-Modified"]) then
    return {status = 304, headers = headers, body = ""}
  end
  local off, len = M.range(req.headers.range, info.size)
  if off == false then
    headers["Content-Range"] = "bytes */" .. info.size
    return {status = 416, headers = headers, body = ""}
  end
  if off then
    headers["Content-Range"] = string.format("bytes %d-%d/%d", off, off + len - 1, info.size)
    return {status = 206, headers = headers, root = self.root, file = rel, offset = off, length = len}
  end
  return {status = 200, headers = headers, root = self.root, file = rel}
end

return M
