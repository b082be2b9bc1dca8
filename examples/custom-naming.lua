-- Custom naming: keep the versioning, change the file names. The function gets
-- {batchId, videoId, version, variant, ext} and returns one file name (no '/', no '..').
return {
  storage = {root = "./public/generated-videos"},
  naming = function(a)
    return string.format("%s-v%03d-%s.%s", a.videoId, a.version, a.variant, a.ext or "bin")
  end,
}
