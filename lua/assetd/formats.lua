-- What each asset variant is as a file: the extension its name takes (naming.lua and the
-- providers), the Content-Type it is served with (files.lua) and the signature its file must
-- match before its commit (assetd.fetch's `check`). These facts live here only: the engine
-- knows no variants and no formats, just a signature given as data, and the Lua rooms read
-- this table.
--
-- A signature: `head`, a list of {offset, bytes} that must be at those offsets (at most 8,
-- each 1..64 bytes); `tail`, the bytes the file must end with; and `structure`, one of the
-- engine's named mechanisms for a container whose own headers state its length, which a
-- byte signature cannot see (a body cut short whose box declares more bytes than arrived):
--   "isobmff"  ISO BMFF (MP4, MOV, 3GP, HEIF): the top-level boxes tile the file exactly;
--   "riff"     RIFF (WebP, WAV, AVI): the RIFF size + 8 is the file's size.
-- A new structure is C (src/formats.c, tests/fuzz/fuzz_formats.c); a new signature is not.
--
-- Adding a variant is one entry in M.variants, with its signature when it has one. Without
-- one its file is refused only when empty or not of the expected size, and a body that came
-- without a Content-Length must still satisfy whichever structure its first bytes announce
-- ("ftyp" at 4, "RIFF" at 0: a connection that closed early looks like a finished body).
local M = {}

M.variants = {
  video       = {ext = "mp4",  content_type = "video/mp4",
                 head = {{4, "ftyp"}}, structure = "isobmff"},
  thumbnail   = {ext = "webp", content_type = "image/webp",
                 head = {{0, "RIFF"}, {8, "WEBP"}}, structure = "riff"},
  spritesheet = {ext = "jpg",  content_type = "image/jpeg",
                 head = {{0, "\xFF\xD8\xFF"}}, tail = "\xFF\xD9"},
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

-- The engine's check for VARIANT (assetd.fetch's `check`): its signature, named for the
-- messages; for a variant with none only the name (not empty, and of the expected size).
function M.check(variant)
  local f = M.variants[variant] or {}
  return {name = variant, head = f.head, tail = f.tail, structure = f.structure}
end

-- The Content-Type of a file NAME, by its extension.
function M.content_type(name)
  return M.content_types[(name:match("%.(%w+)$") or ""):lower()] or "application/octet-stream"
end

return M
