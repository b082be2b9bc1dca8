-- The pending step: wait for a download slot (earliest deadline first), reserve a version,
-- download every variant at once into the versions room's names, record each stored asset on
-- the job, and end completed, failed or expired. A failed try that will be tried again is told.
local assetd = require "assetd"
local formats = require "assetd.formats"
local retry = require "assetd.retry"
local patience = require "assetd.patience"

local M = {}

-- Live bytes of a downloading job, summed over its variants (for the API and dashboard).
local LiveBytes = {}
LiveBytes.__index = LiveBytes

function LiveBytes:update(variant, bytes, total)
  self.parts[variant] = {bytes, total or 0}
  local b, t = 0, 0
  for _, p in pairs(self.parts) do b, t = b + p[1], t + p[2] end
  self.bytes, self.total = b, t
end

-- The stored file RES (the engine's result) as the job's asset of VARIANT, as the job store
-- takes it (jobs:add_asset, jobs:complete_with_assets).
local function stored(job, variant, name, res)
  return {variant = variant, filePath = res.path, fileName = name, fileSize = res.bytes, sha256 = res.sha256,
          version = job.version}
end

-- The stored asset A on the job, once (a variant stored on its own, or a job that did not
-- complete). nil, err when the store refused.
local function record(runner, job, a)
  local assets, err = runner.jobs:assets(job)
  if not assets then return nil, err end
  for _, r in ipairs(assets) do
    if r.type == a.variant and r.version == a.version then return r end
  end
  local ok, aerr = runner.jobs:add_asset(job, a)
  if not ok then return nil, aerr end
  return true
end

-- A failed try that will be tried again is not silent: a log line naming the host, the cause
-- and the next try (error for a full or failing disk, which a person must act on; warn
-- otherwise), the job's error until it succeeds, and a count: the job's retryCount and the
-- variant's attempts in its data.
local function note_failure(runner, job, asset, err, attempt, delay)
  local level = err.category == "disk" and "error" or "warn"
  assetd.log[level]("transfer failed; trying again", {job = job.notionPageId, variant = asset.variant,
                    host = asset.url:match("^%a+://([^/?#]+)"), cause = retry.describe(err), attempt = attempt,
                    error = tostring(err), retry_in = string.format("%.1f s", delay)})
  local now = runner.jobs:get(job.id)
  if now and now.status == "downloading" then
    local attempts = runner:data(now).attempts
    if type(attempts) ~= "table" or attempts.version ~= now.version then attempts = {version = now.version} end
    attempts[asset.variant] = attempt + 1                  -- the try about to start, of this version
    runner:set_data(now, {attempts = attempts}, {error = asset.variant .. ": " .. tostring(err),
                                                 retryCount = now.retryCount + 1})
  end
end

-- One variant of the job's version, tried until stored or retry.decide gives up: the stored
-- asset, not yet recorded (the job records all of them with its completion, one write).
local function fetch_variant(runner, job, asset, path, name)
  local attempt = 0
  local progress = runner.progress[job.id]
  local function on_progress(bytes, total)
    if progress then progress:update(asset.variant, bytes, total) end
    runner:mark(job.id)
  end
  while true do
    attempt = attempt + 1
    -- exists = "skip": committed earlier, before a crash or by a run canceled during its
    -- commit (whose .part this run resumed). Reservation skipped every version whose files
    -- existed, so the file is this job's; and the commit never renames over it.
    local res, err = assetd.fetch{url = asset.url, headers = asset.headers, to = path, resume = true,
                                  exists = "skip", deny_private = asset.deny_private, tag = job.id,
                                  direct = runner.direct_io, check = formats.check(asset.variant), deadline = job.expiresAt, low_speed = {1024, 60},
                                  on_progress = on_progress}
    if res and res.skipped then
      runner.versions:drop_part(job.batchId, name)      -- a resume's leftover, if any
      return stored(job, asset.variant, name, res)
    end
    if res then
      runner.metrics:inc("assetd_downloaded_bytes_total", nil, res.bytes)
      runner.metrics:inc("assetd_assets_stored_total", {variant = asset.variant})
      runner.metrics:observe("assetd_transfer_duration_seconds", res.elapsed or 0)
      return stored(job, asset.variant, name, res)
    end
    local d = retry.decide(err, attempt, job.expiresAt, assetd.now(), runner.retry)
    runner:event(job, "retry", asset.variant .. ": " .. tostring(err))
    if d.action ~= "retry" then return nil, d end
    note_failure(runner, job, asset, err, attempt, d.delay)
    runner.metrics:inc("assetd_retries_total", {cause = retry.cause(err)})
    assetd.sleep(d.delay)
  end
end

-- One variant of the job's version, stored and recorded on the job (Runner:download_variant).
function M.variant(runner, job, asset)
  local path, name = runner.versions:path{batchId = job.batchId, videoId = job.soraVideoId,
                                          version = job.version, variant = asset.variant, ext = asset.ext}
  if not path then return nil, name end
  local a, err = fetch_variant(runner, job, asset, path, name)
  if not a then return nil, err end
  return record(runner, job, a)
end

-- The variants stored of a job that does not complete are kept on it, each on its own.
local function record_each(runner, job, done)
  for _, a in pairs(done) do record(runner, job, a) end
end

-- One version, every variant at once, in a slot.
local function in_slot(runner, job)
  if job.status ~= "pending" then return job end    -- expired or canceled while queued
  if job.expiresAt and assetd.now() >= job.expiresAt then
    return runner:expire(job, "the video had already expired")
  end
  local fields = {}
  local assets = runner:provider(job):assets(runner:job_view(job))
  if job.version == 0 then
    -- the version table is the job store's: as patient
    local v, err = patience.call("reserve", runner.versions.reserve, runner.versions, job.batchId, job.soraVideoId, assets)
    if not v then return runner:fail(job, tostring(err)) end
    fields.version = v
  end
  -- a resumed job's names too: a naming hook changed by a reload may give two variants one name
  local names, err = runner.versions:names(job.batchId, job.soraVideoId, fields.version or job.version, assets)
  if not names then return runner:fail(job, tostring(err)) end
  local paths, perr = runner.versions:paths(job.batchId, names)       -- the names once per job
  if not paths then return runner:fail(job, tostring(perr)) end
  local moved, merr = runner.jobs:transition(job, "downloading", fields)
  if not moved then return runner.jobs:get(job.id) or job, merr end     -- canceled meanwhile
  job = moved
  runner:mark(job.id)
  local progress = setmetatable({parts = {}, bytes = 0, total = 0, video = job.soraVideoId}, LiveBytes)
  runner.progress[job.id] = progress
  local function drop_progress()                  -- not a newer run's (a retry right after a cancel)
    if runner.progress[job.id] == progress then runner.progress[job.id] = nil end
  end
  local left, failure, tasks, done, got = #assets, nil, {}, assetd.alarm(), {}
  local run = runner.running[job.id]
  if run then run.variants = tasks end            -- cancel stops them at once
  for i, a in ipairs(assets) do
    tasks[#tasks + 1] = assetd.spawn({name = "asset"}, function()
      patience.adopt()
      local ok, res, why = pcall(fetch_variant, runner, job, a, paths[i], names[i])
      if not ok then failure = failure or res elseif not res then failure = failure or why else got[i] = res end
      left = left - 1
      if left == 0 then done:ring() end
    end)
  end
  while left > 0 do
    if done:sleep(86400) == nil then               -- canceled: stop the variants too
      for _, t in ipairs(tasks) do t:cancel() end
      drop_progress()
      record_each(runner, job, got)
      return runner.jobs:get(job.id)
    end
  end
  drop_progress()
  if failure then
    record_each(runner, job, got)
    local reason = type(failure) == "table" and (failure.reason or tostring(failure)) or tostring(failure)
    if type(failure) == "table" and failure.action == "expire" then return runner:expire(job, reason) end
    return runner:fail(job, reason)
  end
  local list = {}
  for i = 1, #assets do list[i] = got[i] end
  local ended = runner:complete(job, list)
  if ended.status ~= "completed" then record_each(runner, job, got) end   -- canceled meanwhile
  return ended
end

-- pending -> completed, failed or expired; the job as it is then.
function M.run(runner, job)
  if not runner.slots:acquire(job.expiresAt, job.id) then return runner.jobs:get(job.id) end     -- canceled
  local ok, res = pcall(in_slot, runner, runner.jobs:get(job.id))
  runner.slots:release()
  if not ok then error(res, 0) end
  return res
end

return M
