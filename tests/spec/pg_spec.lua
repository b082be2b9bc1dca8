-- assetd.pg (issue 18's mechanism): libpq non-blocking in pipeline mode on the loop, against a
-- real PostgreSQL started for the spec (tests/lib/pg.lua) on a Unix socket.
local pglib = require "pg"
local sim = require "sim"

describe("assetd.pg", function()
  local srv
  setup(function() srv = pglib.start() end)
  teardown(function() if srv then srv:stop() end end)

  it("answers queries with typed rows, NULLs absent, and counts what a write touched", function()
    local db = assert(assetd.pg.connect(srv.url))
    assert.are.equal("idle", db:status())
    local rows = assert(db:query("SELECT 1::int8 AS i, 2.5::float8 AS f, true AS b, 'x'::text AS s, NULL::text AS n, $1::text AS p", "a'b"))
    assert.are.same({{i = 1, f = 2.5, b = true, s = "x", p = "a'b"}}, {rows[1]})
    assert.is_true(math.type(rows[1].i) == "integer")
    assert.are.equal("ready", db:status())
    assert(db:query("CREATE TABLE t(id int8 PRIMARY KEY, v text)"))
    local ins = assert(db:query("INSERT INTO t VALUES ($1, $2), ($3, NULL)", 1, "one", 2))
    assert.are.equal(2, ins.affected)
    local all = assert(db:query("SELECT id, v FROM t ORDER BY id"))
    assert.are.same({{id = 1, v = "one"}, {id = 2}}, {all[1], all[2]})
    db:close()
  end)

  it("runs a batch as one transaction: a failing statement undoes the ones before it", function()
    local db = assert(assetd.pg.connect(srv.url))
    assert(db:query("CREATE TABLE b(id int8 PRIMARY KEY)"))
    local res, err = db:batch({"INSERT INTO b VALUES ($1)", 1}, {"INSERT INTO b VALUES ($1)", 1})
    assert.is_nil(res)
    assert.are.equal("database", err.category)
    assert.are.equal("23505", err.sqlstate)             -- unique_violation
    assert.is_truthy(tostring(err):find("duplicate key", 1, true), tostring(err))
    assert.are.equal(0, #assert(db:query("SELECT * FROM b")))
    local ok = assert(db:batch({"INSERT INTO b VALUES ($1)", 1}, {"SELECT count(*) AS n FROM b"}))
    assert.are.equal(1, ok[2][1].n)
    db:close()
  end)

  it("keeps many tasks' requests in flight on one connection, each answered in its own order", function()
    local db = assert(assetd.pg.connect(srv.url))
    local got, tasks = {}, {}
    for i = 1, 200 do
      tasks[i] = assetd.spawn(function()
        local r = assert(db:query("SELECT $1::int8 * 2 AS v, pg_sleep(0.001) IS NULL AS s", i))
        got[i] = r[1].v
      end)
    end
    sim.eventually(function() for i = 1, 200 do if got[i] == nil then return false end end return true end, 20, "200 answers")
    for i = 1, 200 do assert.are.equal(i * 2, got[i]) end
    db:close()
  end)

  it("does not hold the loop while the database is slow", function()
    local db = assert(assetd.pg.connect(srv.url))
    local ticks, done = 0, false
    assetd.spawn(function() assert(db:query("SELECT pg_sleep(1)")); done = true end)
    local t0 = assetd.monotonic()
    while not done do assetd.sleep(0.05); ticks = ticks + 1 end
    assert.is_true(assetd.monotonic() - t0 >= 0.9)
    assert.is_true(ticks >= 10, "the loop ran only " .. ticks .. " times during a 1 s query")
    db:close()
  end)

  it("delivers notifications, and listens again after a reconnect", function()
    local seen = {}
    local db = assert(assetd.pg.connect(srv.url, {on_notify = function(ch, payload) seen[#seen + 1] = ch .. ":" .. payload end}))
    db:listen("jobs_changed")
    assert(db:query("SELECT 1"))
    srv:psql("NOTIFY jobs_changed, 'one'")
    sim.eventually(function() return seen[1] end, 5, "a notification")
    assert.are.equal("jobs_changed:one", seen[1])
    -- the server goes away and comes back: a request fails naming the loss, the next reconnects
    srv:down("fast")
    sim.eventually(function() return db:status() == "down" end, 5, "the loss noticed")
    local r, err = db:query("SELECT 1")
    assert.is_nil(r)
    assert.are.equal("database", err.category)
    srv:up()
    assert(sim.eventually(function() return db:query("SELECT 1") end, 10, "a reconnect"))
    srv:psql("NOTIFY jobs_changed, 'two'")
    sim.eventually(function() return seen[2] end, 5, "a notification after the reconnect")
    assert.are.equal("jobs_changed:two", seen[2])
    db:close()
  end)

  it("names a database that is not there, and a URL that cannot parse, without the password", function()
    local db = assert(assetd.pg.connect("postgresql://assetd:hunter22@/assetd?host=" .. srv.dir .. "/nowhere", {connect_timeout = 2}))
    local r, err = db:query("SELECT 1")
    assert.is_nil(r)
    assert.are.equal("database", err.category)
    assert.is_falsy(tostring(err):find("hunter22", 1, true))
    local _, st = db:status()
    assert.is_truthy(st:find("nowhere", 1, true), st)
    db:close()
    local bad, perr = assetd.pg.connect("postgresql://u:hunter22@host/db?nosuchoption=1")
    assert.is_nil(bad)
    assert.are.equal("config", perr.category)
    assert.is_truthy(tostring(perr):find("nosuchoption", 1, true), tostring(perr))
    assert.is_falsy(tostring(perr):find("hunter22", 1, true))
    -- a password given as a keyword is redacted too, quoted or not, in a conninfo or a URL query
    assert.are.equal("host=/s password=[redacted] user=u", assetd.redact("host=/s password=hunter22 user=u"))
    assert.are.equal("password=[redacted] x", assetd.redact("password='hunt er\\'22' x"))
    assert.are.equal("postgresql:///db?host=/s&password=[redacted]&user=u", assetd.redact("postgresql:///db?host=/s&password=hunter22&user=u"))
  end)

  it("refuses parameters it cannot send, and a query outside a task", function()
    local db = assert(assetd.pg.connect(srv.url))
    assert.has_error(function() db:query("SELECT $1", {}) end)
    assert.has_error(function() db:query("SELECT $1", "a\0b") end)
    local _, msg = pcall(function()
      local co = coroutine.wrap(function() return db:query("SELECT 1") end)
      return co()
    end)
    assert.is_truthy(msg)
    db:close()
  end)
end)
