-- `make run` as the README's quick start runs it (scripts/run-demo), on a small batch.
describe("the demo", function()
  it("fetches a batch from the simulator, stores every asset and updates every Notion page", function()
    local dir = os.tmpname()
    os.remove(dir)
    local p = io.popen("DEMO_ROOT=" .. dir .. " DEMO_VIDEOS=3 DEMO_SPREAD=2 timeout 120 scripts/run-demo 2>&1; echo rc=$?")
    local out = p:read("a")
    p:close()
    assert.matches("rc=0%s*$", out)
    assert.matches("demo: 3 videos in the batch", out)
    assert.matches("dashboard: http://127%.0%.0%.1:%d+/", out)
    assert.matches("stored 9 files %([%d.]+ MiB%) for 3 videos; 3 Notion pages updated; 0 failed, 0 expired", out)
    assert.matches("Notion pages in the simulator updated by assetd: 3", out)
    for i = 1, 3 do
      for _, suffix in ipairs{".mp4", "_thumbnail.webp", "_spritesheet.jpg"} do
        local f = io.open(string.format("%s/demo/video_demo_%03d_V1%s", dir, i, suffix))
        assert.is_not_nil(f, "missing " .. i .. suffix)
        f:close()
      end
    end
    os.execute("rm -rf " .. dir)
  end)
end)
