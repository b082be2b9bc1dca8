-- Time parsing (API request times, provider times) and the REPL's one-line cut of text that
-- comes from outside.
local timefmt = require "assetd.timefmt"
local pretty = require "assetd.pretty"

describe("timefmt.parse", function()
  it("reads ISO 8601 with a zone, fractions and numbers of unix seconds", function()
    assert.are.equal(1772964000, timefmt.parse("2026-03-08T10:00:00Z"))
    assert.are.equal(1772964000, timefmt.parse("2026-03-08T12:00:00+02:00"))
    assert.are.equal(1772964000.25, timefmt.parse("2026-03-08T10:00:00.25Z"))
    assert.are.equal(951782400, timefmt.parse("2000-02-29T00:00:00Z"))      -- 2000 is a leap year
    assert.are.equal(1772964000, timefmt.parse(1772964000))
  end)

  it("refuses dates that do not exist, zones that cannot be, and times before 1970", function()
    for _, bad in ipairs{"2026-02-29T00:00:00Z", "2026-02-30T10:00:00Z", "2026-04-31T00:00:00Z",
                         "1900-02-29T00:00:00Z", "2026-03-08T10:00:00+99:99", "0001-01-01T00:00:00Z",
                         "1969-12-31T23:59:59Z", "2026-13-01T00:00:00Z", "yesterday", 0, -5, 0 / 0} do
      assert.is_nil(timefmt.parse(bad), tostring(bad))
    end
  end)
end)

describe("pretty.cut", function()
  it("keeps one line and no control characters, so an upstream's text cannot drive a terminal", function()
    assert.are.equal("denied ?]0;PWNED??[31mred", pretty.cut("denied \27]0;PWNED\7\27[31mred\nsecond line", 80))
    assert.are.equal("abcd~", pretty.cut("abcdefgh", 5))
  end)
end)
