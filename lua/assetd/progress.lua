-- Live progress on the terminal: a bar per active download and a summary line, redrawn in
-- place on a terminal and printed every few seconds otherwise. Optionally stops the daemon
-- once every job is finished and synced, with a final report (the demo uses this).
local assetd = require "assetd"

local M = {}

local function mib(n) return string.format("%.1f", (n or 0) / 1048576) end

local function bar(bytes, total, width)
  local f = total > 0 and math.min(1, bytes / total) or 0
  local n = math.floor(f * width + 0.5)
  return string.rep("#", n) .. string.rep("-", width - n), math.floor(f * 100)
end

local function summary_line(s, synced)
  return string.format("waiting %d  pending %d  downloading %d  completed %d (Notion synced %d)  failed %d  expired %d",
    s.waiting, s.pending, s.downloading, s.completed, synced, s.failed, s.expired)
end

-- Completed jobs whose Notion step is done, and whether any is still to sync.
local function notion_state(r)
  local synced, unsynced, cursor = 0, 0, nil
  repeat
    local page
    page, cursor = r.jobs:list{status = "completed", limit = 500, cursor = cursor}
    for _, j in ipairs(page) do
      local n = r:data(j).notion
      if n == "synced" then synced = synced + 1 elseif n == "pending" then unsynced = unsynced + 1 end
    end
  until not cursor
  return synced, unsynced
end

function M.render(r)
  local lines = {}
  local active = {}
  for _, p in pairs(r.progress) do active[#active + 1] = p end
  table.sort(active, function(a, b) return a.video < b.video end)
  for _, p in ipairs(active) do
    local b, pct = bar(p.bytes, p.total, 30)
    lines[#lines + 1] = string.format("  %-22s [%s] %3d%%  %s / %s MiB", p.video, b, pct, mib(p.bytes), mib(p.total))
  end
  local s = assert(r.jobs:summary())
  local synced, unsynced = notion_state(r)
  lines[#lines + 1] = summary_line(s, synced)
  return lines, s, unsynced
end

local function finished(s, unsynced)
  return s.waiting + s.pending + s.downloading == 0 and unsynced == 0
end

-- The final report: every stored file of completed jobs, bytes, Notion pages synced.
function M.report(r, out)
  local files, bytes, cursor = 0, 0, nil
  repeat
    local page
    page, cursor = r.jobs:list{status = "completed", limit = 500, cursor = cursor}
    for _, j in ipairs(page) do
      for _, a in ipairs(r.jobs:assets(j)) do
        if a.version == j.version then
          files, bytes = files + 1, bytes + a.fileSize
          out:write(string.format("  %-44s %10d bytes  sha256 %s…\n", j.batchId .. "/" .. a.fileName, a.fileSize, a.sha256:sub(1, 12)))
        end
      end
    end
  until not cursor
  local s = r.jobs:summary()
  local synced = notion_state(r)
  out:write(string.format("stored %d files (%s MiB) for %d videos; %d Notion pages updated; %d failed, %d expired\n",
    files, mib(bytes), s.completed, synced, s.failed, s.expired))
end

-- start(runner, {interval = 0.25, stop_when_done = false, out = io.stderr})
function M.start(r, opts)
  opts = opts or {}
  local out = opts.out or io.stderr
  local tty = os.execute("test -t 2")
  return assetd.spawn({name = "progress"}, function()
    local drawn, last_plain = 0, 0
    while true do
      local lines, s, unsynced = M.render(r)
      if tty then
        out:write(string.rep("\27[1A\27[2K", drawn), table.concat(lines, "\n"), "\n")
        drawn = #lines
      elseif assetd.now() - last_plain >= 5 then
        out:write(lines[#lines], "\n")
        last_plain = assetd.now()
      end
      if opts.stop_when_done and finished(s, unsynced) then
        out:write(lines[#lines], "\n")
        M.report(r, out)
        assetd.stop(s.failed + s.expired > 0 and 1 or 0)
        return
      end
      assetd.sleep(opts.interval or 0.25)
    end
  end)
end

return M
