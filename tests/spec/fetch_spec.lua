-- assetd.fetch against the real local simulator: byte-exact streaming, resume, short bodies,
-- error categories, concurrency, deadline order, cancellation and a full disk.
local sim = require "sim"

describe("assetd.fetch", function()
  local s, dir
  setup(function()
    s = sim.start("--openai-key sk-test")
    dir = sim.tmpdir()
  end)
  teardown(function()
    s:stop()
    os.execute("rm -rf " .. dir)
  end)
  before_each(function() s:reset() end)

  local auth = {Authorization = "Bearer sk-test"}
  local function content(id, variant)
    return s.openai .. "/videos/" .. id .. "/content?variant=" .. (variant or "video")
  end

  it("streams each variant to disk byte-exact, sha256 computed on the way", function()
    s:video{id = "vid_a", sizes = {video = 3 * 1024 * 1024 + 17}}
    local want = s:info("vid_a").sha256
    for _, v in ipairs{"video", "thumbnail", "spritesheet"} do
      local path = dir .. "/a_" .. v
      local res = assert(assetd.fetch{url = content("vid_a", v), headers = auth, to = path, direct = v == "video"})
      assert.are.equal(200, res.status)
      assert.are.equal(want[v], res.sha256)
      assert.are.equal(want[v], sim.sha256_file(path))
      assert.is_nil(io.open(dir .. "/.a_" .. v .. ".part"))
    end
  end)

  it("returns a memory body with headers", function()
    s:video{id = "vid_m"}
    local res = assert(assetd.fetch{url = s.openai .. "/videos/vid_m", headers = auth, sink = "memory"})
    assert.are.equal(200, res.status)
    assert.matches("application/json", res.headers["content-type"])
    assert.are.equal("vid_m", require("cjson").decode(res.body).id)
  end)

  it("gives http errors as values with status, and 401 without the key", function()
    local res, err = assetd.fetch{url = s.openai .. "/videos/nope", sink = "memory"}
    assert.is_nil(res)
    assert.are.equal("http", err.category)
    assert.are.equal(401, err.status)
    res, err = assetd.fetch{url = s.openai .. "/videos/nope", headers = auth, sink = "memory"}
    assert.are.equal(404, err.status)
    assert.matches("HTTP 404", tostring(err))
  end)

  it("parses Retry-After on a 429", function()
    s:video{id = "vid_r"}
    s:fault{path = "vid_r", kind = "429", retry_after = "7"}
    local _, err = assetd.fetch{url = content("vid_r"), headers = auth, to = dir .. "/r"}
    assert.are.equal(429, err.status)
    assert.are.equal(7, err.retry_after)
  end)

  it("detects a truncated body and resumes it with a Range request", function()
    s:video{id = "vid_t", sizes = {video = 2 * 1024 * 1024}}
    s:fault{path = "vid_t/content", kind = "truncate", after = 700000}
    local path = dir .. "/t.mp4"
    local res, err = assetd.fetch{url = content("vid_t"), headers = auth, to = path, resume = true}
    assert.is_nil(res)
    assert.are.equal("network", err.category)
    assert.is_nil(io.open(path))                       -- nothing under the final name
    local part = assert(io.open(dir .. "/.t.mp4.part"))
    assert.are.equal(700000, part:seek("end"))
    part:close()
    res = assert(assetd.fetch{url = content("vid_t"), headers = auth, to = path, resume = true})
    assert.are.equal(206, res.status)
    assert.are.equal(700000, res.resumed_from)
    assert.are.equal(s:info("vid_t").sha256.video, res.sha256)
    assert.are.equal(res.sha256, sim.sha256_file(path))
    local log = s:log()
    assert.are.equal("bytes=700000-", log[#log].headers.range)
  end)

  it("starts over when the server ignores Range", function()
    s:video{id = "vid_n", sizes = {video = 500000}, ranges = false}
    s:fault{path = "vid_n/content", kind = "truncate", after = 1000}
    local path = dir .. "/n.mp4"
    assert.is_nil(assetd.fetch{url = content("vid_n"), headers = auth, to = path, resume = true})
    local res = assert(assetd.fetch{url = content("vid_n"), headers = auth, to = path, resume = true})
    assert.are.equal(200, res.status)
    assert.are.equal(0, res.resumed_from)
    assert.are.equal(s:info("vid_n").sha256.video, sim.sha256_file(path))
  end)

  it("reports a connection reset as a network error", function()
    s:video{id = "vid_x"}
    s:fault{path = "vid_x/content", kind = "reset", after = 5000}
    local _, err = assetd.fetch{url = content("vid_x"), headers = auth, to = dir .. "/x"}
    assert.are.equal("network", err.category)
  end)

  it("times out a slow body", function()
    s:video{id = "vid_s", sizes = {video = 200000}}
    s:fault{path = "vid_s/content", kind = "slow", rate = 10000}
    local _, err = assetd.fetch{url = content("vid_s"), headers = auth, to = dir .. "/s", timeout = 0.5}
    assert.are.equal("timeout", err.category)
  end)

  it("completes 1,000 concurrent small fetches", function()
    s:video{id = "vid_c", sizes = {thumbnail = 2048}}
    assetd.fetch_limits{max_active = 32}
    local ok, n = 0, 1000
    for i = 1, n do
      assetd.spawn(function()
        local res = assetd.fetch{url = content("vid_c", "thumbnail"), headers = auth, sink = "memory"}
        if res and #res.body == 2048 then ok = ok + 1 end
      end)
    end
    assert.are.equal(n, assetd.fetch_limits().queued + assetd.fetch_limits().active)
    for _ = 1, 600 do
      if ok == n then break end
      assetd.sleep(0.05)
    end
    assetd.fetch_limits{max_active = 8}
    assert.are.equal(n, ok)
  end)

  it("starts queued transfers earliest deadline first", function()
    s:video{id = "vid_d", sizes = {thumbnail = 1024}}
    assetd.fetch_limits{max_active = 1}
    s:fault{path = "vid_d/content.*block", kind = "delay", seconds = 0.3}
    local order = {}
    assetd.spawn(function()   -- occupies the only slot while the others queue
      assetd.fetch{url = content("vid_d", "thumbnail") .. "&block", headers = auth, to = dir .. "/d0"}
    end)
    local base = assetd.now() + 3600
    for _, d in ipairs{5, 1, 3, 2, 4} do
      assetd.spawn(function()
        assetd.fetch{url = content("vid_d", "thumbnail") .. "&d=" .. d, headers = auth,
                     to = dir .. "/d" .. d, deadline = base + d}
        order[#order + 1] = d
      end)
    end
    for _ = 1, 100 do
      if #order == 5 then break end
      assetd.sleep(0.05)
    end
    assetd.fetch_limits{max_active = 8}
    assert.are.same({1, 2, 3, 4, 5}, order)
  end)

  it("does not hold API calls (memory answers) behind the file downloads' limit", function()
    s:video{id = "vid_m", sizes = {thumbnail = 1024}}
    assetd.fetch_limits{max_active = 1}
    s:fault{path = "vid_m/content.*slow", kind = "delay", seconds = 1.0}
    local file_done
    assetd.spawn(function()   -- the only download slot, busy for a second
      assetd.fetch{url = content("vid_m", "thumbnail") .. "&slow", headers = auth, to = dir .. "/m0"}
      file_done = assetd.now()
    end)
    assetd.sleep(0.1)
    local t0 = assetd.now()
    local res = assert(assetd.fetch{url = s.openai .. "/videos/vid_m", headers = auth, sink = "memory"})
    local took = assetd.now() - t0
    assetd.fetch_limits{max_active = 8}
    assert.are.equal(200, res.status)
    assert.is_nil(file_done)             -- it answered while the download still held the slot
    assert.is_true(took < 0.5, "the call waited " .. took .. " s")
  end)

  it("cancels a running transfer, keeping its .part", function()
    s:video{id = "vid_k", sizes = {video = 400000}}
    s:fault{path = "vid_k/content", kind = "slow", rate = 100000}
    local r, e
    local t = assetd.spawn(function()
      r, e = assetd.fetch{url = content("vid_k"), headers = auth, to = dir .. "/k.mp4"}
    end)
    assetd.sleep(0.3)
    t:cancel()
    assetd.sleep(0.1)
    assert.is_nil(r)
    assert.are.equal("canceled", e.category)
    assert.is_not_nil(io.open(dir .. "/.k.mp4.part"))
  end)

  it("refuses bad options with errors naming them", function()
    assert.has_error(function() assetd.fetch{} end, "fetch: option 'url' is required (a string)")
    assert.has_error(function() assetd.fetch{url = "http://x/", headers = {["A\r\nB"] = "1"}, sink = "memory"} end)
    assert.has_error(function() assetd.fetch{url = "http://x/", sink = "disk"} end)
  end)

  it("checks by the signature formats.lua gives per variant (only the name for one it has none for)", function()
    local formats = require "assetd.formats"
    assert.are.same({name = "video", head = {{4, "ftyp"}}, structure = "isobmff"}, formats.check("video"))
    assert.are.same({name = "new"}, formats.check("new"))
    assert.has_error(function() assetd.fetch{url = "http://x/", to = dir .. "/f", check = "video"} end,
                     "fetch: option 'check' must be a signature table {name =, head =, tail =, structure =}, "
                     .. "not a string; formats.check(variant) gives a variant's")
    s:video{id = "vid_any", sizes = {video = 1000}}
    local res = assert(assetd.fetch{url = content("vid_any"), headers = auth, to = dir .. "/any",
                                    check = formats.check("new"), expect_size = 1000})
    assert.are.equal(1000, res.bytes)
    local _, err = assetd.fetch{url = content("vid_any"), headers = auth, to = dir .. "/any2",
                                check = formats.check("new"), expect_size = 999}
    assert.are.equal("validation", err.category)
    assert.matches("new: the file's size (1000 bytes) differs from the expected size (999)", err.message, 1, true)
  end)

  it("refuses a malformed signature with errors naming the field", function()
    local function refused(check, msg)
      assert.has_error(function() assetd.fetch{url = "http://x/", to = dir .. "/f", check = check} end, msg)
    end
    refused({head = {{-1, "x"}}}, "fetch: option 'check.head[1]': the offset must be a non-negative integer")
    refused({head = {{0, "x"}, {1.5, "y"}}}, "fetch: option 'check.head[2]': the offset must be a non-negative integer")
    refused({head = {{0, ""}}}, "fetch: option 'check.head[1]': the bytes must be a string of 1..64 bytes")
    refused({head = {{0, string.rep("x", 65)}}}, "fetch: option 'check.head[1]': the bytes must be a string of 1..64 bytes")
    refused({head = {{0, 7}}}, "fetch: option 'check.head[1]': the bytes must be a string of 1..64 bytes")
    refused({head = {"ID3"}}, "fetch: option 'check.head[1]' must be {offset, bytes}")
    refused({head = "ID3"}, "fetch: option 'check.head' must be a list of {offset, bytes}")
    local nine = {}
    for i = 1, 9 do nine[i] = {i, "x"} end
    refused({head = nine}, "fetch: option 'check.head' has 9 entries, at most 8")
    refused({tail = ""}, "fetch: option 'check.tail' must be a string of 1..64 bytes")
    refused({structure = "mp4"}, 'fetch: option \'check.structure\' must be one of isobmff, riff, not "mp4"')
    assert.has_error(function() assetd.fetch{url = "http://x/", sink = "memory", check = {}} end,
                     "fetch: option 'check' needs 'to'")
  end)

  it("gives a variant no C knows a real check from Lua alone: a wrong file is refused, a right one stored", function()
    local formats = require "assetd.formats"
    formats.variants.audio = {ext = "mp3", content_type = "audio/mpeg", head = {{0, "ID3"}}, tail = "\0\255"}
    finally(function() formats.variants.audio = nil end)
    local function serve(name, bytes)
      s:fault{path = "^/files/" .. name, kind = "status", status = 200, count = -1,
              body_base64 = assetd.base64_encode(bytes)}
    end
    local good = "ID3\4\0\0" .. string.rep("a", 1000) .. "\0\255"
    local files = {good = good, wav = "RIFF" .. good:sub(5), cut = good:sub(1, 600)}
    for name, bytes in pairs(files) do serve(name, bytes) end
    local url = s.url .. "/files/"
    local _, err = assetd.fetch{url = url .. "wav", to = dir .. "/wav.mp3", check = formats.check("audio")}
    assert.are.equal("validation", err.category)
    assert.matches('audio: bytes at 0 are not "ID3"', err.message, 1, true)
    _, err = assetd.fetch{url = url .. "cut", to = dir .. "/cut.mp3", check = formats.check("audio")}
    assert.are.equal("validation", err.category)
    assert.matches("audio: the file does not end 00 FF", err.message, 1, true)
    assert.is_nil(io.open(dir .. "/cut.mp3"))
    local res = assert(assetd.fetch{url = url .. "good", to = dir .. "/good.mp3", check = formats.check("audio")})
    assert.are.equal(#good, res.bytes)
    assert.are.equal(good, sim.read(dir .. "/good.mp3"))
  end)

  it("reports a missing target directory as a disk error", function()
    s:video{id = "vid_e"}
    local _, err = assetd.fetch{url = content("vid_e"), headers = auth, to = dir .. "/no/such/dir/f"}
    assert.are.equal("disk", err.category)
    assert.matches("ENOENT", err.message)
  end)

  it("never replaces a file already under the target name, and does not fetch it", function()
    s:video{id = "vid_x", sizes = {video = 300000}}
    local path = dir .. "/taken.mp4"
    local f = assert(io.open(path, "w"))
    f:write("someone else's file")
    f:close()
    for _, direct in ipairs{false, true} do
      local res, err = assetd.fetch{url = content("vid_x"), headers = auth, to = path, direct = direct}
      assert.is_nil(res)
      assert.are.equal("exists", err.category)
      assert.are.equal(path .. ' exists; not fetched again (exists = "skip" returns it as it is)', err.message)
      assert.are.equal("someone else's file", sim.read(path))
      assert.is_nil(io.open(dir .. "/.taken.mp4.part"))
    end
    assert.are.equal(0, #s:log())
  end)

  it("enforces the memory sink's max_bytes", function()
    s:video{id = "vid_b", sizes = {video = 100000}}
    local _, err = assetd.fetch{url = content("vid_b"), headers = auth, sink = "memory", max_bytes = 1000}
    assert.matches("max_bytes", err.message)
  end)

  it("keeps at most per_host transfers to one host at a time", function()
    s:video{id = "vid_h", sizes = {thumbnail = 1000}}
    s:fault{path = "vid_h/content", kind = "delay", seconds = 0.3, count = 6}
    assetd.fetch_limits{max_active = 8, per_host = 2}
    local done, peak = 0, 0
    for i = 1, 6 do
      assetd.spawn(function()
        assetd.fetch{url = content("vid_h", "thumbnail") .. "&i=" .. i, headers = auth, sink = "memory"}
        done = done + 1
      end)
    end
    while done < 6 do
      peak = math.max(peak, assetd.fetch_limits().active)
      assetd.sleep(0.02)
    end
    assetd.fetch_limits{max_active = 8, per_host = 8}
    assert.are.equal(2, peak)
  end)

  it("holds the overall bandwidth cap", function()
    s:video{id = "vid_bw", sizes = {video = 512 * 1024}}
    assetd.fetch_limits{max_bytes_per_sec = 1024 * 1024}
    local t0, done = assetd.monotonic(), 0
    for i = 1, 3 do
      assetd.spawn(function()
        local res = assetd.fetch{url = content("vid_bw") .. "&i=" .. i, headers = auth, sink = "memory"}
        if res and res.bytes == 512 * 1024 then done = done + 1 end
      end)
    end
    for _ = 1, 200 do
      if done == 3 then break end
      assetd.sleep(0.05)
    end
    local dt = assetd.monotonic() - t0
    assetd.fetch_limits{max_bytes_per_sec = 0}
    assert.are.equal(3, done)
    -- 1.5 MiB at 1 MiB/s with at most a quarter second of burst: at least ~1.2 s
    assert.is_true(dt >= 1.2, "took only " .. dt .. " s")
  end)

  it("reports progress with bytes and the total", function()
    s:video{id = "vid_p", sizes = {video = 3 * 1024 * 1024}}
    s:fault{path = "vid_p/content", kind = "slow", rate = 4 * 1024 * 1024}
    local calls, last_bytes, last_total = 0, 0, nil
    local res = assert(assetd.fetch{url = content("vid_p"), headers = auth, to = dir .. "/p.mp4",
      on_progress = function(b, t) calls = calls + 1; assert(b >= last_bytes); last_bytes, last_total = b, t end})
    assert.is_true(calls >= 2)
    assert.are.equal(res.bytes, last_bytes)
    assert.are.equal(3 * 1024 * 1024, last_total)
  end)

  it("gives up on a transfer slower than low_speed", function()
    s:video{id = "vid_l", sizes = {video = 300000}}
    s:fault{path = "vid_l/content", kind = "slow", rate = 5000}
    local _, err = assetd.fetch{url = content("vid_l"), headers = auth, to = dir .. "/l.mp4",
                                low_speed = {50000, 1}}
    assert.are.equal("timeout", err.category)
  end)
end)

describe("assetd.fetch after the daemon's stop", function()
  it("fails as canceled (the engine is gone), and the daemon exits 0", function()
    local script = sim.script([[
      assetd.stop()
      local res, err = assetd.fetch{url = "http://127.0.0.1:1/", timeout = 1}
      assert(res == nil and err.category == "canceled", tostring(err))
      local lim, lerr = assetd.fetch_limits()
      assert(lim == nil and lerr.category == "canceled", tostring(lerr))
      print("done")
    ]])
    local out, rc = sim.run("timeout 10 " .. (os.getenv("ASSETD_BIN") or "./assetd") .. " " .. script)
    os.remove(script)
    assert.are.equal("done\n", out)
    assert.are.equal(0, rc)
  end)
end)
