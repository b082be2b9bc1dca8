-- The bytes an asset ends up with (issue 14, items 5, 6, 10, 12 and 13): a resume never splices
-- two objects (If-Range with the first answer's validator), a body without a length is stored
-- only when its format proves it whole, an upstream error body is redacted before it is cut,
-- an existing target is not fetched again, and a body that does not match the server's digest
-- is refused and fetched again from 0.
local sim = require "sim"
local cjson = require "cjson"
local formats = require "assetd.formats"

local MIB = 1024 * 1024
local bin = os.getenv("ASSETD_BIN") or "./assetd"

describe("assetd.fetch integrity", function()
  local s, dir
  setup(function()
    s = sim.start()
    dir = sim.tmpdir()
  end)
  teardown(function()
    s:stop()
    os.execute("rm -rf " .. dir)
  end)
  before_each(function() s:reset() end)

  local function content(id, variant)
    return s.openai .. "/videos/" .. id .. "/content?variant=" .. (variant or "video")
  end
  local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
  end
  local function size_of(path)
    local f = assert(io.open(path))
    local n = f:seek("end")
    f:close()
    return n
  end
  local function content_requests()
    local n = 0
    for _, e in ipairs(s:log()) do if e.path:match("/content") then n = n + 1 end end
    return n
  end
  local function last_request() local log = s:log() return log[#log] end
  local function header(req, name)                  -- nil when the request had none
    local v = req.headers[name]
    if v == cjson.null then return nil end
    return v
  end

  -- A first try cut at AFTER bytes, leaving a .part of that size.
  local function cut_first_try(url, path, after)
    s:fault{path = "/content", kind = "truncate", after = after}
    local res, err = assetd.fetch{url = url, to = path, resume = true}
    assert.is_nil(res)
    assert.are.equal("network", err.category)
    assert.are.equal(after, size_of(sim.part_of(path)))
  end

  describe("item 5: a resume never splices two objects", function()
    it("sends If-Range with the first answer's ETag and resumes the same object", function()
      s:video{id = "vid_same", sizes = {video = 2 * MIB}}
      local path = dir .. "/same.mp4"
      cut_first_try(content("vid_same"), path, 700000)
      local res = assert(assetd.fetch{url = content("vid_same"), to = path, resume = true, check = formats.check("video")})
      assert.are.equal(206, res.status)
      assert.are.equal(700000, res.resumed_from)
      local req = last_request()
      assert.are.equal("bytes=700000-", req.headers.range)
      assert.is_truthy(req.headers["if-range"]:match('^"%x+"$'))
      assert.are.equal(s:info("vid_same").sha256.video, sim.sha256_file(path))
    end)

    it("starts again from 0 when the object changed under the same URL", function()
      s:video{id = "vid_regen", sizes = {video = 2 * MIB}, seed = "first"}
      local path = dir .. "/regen.mp4"
      cut_first_try(content("vid_regen"), path, 700000)
      s:video{id = "vid_regen", sizes = {video = 2 * MIB}, seed = "second"}     -- regenerated
      local res = assert(assetd.fetch{url = content("vid_regen"), to = path, resume = true, check = formats.check("video")})
      assert.are.equal(200, res.status)
      assert.are.equal(0, res.resumed_from)
      assert.is_truthy(last_request().headers["if-range"])
      local want = s:info("vid_regen").sha256.video
      assert.are.equal(want, res.sha256)
      assert.are.equal(want, sim.sha256_file(path))
    end)

    it("uses Last-Modified when there is no ETag", function()
      s:video{id = "vid_lm", sizes = {video = 2 * MIB}, etag = false, last_modified = 1700000000}
      local path = dir .. "/lm.mp4"
      cut_first_try(content("vid_lm"), path, 500000)
      local res = assert(assetd.fetch{url = content("vid_lm"), to = path, resume = true})
      assert.are.equal(206, res.status)
      assert.are.equal("Tue, 14 Nov 2023 22:13:20 GMT", last_request().headers["if-range"])
      assert.are.equal(s:info("vid_lm").sha256.video, sim.sha256_file(path))
      -- and a changed date (a regenerated object) restarts from 0
      os.remove(path)
      s:video{id = "vid_lm", sizes = {video = 2 * MIB}, etag = false, last_modified = 1700000000, seed = "a"}
      cut_first_try(content("vid_lm"), path, 500000)
      s:video{id = "vid_lm", sizes = {video = 2 * MIB}, etag = false, last_modified = 1700000100, seed = "b"}
      res = assert(assetd.fetch{url = content("vid_lm"), to = path, resume = true})
      assert.are.equal(200, res.status)
      assert.are.equal(s:info("vid_lm").sha256.video, sim.sha256_file(path))
    end)

    it("starts again from 0 without either validator", function()
      s:video{id = "vid_nov", sizes = {video = 2 * MIB}, etag = false}
      local path = dir .. "/nov.mp4"
      cut_first_try(content("vid_nov"), path, 700000)
      local res = assert(assetd.fetch{url = content("vid_nov"), to = path, resume = true})
      assert.are.equal(200, res.status)
      assert.are.equal(0, res.resumed_from)
      assert.is_nil(header(last_request(), "range"))
      assert.are.equal(s:info("vid_nov").sha256.video, sim.sha256_file(path))
    end)

    it("keeps the validator with the .part across a kill -9", function()
      s:video{id = "vid_kill", sizes = {video = 2 * MIB}}
      s:fault{path = "/content", kind = "slow", rate = 1 * MIB}
      local path = dir .. "/kill.mp4"
      local script = sim.script(string.format([[
        assetd.fetch{url = %q, to = %q, resume = true}
      ]], content("vid_kill"), path))
      local pidfile = dir .. "/kill.pid"
      os.execute(string.format("%s %s >/dev/null 2>&1 & echo $! > %s", bin, script, pidfile))
      local pid = sim.read(pidfile):match("%d+")
      sim.eventually(function()
        local f = io.open(sim.part_of(path))
        local n = f and f:seek("end") or 0
        if f then f:close() end
        return n >= 300000
      end, 10, "the first process to write a part")
      os.execute("kill -9 " .. pid)
      assetd.sleep(0.1)
      os.remove(script)
      s:reset()
      s:video{id = "vid_kill", sizes = {video = 2 * MIB}}
      local kept = size_of(sim.part_of(path))
      local res = assert(assetd.fetch{url = content("vid_kill"), to = path, resume = true})
      assert.are.equal(206, res.status)
      assert.are.equal(kept, res.resumed_from)
      assert.is_truthy(last_request().headers["if-range"]:match('^"%x+"$'))
      assert.are.equal(s:info("vid_kill").sha256.video, sim.sha256_file(path))
    end)
  end)

  describe("item 6: a body without Content-Length", function()
    it("is refused when an MP4 is cut short, with or without check", function()
      s:video{id = "vid_nl", sizes = {video = 4 * MIB}, length = false, digest = "none"}
      for _, check in ipairs{formats.check("video"), false} do
        s:fault{path = "/content", kind = "truncate", after = 1 * MIB}
        local path = dir .. "/nl.mp4"
        local res, err = assetd.fetch{url = content("vid_nl"), to = path, check = check or nil}
        assert.is_nil(res)
        assert.are.equal("validation", err.category)
        assert.matches("runs past the end of the file", err.message)
        assert.is_false(exists(path))
        assert.is_false(exists(sim.part_of(path)))      -- bad bytes are not resumed from
      end
    end)

    it("is refused when a WebP or a JPEG is cut short (a RIFF without check too)", function()
      s:video{id = "vid_nl2", sizes = {thumbnail = 200000, spritesheet = 200000}, length = false, digest = "none"}
      local cases = {{"thumbnail", "RIFF size", false}, {"thumbnail", "thumbnail: RIFF: the RIFF size", true},
                     {"spritesheet", "spritesheet: the file does not end FF D9", true}}
      for _, c in ipairs(cases) do
        local variant, why, checked = c[1], c[2], c[3]
        s:fault{path = "/content", kind = "truncate", after = 100000}
        local path = dir .. "/nl2." .. variant
        local res, err = assetd.fetch{url = content("vid_nl2", variant), to = path,
                                      check = checked and formats.check(variant) or nil}
        assert.is_nil(res)
        assert.are.equal("validation", err.category)
        assert.matches(why, err.message, 1, true)
        assert.is_false(exists(path))
      end
    end)

    it("is stored when the format proves it whole", function()
      s:video{id = "vid_nl3", sizes = {video = 3 * MIB + 5}, length = false}
      local want = s:info("vid_nl3").sha256
      for _, variant in ipairs{"video", "thumbnail", "spritesheet"} do
        local path = dir .. "/nl3_" .. variant
        local res = assert(assetd.fetch{url = content("vid_nl3", variant), to = path, check = formats.check(variant)})
        assert.are.equal(want[variant], res.sha256)
        assert.are.equal(want[variant], sim.sha256_file(path))
      end
    end)

    it("is checked when the length is known too: an MP4 whose boxes do not tile is refused", function()
      -- what item 6 stored as complete: an MP4 whose mdat says 4 MiB, cut at 1 MiB, here served
      -- whole with its (right) Content-Length by another server
      local f = assert(io.open(dir .. "/cut_src", "wb"))
      f:write(string.pack(">I4c4c4I4", 16, "ftyp", "isom", 0x200), string.pack(">I4c4", 4 * MIB, "mdat"),
              string.rep("x", 1 * MIB - 24))
      f:close()
      local pid = sim.run(string.format("cd %s && (timeout 20 python3 -u -m http.server 0 --bind 127.0.0.1 "
                                        .. ">%s/http.out 2>&1 & echo $!)", dir, dir)):match("%d+")
      local port = sim.eventually(function() return (sim.read(dir .. "/http.out") or ""):match("port (%d+)") end,
                                  10, "python's http.server")
      local path = dir .. "/cut.mp4"
      local res, err = assetd.fetch{url = "http://127.0.0.1:" .. port .. "/cut_src", to = path, check = formats.check("video")}
      os.execute("kill " .. pid)
      assert.is_nil(res)
      assert.are.equal("validation", err.category)
      assert.matches("runs past the end", err.message)
      assert.is_false(exists(path))
    end)
  end)

  describe("item 13: corrupt bytes of the right length", function()
    it("are refused against the server's Repr-Digest, and the retry from 0 is byte-exact", function()
      s:video{id = "vid_cor", sizes = {video = 2 * MIB}}
      s:fault{path = "/content", kind = "corrupt", after = {12345, 1500000}}
      local path = dir .. "/cor.mp4"
      local res, err = assetd.fetch{url = content("vid_cor"), to = path, resume = true, check = formats.check("video")}
      assert.is_nil(res)
      assert.are.equal("integrity", err.category)
      assert.matches("Repr%-Digest", err.message)
      assert.is_false(exists(path))
      assert.is_false(exists(sim.part_of(path)))       -- so the retry starts from 0
      res = assert(assetd.fetch{url = content("vid_cor"), to = path, resume = true, check = formats.check("video")})
      assert.are.equal(200, res.status)
      assert.are.equal(0, res.resumed_from)
      assert.are.equal(s:info("vid_cor").sha256.video, sim.sha256_file(path))
    end)

    it("are refused in a resumed 206 too: Repr-Digest describes the whole object", function()
      s:video{id = "vid_cor2", sizes = {video = 2 * MIB}}
      local path = dir .. "/cor2.mp4"
      cut_first_try(content("vid_cor2"), path, 700000)
      s:fault{path = "/content", kind = "corrupt", after = 900000}
      local res, err = assetd.fetch{url = content("vid_cor2"), to = path, resume = true}
      assert.is_nil(res)
      assert.are.equal("integrity", err.category)
      assert.is_false(exists(sim.part_of(path)))
      res = assert(assetd.fetch{url = content("vid_cor2"), to = path, resume = true})
      assert.are.equal(0, res.resumed_from)
      assert.are.equal(s:info("vid_cor2").sha256.video, sim.sha256_file(path))
    end)

    it("are refused against Content-Digest and x-amz-checksum-sha256, also into memory", function()
      for _, kind in ipairs{"content", "amz"} do
        s:video{id = "vid_" .. kind, sizes = {thumbnail = 50000}, digest = kind}
        s:fault{path = "/content", kind = "corrupt", after = 40000}
        local _, err = assetd.fetch{url = content("vid_" .. kind, "thumbnail"), to = dir .. "/d_" .. kind}
        assert.are.equal("integrity", err.category)
        s:fault{path = "/content", kind = "corrupt", after = 40000}
        _, err = assetd.fetch{url = content("vid_" .. kind, "thumbnail"), sink = "memory"}
        assert.are.equal("integrity", err.category)
        local res = assert(assetd.fetch{url = content("vid_" .. kind, "thumbnail"), to = dir .. "/d_" .. kind})
        assert.are.equal(s:info("vid_" .. kind).sha256.thumbnail, res.sha256)
      end
    end)

    it("in a box header are caught by the structure alone; inside a box only a digest sees them", function()
      s:video{id = "vid_nod", sizes = {video = 1 * MIB}, digest = "none"}
      s:fault{path = "/content", kind = "corrupt", after = 26}        -- the mdat's size field
      local res, err = assetd.fetch{url = content("vid_nod"), to = dir .. "/nod.mp4", check = formats.check("video")}
      assert.is_nil(res)
      assert.are.equal("validation", err.category)
      -- the limit, stated: without a digest a flipped byte inside mdat is stored
      s:fault{path = "/content", kind = "corrupt", after = 500000}
      res = assert(assetd.fetch{url = content("vid_nod"), to = dir .. "/nod.mp4", check = formats.check("video")})
      assert.are_not.equal(s:info("vid_nod").sha256.video, res.sha256)
    end)
  end)

  describe("item 12: a target that exists already", function()
    it("is an error at once, with no request and no .part", function()
      s:video{id = "vid_ex", sizes = {thumbnail = 30000}}
      local path = dir .. "/ex.webp"
      local first = assert(assetd.fetch{url = content("vid_ex", "thumbnail"), to = path})
      s:call("DELETE", "/_control/log")
      local res, err = assetd.fetch{url = content("vid_ex", "thumbnail"), to = path, resume = true}
      assert.is_nil(res)
      assert.are.equal("exists", err.category)
      assert.matches(path, err.message, 1, true)
      assert.are.equal(0, content_requests())
      assert.is_false(exists(sim.part_of(path)))
      assert.are.equal(first.sha256, sim.sha256_file(path))
    end)

    it("with exists = \"skip\" returns the existing file's result without a request", function()
      s:video{id = "vid_sk", sizes = {spritesheet = 40000}}
      local path = dir .. "/sk.jpg"
      local first = assert(assetd.fetch{url = content("vid_sk", "spritesheet"), to = path})
      s:call("DELETE", "/_control/log")
      local res = assert(assetd.fetch{url = content("vid_sk", "spritesheet"), to = path, exists = "skip",
                                      check = formats.check("spritesheet")})
      assert.is_true(res.skipped)
      assert.are.equal(40000, res.bytes)
      assert.are.equal(first.sha256, res.sha256)
      assert.are.equal(path, res.path)
      assert.is_nil(res.status)
      assert.are.equal(0, content_requests())
      assert.has_error(function() assetd.fetch{url = content("vid_sk"), to = path, exists = "replace"} end)
    end)

    it("that appears during the download fails the commit and leaves no .part", function()
      s:video{id = "vid_race", sizes = {video = 400000}}
      s:fault{path = "/content", kind = "slow", rate = 1000000}
      local path = dir .. "/race.mp4"
      local r, e
      local t = assetd.spawn(function() r, e = assetd.fetch{url = content("vid_race"), to = path, resume = true} end)
      assetd.sleep(0.15)
      local f = assert(io.open(path, "w"))
      f:write("someone else's file")
      f:close()
      sim.eventually(function() return e or r end, 10, "the fetch to end")
      assert(t)
      assert.is_nil(r)
      assert.are.equal("disk", e.category)
      assert.matches("not replaced", e.message)
      assert.are.equal("someone else's file", sim.read(path))
      assert.is_false(exists(sim.part_of(path)))
    end)
  end)
end)

describe("item 10: an upstream error body", function()
  local key = "sk-proj-SECRETkey0123456789abcdefABCDEF"

  -- Runs the fetch of a 400 whose body is BODY in a daemon that has the key in its environment;
  -- its error message and body, each on a line.
  local function error_of(body)
    local s = sim.start()
    local ok = utf8.len(body)
    s:fault{path = "/v1/videos/x", kind = "status", status = 400, body = ok and body or nil,
            body_base64 = not ok and assetd.base64_encode(body) or nil}
    local script = sim.script(string.format([[
      local _, err = assetd.fetch{url = %q, sink = "memory"}
      io.write(err.message, "\n", err.body, "\n")
    ]], s.openai .. "/videos/x"))
    local out = sim.run("OPENAI_API_KEY=" .. key .. " " .. bin .. " " .. script .. " 2>/dev/null")
    os.remove(script)
    s:stop()
    return out:match("^(.-)\n(.*)\n$")
  end

  it("is redacted before it is cut: no part of a key near byte 300 shows", function()
    for _, at in ipairs{270, 285, 290, 295, 299} do
      local msg, body = error_of(string.rep("a", at) .. key .. " more text after the key")
      assert.is_nil(msg:find("SECRET", 1, true), "at " .. at .. ": " .. msg)
      assert.is_nil(msg:find("sk-proj", 1, true), "at " .. at .. ": " .. msg)
      assert.is_nil(body:find(key, 1, true))
      assert.is_truthy(body:find("[redacted]", 1, true))
    end
  end)

  it("is cut on a UTF-8 boundary, and broken UTF-8 is replaced", function()
    for shift = 0, 2 do
      local msg = error_of(string.rep("a", 250 + shift) .. string.rep("é€", 40))
      assert.is_truthy(utf8.len(msg), "invalid UTF-8 at shift " .. shift)
    end
    local msg = error_of("bad \xff\xfe bytes")
    assert.is_truthy(utf8.len(msg))
    assert.matches("bad \xef\xbf\xbd\xef\xbf\xbd bytes", msg, 1, true)
  end)
end)
