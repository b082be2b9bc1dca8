-- The original design's workflow with the defaults, spelled out. Run it with
--   OPENAI_API_KEY=... NOTION_TOKEN=... assetd examples/pipeline.lua
-- and check it first with `assetd --check examples/pipeline.lua`.
return {
  -- where assets go: {root}/{batchId}/{videoId}_V{n}.mp4 (+ _thumbnail.webp, _spritesheet.jpg)
  storage = {root = "./public/generated-videos", public_base_url = "https://example.com/generated-videos"},

  -- the OpenAI-compatible videos API (OPENAI_BASE_URL / OPENAI_API_KEY from the environment)
  sora = {
    variants = {"video", "thumbnail", "spritesheet"},
    poll = {interval = 10, max = 120},          -- seconds between status checks of waiting jobs
    retry = {base = 1, cap = 60},               -- download backoff; the deadline bounds it
  },

  -- Notion (NOTION_TOKEN / NOTION_BASE_URL): the default mapping, with property names you can
  -- change without writing a function
  notion = {
    version = "2026-03-11",
    fields = {status = {name = "Status", type = "select", value = "Completed"}},
  },

  -- alerts: the defaults log; any of them can be a function (see slack-alerts.lua)
  alerts = {warn_before = 600},

  limits = {max_active = 8},
}
