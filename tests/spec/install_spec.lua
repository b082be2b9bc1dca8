-- The daemon on its host (issue 16): the man page renders cleanly and names every option of
-- --help; make install puts binary, man page, unit and examples under DESTDIR and the
-- installed tree runs on its own; the unit passes systemd-analyze; make uninstall removes it
-- all; the daemon tells systemd READY=1, RELOADING=1 and STOPPING=1 on NOTIFY_SOCKET.
local sim = require "sim"
local daemon = require "daemon"
local shq = sim.shq

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo rc=$?")
  local out = p:read("a")
  p:close()
  return out:gsub("rc=(%d+)%s*$", ""), tonumber(out:match("rc=(%d+)%s*$"))
end

describe("the man page", function()
  it("renders without a warning and names every option of assetd --help", function()
    local err, rc = run("groff -man -Tutf8 -ww docs/assetd.1 >/dev/null")
    assert.are.equal(0, rc)
    assert.are.equal("", err)
    local lint
    lint, rc = run("mandoc -Tlint -Wwarning docs/assetd.1")
    assert.are.equal(0, rc, lint)
    local page = run("MANWIDTH=200 man -l docs/assetd.1 | col -b")
    local help = run(daemon.bin .. " --help")
    local n = 0
    for opt in help:gmatch("%s(%-%-?[%a][%w-]*)") do
      n = n + 1
      assert.truthy(page:find(opt, 1, true), opt .. " is not in docs/assetd.1")
    end
    assert.is_true(n >= 7, "--help named only " .. n .. " options")
  end)
end)

describe("make install", function()
  it("installs a tree that runs by itself, a unit systemd accepts, and uninstall removes it all", function()
    local dir = sim.tmpdir()
    local root = dir .. "/root"
    finally(function() os.execute("rm -rf " .. shq(dir)) end)
    local out, rc = run("make -s install DESTDIR=" .. shq(root) .. " PREFIX=/usr")
    assert.are.equal(0, rc, out)
    for _, f in ipairs{"/usr/bin/assetd", "/usr/share/man/man1/assetd.1", "/usr/lib/systemd/system/assetd.service",
                       "/usr/share/doc/assetd/examples/pipeline.lua"} do
      assert.is_true(os.execute("test -f " .. shq(root .. f)) == true, f .. " not installed")
    end
    -- the Lua modules are the binary's own: none installed, none needed
    assert.is_true(os.execute("test -e " .. shq(root .. "/usr/share/assetd")) ~= true)
    -- from elsewhere, with the checkout's modules out of reach
    out, rc = run(string.format("cd %s && %s/usr/bin/assetd --check %s/usr/share/doc/assetd/examples/pipeline.lua --data %s/data",
                                shq(dir), shq(root), shq(root), shq(dir)))
    assert.are.equal(0, rc, out)
    assert.matches("pipeline OK", out)
    local unit = sim.read(root .. "/usr/lib/systemd/system/assetd.service")
    assert.matches("ExecStart=/usr/bin/assetd ", unit, 1, true)
    assert.matches("Type=notify", unit, 1, true)
    -- systemd's own check, with ExecStart naming the binary where it is now
    local f = assert(io.open(dir .. "/assetd.service", "w"))
    f:write((unit:gsub("ExecStart=/usr/bin/assetd", "ExecStart=" .. root .. "/usr/bin/assetd")))
    f:close()
    out, rc = run("systemd-analyze verify --man=no " .. shq(dir .. "/assetd.service"))
    assert.are.equal(0, rc, out)
    out, rc = run("make -s uninstall DESTDIR=" .. shq(root) .. " PREFIX=/usr")
    assert.are.equal(0, rc, out)
    local left = run("if [ -d " .. shq(root) .. " ]; then find " .. shq(root) .. " -type f; fi")
    assert.are.equal("", left)
  end)
end)

describe("systemd notification", function()
  it("says READY=1 once the API listens, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 at the stop", function()
    local dir = sim.tmpdir()
    local sock, log = dir .. "/notify", dir .. "/notes"
    -- a datagram socket as systemd keeps one, each message on a line of its own
    os.execute(string.format([[python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], "a", buffering=1)
while True:
    out.write(s.recv(4096).decode() + "\n")
' %s %s >/dev/null 2>&1 & echo $! > %s/pypid]], shq(sock), shq(log), shq(dir)))
    finally(function()
      os.execute("kill " .. (sim.read(dir .. "/pypid") or ""):match("%d+") .. " 2>/dev/null")
      os.execute("rm -rf " .. shq(dir))
    end)
    sim.eventually(function() return os.execute("test -S " .. shq(sock)) == true end, 5, "the notify socket")
    local d = daemon.start{pipeline = daemon.SIM_PIPELINE, env = {NOTIFY_SOCKET = sock, OPENAI_API_KEY = "sk-n"}}
    sim.eventually(function() return (sim.read(log) or ""):find("READY=1", 1, true) end, 10, "READY=1")
    assert.are.equal(200, (d:json("GET", "/healthz")))       -- the API listens when READY says so
    os.execute("kill -HUP " .. d.pid)
    sim.eventually(function() return select(2, (sim.read(log) or ""):gsub("READY=1", "")) == 2 end, 10, "READY=1 after the reload")
    d:stop_clean()
    sim.eventually(function() return (sim.read(log) or ""):find("STOPPING=1", 1, true) end, 5, "STOPPING=1")
    assert.are.equal("READY=1\nRELOADING=1\nREADY=1\nSTOPPING=1\n", sim.read(log))
  end)
end)
