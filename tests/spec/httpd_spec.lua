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

  it("lets a handler wait (a database answering later) while other requests are answered", function()
    reply = function(req)
      if req.path == "/slow" then assetd.sleep(0.5); return {status = 200, body = "slow"} end
      return {status = 200, body = "quick"}
    end
    local slow, t_slow, t_quick
    local t0 = assetd.monotonic()
    assetd.spawn(function() slow = {get("/slow")}; t_slow = assetd.monotonic() - t0 end)
    assetd.spawn(function() assetd.sleep(0.1); assert.are.equal("quick", select(2, get("/quick"))); t_quick = assetd.monotonic() - t0 end)
    sim.eventually(function() return slow end, 5, "the waiting handler's answer")
    assert.are.same({200, "slow"}, slow)
    assert.is_true(t_quick < t_slow, "the quick request waited for the slow one")
    assert.is_true(t_slow >= 0.5)
  end)

  it("answers 500 when a waiting handler raises, and drops a wait whose server closed", function()
    reply = function() assetd.sleep(0.05); error("boom") end
    assert.are.equal(500, (get()))
    local waited = false
    reply = function() assetd.sleep(0.3); waited = true; return {status = 200, body = "late"} end
    local got
    assetd.spawn(function()
      got = {assetd.fetch{url = "http://127.0.0.1:" .. server:port() .. "/", timeout = 5}}
    end)
    assetd.sleep(0.1)
    server:close()
    sim.eventually(function() return waited and got end, 5, "the handler's end")
    assert.is_nil(got[1], "a closed server's deferred request was answered")
    server = assert(assetd.http_listen{listen = "127.0.0.1:0", handler = function(req) return reply(req) end})
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

-- A streamed answer (Server-Sent Events): what is written arrives as it is written, a quiet
-- stream is suspended (no busy loop, not cut by the idle timeout), a client that left or
-- stopped reading is seen as closed at the next write, and the stream ends when told.
describe("a stream", function()
  local server, streams, dir
  before_each(function()
    streams, dir = {}, sim.tmpdir()
    server = assert(assetd.http_listen{listen = "127.0.0.1:0", timeout = 1, handler = function(req)
      if req.path ~= "/events" then return {status = 200, body = "plain"} end
      local s = assetd.http_stream(tonumber(req.query.cap) or 4096)
      assert(s:write("retry: 1000\n\n"))           -- written before the answer: sent first
      streams[#streams + 1] = s
      return {status = 200, headers = {["Content-Type"] = "text/event-stream"}, stream = s}
    end})
  end)
  after_each(function()
    server:close()
    os.execute("rm -rf " .. dir)
  end)

  local function wait(fn, secs) return sim.eventually(fn, secs or 5) end

  -- CPU ticks this process (the test's own assetd, which serves) has used
  local function cpu() return tonumber((sim.run("awk '{print $14 + $15}' /proc/$PPID/stat"))) end

  -- curl -N in the background; OUT is its output file, PID its process
  local function listen(name, extra)
    local out = dir .. "/" .. name
    local pid = sim.run(string.format("curl -sN %s http://127.0.0.1:%d/events%s > %s 2>&1 & echo $!",
      extra or "", server:port(), name == "slow" and "?cap=65536" or "", out)):match("%d+")
    wait(function() return #streams >= 1 end)
    return out, pid
  end

  it("sends each write as it comes, and stays open while quiet past the idle timeout", function()
    local out, pid = listen("a")
    for i = 1, 3 do
      assert(streams[1]:write("data: " .. i .. "\n\n"))
      wait(function() return (sim.read(out) or ""):find("data: " .. i, 1, true) end)
    end
    -- quiet for twice the idle timeout (1 s): suspended, so neither cut nor spinning
    local cpu0 = cpu()
    assetd.sleep(2.2)
    assert.is_true(cpu() - cpu0 < 60, "busy while quiet: " .. (cpu() - cpu0) .. " ticks in 2.2 s")
    assert.is_true(streams[1]:is_open())
    assert(streams[1]:write("data: late\n\n"))
    wait(function() return (sim.read(out) or ""):find("data: late", 1, true) end)
    assert.are.equal("retry: 1000\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: late\n\n", sim.read(out))
    streams[1]:close()                               -- the body ends: curl exits by itself
    wait(function() return not os.execute("kill -0 " .. pid .. " 2>/dev/null") end)
    assert.is_false(streams[1]:is_open())
    assert.is_nil((streams[1]:write("more")))
  end)

  it("is closed at the next writes once its client has gone", function()
    local _, pid = listen("b")
    os.execute("kill " .. pid)
    wait(function()
      streams[1]:write("data: ping\n\n")              -- resumes it; MHD then meets the closed socket
      assetd.sleep(0.05)
      return not streams[1]:is_open()
    end)
    local ok, err = streams[1]:write("data: x\n\n")
    assert.is_nil(ok)
    assert.are.equal("canceled", err.category)
  end)

  it("is cut when its client stops reading and the buffer passes its cap", function()
    local _, pid = listen("slow")
    os.execute("kill -STOP " .. pid)
    -- the socket buffers take a few MB first; then what is written stays in the stream's
    local chunk = string.rep("x", 32767) .. "\n"
    local t0 = assetd.monotonic()
    while streams[1]:write(chunk) and assetd.monotonic() - t0 < 30 do assetd.sleep(0.002) end
    assert.is_false(streams[1]:is_open())
    os.execute("kill -CONT " .. pid .. "; kill " .. pid)
  end)

  it("leaves plain answers and their deadlines alone", function()
    local res = assert(assetd.fetch{url = "http://127.0.0.1:" .. server:port() .. "/", timeout = 5})
    assert.are.equal("plain", res.body)
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

  it("stops with a quiet stream open (its suspended connection resumed and closed)", function()
    clean([[
      HANDLER = function() S = assetd.http_stream() S:write("data: 1\n\n") return {status = 200, stream = S} end
      os.execute("curl -sN http://127.0.0.1:" .. server:port() .. "/ >/dev/null 2>&1 &")
      assetd.spawn(function()
        while not S do assetd.sleep(0.02) end
        assetd.sleep(0.3)
        assetd.stop()
      end)
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
