-- The versioned file store's policy: which version a download gets and what its files are
-- called. A version is one more than the highest known from the job store and from the
-- files on disk (and the keys in the bucket, with storage.s3), recorded before it is handed
-- out, so it is never reused (not after a prune, not by two downloads at once: reserve runs
-- without yielding once the bucket has answered). A batch directory is
-- read once, at its first reservation, and then kept up to date by reserve itself: one that
-- grows for months is not read again for every video (bench/reserve.lua). A file put there
-- later by another program is caught by name: reserve skips a version whose files (or their
-- .part files) already exist, and the commit never renames over a file.
local assetd = require "assetd"
local naming = require "assetd.naming"
local hooks = require "assetd.hooks"
local cjson = require "cjson"

local Versions = {}
Versions.__index = Versions

local M = {}

-- versions.open{root = dir, jobs = job store, naming = function(asset) ... end, bucket =
-- {client = s3 client, prefix = key prefix} (storage.s3, whose keys count as versions too)}
function M.open(opts)
  assert(type(opts) == "table" and opts.root and opts.jobs, "versions.open{root=, jobs=}")
  local files, err = assetd.store.open(opts.root)
  if not files then return nil, err end
  return setmetatable({files = files, jobs = opts.jobs, naming = opts.naming or naming.default,
                       bucket = opts.bucket, on_disk = {}, videos = 0}, Versions)
end

local MAX_VIDEOS = 100000   -- videos whose highest version is kept, all batches together

-- {[videoId] = highest version on disk} for a batch: read once, then kept by reserve. Past
-- MAX_VIDEOS (about 9 MiB of Lua heap) the cache starts over.
function Versions:disk_versions(batchId)
  local seen = self.on_disk[batchId]
  if seen then return seen end
  local err
  seen, err = self.files:scan_versions(batchId)
  if not seen then return nil, err end
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  if self.videos + n > MAX_VIDEOS then self.on_disk, self.videos = {}, 0 end
  self.on_disk[batchId], self.videos = seen, self.videos + n + 1
  return seen
end

-- The file names of version V of a video, one per asset ({variant, ext} as the provider gives
-- them), or nil and an error when the naming function fails or gives two assets one name (the
-- transfers would write into one file).
function Versions:names(batchId, videoId, v, assets)
  local names, seen = {}, {}
  for i, a in ipairs(assets) do
    local name, err = self:name{batchId = batchId, videoId = videoId, version = v, variant = a.variant, ext = a.ext}
    if not name then return nil, err end
    if seen[name] then
      return nil, assetd.error("naming", string.format(
        "naming function gave variants %s and %s the same file name %q: each variant needs its own name",
        seen[name], a.variant, name))
    end
    seen[name], names[i] = a.variant, name
  end
  return names
end

-- Whether any file of version V of the video, or its .part, is on disk already (put there
-- after the batch was read).
function Versions:taken(batchId, videoId, v, assets)
  local names, err = self:names(batchId, videoId, v, assets)
  if not names then return nil, err end
  local all = {}
  for i, name in ipairs(names) do all[2 * i - 1], all[2 * i] = name, "." .. name .. ".part" end
  if #all == 0 then return false end
  return self.files:exists(batchId, table.unpack(all))      -- one opening of the directory
end

-- Versions skipped in a row before reserve gives up: files of that many versions put there by
-- someone else is no real batch, but a naming function that leaves the version out makes
-- every version look taken.
M.MAX_SKIPPED = 1000

-- reserve(batchId, videoId[, assets]): the next version, recorded before it is returned. With
-- ASSETS, a version whose files someone else has put there since is skipped.
function Versions:reserve(batchId, videoId, assets)
  assert(assetd.store.valid_id(videoId), "store: videoId must match ^[A-Za-z0-9_-]{1,128}$")
  -- the disk and the bucket give a floor; the job store hands out the version itself, in one
  -- statement, so two downloads (in one daemon or in several on one database) never get one
  local in_bucket = self:bucket_version(batchId, videoId)
  local seen, err = self:disk_versions(batchId)
  if not seen then return nil, err end
  local v
  v, err = self.jobs:claim_version(batchId, videoId, math.max(seen[videoId] or 0, in_bucket) + 1)
  if not v then return nil, err end
  local first = v
  while assets do
    local taken
    taken, err = self:taken(batchId, videoId, v, assets)
    if taken == nil then return nil, err end
    if not taken then break end
    if v - first >= M.MAX_SKIPPED then
      return nil, assetd.error("naming", string.format(
        "versions %d to %d of %s/%s all have files already: does the naming function put the version in every name?",
        first, v, batchId, videoId))
    end
    v, err = self.jobs:claim_version(batchId, videoId, v + 1)
    if not v then return nil, err end
  end
  if not seen[videoId] then self.videos = self.videos + 1 end
  seen[videoId] = v
  return v
end

