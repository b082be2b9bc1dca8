-- A full disk: a 256 KiB tmpfs (mounted by the test; CI runs as root) as the target directory.
local sim = require "sim"

describe("assetd.fetch on a full disk", function()
  local s, dir
  setup(function()
    s = sim.start()
    dir = sim.tmpdir()
    assert(os.execute("mount -t tmpfs -o size=256k tmpfs " .. dir),
      "this test mounts a small tmpfs and needs root (or run it under `unshare -Urm`)")
  end)
  teardown(function()
    s:stop()
    os.execute("umount " .. dir .. " && rmdir " .. dir)
  end)

  it("comes back as a disk error naming ENOSPC, keeping the .part", function()
    s:video{id = "vid_big", sizes = {video = 1024 * 1024}}
    local res, err = assetd.fetch{url = s.openai .. "/videos/vid_big/content", to = dir .. "/big.mp4"}
    assert.is_nil(res)
    assert.are.equal("disk", err.category)
    assert.matches("ENOSPC", err.message)
    assert.matches("No space left on device", err.message)
    assert.is_nil(io.open(dir .. "/big.mp4"))
    local part = assert(io.open(dir .. "/.big.mp4.part"))
    assert.is_true(part:seek("end") > 0)
    part:close()
  end)

  it("keeps working for transfers that fit", function()
    os.remove(dir .. "/.big.mp4.part")
    s:video{id = "vid_small", sizes = {thumbnail = 10000}}
    local res = assert(assetd.fetch{url = s.openai .. "/videos/vid_small/content?variant=thumbnail",
                                    to = dir .. "/small.webp"})
    assert.are.equal(s:info("vid_small").sha256.thumbnail, sim.sha256_file(dir .. "/small.webp"))
    assert.are.equal(10000, res.bytes)
  end)
end)
