-- The S3 client: where the bucket is (endpoint, region and addressing resolved as the AWS
-- tools do), requests signed by libcurl through the engine, a file put whole or in parts
-- (resumed from ListParts after a crash, stale uploads aborted) and the HEAD that verifies it.
-- Failures are error values; refused credentials name the variable to check.
local assetd = require "assetd"
local timefmt = require "assetd.timefmt"

local M = {}

local Client = {}
Client.__index = Client

M.EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

local function env(name)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
end

-- The settings of storage.s3 with the environment's: endpoint from s3.endpoint, else
-- AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS's regional endpoint; region from
-- s3.region, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1; path-style addressing
-- by default when an endpoint is given (MinIO, s3rver and most others need it).
function M.resolve(cfg)
  local region = cfg.region or env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1"
  local endpoint = cfg.endpoint or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL")
  local path_style = cfg.path_style
  if path_style == nil then path_style = endpoint ~= nil end
  endpoint = (endpoint or ("https://s3." .. region .. ".amazonaws.com")):gsub("/+$", "")
  local out = {}
  for k, v in pairs(cfg) do out[k] = v end
  out.region, out.endpoint, out.path_style, out.prefix = region, endpoint, path_style, cfg.prefix or ""
  return out
end

-- new(resolved settings) -> a client of the bucket.
function M.new(cfg)
  assert(cfg.bucket and cfg.endpoint and cfg.region, "s3.new{bucket=, endpoint=, region=}: resolve() first")
  return setmetatable({bucket = cfg.bucket, endpoint = cfg.endpoint, region = cfg.region,
                       path_style = cfg.path_style, part_size = cfg.part_size or 64 * 1024 * 1024,
                       storage_class = cfg.storage_class, sigv4 = "aws:amz:" .. cfg.region .. ":s3"}, Client)
end

function Client:__tostring()
  return string.format("s3.client(%s, bucket %s, region %s)", self.endpoint, self.bucket, self.region)
end

-- SigV4's encoding (RFC 3986 unreserved characters stay); a key keeps its slashes.
local function encode(s, keep_slash)
  return (s:gsub(keep_slash and "[^%w%-%._~/]" or "[^%w%-%._~]",
                 function(c) return string.format("%%%02X", c:byte()) end))
end

-- The query string, sorted and encoded as the canonical request wants it, so libcurl's
-- canonical form and the server's are the same string.
local function query_string(q)
  if not q then return "" end
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = encode(k) .. "=" .. encode(tostring(q[k])) end
  return "?" .. table.concat(keys, "&")
end

function Client:url(key, query)
  local path = key and ("/" .. encode(key, true)) or "/"
  if self.path_style then return self.endpoint .. "/" .. self.bucket .. (key and path or "") .. query_string(query) end
  local scheme, host = self.endpoint:match("^(%a+://)(.*)$")
  return scheme .. self.bucket .. "." .. host .. path .. query_string(query)
end

local function hex_to_raw(h) return (h:gsub("%x%x", function(c) return string.char(tonumber(c, 16)) end)) end
local function raw_to_hex(r) return (r:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function b64(hex) return assetd.base64_encode(hex_to_raw(hex)) end
M.b64 = b64

-- The NAME digest ("sha256" or "md5") of the parts' own (each part's hex field NAME): what a
-- multipart object's composite checksum or ETag is made of. Raw bytes, or nil and an error.
local function digest_of_parts(parts, name)
  local cat = {}
  for i, p in ipairs(parts) do cat[i] = hex_to_raw(p[name]) end
  return assetd.digest(name, table.concat(cat))
end

-- Which credential an S3 error code blames.
local CREDENTIAL = {
  InvalidAccessKeyId = "AWS_ACCESS_KEY_ID", AccessDenied = "AWS_ACCESS_KEY_ID (its permissions on the bucket)",
  SignatureDoesNotMatch = "AWS_SECRET_ACCESS_KEY", ExpiredToken = "AWS_SESSION_TOKEN",
  InvalidToken = "AWS_SESSION_TOKEN", TokenRefreshRequired = "AWS_SESSION_TOKEN",
}

