#!/usr/bin/env python3
"""Makes the small real media files the browser test serves as a finished video's assets:
media/clip.mp4 (H.264, 320x180, about 2 s), media/thumbnail.webp (the first frame) and
media/spritesheet.jpg (10 frames, 5 columns x 2 rows of 160x90). The simulator's bodies are
valid by signature but not decodable, so a test of thumbnails, the scrubber and inline
playback needs these. Chromium draws and encodes them (canvas, MediaRecorder): no other tool
is needed to remake them.

    python3 tests/browser/make_media.py [OUTDIR]      (default: tests/browser/media)
"""
import base64
import os
import sys

from webdriver import Browser

SCRIPT = r"""
const done = arguments[arguments.length - 1];
const W = 320, H = 180, FPS = 25, FRAMES = 50;
const c = document.createElement("canvas"); c.width = W; c.height = H;
const g = c.getContext("2d");
function draw(i) {
  const hue = (i * 360 / FRAMES) | 0;
  g.fillStyle = `hsl(${hue}, 60%, 35%)`; g.fillRect(0, 0, W, H);
  g.fillStyle = "#fff"; g.fillRect((i * (W - 40) / (FRAMES - 1)) | 0, 60, 40, 60);
  g.font = "bold 28px sans-serif"; g.fillText("assetd " + String(i).padStart(2, "0"), 12, 36);
}
function blob64(b) {
  return new Promise(res => { const r = new FileReader(); r.onload = () => res(r.result.split(",")[1]); r.readAsDataURL(b); });
}
(async () => {
  draw(0);
  const webp = c.toDataURL("image/webp", 0.8).split(",")[1];
  const sheet = document.createElement("canvas"); sheet.width = 160 * 5; sheet.height = 90 * 2;
  const sg = sheet.getContext("2d");
  for (let k = 0; k < 10; k++) { draw(k * 5); sg.drawImage(c, (k % 5) * 160, Math.floor(k / 5) * 90, 160, 90); }
  const jpeg = sheet.toDataURL("image/jpeg", 0.8).split(",")[1];
  const type = "video/mp4;codecs=avc1.42E01E";
  if (!MediaRecorder.isTypeSupported(type)) return done({error: type + " is not supported"});
  const stream = c.captureStream(0), track = stream.getVideoTracks()[0];
  const rec = new MediaRecorder(stream, {mimeType: type, videoBitsPerSecond: 200000});
  const parts = [];
  rec.ondataavailable = e => parts.push(e.data);
  rec.onstop = async () => done({webp, jpeg, mp4: await blob64(new Blob(parts, {type: "video/mp4"}))});
  rec.start();
  for (let i = 0; i < FRAMES; i++) {
    draw(i); track.requestFrame();
    await new Promise(r => setTimeout(r, 1000 / FPS));
  }
  rec.stop();
})().catch(e => done({error: String(e)}));
"""


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "media")
    os.makedirs(out, exist_ok=True)
    with Browser() as b:
        b.get("about:blank")
        r = b.run_async(SCRIPT)
    if r.get("error"):
        sys.exit("make_media: " + r["error"])
    for name, key in (("clip.mp4", "mp4"), ("thumbnail.webp", "webp"), ("spritesheet.jpg", "jpeg")):
        data = base64.b64decode(r[key])
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
