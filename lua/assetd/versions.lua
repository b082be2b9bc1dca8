-- The versioned file store's policy: which version a download gets and what its files are
-- called. A version is one more than the highest known from the job store and from the
-- files on disk, recorded before it is handed out, so it is never reused (not after a
-- prune, not by two downloads at once: reserve runs without yielding).
local assetd = require "assetd"
local naming = require "assetd.naming"

local Versions = {}
Versions.__index = Versions

local M = {}

-- versions.open{root = dir, jobs = job store, naming = function(asset) ... end}
function M.open(opts)
  assert(type(opts) == "table" and opts.root and opts.jobs, "versions.open{root=, jobs=}")
  local files, err = assetd.store.open(opts.root)
  if not files then return nil, err end
  return setmetatable({files = files, jobs = opts.jobs, naming = opts.naming or naming.default}, Versions)
end

function Versions:reserve(batchId, videoId)
  local on_disk, err = self.files:scan_versions(batchId, videoId)
  if not on_disk then return nil, err end
  local known
  known, err = self.jobs:max_version(batchId, videoId)
  if not known then return nil, err end
  local v = math.max(on_disk, known) + 1
  local ok
  ok, err = self.jobs:note_version(batchId, videoId, v)
  if not ok then return nil, err end
  return v
end

-- The file name for an asset {batchId, videoId, version, variant, ext?}, checked: a custom
-- naming function may not produce '/', '..', NUL or an empty name.
function Versions:name(asset)
  local ok, name = pcall(self.naming, asset)
  if not ok then return nil, assetd.error("naming", "naming function failed: " .. tostring(name)) end
  if type(name) ~= "string" or not assetd.store.valid_name(name) then
    return nil, assetd.error("naming", string.format(
      "naming function returned an unsafe file name %q (no '/', '..', NUL, empty or >255 bytes)", tostring(name)))
  end
  return name
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

return M