-- The file name for an asset {batchId, videoId, version, variant, ext?}, checked: a custom
-- naming function may not produce '/', '..', NUL or an empty name.
function Versions:name(asset)
  local ok, name = hooks.call(self.naming, asset)
  if not ok then return nil, assetd.error("naming", "naming function failed: " .. tostring(name):match("[^\n]*")) end
  if type(name) ~= "string" or not assetd.store.valid_name(name) then
    return nil, assetd.error("naming", string.format(
      "naming function returned an unsafe file name %q (no '/', '..', NUL, empty or >255 bytes)", tostring(name)))
  end
  return name
end

-- The rules a naming function must keep, checked at --check, load and reload on sample assets
-- of VARIANTS ({variant, ext}): a safe name, the version in every name (two versions of one
-- asset never share a name, else every version would look taken), each variant and each
-- video its own name. Returns true, or nil and the first rule broken.
function M.check_naming(fn, variants)
  local probe = setmetatable({naming = fn}, Versions)
  local owner = {}
  for _, video in ipairs{"video_a", "video_b"} do
    for _, v in ipairs{1, 2, 3, 10, 11, 100} do
      local names, err = probe:names("batch_check", video, v, variants)
      if not names then return nil, err end
      for i, name in ipairs(names) do
        local who = string.format("%s version %d of %s", variants[i].variant, v, video)
        if owner[name] then
          return nil, assetd.error("naming", string.format(
            "naming function gave %s and %s the same file name %q: every name must contain the version, and each video and variant needs its own",
            owner[name], who, name))
        end
        owner[name] = who
      end
    end
  end
  return true
end

-- Absolute target path for an asset, creating its batch directory.
function Versions:path(asset)
  local name, err = self:name(asset)
  if not name then return nil, err end
  local dir
  dir, err = self.files:batch_dir(asset.batchId)
  if not dir then return nil, err end
  return dir .. "/" .. name, name
end

-- The paths of NAMES (Versions:names) in the batch directory, made if missing: one opening of
-- the directory for all of a job's files.
function Versions:paths(batchId, names)
  local dir, err = self.files:batch_dir(batchId)
  if not dir then return nil, err end
  local out = {}
  for i, name in ipairs(names) do out[i] = dir .. "/" .. name end
  return out
end

-- A resume's leftover of NAME (the engine's `.NAME.part` beside it), once NAME is committed.
function Versions:drop_part(batchId, name)
  return self.files:remove(batchId, "." .. name .. ".part")
end

-- The local copy of NAME, once the bucket holds it verified (storage.s3.keep_local = false).
-- The version stays reserved in the job store, so it is never handed out again.
function Versions:drop_local(batchId, name)
  return self.files:remove(batchId, name)
end

-- The video and version a file name stands for, read the one way the default names can be
-- read: "{videoId}_V{n}.{ext}" or "{videoId}_V{n}_{variant}.{ext}", the video id taken as
-- long as possible and a variant lowercase. So "intro_V2_V1.mp4" is version 1 of "intro_V2"
-- and never version 2 of "intro", and no file counts for two videos. Names a custom naming
-- function makes that fit neither shape are no version: prune leaves them (usage counts them).
local function owner(name)
  local vid, n = name:match("^(.+)_V(%d+)%.%w+$")
  if not vid then vid, n = name:match("^(.+)_V(%d+)_[a-z][a-z0-9_]*%.%w+$") end
  if vid and assetd.store.valid_id(vid) then return vid, tonumber(n) end
end

