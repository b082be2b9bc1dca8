-- A Notion mapping of your own: return the page properties for a completed job.
-- job = {notionPageId, soraVideoId, batchId, version, assets = {{type, fileName, filePath, ...}}}
local notion = require "assetd.notion"
local base = "https://cdn.example.com/videos"

return {
  notion = {
    properties = function(job)
      local props = {
        ["Render Version"] = notion.encode("number", job.version),
        ["State"] = notion.encode("status", "Delivered"),
      }
      for _, a in ipairs(job.assets) do
        if a.type == "video" then
          props["MP4"] = notion.encode("url", string.format("%s/%s/%s", base, job.batchId, a.fileName))
        end
      end
      return props
    end,
  },
}
