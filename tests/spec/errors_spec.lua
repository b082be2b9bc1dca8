-- One table of error categories (lua/assetd/errors.lua): every category the sources give an
-- error value is in it, every entry is used, and docs/architecture.md lists them all.
local errors = require "assetd.errors"
local sim = require "sim"

-- category -> first place it is given, from the C and Lua sources
local function used()
  local out = {}
  local function add(cat, where) out[cat] = out[cat] or where end
  for path in sim.run("ls src/*.c lua/assetd/*.lua lua/assetd/providers/*.lua"):gmatch("%S+") do
    local text = sim.read(path)
    for cat in text:gmatch('rt_fail%(L, "([%w_]+)"') do add(cat, path) end
    for cat in text:gmatch('rt_push_error%(L, "([%w_]+)"') do add(cat, path) end
    for cat in text:gmatch('[^%w_]fail%(x, "([%w_]+)"') do add(cat, path) end
    for cat in text:gmatch('fetch_fail%(x, "([%w_]+)"') do add(cat, path) end
    for cat in text:gmatch('assetd%.error%("([%w_]+)"') do add(cat, path) end
    local list = text:match("static const char %*const cat%[%] = (%b{})")      -- l_jobdb.c's codes
    if list then for cat in list:gmatch('"([%w_]+)"') do if cat ~= "ok" then add(cat, path) end end end
  end
  return out
end

describe("error categories", function()
  it("every category given in the sources is in errors.categories", function()
    local u = used()
    assert.is_not_nil(u.network, "the scan found nothing: its patterns are out of date")
    for cat, where in pairs(u) do
      assert.is_not_nil(errors.categories[cat], cat .. " (" .. where .. ") is not in lua/assetd/errors.lua")
    end
  end)

  it("every entry of errors.categories is given somewhere, and documented", function()
    local u = used()
    local doc = sim.read("docs/architecture.md")
    for cat, c in pairs(errors.categories) do
      assert.is_not_nil(u[cat], cat .. " is in errors.lua but no source gives it")
      assert.truthy(doc:find("| `" .. cat .. "` |", 1, true), cat .. " is not in docs/architecture.md's table")
      assert.is_string(c.what)
    end
  end)

  it("a final category fails a transfer at once; the others are retried", function()
    local retry = require "assetd.retry"
    for cat, c in pairs(errors.categories) do
      local d = retry.decide(setmetatable({category = cat}, {__tostring = function() return cat end}), 1, nil, 0)
      if c.retry == false then assert.are.equal("fail", d.action, cat)
      elseif c.retry == true then assert.are.equal("retry", d.action, cat) end
    end
  end)
end)
