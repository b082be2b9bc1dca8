#!/usr/bin/env python3
"""Drives the assetd dashboard in headless Chromium against a running daemon and prints what it
saw as one JSON object on stdout, for tests/spec/dashboard_spec.lua to assert on.

    python3 tests/browser/dashboard.py URL OUTDIR [--failed PAGE] [--media PAGE] [--token T]

It loads URL/?poll=500 and waits for the first render, then records:
  counters   the numbers in #count-<state>, read when two status API answers around the read
             agree with them (the page polls, so a state may move between reads); api: that answer
  banner     whether #banner is shown, its text and data-count
  concerns   whether #concerns (stalled / at-risk jobs) is shown, its text, data-stalled and
             data-at-risk, once the status API lists a concern
  retry      for --failed PAGE: a real click on its Retry button, then the row's data-status
             until it is completed (every state seen on the way)
  authPrompt with --token: the page loaded without it showed the token prompt (then it is
             loaded with #token=T; hashAfter: the fragment left in the address bar)
  thumb      for --media PAGE: the thumbnail cell's URL and whether the browser decoded it
  scrub      pointer moved over the thumbnail at its left and right edge: frame and
             background-position at each (the spritesheet scrubber)
  video      a click on the thumbnail opens an inline <video>: src, readyState, duration,
             currentTime after playing, error
  rows       every row at the end: data-status and the text of its state, progress, time left,
             version and error cells, and its thumbnail cell as in thumb
  screenshot OUTDIR/dashboard.png and its size
  console    browser console entries at level SEVERE
On a failure it prints {"error": "..."} with what it saw so far, and exits 1. The browser and
chromedriver are always stopped.
"""
import argparse
import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

from webdriver import Browser, WebDriverError, missing

STATES = ["waiting", "pending", "downloading", "completed", "failed", "expired"]


