-- The error categories, written once. Every error value in the daemon (assetd.error in Lua,
-- rt_fail/rt_push_error and the engine's fail in C) has `category` set to one of these;
-- tests/spec/errors_spec.lua checks the sources and docs/architecture.md against this table.
-- `retry`: whether a transfer that failed so is tried again (retry.decide; false is final).
local M = {}

M.categories = {
  network    = {retry = true,  what = "a connection refused, reset or cut short; DNS; TLS"},
  timeout    = {retry = true,  what = "no answer, or too slow, within the time allowed"},
  http       = {retry = true,  what = "an answer with an error status (err.status; 4xx but 408/429 are final)"},
  protocol   = {retry = true,  what = "an answer that is not what the API promises (a 2xx that is not JSON)"},
  integrity  = {retry = true,  what = "bytes whose SHA-256 is not the one the server vouched for"},
  validation = {retry = true,  what = "bytes that fail their format's structural check"},
  disk       = {retry = true,  what = "the storage disk refused a write (full, read-only, I/O error)"},
  database   = {retry = true,  what = "the job store refused a write (a full or failing disk)"},
  auth       = {retry = false, what = "credentials refused (401/403)"},
  canceled   = {retry = false, what = "stopped by an operator, a shutdown or a closed window"},
  config     = {retry = false, what = "a setting that can never work (the pipeline, an address, a private host)"},
  invalid    = {retry = false, what = "a request that can never work as given (a bad URL, an unknown provider, a body JSON cannot say)"},
  exists     = {retry = false, what = "a file is already under that name"},
  naming     = {retry = false, what = "a name the naming rules refuse"},
  notion     = {retry = "err.retryable", what = "Notion refused or kept failing an update"},
  state      = {retry = false, what = "an operation the job's state does not allow"},
  expired    = {retry = false, what = "the video's download window has closed"},
  not_found  = {retry = false, what = "no such job, file or video"},
  busy       = {retry = false, what = "the resource is held by another (a data directory's lock)"},
  listen     = {retry = false, what = "the HTTP API cannot listen on its address"},
  io         = {retry = false, what = "a local socket or file operation failed (the attach socket)"},
}

-- Whether ERR's category makes a transfer's failure final.
function M.final(err)
  local c = M.categories[err.category]
  return c ~= nil and c.retry == false
end

return M
