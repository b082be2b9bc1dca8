-- assetd.http_listen and assetd.file_info as a handler meets them: what a bad response or a
-- planted file does to the daemon (it answers 500 or 404 and goes on; nothing hangs).
local sim = require "sim"

describe("http_listen", function()
  local server, reply
  before_each(function()
    server = assert(assetd.http_listen{listen = "127.0.0.1:0", handler = function(req)
      return reply(req)
    end})
  end)
  after_each(function() server:close() end)

  local function get(path)
    local res, err = assetd.fetch{url = "http://127.0.0.1:" .. server:port() .. (path or "/"), timeout = 5}
    assert(res or (err and err.status), tostring(err))
    return res and res.status or err.status, res and res.body or err.message
  end

  it("answers 500 to a response whose status is not a number, and goes on serving", function()
    reply = function() return {status = "201", body = "x"} end
    assert.are.equal(500, (get()))
    reply = function() return {status = 200, body = "fine"} end
    local status, body = get()
    assert.are.equal(200, status)
    assert.are.equal("fine", body)
  end)

  it("answers 500 at once to a status HTTP cannot carry", function()
    reply = function() return {status = 1000, body = "x"} end
    local t0 = assetd.monotonic()
    assert.are.equal(500, (get()))
    assert.is_true(assetd.monotonic() - t0 < 2)
  end)

  it("answers 500 to a file response with a bad offset, leaking no descriptor", function()
    local dir = sim.tmpdir()
    local f = assert(io.open(dir .. "/a.bin", "wb"))
    f:write("hello")
    f:close()
    local pid = sim.run("echo $PPID"):match("%d+")
    local function fds() return select(2, sim.run("ls /proc/" .. pid .. "/fd"):gsub("\n", "")) end
    reply = function() return {status = 200, root = dir, file = "a.bin", offset = "x"} end
    assert.are.equal(500, (get()))             -- the client's connection is open from here on
    local before = fds()
    for _ = 1, 5 do assert.are.equal(500, (get())) end
    assert.are.equal(before, fds())
    os.execute("rm -rf " .. dir)
  end)
end)

describe("file_info", function()
  it("refuses a FIFO planted under the root without blocking", function()
    local dir = sim.tmpdir()
    os.execute("mkfifo " .. dir .. "/pipe.mp4")
    local script = sim.script(string.format([[
      local info, err = assetd.file_info(%q, "pipe.mp4")
      print(info and "opened" or ("refused: " .. tostring(err)))
    ]], dir))
    local out, rc = sim.run("timeout 5 " .. (os.getenv("ASSETD_BIN") or "./assetd") .. " " .. script)
    assert.are.equal(0, rc, out)
    assert.matches("refused: ", out, 1, true)
    os.execute("rm -rf " .. dir .. " " .. script)
  end)
end)
