-- Prometheus text as a real parser reads it: Debian's python3-prometheus-client (under
-- Debian's python, not a pyenv one on PATH), for the /metrics specs.
local cjson = require "cjson"

local M = {}

-- Every family of TEXT as {type=, samples = {{name, labels, value}}} by name; DIR holds the
-- text for the parser. Raises with the parser's words when it cannot read it.
function M.parse(dir, text)
  local f = assert(io.open(dir .. "/metrics.txt", "w"))
  f:write(text)
  f:close()
  local p = io.popen(string.format([[/usr/bin/python3 -c "
import json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open('%s/metrics.txt').read()):
    out[fam.name] = {'type': fam.type, 'samples': [[s.name, s.labels, s.value] for s in fam.samples]}
print(json.dumps(out))" 2>&1]], dir))
  local out = p:read("a")
  p:close()
  local ok, fams = pcall(cjson.decode, out)
  assert(ok and type(fams) == "table", "prometheus_client could not parse /metrics: " .. out)
  return fams
end

return M
