-- The REPL's one-line cut of text that comes from outside.
local pretty = require "assetd.pretty"

describe("pretty.cut", function()
  it("keeps one line and no control characters, so an upstream's text cannot drive a terminal", function()
    assert.are.equal("denied ?]0;PWNED??[31mred", pretty.cut("denied \27]0;PWNED\7\27[31mred\nsecond line", 80))
    assert.are.equal("abcd~", pretty.cut("abcdefgh", 5))
  end)
end)
