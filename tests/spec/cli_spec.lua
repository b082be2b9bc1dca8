-- The command line as a user meets it: exit codes, error messages, signals, --help, --version.
local sim = require "sim"

local run, script = sim.run, sim.script

local bin = os.getenv("ASSETD_BIN") or "./assetd"

-- Runs SRC as a script with --log-format json: its output, exit status and removed script.
local function json_log(src)
  local path = script(src)
  local out, rc = run(bin .. " " .. path .. " --log-format json")
  os.remove(path)
  return out, rc
end

describe("assetd command line", function()
  it("--help and --version exit 0", function()
    local out, rc = run(bin .. " --help")
    assert.are.equal(0, rc)
    assert.matches("usage: assetd SCRIPT.lua", out)
    -- main.c's help text shows the listen default for the user; defaults.lua is where it lives
    local listen = require("assetd.defaults").pipeline.http.listen
    assert.truthy(out:find("(default " .. listen .. ")", 1, true), out)
    out, rc = run(bin .. " --version")
    assert.are.equal(0, rc)
    assert.matches("^assetd %d+%.%d+%.%d+", out)
  end)

  it("bad usage exits 2 with a message", function()
    local out, rc = run(bin .. " --bogus x.lua")
    assert.are.equal(2, rc)
    assert.matches("unknown option %-%-bogus", out)
    out, rc = run(bin)
    assert.are.equal(2, rc)
    assert.matches("no script given", out)
    out, rc = run(bin .. " x.lua --log-level loud")
    assert.are.equal(2, rc)
    assert.matches("%-%-log%-level must be", out)
  end)

  it("a Lua error exits 1 naming file:line with a traceback", function()
    local path = script("local x = 1\nerror('broken pipeline')\n")
    local out, rc = run(bin .. " " .. path)
    os.remove(path)
    assert.are.equal(1, rc)
    assert.matches(path:gsub("%p", "%%%0") .. ":2: broken pipeline", out)
    assert.matches("stack traceback", out)
  end)

  it("a syntax error exits 1 naming file:line", function()
    local path = script("local = 1\n")
    local out, rc = run(bin .. " " .. path)
    os.remove(path)
    assert.are.equal(1, rc)
    assert.matches(":1:", out)
  end)

  it("passes script arguments as arg and ..., and daemon options are taken anywhere", function()
    local path = script("print(arg[0] ~= nil, arg[1], arg[2], select('#', ...), assetd.options.data)\n")
    local out, rc = run(bin .. " " .. path .. " one --data /tmp/dd two")
    os.remove(path)
    assert.are.equal(0, rc)
    assert.matches("true\tone\ttwo\t2\t/tmp/dd", out)
    -- after --, even a script whose name starts with '-' is the script
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. " && printf 'print(\"dash\", ...)' > " .. dir .. "/-x.lua"))
    out, rc = run("cd " .. dir .. " && " .. (bin:sub(1, 1) == "/" and bin or os.getenv("PWD") .. "/" .. bin) .. " -- -x.lua --data")
    os.execute("rm -rf " .. dir)
    assert.are.equal(0, rc, out)
    assert.are.equal("dash\t--data\n", out)
  end)

  it("keeps every JSON log line valid: broken UTF-8, numbers JSON has not, a line cut at its cap", function()
    local out, rc = json_log("assetd.log.info('a', {v = 0/0, w = 1/0, s = 'caf\\xc3\\xa9 \\xff \\xe6\\x8b'})\n" ..
                             "assetd.log.info('b', {big = string.rep('\\xe6\\x8b\\x92\\1', 4000)})\n")
    assert.are.equal(0, rc, out)
    local cjson = require "cjson"
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = assert(cjson.decode(line)) end
    assert.are.equal(2, #lines)
    assert.are.equal("café \u{FFFD} \u{FFFD}\u{FFFD}", lines[1].s)
    assert.matches("^%-?nan$", lines[1].v)
    assert.are.equal("inf", lines[1].w)
    -- cut whole: neither a character nor an escape split (4 bytes each, decoded)
    assert.is_true(#lines[2].big > 3000 and #lines[2].big % 4 == 0, #lines[2].big)
  end)

  it("logs one JSON object a line with --log-format json, secrets redacted", function()
    local out, rc = json_log("assetd.log.info('hello', {n = 3, api_key = 'sk-secret', note = 'a \"b\"'})\n" ..
                             "assetd.log.debug('hidden')\n")
    assert.are.equal(0, rc)
    local line = out:match("(%b{})")
    local ev = require("cjson").decode(line)
    assert.are.equal("hello", ev.msg)
    assert.are.equal("info", ev.level)
    assert.are.equal(3, ev.n)
    assert.are.equal('a "b"', ev.note)
    assert.are.equal("[redacted]", ev.api_key)
    assert.is_nil(out:find("sk-secret", 1, true))
    assert.is_nil(out:find("hidden", 1, true))
  end)

  it("an error in a spawned task is logged and the process goes on", function()
    local path = script("assetd.spawn(function() error('task boom') end)\nassetd.sleep(0.01)\nprint('still here')\n")
    local out, rc = run(bin .. " " .. path)
    os.remove(path)
    assert.are.equal(0, rc)
    assert.matches("task boom", out)
    assert.matches("still here", out)
  end)

  it("SIGTERM during a download stops cleanly with exit 0 and keeps the .part", function()
    local s = sim.start()
    s:video{id = "vid_sig", sizes = {video = 4 * 1024 * 1024}}
    s:fault{path = "vid_sig/content", kind = "slow", rate = 200000}
    local dir = sim.tmpdir()
    local path = script(string.format(
      "print(assetd.fetch{url = %q, to = %q})\n", s.openai .. "/videos/vid_sig/content", dir .. "/v.mp4"))
    os.execute(string.format("sh -c '%s %s >%s/out 2>&1 & echo $! > %s/pid; wait $!; echo $? > %s/rc' &",
      bin, path, dir, dir, dir))
    assetd.sleep(0.1)
    local pid = assert(io.open(dir .. "/pid")):read("l")
    assetd.sleep(0.8)
    os.execute("kill -TERM " .. pid)
    local rc
    for _ = 1, 100 do
      assetd.sleep(0.05)
      local f = io.open(dir .. "/rc")
      rc = f and tonumber(f:read("l"))
      if f then f:close() end
      if rc then break end
    end
    assert.are.equal(0, rc)
    local out = assert(io.open(dir .. "/out")):read("a")
    os.remove(path)
    s:stop()
    assert.matches("stopping", out)
    local part = assert(io.open(dir .. "/.v.mp4.part"))
    assert.is_true(part:seek("end") > 0)
    part:close()
    assert.is_nil(io.open(dir .. "/v.mp4"))
    os.execute("rm -rf " .. dir)
  end)
end)
