-- What each asset variant is as a file: the extension its name takes (naming.lua and the
-- providers), the Content-Type it is served with (files.lua) and the structural check its
-- file must pass before its commit (assetd.fetch's `check`). These facts live here only: the
-- engine knows no variants, just the check names, and the Lua rooms read this table.
--
-- Adding a variant is one entry in M.variants. With `check` ("mp4", "webp" or "jpeg": the
-- checkers in src/formats.c) its file must prove itself whole in that format; without one it
-- is refused only when empty or not of the expected size, and a body that came without a
-- Content-Length must still prove itself whole in whichever of those formats its first bytes
-- announce (a connection that closed early looks like a finished body). A new structural
-- check is a checker in src/formats.c under a new name (formats_by_name), a reference for it
-- in tests/fuzz/fuzz_formats.c, then that name here.
local M = {}

M.variants = {
  video       = {ext = "mp4",  content_type = "video/mp4",  check = "mp4"},
  thumbnail   = {ext = "webp", content_type = "image/webp", check = "webp"},
  spritesheet = {ext = "jpg",  content_type = "image/jpeg", check = "jpeg"},
}

-- Extensions no variant has that a stored file may carry (a `urls` job's `ext`).
local other_types = {jpeg = "image/jpeg", png = "image/png", json = "application/json",
                     webm = "video/webm", mov = "video/quicktime"}

M.ext = {}              -- variant -> extension
M.content_types = {}    -- extension -> Content-Type
for ext, t in pairs(other_types) do M.content_types[ext] = t end
for variant, f in pairs(M.variants) do
  M.ext[variant] = f.ext
  M.content_types[f.ext] = f.content_type
end

-- The name of the engine's check for VARIANT (assetd.fetch's `check`): its format's, or "any"
-- (not empty, and of the expected size) for a variant with none.
function M.check(variant)
  local f = M.variants[variant]
  return f and f.check or "any"
end

-- The Content-Type of a file NAME, by its extension.
function M.content_type(name)
  return M.content_types[(name:match("%.(%w+)$") or ""):lower()] or "application/octet-stream"
end

return M
