-- The Lua modules built into the binary (issue 15 item 11): a copy of the binary alone checks
-- and runs pipelines and serves the dashboard with no Lua tree anywhere, and a tree on disk
-- (ASSETD_LUA_PATH, or lua/ beside the binary as in the checkout) wins with no rebuild.
local sim = require "sim"
local daemon = require "daemon"

local bin = os.getenv("ASSETD_BIN") or "./assetd"
local shq = sim.shq

-- A directory holding only a copy of the binary (the checkout's ./assetd has lua/ beside it).
local function lone_binary()
  local dir = sim.tmpdir()
  assert(os.execute("cp " .. shq(bin) .. " " .. dir .. "/assetd"))
  return dir
end

local function write(path, s)
  os.execute("mkdir -p " .. shq(path:match("^(.*)/")))
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- The checkout's pipeline module, with the line --check ends on changed.
local function edited_pipeline_module()
  local src = assert(sim.read("lua/assetd/pipeline.lua"))
  local edited, n = src:gsub('print%("pipeline OK"%)', 'print("pipeline OK, from the tree on disk")')
  assert(n == 1, "lua/assetd/pipeline.lua no longer prints \"pipeline OK\"")
  return edited
end

-- Run the binary in DIR from DIR, with ENV; ASSETD_LUA_PATH unset unless ENV sets it.
local function run(dir, args, env)
  return sim.run(string.format("cd %s && env -u ASSETD_LUA_PATH %s ./assetd %s", dir, env or "", args))
end

describe("the built-in Lua modules", function()
  it("hold every file of lua/, byte for byte, and load from the binary when no tree is given", function()
    local files = {}
    local p = io.popen("cd lua && find . -type f \\( -name '*.lua' -o -name '*.html' \\) | sed 's|^\\./||'")
    for rel in p:lines() do files[#files + 1] = rel end
    p:close()
    assert.is_true(#files > 20)
    local list = sim.script("return {" .. table.concat((function()
      local q = {}
      for i, f in ipairs(files) do q[i] = string.format("%q", f) end
      return q
    end)(), ",") .. "}")
    -- with ASSETD_LUA_PATH set but empty, even the checkout's binary uses its built-in copy
    local script = sim.script([[
      local files = dofile(]] .. string.format("%q", list) .. [[)
      local res = require "assetd.resources"
      for _, rel in ipairs(files) do
        local f = assert(io.open("lua/" .. rel, "rb"))
        local disk = f:read("a")
        f:close()
        assert(res.read(rel) == disk, rel .. " differs from its built-in copy")
        local name = rel:match("^(.*)%.lua$")
        if name then    -- the searcher itself, as require would call it, cached or not
          local loader, from = package.searchers[2]((name:gsub("/", ".")))
          assert(type(loader) == "function" and from == "lua/" .. rel, rel .. " found as " .. tostring(from))
        end
      end
      assert(assetd.luadir == nil, "luadir " .. tostring(assetd.luadir))
      print("checked " .. #files)
    ]])
    local out, rc = sim.run("ASSETD_LUA_PATH= " .. bin .. " " .. script)
    os.remove(list)
    os.remove(script)
    assert.equals(0, rc, out)
    assert.matches("checked " .. #files .. "\n", out)
  end)

  it("let a copy of the binary alone check a pipeline", function()
    local dir = lone_binary()
    write(dir .. "/p.lua", 'return {naming = require("assetd.naming").default}\n')
    local out, rc = run(dir, "--check p.lua")
    os.execute("rm -rf " .. dir)
    assert.equals(0, rc, out)
    assert.matches("naming%s+custom function", out)
    assert.matches("pipeline OK\n", out)
  end)

  it("let a copy of the binary alone run the demo pipeline against the simulator", function()
    local dir = lone_binary()
    local root = sim.tmpdir()
    local out, rc = sim.run("ASSETD_BIN=" .. dir .. "/assetd DEMO_ROOT=" .. root ..
                            " DEMO_VIDEOS=2 DEMO_SPREAD=1 timeout 120 env -u ASSETD_LUA_PATH scripts/run-demo")
    local stored = sim.read(root .. "/demo/video_demo_001_V1.mp4")
    os.execute("rm -rf " .. dir .. " " .. root)
    assert.equals(0, rc, out)
    assert.matches("stored 6 files %([%d.]+ MiB%) for 2 videos; 2 Notion pages updated; 0 failed, 0 expired", out)
    assert.is_not_nil(stored)
  end)

  it("let a copy of the binary alone serve the dashboard page", function()
    local dir = lone_binary()
    local d = daemon.start{pipeline = "return {storage = {root = '{DIR}/root'}}", bin = dir .. "/assetd",
                           env = {ASSETD_LUA_PATH = ""}}
    local status, body = d:request("GET", "/")
    d:stop_clean()
    os.execute("rm -rf " .. dir)
    assert.equals(200, status)
    assert.equals(sim.read("lua/assetd/dashboard.html"), body)
  end)

  it("give way to ASSETD_LUA_PATH, module by module, with no rebuild", function()
    local dir = lone_binary()
    local tree = sim.tmpdir()
    write(tree .. "/assetd/pipeline.lua", edited_pipeline_module())    -- only this one module
    write(dir .. "/p.lua", "return {}\n")
    local out, rc = run(dir, "--check p.lua", "ASSETD_LUA_PATH=" .. shq(tree))
    local plain = run(dir, "--check p.lua")
    os.execute("rm -rf " .. dir .. " " .. tree)
    assert.equals(0, rc, out)
    assert.matches("pipeline OK, from the tree on disk", out)
    assert.not_matches("from the tree on disk", plain)
  end)

  it("give way to a lua/ tree beside the binary, as in the checkout", function()
    local dir = lone_binary()
    assert(os.execute("cp -r lua " .. dir .. "/lua"))
    write(dir .. "/lua/assetd/pipeline.lua", edited_pipeline_module())
    write(dir .. "/p.lua", "return {}\n")
    local out, rc = run(dir, "--check p.lua")
    os.execute("rm -rf " .. dir)
    assert.equals(0, rc, out)
    assert.matches("pipeline OK, from the tree on disk", out)
  end)

  it("refuse an ASSETD_LUA_PATH that is not a directory, naming it", function()
    local dir = lone_binary()
    write(dir .. "/p.lua", "return {}\n")
    local out, rc = run(dir, "--check p.lua", "ASSETD_LUA_PATH=/nonexistent/lua")
    os.execute("rm -rf " .. dir)
    assert.equals(1, rc)
    assert.matches("ASSETD_LUA_PATH=/nonexistent/lua is not a directory", out)
  end)
end)
