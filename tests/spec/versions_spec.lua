-- The versioned file store: reservations, names, hostile input, validation at commit.
local sim = require "sim"
local formats = require "assetd.formats"
local versions = require "assetd.versions"

describe("versioned file store", function()
  local dir, jobs, v
  before_each(function()
    dir = sim.tmpdir()
    jobs = assert(assetd.jobdb.open(dir .. "/data"))
    v = assert(versions.open{root = dir .. "/root", jobs = jobs})
  end)
  after_each(function()
    jobs:close()
    os.execute("rm -rf " .. dir)
  end)

  local function touch(path)
    local f = assert(io.open(path, "w"))
    f:write("x")
    f:close()
  end

  it("gives V1, V2, V3 across regenerations, with the default names", function()
    local got = {}
    for _ = 1, 3 do got[#got + 1] = v:reserve("batch1", "video_a") end
    assert.are.same({1, 2, 3}, got)
    local p = {v:path{batchId = "batch1", videoId = "video_a", version = 3, variant = "video"}}
    assert.are.equal(dir .. "/root/batch1/video_a_V3.mp4", p[1])
    assert.are.equal("video_a_V2_thumbnail.webp", v:name{batchId = "b", videoId = "video_a", version = 2, variant = "thumbnail"})
    assert.are.equal("video_a_V1_spritesheet.jpg", v:name{batchId = "b", videoId = "video_a", version = 1, variant = "spritesheet"})
  end)

  it("never reuses a version after the files are pruned", function()
    for _ = 1, 3 do
      local n = v:reserve("b", "vid")
      touch(assert(v:path{batchId = "b", videoId = "vid", version = n, variant = "video"}))
    end
    os.remove(dir .. "/root/b/vid_V1.mp4")
    os.remove(dir .. "/root/b/vid_V2.mp4")
    os.remove(dir .. "/root/b/vid_V3.mp4")
    assert.are.equal(4, v:reserve("b", "vid"))
  end)

  it("finds versions already on disk when the job store is fresh", function()
    os.execute("mkdir -p " .. dir .. "/root/b")
    touch(dir .. "/root/b/vid_V5.mp4")
    touch(dir .. "/root/b/vid_V5_thumbnail.webp")
    touch(dir .. "/root/b/vidx_V9.mp4")        -- another video: not ours
    touch(dir .. "/root/b/.vid_V6.mp4.part")   -- a version being written
    assert.are.equal(7, v:reserve("b", "vid"))
  end)

  it("reads a batch directory once, not once per video", function()
    os.execute("mkdir -p " .. dir .. "/root/b")
    touch(dir .. "/root/b/vid_V5.mp4")
    touch(dir .. "/root/b/vid_V1_V8.mp4")      -- video "vid_V1", version 8
    local real, scans = v.files, 0
    v.files = setmetatable({scan_versions = function(_, batch) scans = scans + 1; return real:scan_versions(batch) end},
                           {__index = function(_, k) return function(_, ...) return real[k](real, ...) end end})
    assert.are.equal(6, v:reserve("b", "vid"))
    assert.are.equal(9, v:reserve("b", "vid_V1"))
    assert.are.equal(7, v:reserve("b", "vid"))
    for i = 1, 50 do assert.are.equal(1, v:reserve("b", "new" .. i)) end
    assert.are.equal(1, scans)
    assert.are.equal(1, v:reserve("other", "vid"))
    assert.are.equal(2, scans)
  end)

  it("skips a version whose files appeared after the batch was read", function()
    local assets = {{variant = "video", ext = "mp4"}, {variant = "thumbnail", ext = "webp"}}
    os.execute("mkdir -p " .. dir .. "/root/b")
    assert.are.equal(1, v:reserve("b", "vid", assets))
    touch(dir .. "/root/b/vid_V2.mp4")
    touch(dir .. "/root/b/.vid_V3_thumbnail.webp.part")
    assert.are.equal(4, v:reserve("b", "vid", assets))
    assert.are.equal(5, v:reserve("b", "vid", assets))
  end)

  it("hands out distinct versions to concurrent reservations", function()
    local got, seen = {}, {}
    for i = 1, 20 do
      assetd.spawn(function() assetd.sleep(0); got[#got + 1] = v:reserve("b", "same") end)
    end
    assetd.sleep(0.05)
    assert.are.equal(20, #got)
    for _, n in ipairs(got) do
      assert.is_nil(seen[n])
      seen[n] = true
    end
  end)

  it("refuses hostile ids and names, writing nothing outside the root", function()
    for _, bad in ipairs{"../x", "a/b", "a\0b", string.rep("a", 129), ""} do
      assert.has_error(function() v:reserve(bad, "vid") end)
      assert.has_error(function() v:reserve("b", bad) end)
    end
    local custom = assert(versions.open{root = dir .. "/root", jobs = jobs,
      naming = function(a) return a.name end})
    for _, bad in ipairs{"../evil", "a/b", "x\0y", "", "..", "."} do
      local p, err = custom:path{batchId = "b", videoId = "v", version = 1, variant = "video", name = bad}
      assert.is_nil(p)
      assert.are.equal("naming", err.category)
    end
    local _, err = custom:path{batchId = "b", videoId = "v", version = 1, variant = "video", name = {}}
    assert.matches("unsafe file name", tostring(err))
  end)

  it("refuses a symbolic link planted as a batch directory", function()
    local outside = sim.tmpdir()
    os.execute("mkdir -p " .. dir .. "/root && ln -s " .. outside .. " " .. dir .. "/root/evil")
    local p, err = v:path{batchId = "evil", videoId = "vid", version = 1, variant = "video"}
    assert.is_nil(p)
    assert.matches("symbolic link", tostring(err))
    local listing = io.popen("ls -A " .. outside):read("a")
    assert.are.equal("", listing)
    os.execute("rm -rf " .. outside)
  end)

  it("hashes a file committed earlier with SHA-256; a missing file or a link is an error", function()
    local path = dir .. "/abc.bin"
    local f = assert(io.open(path, "wb"))
    f:write("abc")
    f:close()
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                     assetd.store.sha256_file(path))
    local big = dir .. "/big.bin"          -- more than one read of 256 KiB, checked by sha256sum
    f = assert(io.open(big, "wb"))
    for i = 1, 700 do f:write(string.rep(string.char(i % 251), 1000)) end
    f:close()
    assert.are.equal(sim.sha256_file(big), assetd.store.sha256_file(big))
    local h, err = assetd.store.sha256_file(dir .. "/missing.bin")
    assert.is_nil(h)
    assert.are.equal("disk", err.category)
    assert.matches("missing.bin", err.message, 1, true)
    os.execute("ln -s " .. path .. " " .. dir .. "/link.bin")
    h, err = assetd.store.sha256_file(dir .. "/link.bin")
    assert.is_nil(h)
    assert.matches("ELOOP", err.message, 1, true)
  end)

  local function make_versions(batch, vid, n)
    for _ = 1, n do
      local ver = v:reserve(batch, vid)
      for _, variant in ipairs{"video", "thumbnail"} do
        touch(assert(v:path{batchId = batch, videoId = vid, version = ver, variant = variant}))
      end
    end
  end

  it("lists versions and usage", function()
    make_versions("b", "vid", 3)
    make_versions("b", "vid_x", 1)
    local vs = v:versions("b", "vid")
    assert.are.equal(3, #vs)
    assert.are.same({"vid_V2.mp4", "vid_V2_thumbnail.webp"}, vs[2].files)
    assert.are.same({files = 8, bytes = 8}, v:usage("b"))
    assert.are.same({files = 8, bytes = 8}, v:usage())
    assert.are.same({}, v:versions("nobatch", "vid"))
  end)

  it("prunes old versions, never the newest nor one a live job uses; dry run by default", function()
    make_versions("b", "vid", 4)
    make_versions("b", "other", 1)
    local job = jobs:create{notionPageId = "p", soraVideoId = "vid", batchId = "b", completedAt = 1}
    jobs:transition(job, "downloading", {version = 2})    -- V2 is still being worked on
    local dry = v:prune{keep = 1}
    assert.is_true(dry.dry_run)
    assert.are.equal(2, #dry.removed)                       -- V1 and V3
    assert.are.equal(4, #v:versions("b", "vid"))            -- nothing removed yet
    local r = v:prune{keep = 1, dry_run = false}
    local removed = {}
    for _, x in ipairs(r.removed) do removed[#removed + 1] = x.videoId .. ":" .. x.version end
    table.sort(removed)
    assert.are.same({"vid:1", "vid:3"}, removed)
    local left = {}
    for _, x in ipairs(v:versions("b", "vid")) do left[#left + 1] = x.version end
    assert.are.same({2, 4}, left)
    assert.are.equal(1, #v:versions("b", "other"))
    assert.are.equal(0, #v:prune{keep = 1, older_than = 3600, dry_run = false}.removed)
    assert.are.equal(5, v:reserve("b", "vid"))               -- pruned numbers are not reused
  end)

  it("never takes one video's files for another whose id extends it", function()
    make_versions("b", "intro", 1)
    make_versions("b", "intro_V2", 1)                        -- intro_V2_V1.mp4 is this one's
    local intro = v:versions("b", "intro")
    assert.are.equal(1, #intro)
    assert.are.same({"intro_V1.mp4", "intro_V1_thumbnail.webp"}, intro[1].files)
    assert.are.same({"intro_V2_V1.mp4", "intro_V2_V1_thumbnail.webp"}, v:versions("b", "intro_V2")[1].files)
    assert.are.equal(0, #v:prune{keep = 1, dry_run = false}.removed)
    assert.are.equal(1, #v:versions("b", "intro"))
  end)

  describe("validation at commit", function()
    local s
    setup(function() s = sim.start() end)
    teardown(function() s:stop() end)

    it("commits a valid asset and refuses one whose signature is wrong", function()
      s:video{id = "vid_ok", sizes = {thumbnail = 5000}}
      local path = assert(v:path{batchId = "b", videoId = "vid_ok", version = 1, variant = "thumbnail"})
      local url = s.openai .. "/videos/vid_ok/content?variant=thumbnail"
      local res = assert(assetd.fetch{url = url, to = path, check = formats.check("thumbnail"), expect_size = 5000})
      assert.are.equal(5000, res.bytes)
      local bad = dir .. "/root/b/wrong.mp4"
      local r2, err = assetd.fetch{url = url, to = bad, check = formats.check("video")}
      assert.is_nil(r2)
      assert.are.equal("validation", err.category)
      assert.matches('video: bytes at 4 are not "ftyp"', err.message, 1, true)
      assert.is_nil(io.open(bad))
      assert.is_nil(io.open(dir .. "/root/b/.wrong.mp4.part"))
      local _, err2 = assetd.fetch{url = url, to = bad, check = formats.check("thumbnail"), expect_size = 4999}
      assert.matches("expected size", err2.message)
    end)
  end)
end)
