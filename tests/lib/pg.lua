-- The cluster specs' database: Debian's PostgreSQL 15 started by the spec itself in a fresh
-- directory (initdb, pg_ctl), listening only on a Unix socket there, never the system service.
-- PostgreSQL refuses to run as root, so under root it runs as Debian's `postgres` account.
local sim = require "sim"

local pg = {}
pg.__index = pg

pg.BIN = os.getenv("ASSETD_PG_BIN") or "/usr/lib/postgresql/15/bin"
pg.INSTALL = "apt-get install postgresql (scripts/install-deps does)"

local function must(self, cmd)
  local out, rc = sim.run(self:as_owner(cmd))
  assert(rc == 0, cmd .. " failed (" .. tostring(rc) .. "): " .. out)
  return out
end

-- CMD run by the cluster's owner, in its directory.
function pg:as_owner(cmd)
  local c = "cd " .. self.dir .. " && " .. cmd
  if self.user then return "runuser -u " .. self.user .. " -- sh -c " .. sim.shq(c) end
  return c
end

-- pg.start{}: a new cluster; self.url is its libpq URL (superuser `assetd`, database `assetd`).
function pg.start()
  assert(io.open(pg.BIN .. "/initdb"), "PostgreSQL is not installed: run `" .. pg.INSTALL .. "`")
  local self = setmetatable({dir = sim.tmpdir()}, pg)
  if sim.run("id -u"):match("^0") then
    self.user = "postgres"
    os.execute("chown postgres " .. self.dir)
  end
  must(self, pg.BIN .. "/initdb -D data -U assetd --auth=trust -E UTF8 --no-sync > initdb.out")
  self:up()
  must(self, pg.BIN .. "/createdb -h " .. self.dir .. " -U assetd assetd")
  self.url = "postgresql:///assetd?host=" .. self.dir .. "&user=assetd"
  return self
end

-- Start (again) on the same socket; fsync off: the specs test assetd, not the disk.
function pg:up()
  must(self, string.format("%s/pg_ctl -D data -l server.log -w -t 60 -o %s start > /dev/null",
    pg.BIN, sim.shq("-k " .. self.dir .. " -c listen_addresses= -c fsync=off -c max_connections=50")))
end

-- MODE: "fast" (clients told), "immediate" (as a crash would).
function pg:down(mode)
  must(self, pg.BIN .. "/pg_ctl -D data -w -m " .. (mode or "fast") .. " stop > /dev/null")
end

-- One SQL statement through psql; its output (unaligned, tuples only).
function pg:psql(sql)
  return must(self, "psql -X -q -A -t -h " .. self.dir .. " -U assetd -d assetd -c " .. sim.shq(sql))
end

function pg:stop()
  sim.run(self:as_owner(pg.BIN .. "/pg_ctl -D data -w -m immediate stop"))
  os.execute("rm -rf " .. self.dir)
end

return pg
