-- The REPL as people meet it: `assetd -i` driven through a terminal (tmux on a private
-- server), `assetd attach` through the socket, the helpers on a running pipeline (against the
-- simulator), the pretty printer, and Runner:cancel_job.
local sim = require "sim"
local pretty = require "assetd.pretty"

local bin = os.getenv("ASSETD_BIN") or "./assetd"
local cwd = io.popen("pwd"):read("l")

local function sh(cmd) return os.execute(cmd) end

local read, q, wait_for, run = sim.read, sim.shq, sim.eventually, sim.run

local function write(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

local function exists(path) return os.execute("test -e " .. path) end

-- A command in the background (its stdin, if not redirected, is /dev/null): its pid, its
-- output in DIR/NAME.out and .err, and its exit status in DIR/NAME.rc when it ends.
local function spawn(dir, name, cmd)
  local base = dir .. "/" .. name
  write(base .. ".sh", string.format("{ %s; } > %s.out 2> %s.err & pid=$!\necho $pid > %s.pid\nwait $pid\necho $? > %s.rc\n",
    cmd, base, base, base, base))
  sh("sh " .. base .. ".sh < /dev/null > /dev/null 2>&1 &")
  return wait_for(function() return read(base .. ".pid") end, 5, name .. " to start"):match("%d+")
end

-- The number in FILE once the shell has written it (`echo $? > F` creates F empty first).
local function written_status(file)
  local s = read(file)
  return s and s:match("%d+")
end

local function exit_status(dir, name, secs)
  return tonumber(wait_for(function() return written_status(dir .. "/" .. name .. ".rc") end, secs or 10, name .. " to exit"))
end

-- ---- a terminal through tmux ---------------------------------------------------------------

local Term = {}
Term.__index = Term
local nterm = 0

local function term(dir, cmd)
  nterm = nterm + 1
  local self = setmetatable({dir = dir, tmux = "tmux -L assetd-spec-" .. nterm .. "-" .. math.random(1e6) .. " -f /dev/null"}, Term)
  assert(sh(string.format("%s new-session -d -x 160 -y 50 -s t %s", self.tmux,
    q("cd " .. cwd .. " && " .. cmd .. "; echo $? > " .. dir .. "/term.rc; sleep 30"))))
  return self
end

function Term:send(text) sh(self.tmux .. " send-keys -t t -l " .. q(text)) end
function Term:keys(...) sh(self.tmux .. " send-keys -t t " .. table.concat({...}, " ")) end
function Term:line(text) self:send(text); self:keys("Enter") end
function Term:screen() return io.popen(self.tmux .. " capture-pane -p -J -S - -t t 2>/dev/null"):read("a") end
function Term:kill() sh(self.tmux .. " kill-server 2>/dev/null") end

-- Wait until the screen matches PATTERN (plain text unless pattern = true).
function Term:wait(text, pattern, secs)
  return wait_for(function()
    local s = self:screen()
    return s:find(text, 1, not pattern) and s
  end, secs or 10, string.format("%q on the terminal; it shows:\n%s", text, self:screen()))
end

-- Wait until what follows the last MARK on the screen holds TEXT.
function Term:wait_after(mark, text, secs)
  return wait_for(function() return self:after(mark):find(text, 1, true) end, secs or 10,
    string.format("%q after %q; the terminal shows:\n%s", text, mark, self:screen()))
end

-- The screen from the last occurrence of MARK on.
function Term:after(mark)
  local s, at = self:screen(), nil
  local i = 0
  while true do
    i = s:find(mark, i + 1, true)
    if not i then break end
    at = i
  end
  return at and s:sub(at) or ""
end

function Term:exit_status(secs)
  return tonumber(wait_for(function() return written_status(self.dir .. "/term.rc") end, secs or 10, "the REPL to exit"))
end

local function script(dir, src)
  local path = dir .. "/script.lua"
  write(path, src)
  return path
end

-- ---- the terminal REPL -----------------------------------------------------------------------

describe("assetd -i on a terminal", function()
  local dir, t
  before_each(function() dir = sim.tmpdir() end)
  after_each(function()
    if t then t:kill() end
    t = nil
    sh("rm -rf " .. dir)
  end)

  it("reads like lua.c: expressions print, =expr, a chunk continues over lines, errors print and it goes on", function()
    local s = script(dir, "answer = 42\n")
    t = term(dir, string.format("HOME=%s %s -i %s --data %s/data", dir, bin, s, dir))
    t:wait("help() lists the helpers")
    t:line("answer + 1")
    t:wait("\n43\n")
    t:line("=answer, 'two'")
    t:wait('42%s+"two"', true)
    t:line("for i = 1, 3 do")
    t:wait(">> ")
    t:line("print('row', i * 10)")
    t:line("end")
    t:wait("row%s+30", true)
    assert.matches("row%s+10\nrow%s+20\nrow%s+30\n> ", t:screen())
    t:line("error('boom')")
    t:wait("repl:1: boom")
    t:line("{b = 1, a = {1, 2}}")
    t:wait("{a = {1, 2}, b = 1}")
    t:line("local x = ")
    t:wait(">> ")
    t:line("7 return x * 2")
    t:wait("\n14\n")
  end)

  it("Ctrl-C clears the line and interrupts a waiting or a busy chunk; the daemon goes on", function()
    local s = script(dir, "")
    t = term(dir, string.format("HOME=%s %s -i %s --data %s/data", dir, bin, s, dir))
    t:wait("> ")
    t:send("garbage that is never run")
    t:keys("C-c")
    t:line("1 + 2")
    t:wait("\n3\n")
    assert.is_nil(t:screen():find("repl:1:", 1, true))      -- the cleared line was never run
    t:line("for i = 1,")                     -- an unfinished chunk is dropped too
    t:wait(">> ")
    t:keys("C-c")
    t:line("'fresh'")
    t:wait('"fresh"')
    t:line("assetd.sleep(60) print('after' .. 'sleep')")
    t:wait("print('after' .. 'sleep')\n")
    t:keys("C-c")
    t:wait_after("print('after' .. 'sleep')", "interrupted")
    t:line("n = 0 while true do n = n + 1 end")
    t:wait("n = n + 1 end\n")
    t:keys("C-c")
    t:wait_after("n = n + 1 end", "interrupted")
    t:line("n > 0, 'alive'")
    t:wait('true%s+"alive"', true)
    assert.is_nil(t:screen():find("aftersleep", 1, true))   -- the interrupted chunk stopped there
    assert.is_nil(read(dir .. "/term.rc"))   -- still running
  end)

  it("Ctrl-D stops the daemon with exit 0 and keeps the history in ~/.assetd_history", function()
    local s = script(dir, "")
    t = term(dir, string.format("HOME=%s %s -i %s --data %s/data", dir, bin, s, dir))
    t:wait("> ")
    t:line("'first line'")
    t:wait('"first line"')
    t:keys("C-d")
    assert.are.equal(0, t:exit_status())
    assert.matches("first\\040line", read(dir .. "/.assetd_history"))
  end)

  it("SIGTERM stops it with exit 0 while a line is being edited", function()
    local s = script(dir, "")
    t = term(dir, string.format("HOME=%s sh -c 'echo $$ > %s/pid; exec %s -i %s --data %s/data'", dir, dir, bin, s, dir))
    t:wait("> ")
    t:send("half a line")
    sh("kill -TERM " .. read(dir .. "/pid"):match("%d+"))
    assert.are.equal(0, t:exit_status())
  end)

  it("reads piped lines when stdin is not a terminal, and stops at its end", function()
    local s = script(dir, "")
    local out, rc = run(string.format("printf 'x = 6\\nx * 7\\nfor i = 1, 2 do\\nprint(i)\\nend\\nerror(\"bad\")\\n' | %s -i %s --data %s/data", bin, s, dir))
    assert.are.equal(0, rc)
    assert.matches("42\n1\n2\n", out)
    assert.matches("repl:1: bad", out)
    assert.is_nil(out:find("help()", 1, true))   -- no greeting when nobody types
  end)
end)

-- ---- a pipeline daemon: helpers, attach, secrets ------------------------------------------------

describe("the REPL on a running pipeline", function()
  local s, dir, t, env
  local secrets = {OPENAI_API_KEY = "sk-repl-secret-0123456789", NOTION_TOKEN = "secret_notion_abcdef"}

  setup(function() s = sim.start("--openai-key " .. secrets.OPENAI_API_KEY .. " --notion-token " .. secrets.NOTION_TOKEN) end)
  teardown(function() s:stop() end)
  before_each(function()
    s:reset()
    dir = sim.tmpdir()
    env = string.format("HOME=%s OPENAI_API_KEY=%s OPENAI_BASE_URL=%s NOTION_TOKEN=%s NOTION_BASE_URL=%s",
      dir, secrets.OPENAI_API_KEY, s.openai, secrets.NOTION_TOKEN, s.notion)
  end)
  after_each(function()
    if t then t:kill() end
    t = nil
    sh("rm -rf " .. dir)
  end)

  local function pipeline(extra)
    return script(dir, string.format([[
assetd.timer(120, function() end)   -- stay up for the test even when the jobs are done
return {
  storage = {root = %q},
  sora = {poll = {interval = 0.2, max = 0.5}},
  %s
}
]], dir .. "/root", extra or ""))
  end

  local function attach(input, name)
    local f = dir .. "/" .. (name or "in") .. ".txt"
    write(f, input)
    return run(string.format("%s attach --data %s/data < %s", bin, dir, f))
  end

  local function start_daemon(extra)
    local pid = spawn(dir, "daemon", string.format("%s %s %s --listen 127.0.0.1:0 --data %s/data", env, bin, pipeline(extra), dir))
    wait_for(function() return exists(dir .. "/data/assetd.sock") end, 10, "the attach socket")
    return pid
  end

  local function stop_daemon(pid)
    sh("kill -TERM " .. pid)
    assert.are.equal(0, exit_status(dir, "daemon"))
    assert.is_falsy(exists(dir .. "/data/assetd.sock"), "the socket is removed at the stop")
  end

  it("-i: helpers answer while downloads are in flight, and the downloads finish", function()
    s:video{{id = "video_r1", sizes = {video = 1000000, thumbnail = 2000, spritesheet = 3000}},
            {id = "video_r2", sizes = {video = 1000000, thumbnail = 2000, spritesheet = 3000}}}
    s:fault{path = "video_r./content\\?variant=video", kind = "slow", rate = 250000, count = 2}
    local p = pipeline([[jobs = {
    {notionPageId = "page-r1", soraVideoId = "video_r1", batchId = "rb"},
    {notionPageId = "page-r2", soraVideoId = "video_r2", batchId = "rb"},
  },]])
    t = term(dir, string.format("%s %s -i %s --listen 127.0.0.1:0 --data %s/data", env, bin, p, dir))
    t:wait("> ")
    wait_for(function()
      t:line("summary()")
      assetd.sleep(0.2)
      return t:after("> summary()"):find("downloading 2", 1, true)
    end, 5, "summary() to show both downloads")
    assert.matches("transfers  %d+ active", t:after("> summary()"))
    t:line("jobs('downloading')")
    t:wait("page%-r1%s+video_r1%s+rb%s+downloading%s+V1%s+in %d+[hm]", true)
    assert.matches("page%-r2%s+video_r2%s+rb%s+downloading", t:after("> jobs('downloading')"))
    t:line("job('page-r1')")
    t:wait("events:")
    local shown = t:after("> job('page-r1')")
    assert.matches("DOWNLOADING%s+version V1", shown)
    assert.matches("pending %-> downloading", shown)
    t:line("expiring(3600)")
    t:wait("minutesRemaining")
    t:line("instances()")
    t:wait("%(this one%)%s+%S.-%s+2\n", true)     -- one daemon on SQLite, holding its two runs
    -- the downloads went on while we typed
    wait_for(function()
      t:line("jobs('completed')")
      assetd.sleep(0.2)
      local out = t:after("> jobs('completed')")
      return out:find("page-r1", 1, true) and out:find("page-r2", 1, true)
    end, 15, "both jobs to complete")
    t:line("job('page-r2')")
    t:wait("video_r2_V1.mp4")
    assert.matches("video%s+V1%s+976.6 KiB", t:after("> job('page-r2')"))
    t:keys("C-d")
    assert.are.equal(0, t:exit_status())
  end)

  it("attach: piped lines run in order, output comes back, exit 0 at the end of the input", function()
    local pid = start_daemon()
    local out, rc = attach("x = 20\nx + 22\nfor i = 1, 2 do\nprint('line', i)\nend\nerror('oops')\nsummary()\n")
    assert.are.equal(0, rc)
    assert.matches("^42\nline\t1\nline\t2\n", out)
    assert.matches("repl:1: oops", out)
    assert.matches("jobs       waiting 0", out)
    assert.is_nil(out:find("help()", 1, true))       -- no greeting, no prompts in scripts
    assert.is_nil(out:find("> ", 1, true))
    out, rc = attach("for i = 1,\n")                  -- an unfinished chunk at the end is reported
    assert.are.equal(0, rc)
    assert.matches("unfinished chunk dropped", out)
    stop_daemon(pid)
  end)

  it("attach: a large output arrives whole and once, however the reads cut the frames", function()
    local pid = start_daemon()
    local out, rc = attach("for i = 1, 200000 do print(i) end\n")
    assert.are.equal(0, rc)
    local n, expect = 0, 1
    for line in out:gmatch("[^\n]+") do
      assert.are.equal(tostring(expect), line)
      n, expect = n + 1, expect + 1
    end
    assert.are.equal(200000, n)
    stop_daemon(pid)
  end)

  it("attach: a value larger than the client's frame limit arrives whole, the session goes on", function()
    local pid = start_daemon()
    local n = 70 << 20                        -- over REPL_MAX_FRAME (64 MiB)
    local out, rc = attach(string.format("print(('x'):rep(%d))\n'next'\n", n))
    assert.are.equal(0, rc, out:sub(1, 200))
    assert.are.equal(n + #'\n"next"\n', #out)
    assert.is_true(out:sub(1, n) == ("x"):rep(n), "the value arrived whole")
    assert.are.equal('\n"next"\n', out:sub(n + 1))
    stop_daemon(pid)
  end)

  it("attach: a value the printer cannot show is reported, and the session goes on", function()
    local pid = start_daemon()
    local out, rc = attach("setmetatable({}, {__pairs = function() error('no pairs') end})\n" ..
                           "expiring(math.huge)\n'next'\n")
    assert.are.equal(0, rc, out)
    assert.matches("cannot print the value: .*no pairs", out)
    assert.matches('"next"\n$', out)
    stop_daemon(pid)
  end)

  it("attach: output over what may wait for a client is refused with a notice; the session goes on", function()
    local pid = start_daemon()
    local out, rc = attach(string.format("print(('x'):rep(%d))\n'next'\n", 300 << 20))
    assert.are.equal(0, rc, out:sub(1, 200))
    assert.matches("^assetd: 314572801 bytes of output not sent: over 256 MiB would wait for this client", out)
    assert.matches('\n"next"\n$', out)
    assert.is_true(#out < 1000)
    stop_daemon(pid)
  end)

  -- A client that sends a line whose output is far more than the daemon queues and never
  -- reads; then, "probe": sends empty lines until one finds the socket closed; "half":
  -- half-closes and waits.
  local function mute_client(mode)
    write(dir .. "/mute.py", [[
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
if sys.argv[3] == "half":
    s.shutdown(socket.SHUT_WR)
    time.sleep(30)
    sys.exit()
s.setblocking(False)
t0 = time.monotonic()
while time.monotonic() - t0 < 10:
    time.sleep(0.1)
    try:
        s.send(b"\n")
    except BlockingIOError:
        pass
    except (BrokenPipeError, ConnectionResetError):
        sys.exit(print("closed"))
sys.exit("still open after 10 s")
]])
    return string.format("python3 %s/mute.py %s/data/assetd.sock %s %s", dir, dir,
      q("for i = 1, 40 do print(('x'):rep(1 << 20)) end"), mode)
  end

  it("attach: a client that sends its input, half-closes and never reads is closed", function()
    local pid = start_daemon()
    local client = spawn(dir, "half", mute_client("half"))
    -- 40 MiB of output first: under the sanitizers on a busy machine that takes seconds
    wait_for(function() return (read(dir .. "/daemon.err") or ""):find("repl detached") end, 15, "the input to end")
    wait_for(function() return attach("assetd.repl.sessions()\n") == "1\n" end, 10, "the half-closed session to be freed")
    sh("kill " .. client)
    stop_daemon(pid)
  end)

  it("attach: a client that stops reading is dropped: closed and freed; the daemon goes on", function()
    local pid = start_daemon()
    local out, rc = run(mute_client("probe"))
    assert.are.equal("closed\n", out)
    assert.are.equal(0, rc)
    assert.matches("not reading its output; dropping it", read(dir .. "/daemon.err"))
    wait_for(function() return attach("assetd.repl.sessions()\n") == "1\n" end, 5, "the dropped session to be freed")
    stop_daemon(pid)
  end)

  it("two clients at once: each gets its own output and its own globals", function()
    local pid = start_daemon()
    write(dir .. "/a.txt", "who = 'A'\nwhile not _G.b_started do assetd.sleep(0.02) end\n" ..
      "for i = 1, 3 do print('A says', i, who) assetd.sleep(0.05) end\n")
    write(dir .. "/b.txt", "who = 'B'\n_G.b_started = true\n" ..
      "for i = 1, 3 do print('B says', i, who) assetd.sleep(0.05) end\n")
    spawn(dir, "a", string.format("%s attach --data %s/data < %s/a.txt", bin, dir, dir))
    wait_for(function() return (read(dir .. "/daemon.err") or ""):find("repl attached") end, 5, "client A")
    spawn(dir, "b", string.format("%s attach --data %s/data < %s/b.txt", bin, dir, dir))
    assert.are.equal(0, exit_status(dir, "a"))
    assert.are.equal(0, exit_status(dir, "b"))
    local a, b = read(dir .. "/a.out"), read(dir .. "/b.out")
    assert.are.equal("A says\t1\tA\nA says\t2\tA\nA says\t3\tA\n", a)
    assert.are.equal("B says\t1\tB\nB says\t2\tB\nB says\t3\tB\n", b)
    stop_daemon(pid)
  end)

  it("attach on a terminal: prompts, Ctrl-C, Ctrl-D detaches and the daemon goes on", function()
    local pid = start_daemon()
    t = term(dir, string.format("HOME=%s %s attach %s/data/assetd.sock", dir, bin, dir))
    t:wait("(attached). help() lists the helpers")
    t:line("for i = 1, 2 do")
    t:wait(">> ")
    t:keys("C-c")
    t:line("assetd.sleep(30)")
    t:wait("assetd.sleep(30)\n")
    t:keys("C-c")
    t:wait_after("assetd.sleep(30)", "interrupted")
    t:line("6 * 7")
    t:wait("\n42\n")
    t:keys("C-d")
    assert.are.equal(0, t:exit_status())
    local out, rc = attach("'still here'\n")
    assert.are.equal(0, rc)
    assert.matches('"still here"', out)
    stop_daemon(pid)
  end)

  it("the socket is mode 0600 and a peer of another uid is refused", function()
    local pid = start_daemon()
    local sock = dir .. "/data/assetd.sock"
    assert.are.equal("600", io.popen("stat -c %a " .. sock):read("l"))
    if io.popen("id -u"):read("l") ~= "0" then
      stop_daemon(pid)
      pending("needs root to act as another user")
      return
    end
    sh("chmod 755 " .. dir .. " " .. dir .. "/data")
    local as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups " .. bin .. " attach " .. sock .. " </dev/null"
    local out, rc = run(as_nobody)
    assert.are.equal(1, rc)
    assert.matches("permission denied", out:lower())
    sh("chmod 666 " .. sock)                  -- let the connect through: SO_PEERCRED must refuse it
    out, rc = run(as_nobody)
    assert.are.equal(1, rc)
    assert.matches("attach refused", out)
    assert.matches('msg="attach refused" peer_uid=65534', read(dir .. "/daemon.err"))
    stop_daemon(pid)
  end)

  it("never prints a secret: fields named like one, or any string equal to one", function()
    local pid = start_daemon()
    local out, rc = attach(table.concat({
      "os.getenv('OPENAI_API_KEY')",
      "print('token is ' .. os.getenv('NOTION_TOKEN'))",
      "{api_key = 'plain', nested = {authorization = 'Bearer x'}, ok = 'visible'}",
      "error('failed with ' .. os.getenv('OPENAI_API_KEY'))",
      "pp({os.getenv('NOTION_TOKEN')})",
    }, "\n") .. "\n")
    assert.are.equal(0, rc)
    assert.is_nil(out:find(secrets.OPENAI_API_KEY, 1, true))
    assert.is_nil(out:find(secrets.NOTION_TOKEN, 1, true))
    assert.is_nil(out:find("plain", 1, true))
    assert.is_nil(out:find("Bearer", 1, true))
    assert.matches("token is %[redacted%]", out)
    assert.matches("failed with %[redacted%]", out)
    assert.matches('ok = "visible"', out)
    local _, n = out:gsub("%[redacted%]", "")
    assert.are.equal(6, n)
    stop_daemon(pid)
  end)

  it("reload() runs the script again with the arguments it was started with", function()
    local s = script(dir, "assetd.timer(120, function() end)\n" ..
      "local root = assert(..., 'usage: script.lua ROOT')\nreturn {storage = {root = root}}\n")
    local pid = spawn(dir, "daemon", string.format("%s %s %s %s/root --listen 127.0.0.1:0 --data %s/data", env, bin, s, dir, dir))
    wait_for(function() return exists(dir .. "/data/assetd.sock") end, 10, "the attach socket")
    local out, rc = attach("reload()\n")
    assert.are.equal(0, rc)
    assert.matches("^reloaded ", out)
    stop_daemon(pid)
  end)

  it("enqueue, cancel and retry through attach; reload() swaps the hooks, downloads go on", function()
    s:video{{id = "video_c1", sizes = {video = 2000000, thumbnail = 2000, spritesheet = 3000}},
            {id = "video_c2", sizes = {video = 5000, thumbnail = 200, spritesheet = 300}}}
    s:fault{path = "video_c1/content\\?variant=video", kind = "slow", rate = 100000, count = 1}
    local pid = start_daemon()
    local out, rc = attach("enqueue{notionPageId = 'page-c1', soraVideoId = 'video_c1', batchId = 'cb'}\n")
    assert.are.equal(0, rc)
    assert.matches("^job 1  page%-c1  video_c1  waiting\ttrue\n$", out)
    wait_for(function() return attach("job('page-c1').status\n") == '"downloading"\n' end, 5, "the download")
    out = attach("cancel('page-c1')\njob('page-c1')\ncancel('page-c1')\n")
    assert.matches("^job 1  page%-c1  video_c1  failed: canceled by operator\n", out)
    assert.matches("canceled%s+by operator", out)
    assert.matches("error%(state%): job is failed, there is nothing to cancel", out)
    assert.is_truthy(io.open(dir .. "/root/cb/.video_c1_V1.mp4.part"), "the .part stays for a resume")
    -- a new alert hook, loaded while nothing is restarted
    local hook = string.format('alerts = {completed = function(job) local f = io.open(%q, "a") ' ..
      'f:write(job.notionPageId, "\\n") f:close() end},', dir .. "/completed.txt")
    write(dir .. "/script.lua", (read(dir .. "/script.lua"):gsub("return {", function() return "return {\n  " .. hook end, 1)))
    out = attach("reload()\nretry('page-c1')\nenqueue{notionPageId = 'page-c2', soraVideoId = 'video_c2', batchId = 'cb'}\n")
    assert.matches("reloaded .*alerts expiring %(default%), stalled %(default%), at_risk %(default%), expired %(default%), failed %(default%), completed\n" ..
      "job 1  page%-c1  video_c1  pending\njob 2  page%-c2  video_c2  waiting\ttrue\n$", out)
    wait_for(function()
      local done = read(dir .. "/completed.txt") or ""
      return done:find("page-c1", 1, true) and done:find("page-c2", 1, true)
    end, 20, "both jobs to complete with the reloaded hook")
    out = attach("job('page-c1').retryCount, job('page-c1').version, #job('page-c2').assets\n")
    assert.are.equal("1\t2\t3\n", out)   -- V1 had committed files: the retry stores V2
    stop_daemon(pid)
  end)
end)

-- ---- in-process: the printer, the budget, cancel ---------------------------------------------------

describe("the pretty printer", function()
  it("sorts keys, limits depth, marks cycles, shows times relative and sizes in units", function()
    local now = 1700000000
    local t = {zeta = 1, alpha = {1, 2, {3, {4, {5}}}}, [10] = "ten", expiresAt = now + 492,
               createdAt = now - 180, fileSize = 3 * 1024 * 1024, bytes = 2048}
    t.self = t
    local out = pretty.format(t, {now = now})
    assert.matches("^{\n  %[10%] = \"ten\",\n  alpha = {1, 2, {3, {4, {...}}}},\n", out)
    assert.matches("bytes = 2.0 KiB %(2048%)", out)
    assert.matches("createdAt = 3m ago %(2023%-11%-14T22:10:20Z%)", out)
    assert.matches("expiresAt = in 8m12s", out)
    assert.matches("fileSize = 3.0 MiB %(3145728%)", out)
    assert.matches("self = <cycle>", out)
    assert.are.equal("{a = {x = 1}, b = {x = 1}}", pretty.format((function() local s = {x = 1} return {a = s, b = s} end)()))
    assert.are.equal('"a\\nb\\"c"', pretty.format('a\nb"c'))
    assert.are.equal("error(state): job is done", pretty.format(assetd.error("state", "job is done")))
    assert.are.equal("1h01m", pretty.duration(3660))
    assert.are.equal("2d03h", pretty.duration(2 * 86400 + 3 * 3600 + 59))
  end)
end)

describe("Runner:cancel_job", function()
  local s, dir, jobs, r
  local runner = require "assetd.runner"
  setup(function() s = sim.start() end)
  teardown(function() s:stop() end)
  before_each(function()
    s:reset()
    dir = sim.tmpdir()
    jobs = assert(assetd.jobdb.open(dir .. "/data"))
    r = runner.new{
      jobs = jobs, versions = assert(require("assetd.versions").open{root = dir .. "/root", jobs = jobs}),
      providers = {openai = require("assetd.providers.openai").new{base_url = s.openai, api_key = "k"}},
      alerts = {warn_before = 60}, retry = {base = 0.1, cap = 0.5}, poll = {interval = 0.2, max = 0.5},
    }
  end)
  after_each(function()
    jobs:close()
    sh("rm -rf " .. dir)
  end)

  it("stops a download in flight: the job fails 'canceled by operator', the transfer ends, retry resumes", function()
    s:video{id = "video_x", sizes = {video = 3000000, thumbnail = 1000, spritesheet = 1000}}
    s:fault{path = "video_x/content\\?variant=video", kind = "slow", rate = 300000, count = 1}
    assert(r:enqueue{notionPageId = "page-x", soraVideoId = "video_x", batchId = "xb"})
    wait_for(function() return io.open(dir .. "/root/xb/.video_x_V1.mp4.part") end, 5, "the transfer")
    assetd.sleep(0.3)
    local job = assert(r:cancel_job("page-x"))
    assert.are.equal("failed", job.status)
    assert.are.equal("canceled by operator", job.error)
    wait_for(function() return r.running[job.id] == nil end, 2, "the job's task to end")
    assetd.sleep(0.5)
    local f = assert(io.open(dir .. "/root/xb/.video_x_V1.mp4.part"))
    local kept = f:seek("end")
    f:close()
    assetd.sleep(0.5)
    f = assert(io.open(dir .. "/root/xb/.video_x_V1.mp4.part"))
    assert.are.equal(kept, f:seek("end"), "the transfer stopped")
    f:close()
    assert.are.equal("failed", jobs:get("page-x").status)
    assert.are.equal("canceled by operator", jobs:get("page-x").error)
    local _, err = r:cancel_job("page-x")
    assert.are.equal("state", err.category)
    local requests = #s:log()
    assetd.sleep(0.3)
    assert.are.equal(requests, #s:log(), "nothing more was asked for the canceled job")
    assert(r:retry_job("page-x"))
    wait_for(function() return jobs:get("page-x").status == "completed" end, 10, "the retried job")
  end)

  it("cancels a waiting job without spinning, and a retry can start it at once", function()
    s:video{id = "video_w", completes_in = 600, sizes = {video = 3000000, thumbnail = 100, spritesheet = 100}}
    assert(r:enqueue{notionPageId = "page-w", soraVideoId = "video_w", batchId = "wb"})
    assetd.sleep(0.3)
    local t0, id = os.clock(), jobs:get("page-w").id
    local first = r.running[id]
    assert(r:cancel_job("page-w"))
    assert.is_nil(r.running[id])
    s:video{id = "video_w", sizes = {video = 3000000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = "video_w/content\\?variant=video", kind = "slow", rate = 300000, count = 1}
    assert(r:retry_job("page-w"))                 -- failed -> waiting: a new run at once
    local second = r.running[id]
    assert.is_truthy(second)
    assert.are_not.equal(first, second)
    assetd.sleep(0.5)
    assert.is_true(os.clock() - t0 < 0.3, "the canceled task spun")
    assert.are.equal(second, r.running[id], "the old run cleared the new run's entry")
    assert(r:cancel_job("page-w"))
    wait_for(function() return second.task:status() == "done" end, 2, "the second run to end")
  end)

  it("a retry of a job canceled while waiting polls again, then downloads with its deadline", function()
    s:video{id = "video_v", completes_in = 1, sizes = {video = 3000, thumbnail = 100, spritesheet = 100}}
    assert(r:enqueue{notionPageId = "page-v", soraVideoId = "video_v", batchId = "vb"})
    assetd.sleep(0.2)
    assert(r:cancel_job("page-v"))
    local job = assert(r:retry_job("page-v"))
    assert.are.equal("waiting", job.status)
    wait_for(function() return jobs:get("page-v").status == "completed" end, 10, "the retried job")
    assert.is_truthy(jobs:get("page-v").expiresAt)
  end)

  it("a retry right after a cancel keeps the new run's progress", function()
    s:video{id = "video_p", sizes = {video = 3000000, thumbnail = 100, spritesheet = 100}}
    s:fault{path = "video_p/content\\?variant=video", kind = "slow", rate = 300000, count = 2}
    assert(r:enqueue{notionPageId = "page-p", soraVideoId = "video_p", batchId = "pb"})
    local id = jobs:get("page-p").id
    wait_for(function() return jobs:get("page-p").status == "downloading" end, 5, "the download")
    assert(r:cancel_job("page-p"))
    assert(r:retry_job("page-p"))                 -- in the same turn of the loop
    assetd.sleep(0.3)
    assert.is_truthy(r.progress[id], "the old run dropped the new run's progress")
    assert(r:cancel_job("page-p"))
  end)
end)

describe("assetd.repl.budget", function()
  local dir, pid

  -- A daemon whose REPL code may hold the loop 0.5 s; the output of piping IN to attach.
  local function attach_budget(input)
    write(dir .. "/in", input)
    return run(string.format("%s attach %s/sock < %s/in", bin, dir, dir))
  end

  before_each(function()
    dir = sim.tmpdir()
    local s = script(dir, "assetd.repl.budget(0.5)\nrequire('assetd.repl').listen(arg[1])\nassetd.timer(30, function() end)\n")
    pid = spawn(dir, "d", string.format("%s %s %s/sock --data %s/data", bin, s, dir, dir))
    wait_for(function() return exists(dir .. "/sock") end, 5, "the socket")
  end)
  after_each(function()
    sh("kill -TERM " .. pid)
    assert.are.equal(0, exit_status(dir, "d"))
    sh("rm -rf " .. dir)
  end)

  it("interrupts REPL code that holds the loop too long", function()
    local t0 = assetd.monotonic()
    local out, rc = attach_budget("while true do end\n'next'\n")
    assert.are.equal(0, rc)
    assert.matches("interrupted: held the event loop for over 0.5 s", out)
    assert.matches('"next"', out)
    assert.is_true(assetd.monotonic() - t0 < 3)
  end)

  it("counts from the chunk's start, not from the loop's clock, which a timer call updates", function()
    -- assetd.timer updates the loop's time: a budget measured against it was never spent.
    -- The loop ends by itself after 5 s so that a daemon that fails this still answers.
    local t0 = assetd.monotonic()
    local out, rc = attach_budget("local t = assetd.monotonic() while assetd.monotonic() - t < 5 do " ..
      "assetd.timer(60, function() end):cancel() for _ = 1, 1000 do end end print('ran ' .. 'out')\n'next'\n")
    assert.are.equal(0, rc)
    assert.matches("interrupted: held the event loop for over 0.5 s", out)
    assert.is_nil(out:find("ran out", 1, true))
    assert.matches('"next"', out)
    assert.is_true(assetd.monotonic() - t0 < 3)
  end)

  -- Each busy loop ends by itself after 5 s, so that a daemon that fails this still answers.
  local busy = "local t = assetd.monotonic() while assetd.monotonic() - t < 5 do end print('ran ' .. 'out')"
  for what, chunk in pairs{
    ["a plain coroutine the REPL code starts"] = "coroutine.wrap(function() " .. busy .. " end)()\n",
    ["a task the REPL code spawns"] = "assetd.spawn(function() " .. busy .. " end)\n",
    ["a task the REPL code spawns, when it runs again later"] = "assetd.spawn(function() assetd.sleep(0.2) " .. busy .. " end)\n" ..
      "assetd.sleep(0.4)\n",
  } do
    it("holds " .. what .. " to the same budget", function()
      local t0 = assetd.monotonic()
      local out, rc = attach_budget(chunk .. "'next'\n")
      assert.are.equal(0, rc)
      assert.is_nil(out:find("ran out", 1, true))
      assert.matches('"next"', out)
      assert.is_true(assetd.monotonic() - t0 < 3, out)
    end)
  end

  it("leaves a detached task (the runner's jobs) to run, whoever started it", function()
    local out, rc = attach_budget("assetd.spawn({detached = true}, function() local t = assetd.monotonic() " ..
      "while assetd.monotonic() - t < 1 do end print('ran ' .. 'out') end)\n'next'\n")
    assert.are.equal(0, rc)
    assert.matches('^ran out\n.*"next"\n$', out)
  end)
end)
