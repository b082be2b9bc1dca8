-- The durable job store as Lua sees it, the same specs against both backends: SQLite in a data
-- directory (assetd.jobdb) and PostgreSQL (assetd.pgstore, on a server started for the spec).
local pglib = require "pg"
local pgstore = require "assetd.pgstore"
local sim = require "sim"

local backends = {
  {name = "SQLite",
   open = function(ctx) ctx.dir = ctx.dir or sim.tmpdir(); return assert(assetd.jobdb.open(ctx.dir)) end,
   clean = function(ctx) os.execute("rm -rf " .. ctx.dir); ctx.dir = nil end},
  {name = "PostgreSQL",
   start = function(ctx) ctx.srv = pglib.start() end,
   stop = function(ctx) ctx.srv:stop() end,
   open = function(ctx) return assert(pgstore.open(ctx.srv.url)) end,
   clean = function(ctx) ctx.srv:psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public") end},
}

for _, backend in ipairs(backends) do
describe("the job store on " .. backend.name, function()
  local ctx, store = {}, nil
  setup(function() if backend.start then backend.start(ctx) end end)
  teardown(function() if backend.stop then backend.stop(ctx) end end)
  before_each(function() store = backend.open(ctx) end)
  after_each(function()
    store:close()
    backend.clean(ctx)
  end)

  it("creates jobs idempotently on (notionPageId, soraVideoId)", function()
    local j, created = assert(store:create{notionPageId = "page-1", soraVideoId = "video_1", batchId = "b1"})
    assert.is_true(created)
    assert.are.equal("waiting", j.status)
    assert.are.equal("openai", j.provider)
    local again, created2 = store:create{notionPageId = "page-1", soraVideoId = "video_1", batchId = "b1"}
    assert.is_false(created2)
    assert.are.equal(j.id, again.id)
    local k = store:create{notionPageId = "page-2", soraVideoId = "video_2", batchId = "b1", completedAt = 100}
    assert.are.equal("pending", k.status)
    assert.are.equal(100, k.completedAt)
  end)

  it("refuses hostile ids with an error naming the field", function()
    for _, bad in ipairs{"../x", "a/b", "a\0b", string.rep("a", 129), ""} do
      assert.has_error(function() store:create{notionPageId = "p", soraVideoId = bad, batchId = "b"} end,
        "jobs: field 'soraVideoId' must match ^[A-Za-z0-9_-]{1,128}$")
    end
    assert.has_error(function() store:create{notionPageId = "p", soraVideoId = "v", batchId = "../etc"} end)
  end)

  it("enforces the state machine and records the history", function()
    local j = store:create{notionPageId = "p", soraVideoId = "v", batchId = "b"}
    local r, err = store:transition(j, "completed")
    assert.is_nil(r)
    assert.are.equal("state", err.category)
    assert.matches("cannot go from waiting to completed", tostring(err))
    j = assert(store:transition(j, "pending", {expiresAt = 5000}))
    j = assert(store:transition(j, "downloading", {version = 1}))
    j = assert(store:transition(j, "failed", {error = "HTTP 403: bad key", retryCount = 2}))
    assert.are.equal("HTTP 403: bad key", j.error)
    assert.are.equal(2, j.retryCount)
    assert.are.equal(5000, j.expiresAt)
    assert.are.equal(1, j.version)
    j = assert(store:transition(j, "pending", {error = false}))
    assert.is_nil(j.error)
    local kinds = {}
    for _, e in ipairs(store:events(j)) do kinds[#kinds + 1] = e.kind .. ":" .. (e.detail or "") end
    assert.are.same({"created:waiting", "state:waiting -> pending", "state:pending -> downloading",
                     "state:downloading -> failed", "state:failed -> pending"}, kinds)
  end)

  it("lists with keyset pagination and filters, and summarises", function()
    local now = assetd.now()
    for i = 1, 7 do
      store:create{notionPageId = "p" .. i, soraVideoId = "v", batchId = i % 2 == 0 and "even" or "odd",
                   completedAt = now, expiresAt = now + (i <= 2 and 120 or 7200)}
    end
    local page, cursor = store:list{batchId = "odd", limit = 3}
    assert.are.equal(3, #page)
    assert.is_not_nil(cursor)
    local rest, cursor2 = store:list{batchId = "odd", limit = 3, cursor = cursor}
    assert.are.equal(1, #rest)
    assert.is_nil(cursor2)
    assert.is_true(rest[1].id > page[3].id)
    local s = store:summary(now, 600)
    assert.are.equal(7, s.pending)
    assert.are.equal(0, s.completed)
    assert.are.equal(2, s.approachingExpiration)
  end)

  it("recovers jobs left downloading, keeping them across a reopen", function()
    local j = store:create{notionPageId = "p", soraVideoId = "v", batchId = "b", completedAt = 1}
    store:transition(j, "downloading")
    store:close()
    store = backend.open(ctx)
    assert.are.equal(1, store:recover())
    assert.are.equal("pending", store:get("p").status)
    assert.are.equal(j.id, store:get(j.id).id)
    local none, err = store:get("missing")
    assert.is_nil(none)
    assert.are.equal("not_found", err.category)
  end)

  it("records a job's stored assets", function()
    local j = store:create{notionPageId = "p", soraVideoId = "v", batchId = "b", completedAt = 1}
    assert(store:add_asset(j, {variant = "video", filePath = "/r/b/v_V1.mp4", fileName = "v_V1.mp4",
                               fileSize = 1234, sha256 = string.rep("a", 64), version = 1}))
    assert(store:add_asset(j, {variant = "thumbnail", filePath = "/r/b/v_V1_thumbnail.webp",
                               fileName = "v_V1_thumbnail.webp", fileSize = 10, sha256 = string.rep("b", 64), version = 1}))
    local a = store:assets(j)
    assert.are.equal(2, #a)
    assert.are.equal("video", a[1].type)
    assert.are.equal(1234, a[1].fileSize)
    assert.are.equal("v_V1_thumbnail.webp", a[2].fileName)
    assert.is_true(a[1].downloadedAt > 0)
    assert.has_error(function() store:add_asset(j, {variant = "video"}) end)
    local r, err = store:add_asset(99999, {variant = "video", filePath = "x", fileName = "x", fileSize = 1,
                                           sha256 = "x", version = 1})
    assert.is_nil(r)
    assert.is_not_nil(err)
  end)

  it("completes a job with its assets in one write, or records none of them", function()
    local function asset(variant, version)
      return {variant = variant, filePath = "/r/b/" .. variant, fileName = variant, fileSize = 7,
              sha256 = string.rep("c", 64), version = version}
    end
    local j = store:create{notionPageId = "pc", soraVideoId = "v", batchId = "b", status = "pending"}
    j = assert(store:transition(j, "downloading", {version = 1, error = "an earlier try"}))
    assert(store:add_asset(j, asset("video", 1)))              -- recorded before a crash, say
    local done = assert(store:complete_with_assets(j, {asset("video", 1), asset("thumbnail", 1)},
                                                   {error = false, data = '{"notion":"pending"}'}))
    assert.are.equal("completed", done.status)
    assert.is_nil(done.error)
    assert.are.equal('{"notion":"pending"}', done.data)
    local a = store:assets(j)
    assert.are.equal(2, #a)                                    -- the video once
    assert.are.equal("thumbnail", a[2].type)
    local kinds = {}
    for _, e in ipairs(store:events(j)) do kinds[#kinds + 1] = e.detail end
    assert.are.equal("downloading -> completed", kinds[#kinds])
    -- a refused move (the job failed meanwhile: canceled) records no asset either
    local k = store:create{notionPageId = "pk", soraVideoId = "v", batchId = "b", status = "pending"}
    k = assert(store:transition(k, "failed", {error = "canceled"}))
    local r, err = store:complete_with_assets(k, {asset("video", 1)}, {error = false})
    assert.is_nil(r)
    assert.are.equal("state", err.category)
    assert.are.equal(0, #store:assets(k))
    assert.are.equal("failed", store:get(k.id).status)
  end)

  it("remembers webhook ids for the tolerance window, keeps versions and answers the probe", function()
    assert.is_false(store:webhook_seen("wh_1", 1000, 300))
    assert.is_true(store:webhook_seen("wh_1", 1100, 300))
    assert.is_false(store:webhook_seen("wh_1", 1500, 300))     -- forgotten after the window
    assert.are.equal(0, store:max_version("b", "v"))
    assert.are.equal(3, store:claim_version("b", "v", 3))     -- a floor from the disk or bucket
    assert.are.equal(4, store:claim_version("b", "v", 2))     -- never below what was handed out
    assert.are.equal(5, store:claim_version("b", "v", 1))
    assert.are.equal(1, store:claim_version("b", "w", 1))
    assert.are.equal(5, store:max_version("b", "v"))
    assert.is_true(store:probe())
  end)

  it("lists the jobs whose deadline comes within a window, soonest first", function()
    local now = assetd.now()
    for i, left in ipairs{900, 60, 300, 7200} do
      store:create{notionPageId = "p" .. i, soraVideoId = "v", batchId = "b", completedAt = now, expiresAt = now + left}
    end
    local ids = {}
    for _, j in ipairs(store:expiring(now, 1000, 10)) do ids[#ids + 1] = j.notionPageId end
    assert.are.same({"p2", "p3", "p1"}, ids)
  end)
end)
end

describe("the SQLite job store", function()
  it("gives a clear error for an unusable data directory", function()
    local s, err = assetd.jobdb.open("/proc/nope/dir")
    assert.is_nil(s)
    assert.matches("data directory", tostring(err))
  end)
end)

describe("the PostgreSQL job store", function()
  local srv
  setup(function() srv = pglib.start() end)
  teardown(function() srv:stop() end)

  it("migrates once when several daemons start at the same moment", function()
    local stores, errs = {}, {}
    for i = 1, 4 do
      assetd.spawn(function() stores[i], errs[i] = pgstore.open(srv.url) end)
    end
    sim.eventually(function() return #stores + #errs == 4 end, 20, "four opens")
    for i = 1, 4 do assert(stores[i], tostring(errs[i])) end
    assert.are.equal(tostring(pgstore.SCHEMA_VERSION), srv:psql("SELECT count(*) FROM assetd_schema"):match("%d+"))
    for i = 1, 4 do stores[i]:close() end
  end)

  it("hands every version out once when two daemons reserve at the same moment", function()
    local a, b = assert(pgstore.open(srv.url)), assert(pgstore.open(srv.url))
    local got, errs = {}, {}
    for i = 1, 40 do
      assetd.spawn(function()
        local v, err = (i % 2 == 0 and a or b):claim_version("race", "vid", 1)
        if v then got[#got + 1] = v else errs[#errs + 1] = tostring(err) end
      end)
    end
    sim.eventually(function() return #got + #errs == 40 end, 20, "forty reservations")
    assert.are.same({}, errs)
    table.sort(got)
    for i = 1, 40 do assert.are.equal(i, got[i]) end   -- 1..40, none twice, none skipped
    assert.are.equal(40, a:max_version("race", "vid"))
    a:close(); b:close()
  end)

  it("refuses a database whose schema is newer than this assetd, naming both versions", function()
    srv:psql("INSERT INTO assetd_schema(version) VALUES (" .. (pgstore.SCHEMA_VERSION + 1) .. ")")
    local s, err = pgstore.open(srv.url)
    assert.is_nil(s)
    assert.are.equal("database", err.category)
    assert.matches("schema " .. (pgstore.SCHEMA_VERSION + 1) .. " is newer than this assetd %(" .. pgstore.SCHEMA_VERSION .. "%)", tostring(err))
    srv:psql("DELETE FROM assetd_schema WHERE version > " .. pgstore.SCHEMA_VERSION)
  end)

  it("fences off a daemon whose lease lapsed: its writes fail with 'lease' and its renewal reports the job lost", function()
    local a, b = assert(pgstore.open(srv.url)), assert(pgstore.open(srv.url))
    assert(a:join("a", 1))
    assert(b:join("b", 1))
    local job = assert(a:create{notionPageId = "fence", soraVideoId = "v", batchId = "b", completedAt = 1})
    local job2 = assert(a:create{notionPageId = "fence2", soraVideoId = "v", batchId = "b", completedAt = 1})
    local claimed = assert(a:claim_one(job.id))
    assert.are.equal(job.id, claimed.id)
    assert(a:claim_one(job2.id))
    assert.is_nil(b:claim_one(job.id))                 -- held: nobody else takes it
    assert.are.same({}, assert(a:renew()))
    assert(a:transition(job, "downloading"))
    assetd.sleep(1.3)                                  -- a stalls past its lease; b rescues the job
    local taken = assert(b:claim(10))
    assert.are.equal(2, #taken)
    assert.are.equal("a", taken[1].rescuedFrom)
    assert.are.equal("pending", b:get(job.id).status)  -- the download starts again on b
    local r, err = a:transition(job, "completed")
    assert.is_nil(r)
    assert.are.equal("lease", err.category)
    assert.matches("held by b", tostring(err))
    assert.are.equal("pending", b:get(job.id).status)  -- a's write changed nothing
    assert.are.same({job2.id}, assert(a:renew()))     -- the other one, found lost at renewal
    a.held[job.id] = claimed.epoch                     -- a write a stale run still makes with its old claim
    local added, aerr = a:add_asset(job, {variant = "video", filePath = "/x", fileName = "x", fileSize = 1, sha256 = "ab", version = 1})
    assert.is_nil(added)
    assert.are.equal("lease", aerr.category)
    assert.are.same({}, b:assets(job))
    assert(b:transition(job, "downloading"))
    assert.is_true(b:claim_alert(job, "completed"))
    assert.is_false(a:claim_alert(job, "completed"))   -- once per job version, whoever asks
    a:close()
    b:close()
  end)

  it("answers a store that cannot be reached with a database error, not a hang", function()
    local s, err = pgstore.open("postgresql:///assetd?host=" .. srv.dir .. "/gone", {connect_timeout = 2})
    assert.is_nil(s)
    assert.are.equal("database", err.category)
  end)
end)
