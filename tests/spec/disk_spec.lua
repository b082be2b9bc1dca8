-- A full disk: a 256 KiB tmpfs (mounted by the test; CI runs as root) as the target directory.
local sim = require "sim"
local formats = require "assetd.formats"

describe("assetd.fetch on a full disk", function()
  local s, dir
  setup(function()
    s = sim.start()
    dir = sim.tmpfs("256k")
  end)
  teardown(function()
    s:stop()
    sim.untmpfs(dir)
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

-- Issue 14 item 11: what reached the disk before ENOSPC is kept and resumed from, and while the
-- disk stays full a try fails at once instead of streaming bytes it can only drop.
describe("assetd.fetch after ENOSPC", function()
  local s, dir
  setup(function()
    s = sim.start()
    dir = sim.tmpfs("256k")
  end)
  teardown(function()
    s:stop()
    sim.untmpfs(dir)
  end)

  local function content_requests()
    local n, bytes = 0, 0
    for _, e in ipairs(s:log()) do
      if e.path:match("/content") then n, bytes = n + 1, bytes + e.bytes end
    end
    return n, bytes
  end

  it("makes no request while the disk is full, then resumes from what is on disk", function()
    local total = 1024 * 1024
    s:video{id = "vid_full", sizes = {video = total}}
    local url, path = s.openai .. "/videos/vid_full/content", dir .. "/full.mp4"
    local res, err = assetd.fetch{url = url, to = path, resume = true, check = formats.check("video")}
    assert.is_nil(res)
    assert.are.equal("disk", err.category)
    assert.matches("ENOSPC", err.message)
    local part = assert(io.open(sim.part_of(path)))
    local kept = part:seek("end")
    part:close()
    assert.is_true(kept > 0)
    -- still full: at once, without a request
    s:call("DELETE", "/_control/log")
    res, err = assetd.fetch{url = url, to = path, resume = true, check = formats.check("video")}
    assert.is_nil(res)
    assert.are.equal("disk", err.category)
    assert.matches("ENOSPC", err.message)
    assert.are.equal(0, (content_requests()))
    -- room again: only the rest comes over the wire
    assert(os.execute("mount -o remount,size=4m " .. dir))
    res = assert(assetd.fetch{url = url, to = path, resume = true, check = formats.check("video")})
    assert.are.equal(206, res.status)
    assert.are.equal(kept, res.resumed_from)
    local n, bytes = content_requests()
    assert.are.equal(1, n)
    assert.are.equal(total - kept, bytes)
    local log = s:log()
    assert.are.equal("bytes=" .. kept .. "-", log[#log].headers.range)
    assert.is_truthy(log[#log].headers["if-range"])
    assert.are.equal(s:info("vid_full").sha256.video, sim.sha256_file(path))
  end)
end)
