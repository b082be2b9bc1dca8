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

-- Closing a server and stopping the daemon, in every order, each in a child daemon that must
-- exit 0 having printed only "done". The child's freed memory is poisoned (glibc's perturb
-- byte with its per-thread cache off; ASan's free fill): libuv is not instrumented, so a
-- handle it still holds in freed memory would otherwise pass unnoticed even under ASan.
describe("a server", function()
  local bin = os.getenv("ASSETD_BIN") or "./assetd"

  local function run_child(src)
    local script = sim.script(string.format([[
      local server
      server = assert(assetd.http_listen{listen = "127.0.0.1:0", handler = function(req)
        return HANDLER and HANDLER(server, req) or {status = 200, body = "ok"}
      end})
      local function get()
        return assetd.fetch{url = "http://127.0.0.1:" .. server:port() .. "/", timeout = 5}
      end
      %s
      print("done")
    ]], src))
    local asan = os.getenv("ASAN_OPTIONS")
    local env = "MALLOC_PERTURB_=165 GLIBC_TUNABLES=glibc.malloc.tcache_count=0 ASAN_OPTIONS=" ..
      sim.shq((asan and asan ~= "" and asan .. ":" or "") .. "max_free_fill_size=65536:free_fill_byte=165")
    local out, rc = sim.run("timeout 10 env " .. env .. " " .. bin .. " " .. script)
    os.remove(script)
    return out, rc
  end

  local function clean(src)
    local out, rc = run_child(src)
    assert.are.equal("done\n", out)
    assert.are.equal(0, rc)
  end

  it("closed after the stop", function() clean("assetd.stop() server:close()") end)
  it("closed before the stop", function() clean("server:close() assetd.stop()") end)
  it("left to the collector at exit, after the stop", function() clean("assetd.stop()") end)
  it("closed twice, around the stop", function() clean("server:close() assetd.stop() server:close()") end)
  it("closed as a to-be-closed variable, after the stop", function()
    clean("local s <close> = server assetd.stop()")
  end)

  it("closed by its own handler while it answers", function()
    clean([[
      HANDLER = function(s) s:close() return {status = 200, body = "bye"} end
      local res, err = get()
      assert(res and res.status == 200 and res.body == "bye", tostring(err))
      assetd.stop()
    ]])
  end)

  it("closed by its handler is not called again, whatever was read with that request", function()
    clean([[
      local calls, left = 0, 10
      HANDLER = function(s) calls = calls + 1 s:close() collectgarbage() return {status = 200} end
      for _ = 1, left do
        assetd.spawn(function()
          local res, err = get()
          assert(not res or res.status == 200 or res.status == 503, tostring(err))
          left = left - 1
          if left == 0 then assert(calls == 1, calls) assetd.stop() end
        end)
      end
    ]])
  end)

  it("closed by a stop from its handler", function()
    clean([[
      HANDLER = function() assetd.stop() return {status = 200, body = "bye"} end
      assetd.spawn(get)
    ]])
  end)

  it("cannot be opened once the daemon stops, and the daemon still exits", function()
    clean([[
      assetd.stop()
      local again, err = assetd.http_listen{listen = "127.0.0.1:0", handler = print}
      assert(again == nil and err.category == "canceled", tostring(err))
    ]])
  end)

  it("nor the REPL's listener (a listener opened then would keep the daemon spinning)", function()
    local sock = sim.tmpdir() .. "/sock"
    clean(string.format([[
      assetd.stop()
      local path, err = assetd.repl.listen(%q)
      assert(path == nil and err.category == "canceled", tostring(err))
    ]], sock))
    os.execute("rm -rf " .. sock:match("(.*)/"))
  end)
end)
