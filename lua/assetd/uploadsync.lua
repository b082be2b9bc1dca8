-- The upload step: a completed job's assets put in the bucket (storage.s3), each verified by
-- a HEAD before it counts, as its own retried step after `completed` and before the Notion
-- sync, which then links the bucket's URLs. An upload failure never downloads anything again.
-- The job's data keeps the step: upload = {state, error, objects = {[fileName] = {objectKey,
-- etag, size, verified, uploadedAt, url}}, multipart = {[fileName] = {uploadId}}}.
local assetd = require "assetd"
local cjson = require "cjson"
local retry = require "assetd.retry"
local formats = require "assetd.formats"

local M = {}

-- The state a completed job starts its upload step in (nothing when there is no bucket).
function M.initial(runner)
  return runner.s3 and {upload = {state = "pending"}} or {}
end

-- Whether the job's upload step still has work (a restart resumes it).
function M.unfinished(data)
  local u = data.upload
  return type(u) == "table" and (u.state == "pending" or u.state == "uploading")
end

-- Whether the Notion step may run: no bucket, or every object verified there.
function M.done(data)
  local u = data.upload
  return type(u) ~= "table" or u.state == "uploaded"
end

-- ASSETS with each one's object (objectKey, url) from the job's upload state, for the Notion
-- mapping and the API.
function M.located(data, assets)
  local objects = type(data.upload) == "table" and data.upload.objects
  if type(objects) ~= "table" then objects = {} end
  for _, a in ipairs(assets or {}) do
    local o = objects[a.fileName]
    if o then a.objectKey, a.url = o.objectKey, o.url end
  end
  return assets
end

-- A table field of the job's data (a JSON null or a missing one is empty).
local function tbl(v) return type(v) == "table" and v or {} end

local function key_of(s3, job, name) return s3.prefix .. job.batchId .. "/" .. name end

-- The job's upload state with PATCH over it, written at once (a kill -9 keeps what it says).
local function save(runner, job, patch)
  local u = tbl(runner:data(job).upload)
  for k, v in pairs(patch) do u[k] = v end
  return runner:set_data(job, {upload = u})
end

local function failed(runner, job, message)
  runner:event(job, "upload", "failed: " .. message)
  assetd.log.warn("upload failed", {job = job.notionPageId, video = job.soraVideoId, error = message})
  job = save(runner, job, {state = "failed", error = message})
  runner:hook("failed", job, "upload: " .. message)
  return job
end

-- One asset into the bucket, retried with backoff (Retry-After on 503 SlowDown) until it is
-- verified there or a final error (refused credentials, no such bucket) or the attempts end.
local function put_asset(runner, job, a)
  local s3 = runner.s3
  local key = key_of(s3, job, a.fileName)
  local attempt = 0
  while true do
    attempt = attempt + 1
    local resume = tbl(tbl(runner:data(job).upload).multipart)[a.fileName]
    local t0 = assetd.monotonic()
    local obj, err = s3.client:put_file(key, a.filePath, {
      size = a.fileSize, sha256 = a.sha256, resume = resume,
      content_type = formats.content_type(a.fileName),
      save = function(state)
        local mp = tbl(tbl(runner:data(job).upload).multipart)
        mp[a.fileName] = state
        job = save(runner, job, {multipart = mp})
      end,
      on_part = function() runner:mark(job.id) end})
    if obj then
      runner.metrics:inc("assetd_uploaded_bytes_total", nil, obj.sent)
      runner.metrics:observe("assetd_upload_duration_seconds", assetd.monotonic() - t0)
      return obj, key
    end
    local final = err.category == "auth" or err.category == "config" or err.category == "invalid"
      or (retry.client_error(err) and err.status ~= 404)
    runner:event(job, "upload", a.fileName .. ": " .. tostring(err))
    if final then return nil, tostring(err) end
    if attempt >= s3.retry.attempts then
      return nil, "gave up after " .. attempt .. " attempts: " .. tostring(err)
    end
    local delay = retry.backoff(attempt, s3.retry)
    if err.retry_after and err.retry_after > delay then delay = math.min(err.retry_after, s3.retry.cap) end
    assetd.log.warn("upload failed; trying again", {job = job.notionPageId, key = key, cause = retry.describe(err),
                    attempt = attempt, error = tostring(err), retry_in = string.format("%.1f s", delay)})
    runner.metrics:inc("assetd_upload_retries_total", {cause = retry.cause(err)})
    job = save(runner, job, {error = tostring(err)})
    assetd.sleep(delay)
  end
end

-- completed -> every asset of the job's version in the bucket, verified; then, with
-- keep_local = false, the local files removed (by the versions room). The job as it is then.
local function sync(runner, job)
  local s3 = runner.s3
  job = save(runner, job, {state = "uploading", error = cjson.null})
  local assets, aerr = runner.jobs:assets(job)
  if not assets then return failed(runner, job, tostring(aerr)) end
  for _, a in ipairs(assets) do
    local objects = tbl(tbl(runner:data(job).upload).objects)
    if a.version == job.version and not objects[a.fileName] then
      local obj, key = put_asset(runner, job, a)
      if not obj then return failed(runner, job, key) end
      objects = tbl(tbl(runner:data(job).upload).objects)
      objects[a.fileName] = {objectKey = key, etag = obj.etag, size = obj.size, verified = obj.verified,
                             uploadedAt = assetd.now(), url = s3.public_base_url .. "/" .. key}
      local mp = tbl(tbl(runner:data(job).upload).multipart)
      mp[a.fileName] = nil
      job = save(runner, job, {objects = objects, multipart = next(mp) and mp or cjson.null})
      runner:event(job, "uploaded", key .. " (" .. obj.verified .. ")")
      runner:mark(job.id)
    end
  end
  if not s3.keep_local then
    for _, a in ipairs(assets) do
      if a.version == job.version then
        local ok, err = runner.versions:drop_local(job.batchId, a.fileName)
        if not ok then assetd.log.warn("local copy not removed", {file = a.filePath, error = tostring(err)}) end
      end
    end
  end
  runner:event(job, "upload", "uploaded")
  return save(runner, job, {state = "uploaded", error = cjson.null})
end

-- The step, whose error (a bug, a store fault) fails the step rather than leaving it
-- "uploading" with nobody at work on it; a cancel (the daemon stopping) leaves it to resume.
function M.sync(runner, job)
  if not runner.s3 or not M.unfinished(runner:data(job)) then return job end
  local id = job.id
  local ok, res = pcall(sync, runner, job)
  if ok then return res end
  if tostring(res):find("canceled", 1, true) then error(res, 0) end
  return failed(runner, runner.jobs:get(id) or job, tostring(res):match("[^\n]*"))
end

-- A failed upload step tried again by hand (the API's and the REPL's retry): the job stays
-- completed, nothing is downloaded.
function M.retry(runner, job)
  local u = runner:data(job).upload
  if type(u) ~= "table" or u.state ~= "failed" then return nil end
  job = save(runner, job, {state = "pending", error = cjson.null})
  runner:run(job)
  return job
end

return M