-- An engine error made an S3 one: the server's code read from its XML, refused credentials
-- (final: "auth") naming the variable, a missing bucket (final: "config") naming the bucket.
function Client:explain(err, method, key)
  if not err.status then return err end
  local body = err.body or ""
  local code = body:match("<Code>([^<]*)</Code>")
  local msg = body:match("<Message>([^<]*)</Message>")
  local where = string.format("%s s3://%s/%s at %s", method, self.bucket, key or "", self.endpoint)
  local fields = {status = err.status, retry_after = err.retry_after, code = code}
  if code == "NoSuchBucket" then
    return assetd.error("config", string.format("bucket %q does not exist at %s (NoSuchBucket)", self.bucket,
                                                self.endpoint), fields)
  end
  if CREDENTIAL[code] or ((err.status == 401 or err.status == 403) and not code) then
    -- the key id (not a secret: S3 echoes it in its own errors) tells which key pair was refused
    return assetd.error("auth", string.format("S3 refused the credentials for bucket %q (%s%s): check %s (key id %s); %s",
      self.bucket, code or ("HTTP " .. err.status), msg and (": " .. msg) or "",
      CREDENTIAL[code] or "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", env("AWS_ACCESS_KEY_ID") or "unset", where), fields)
  end
  return assetd.error(err.category, string.format("HTTP %d%s from %s%s", err.status, code and (" " .. code) or "",
                                                  where, msg and (": " .. msg) or ""), fields)
end

-- One signed request: o = {query=, headers=, body=, upload = {path, offset, length}, sha256 = hex
-- of the payload}. The answer ({status, headers, body}) or nil and an error value.
function Client:call(method, key, o)
  o = o or {}
  local sum = o.sha256
  if not sum and o.body then
    local raw, derr = assetd.digest("sha256", o.body)
    if not raw then return nil, derr end
    sum = raw_to_hex(raw)
  end
  local headers = {["x-amz-content-sha256"] = sum or M.EMPTY_SHA256}
  for k, v in pairs(o.headers or {}) do headers[k] = v end
  local res, err = assetd.fetch{url = self:url(key, o.query), method = method, sink = "memory", body = o.body,
                                upload = o.upload, headers = headers, aws_sigv4 = self.sigv4,
                                connect_timeout = 10, low_speed = {1, 60}}
  if not res then return nil, self:explain(err, method, key) end
  -- CompleteMultipartUpload may answer 200 with an error in its body
  if res.body and res.body:find("<Error>", 1, true) then
    return nil, self:explain({category = "http", status = 500, body = res.body}, method, key)
  end
  return res
end

local function unquote(etag) return etag and (etag:gsub('"', "")) end

