-- luacheck (Debian's lua-check) over the Lua modules: `make lint`, part of `make test`.
-- Methods may leave `self` unused; `assetd` is the runtime's global.
std = "lua54"
globals = {"assetd"}
read_globals = {"arg"}
self = false
max_line_length = false
