-- Time parsing: API request times and provider times.
local timefmt = require "assetd.timefmt"

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
