-- Object storage (issue 17) against a real S3-compatible server on loopback: s3rver behind a
-- recorder that checks each request's SigV4 signature on its own (tests/lib/s3.lua).
local s3lib = require "s3"
local sim = require "sim"

describe("the S3 test harness", function()
  it("verifies AWS's published SigV4 example, and refuses it under another secret", function()
    local out, rc = sim.run("python3 tests/s3/recorder.py --self-test")
    assert.are.equal(0, rc, out)
    assert.is_truthy(out:find("self-test ok", 1, true), out)
  end)

  it("serves awscli, whose every request the recorder verifies", function()
    local s = s3lib.start()
    local src = s.dir .. "/hello.txt"
    local f = assert(io.open(src, "w")); f:write("hello bucket\n"); f:close()
    local out, rc = sim.run(s:env() .. " aws --endpoint-url " .. s.url .. " s3 cp " .. src .. " s3://videos/a/hello.txt")
    assert.are.equal(0, rc, out)
    assert.are.equal(sim.sha256_file(src), s:sha256("a/hello.txt"))
    assert.are.same({"a/hello.txt"}, s:keys())
    local reqs = s:requests()
    assert.is_true(#reqs >= 3)
    for _, r in ipairs(reqs) do assert.is_true(r.signature_ok, r.method .. " " .. r.path .. ": " .. r.why) end
    s:stop()
  end)
end)

describe("the engine's signed uploads", function()
  local s
  setup(function() s = s3lib.start() end)
  teardown(function() s:stop() end)

  it("streams a range of a file as a PUT signed by libcurl, with the range's SHA-256 as its payload hash", function()
    local f = s.dir .. "/three.bin"
    local whole = s3lib.random_file(f, 3 * 1024 * 1024)
    local out, rc = s:run_lua([[
local assetd = require "assetd"
local h = assert(assetd.hash_file("]] .. f .. [[", 1024 * 1024))
assert(#h.parts == 3 and h.parts[2].offset == 1048576 and h.parts[2].length == 1048576)
local res = assert(assetd.fetch{url = "{URL}/videos/middle.bin", method = "PUT", aws_sigv4 = "aws:amz:us-east-1:s3",
  upload = {path = "]] .. f .. [[", offset = 1048576, length = 1048576},
  headers = {["x-amz-content-sha256"] = h.parts[2].sha256}})
assert(res.status == 200 and res.uploaded == 1048576)
res = assert(assetd.fetch{url = "{URL}/videos/whole.bin", method = "PUT", aws_sigv4 = "aws:amz:us-east-1:s3",
  upload = {path = "]] .. f .. [["}, headers = {["x-amz-content-sha256"] = "]] .. whole .. [["}})
print("etag " .. res.headers.etag .. " md5 " .. h.md5)
]])
    assert.are.equal(0, rc, out)
    local etag, md5 = out:match('etag "(%x+)" md5 (%x+)')
    assert.are.equal(md5, etag)
    assert.are.equal(whole, s:sha256("whole.bin"))
    local mid = sim.run("dd if=" .. f .. " bs=1M skip=1 count=1 2>/dev/null | sha256sum"):match("^(%x+)")
    assert.are.equal(mid, s:sha256("middle.bin"))
    for _, r in ipairs(s:requests()) do
      assert.is_true(r.signature_ok, r.why)
      assert.is_true(r.content_sha256_ok, r.method .. " " .. r.path)
    end
  end)

  it("does not sign without credentials: a config error naming the variable", function()
    local out, rc = sim.run("env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_ACCESS_KEY_ID=x "
      .. (os.getenv("ASSETD_BIN") or "./assetd") .. " " .. sim.script([[
local res, err = require("assetd").fetch{url = "http://127.0.0.1:1/b/k", aws_sigv4 = "aws:amz:us-east-1:s3"}
print(err.category, err.message)]]))
    assert.are.equal(0, rc, out)
    assert.is_truthy(out:find("config\tfetch: AWS_SECRET_ACCESS_KEY is not set", 1, true), out)
  end)

  it("keeps uploads in a lane of their own (max_uploads)", function()
    local lim = assetd.fetch_limits{max_uploads = 2}
    assert.are.equal(2, lim.max_uploads)
    assert.has_error(function() assetd.fetch_limits{max_uploads = 0} end)
    assetd.fetch_limits{max_uploads = 4}
  end)
end)