-- The highest version of a video the bucket holds: its keys under prefix .. batchId .. "/" ..
-- videoId .. "_V", read as names on disk are. 0 without a bucket, and 0 (told in the log) when
-- the bucket cannot be listed: a download with a deadline does not wait for the bucket.
function Versions:bucket_version(batchId, videoId)
  local b = self.bucket
  if not b then return 0 end
  local base = b.prefix .. batchId .. "/"
  local objects, err = b.client:list(base .. videoId .. "_V")
  if not objects then
    assetd.log.warn("bucket not listed: the version is chosen from the disk and the job store only",
                    {batch = batchId, video = videoId, error = tostring(err)})
    return 0
  end
  local top = 0
  for _, o in ipairs(objects) do
    local vid, n = owner(o.key:sub(#base + 1))
    if vid == videoId and n > top then top = n end
  end
  return top
end

-- The versions of a video present on disk: {{version=, files={names}, bytes=, mtime=}, ...}
-- oldest first.
local function group(listing, videoId)
  local by = {}
  for _, f in ipairs(listing) do
    local vid, n = owner(f.name)
    if not f.dir and vid == videoId then
      local v = by[n] or {version = n, files = {}, bytes = 0, mtime = 0}
      by[n] = v
      v.files[#v.files + 1] = f.name
      v.where = v.where or {}
      v.where[f.name] = f
      v.bytes = v.bytes + f.size
      v.mtime = math.max(v.mtime, f.mtime)
    end
  end
  local out = {}
  for _, v in pairs(by) do table.sort(v.files); out[#out + 1] = v end
  table.sort(out, function(a, b) return a.version < b.version end)
  return out
end

function Versions:versions(batchId, videoId)
  local listing, err = self.files:list(batchId)
  if not listing then return nil, err end
  return group(listing, videoId)
end

-- {bytes=, files=} for one batch, or for the whole root without an argument.
function Versions:usage(batchId)
  local total = {bytes = 0, files = 0}
  local batches = batchId and {batchId} or {}
  if not batchId then
    for _, e in ipairs(assert(self.files:list())) do
      if e.dir and assetd.store.valid_id(e.name) then batches[#batches + 1] = e.name end
    end
  end
  for _, b in ipairs(batches) do
    local listing, err = self.files:list(b)
    if not listing then return nil, err end
    for _, f in ipairs(listing) do
      if not f.dir then total.bytes, total.files = total.bytes + f.size, total.files + 1 end
    end
  end
  return total
end

-- Whether a completed job's upload step is not done: its local files may be its only copy.
local function not_uploaded(j)
  local ok, d = pcall(cjson.decode, j.data or "{}")
  local u = ok and type(d) == "table" and d.upload
  return type(u) == "table" and u.state ~= "uploaded"
end

-- Versions that jobs still working on them reference: never pruned. With a bucket, so are a
-- completed job's whose upload has not finished (its files are the only copy yet).
local function live_versions(jobs, bucket)
  local live = {}
  local statuses = {table.unpack(require("assetd.states").live_names)}
  if bucket then statuses[#statuses + 1] = "completed" end
  for _, status in ipairs(statuses) do
    local cursor
    repeat
      local page
      page, cursor = jobs:list{status = status, limit = 1000, cursor = cursor}
      for _, j in ipairs(page or {}) do
        if status ~= "completed" or not_uploaded(j) then live[j.batchId .. "/" .. j.soraVideoId .. "/" .. j.version] = true end
      end
    until not cursor
  end
  return live
end

-- A batch's files and, with a bucket, its objects, as one listing: a name on disk has disk =
-- true, one in the bucket its key as object (with keep_local = false, an object alone).
function Versions:batch_listing(b)
  local listing = assert(self.files:list(b))
  if not self.bucket then return listing end
  local by = {}
  for _, f in ipairs(listing) do f.disk, by[f.name] = true, f end
  local base = self.bucket.prefix .. b .. "/"
  for _, o in ipairs(assert(self.bucket.client:list(base))) do
    local name = o.key:sub(#base + 1)
    if not name:find("/", 1, true) then
      local f = by[name]
      if not f then
        f = {name = name, size = o.size, mtime = o.mtime}
        listing[#listing + 1], by[name] = f, f
      end
      f.object = o.key
    end
  end
  return listing
end

-- Version V's files and objects removed; the keys removed.
function Versions:remove_version(b, v)
  local keys = {}
  for _, name in ipairs(v.files) do
    local f = v.where[name]
    if f.disk or not self.bucket then assert(self.files:remove(b, name)) end
    if f.object then
      assert(self.bucket.client:delete(f.object))
      keys[#keys + 1] = f.object
    end
  end
  return keys
end

-- prune{keep = N (>= 1), older_than = seconds, batchId = optional, dry_run = true by default}
-- Removes old versions' files (and, with a bucket, their objects), never the newest `keep`
-- versions of a video nor a version a live job references. Returns {removed = {{batchId,
-- videoId, version, files, bytes, objects = keys removed}}, bytes}.
function Versions:prune(opts)
  opts = opts or {}
  local keep = math.max(1, math.floor(opts.keep or 1))
  local cutoff = opts.older_than and (assetd.now() - opts.older_than) or math.huge
  local dry = opts.dry_run ~= false
  local live = live_versions(self.jobs, self.bucket)
  local report = {removed = {}, bytes = 0, dry_run = dry}
  local batches = {}
  if opts.batchId then batches = {opts.batchId}
  else
    for _, e in ipairs(assert(self.files:list())) do
      if e.dir and assetd.store.valid_id(e.name) then batches[#batches + 1] = e.name end
    end
  end
  for _, b in ipairs(batches) do
    local listing = self:batch_listing(b)
    local videos = {}
    for _, f in ipairs(listing) do
      local vid = not f.dir and owner(f.name)
      if vid then videos[vid] = true end
    end
    for vid in pairs(videos) do
      local vs = group(listing, vid)
      for i = 1, #vs - keep do
        local v = vs[i]
        if v.mtime < cutoff and not live[b .. "/" .. vid .. "/" .. v.version] then
          local objects = not dry and self:remove_version(b, v) or nil
          report.removed[#report.removed + 1] = {batchId = b, videoId = vid, version = v.version,
                                                 files = v.files, bytes = v.bytes, objects = objects}
          report.bytes = report.bytes + v.bytes
        end
      end
    end
  end
  return report
end

return M
