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