def api_summary(url, token):
    req = urllib.request.Request(url + "/api/downloads/status",
                                 headers={"Authorization": "Bearer " + token} if token else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


COUNTERS = """
const out = {};
for (const s of arguments[0]) {
  const b = document.querySelector('#count-' + s + ' b');
  out[s] = b ? Number(b.textContent) : null;
}
return out;
"""

ROWS = """
const o = {};
for (const r of document.querySelectorAll('#jobs tr[id^=job-]')) {
  const t = k => r.querySelector('.' + k).textContent;
  const bar = r.querySelector('.progress progress');
  o[r.id.slice(4)] = {status: r.dataset.status, state: t('state'), progress: t('progress').trim(), left: t('left'),
                      bar: bar ? {value: bar.value, max: bar.max} : null,
                      version: t('version'), error: t('err'), soon: r.classList.contains('soon'),
                      retry: !!r.querySelector('button.retry')};
}
return o;
"""

ROW_STATUS = "const r = document.getElementById('job-' + arguments[0]); return r ? r.dataset.status : null;"

CELL = """
const c = document.querySelector('#job-' + arguments[0] + ' .thumb');
if (!c) return null;
const cs = getComputedStyle(c);
return {frame: c.dataset.frame === undefined ? null : Number(c.dataset.frame), grid: c.dataset.grid || null,
        sheet: c.dataset.sheet || null, thumbState: c.dataset.thumbState || null, thumbUrl: c.dataset.thumbUrl || null,
        backgroundImage: cs.backgroundImage, backgroundPosition: cs.backgroundPosition, width: c.offsetWidth};
"""

SETTLED = """
const c = document.querySelector('#job-' + arguments[0] + ' .thumb');
return !!c && c.dataset.thumbState !== 'loading' && c.dataset.sheet !== 'loading';
"""

DECODE = """
const done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => done({ok: true, width: img.naturalWidth, height: img.naturalHeight});
img.onerror = () => done({ok: false});
img.src = arguments[0];
"""

VIDEO = """
const done = arguments[arguments.length - 1];
const v = document.querySelector('#player-' + arguments[0] + ' video');
if (!v) return done(null);
const t0 = Date.now();
(function check() {
  if (v.error || (v.readyState >= 2 && v.currentTime > 0.2) || Date.now() - t0 > 8000)
    return done({src: v.currentSrc || v.src, readyState: v.readyState, duration: v.duration, currentTime: v.currentTime,
                 paused: v.paused, videoWidth: v.videoWidth, videoHeight: v.videoHeight,
                 error: v.error ? v.error.code + ': ' + v.error.message : null});
  setTimeout(check, 50);
})();
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("outdir")
    ap.add_argument("--failed")
    ap.add_argument("--media")
    ap.add_argument("--token")
    a = ap.parse_args()
    base = a.url.rstrip("/")
    os.makedirs(a.outdir, exist_ok=True)
    out = {}
    why = missing()
    if why:
        print(json.dumps({"error": why}))
        return 1
    try:
        with Browser(width=1280, height=900) as b:
            out["browser"] = b.version
            if a.token:
                # without the token the page asks for one; then it takes it from #token=
                b.get(base + "/?poll=500")
                out["authPrompt"] = b.wait("return getComputedStyle(document.getElementById('auth')).display !== 'none'",
                                           timeout=10, what="the token prompt")
                b.get(base + "/?poll=500&with=token#token=" + urllib.parse.quote(a.token, safe=""))
                out["hashAfter"] = b.run("return location.hash")
            else:
                b.get(base + "/?poll=500")
            try:
                b.wait("return document.body.dataset.ready === '1'", timeout=10, what="the first render")
            except WebDriverError as e:
                says = b.run("const u = document.getElementById('updated');"
                             "return location.href + ': ' + (u ? u.textContent : document.body.innerText.slice(0, 300))")
                raise WebDriverError(f"{e}; the page says {says!r}; console: {b.console()}") from None
            out["title"] = b.run("return document.title")

            # counters against the status API: equal when the API said the same before and after
            deadline = time.time() + 10
            while True:
                s1 = api_summary(base, a.token)
                dom = b.run(COUNTERS, STATES)
                s2 = api_summary(base, a.token)
                api = {k: s2["summary"][k] for k in STATES}
                if s1["summary"] == s2["summary"] and dom == api:
                    break
                if time.time() > deadline:
                    break
                time.sleep(0.2)
            out["counters"], out["api"] = dom, s2

            out["banner"] = b.run("const e = document.getElementById('banner');"
                                  "return {visible: e.offsetParent !== null && getComputedStyle(e).display !== 'none',"
                                  " text: e.textContent, count: Number(e.dataset.count)};")
            if api_summary(base, a.token).get("concerns"):
                b.wait("return document.getElementById('concerns').textContent !== ''", timeout=10,
                       what="the concerns banner")
            out["concerns"] = b.run("const e = document.getElementById('concerns');"
                                    "return {visible: e.offsetParent !== null && getComputedStyle(e).display !== 'none',"
                                    " text: e.textContent, stalled: Number(e.dataset.stalled),"
                                    " atRisk: Number(e.dataset.atRisk)};")

            if a.media:
                b.wait(SETTLED, a.media, timeout=10, what="the thumbnail and spritesheet of " + a.media)
                cell = b.run(CELL, a.media)
                thumb = dict(cell)
                # decode what the cell shows: its background image's URL (a blob: URL with a token)
                shown = re.match(r'url\("(.*)"\)$', cell["backgroundImage"] or "")
                thumb["decoded"] = b.run_async(DECODE, shown.group(1)) if shown else None
                out["thumb"] = thumb
                # real pointer input: left edge, then right edge of the cell
                half = cell["width"] // 2 - 2
                b.move_to(f"#job-{a.media} .thumb", -half, 0)
                left = b.run(CELL, a.media)
                b.move_to(f"#job-{a.media} .thumb", half, 0)
                right = b.run(CELL, a.media)
                out["scrub"] = {"left": left, "right": right}
                b.move_to("header", 0, 0)          # leave: the thumbnail comes back
                out["scrub"]["after"] = b.run(CELL, a.media)
                b.click(f"#job-{a.media} .thumb")
                out["video"] = b.run_async(VIDEO, a.media)

            if a.failed:
                before = b.run(ROW_STATUS, a.failed)
                out["retry"] = {"before": before,
                                "errorBefore": b.run(f"return document.querySelector('#job-{a.failed} .err').textContent"),
                                "button": b.run(f"return !!document.querySelector('#job-{a.failed} button.retry')")}
                b.click(f"#job-{a.failed} button.retry")
                seen, t0 = [before], time.time()
                while time.time() - t0 < 15:
                    st = b.run(ROW_STATUS, a.failed)
                    if st != seen[-1]:
                        seen.append(st)
                    if st == "completed":
                        break
                    time.sleep(0.05)
                out["retry"].update(after=seen[-1], seen=seen, seconds=round(time.time() - t0, 2),
                                    buttonAfter=b.run(f"return !!document.querySelector('#job-{a.failed} button.retry')"),
                                    notice=b.run("return document.getElementById('notice').textContent"))

            out["rows"] = b.run(ROWS)
            for page in out["rows"]:
                out["rows"][page]["thumb"] = b.run(CELL, page)
            b.run("window.scrollTo(0, 0)")
            path = os.path.join(a.outdir, "dashboard.png")
            out["screenshot"] = {"path": path, "bytes": b.screenshot(path)}
            out["console"] = [e for e in b.console() if e.get("level") == "SEVERE"]
    except Exception as e:              # whatever broke, say so in the JSON the spec reads
        out["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