-- The object's size and checksum against the source's: what makes an upload count. INFO =
-- {size, sha256, md5, parts = {{sha256, md5}}} (hash_file's); returns how it was verified
-- ("sha256", "etag" or "size") and the ETag, or nil and an integrity error.
function Client:verify(key, info, multipart)
  local res, err = self:call("HEAD", key, {headers = {["x-amz-checksum-mode"] = "ENABLED"}})
  if not res then return nil, err end
  local h = res.headers
  local size = tonumber(h["content-length"])
  local function bad(what)
    return nil, assetd.error("integrity", string.format("s3://%s/%s after the upload: %s", self.bucket, key, what))
  end
  if size ~= info.size then return bad(string.format("%s bytes, not %d", tostring(size), info.size)) end
  local n = #info.parts
  local etag = unquote(h.etag)
  local sum = h["x-amz-checksum-sha256"]
  if sum then
    local want = b64(info.sha256)
    if multipart then
      local raw, derr = digest_of_parts(info.parts, "sha256")
      if not raw then return nil, derr end
      want = assetd.base64_encode(raw) .. "-" .. n
    end
    if sum ~= want and sum ~= b64(info.sha256) then return bad("x-amz-checksum-sha256 " .. sum .. ", not " .. want) end
    return "sha256", etag
  end
  -- an MD5-shaped ETag must be the MD5 (a single PUT) or, multipart, the MD5 of the parts'
  -- MD5s and their count (AWS, MinIO, R2) or the whole file's (s3rver); any other shape (an
  -- encrypted object's) is not a digest, and the size is what is checked
  if etag and (etag:match("^%x+$") or etag:match("^%x+%-%d+$")) and #etag:match("^%x+") == 32 then
    local ok = etag == info.md5
    if multipart and not ok then
      local raw, derr = digest_of_parts(info.parts, "md5")
      if not raw then return nil, derr end
      ok = etag == raw_to_hex(raw) .. "-" .. n
    end
    if not ok then return bad("ETag " .. etag .. " is not the MD5 of what was sent (" .. info.md5 .. ")") end
    return "etag", etag
  end
  return "size", etag
end

-- XML text as it was (the five entities S3 escapes).
local XML = {lt = "<", gt = ">", quot = '"', apos = "'", amp = "&"}
local function unxml(s) return s and (s:gsub("&(%a+);", XML)) end

-- The objects under PREFIX (ListObjectsV2, page after page): {{key=, size=, mtime = unix
-- seconds}, ...}, or nil and an error.
function Client:list(prefix)
  local keys, token = {}, nil
  repeat
    local res, err = self:call("GET", nil, {query = {["list-type"] = 2, prefix = prefix, ["continuation-token"] = token}})
    if not res then return nil, err end
    for c in res.body:gmatch("<Contents>(.-)</Contents>") do
      keys[#keys + 1] = {key = unxml(c:match("<Key>([^<]*)</Key>")), size = tonumber(c:match("<Size>(%d+)</Size>")) or 0,
                         mtime = timefmt.parse(c:match("<LastModified>([^<]*)</LastModified>")) or 0}
    end
    token = res.body:find("<IsTruncated>true</IsTruncated>", 1, true)
      and unxml(res.body:match("<NextContinuationToken>([^<]+)</NextContinuationToken>"))
  until not token
  return keys
end

-- DeleteObject of KEY (gone already counts as done).
function Client:delete(key)
  local res, err = self:call("DELETE", key)
  if not res and err.status ~= 404 then return nil, err end
  return true
end

-- The multipart uploads in progress for KEY: {uploadId, ...}.
function Client:uploads_of(key)
  local res, err = self:call("GET", nil, {query = {uploads = "", prefix = key}})
  if not res then return nil, err end
  local out = {}
  for k, id in res.body:gmatch("<Upload>.-<Key>([^<]*)</Key>.-<UploadId>([^<]*)</UploadId>.-</Upload>") do
    if k == key then out[#out + 1] = id end
  end
  return out
end

function Client:abort(key, upload_id)
  local res, err = self:call("DELETE", key, {query = {uploadId = upload_id}})
  if not res and err.code ~= "NoSuchUpload" then return nil, err end
  return true
end

-- {[partNumber] = etag} of an upload in progress; nil and code NoSuchUpload when it is gone.
function Client:parts_of(key, upload_id)
  local res, err = self:call("GET", key, {query = {uploadId = upload_id}})
  if not res then return nil, err end
  local out = {}
  for part in res.body:gmatch("<Part>(.-)</Part>") do
    local n = tonumber(part:match("<PartNumber>(%d+)</PartNumber>"))
    if n then out[n] = unquote(part:match("<ETag>([^<]*)</ETag>")) end
  end
  return out
end

local function object_headers(self, o)
  local h = {}
  if self.storage_class then h["x-amz-storage-class"] = self.storage_class end
  if o.content_type then h["Content-Type"] = o.content_type end
  return h
end

local function put_whole(self, key, path, info, o)
  local h = object_headers(self, o)
  h["Content-MD5"] = b64(info.md5)
  h["x-amz-checksum-sha256"] = b64(info.sha256)
  local res, err = self:call("PUT", key, {upload = {path = path, offset = 0, length = info.size}, sha256 = info.sha256,
                                          headers = h})
  if not res then return nil, err end
  return res.uploaded or info.size
end

-- Start, or find again, the multipart upload of KEY: o.resume is the {uploadId} saved by an
-- earlier run; uploads of KEY this run does not know (a crash before it saved theirs) are
-- aborted, so none is left behind. o.save(state) records the new upload's id before a part goes.
local function multipart_id(self, key, o)
  local known = o.resume and o.resume.uploadId
  local ids, err = self:uploads_of(key)
  if not ids then return nil, err end
  local found
  for _, id in ipairs(ids) do
    if id == known then found = id
    else
      local ok, aerr = self:abort(key, id)
      if not ok then return nil, aerr end
      assetd.log.info("stale multipart upload aborted", {key = key, upload = id})
    end
  end
  if found then return found, true end
  local res
  res, err = self:call("POST", key, {query = {uploads = ""},
    headers = (function() local h = object_headers(self, o); h["x-amz-checksum-algorithm"] = "SHA256"; return h end)()})
  if not res then return nil, err end
  local id = res.body:match("<UploadId>([^<]+)</UploadId>")
  if not id then return nil, assetd.error("protocol", "CreateMultipartUpload of " .. key .. " gave no UploadId") end
  o.save({uploadId = id})
  return id, false
end

local function put_parts(self, key, path, info, o)
  local id, resumed = multipart_id(self, key, o)
  if not id then return nil, resumed end
  local have = {}
  if resumed then
    local err
    have, err = self:parts_of(key, id)
    if not have then return nil, err end
  end
  local sent = 0
  local xml = {"<CompleteMultipartUpload>"}
  for n, p in ipairs(info.parts) do
    local etag = have[n]
    if etag ~= p.md5 then          -- not there, or not these bytes: (again)
      local res, err = self:call("PUT", key, {query = {partNumber = n, uploadId = id}, sha256 = p.sha256,
        upload = {path = path, offset = p.offset, length = p.length},
        headers = {["Content-MD5"] = b64(p.md5), ["x-amz-checksum-sha256"] = b64(p.sha256)}})
      if not res then return nil, err end
      etag = unquote(res.headers.etag) or p.md5
      sent = sent + p.length
      if o.on_part then o.on_part(n, #info.parts) end
    end
    xml[#xml + 1] = string.format("<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag><ChecksumSHA256>%s</ChecksumSHA256></Part>",
                                  n, etag, b64(p.sha256))
  end
  xml[#xml + 1] = "</CompleteMultipartUpload>"
  local res, err = self:call("POST", key, {query = {uploadId = id}, body = table.concat(xml),
                                           headers = {["Content-Type"] = "application/xml"}})
  if not res then return nil, err end
  return sent
end

-- put_file(key, path, {size=, sha256 = hex (required), content_type=, resume = saved state, save = fn(state),
-- on_part = fn(n, of)}): the file under KEY, whole up to part_size, in parts above it, then
-- verified. Returns {key, etag, size, verified, sent (bytes this call sent), multipart} or nil, err.
function Client:put_file(key, path, o)
  local info, err = assetd.hash_file(path, self.part_size)
  if not info then return nil, err end
  -- the recorded SHA-256 is what the server is told to check; a file whose bytes are no longer
  -- it (changed on disk since it was stored) is not sent
  info.sha256 = o.sha256
  if #info.parts == 1 and info.parts[1].sha256 ~= o.sha256 then
    return nil, assetd.error("integrity", string.format("%s: SHA-256 %s, recorded as %s when stored", path,
                                                        info.parts[1].sha256, tostring(o.sha256)))
  end
  if o.size and o.size ~= info.size then
    return nil, assetd.error("integrity", string.format("%s is %d bytes, recorded as %d", path, info.size, o.size))
  end
  local multipart = #info.parts > 1
  local sent
  if multipart then sent, err = put_parts(self, key, path, info, o) else sent, err = put_whole(self, key, path, info, o) end
  if not sent then return nil, err end
  local verified, etag = self:verify(key, info, multipart)
  if not verified then return nil, etag end
  return {key = key, etag = etag, size = info.size, verified = verified, sent = sent, multipart = multipart}
end

return M
