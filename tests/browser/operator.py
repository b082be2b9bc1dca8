#!/usr/bin/env python3
"""Drives the dashboard as an operator would (issue 19), in headless Chromium against a running
daemon, and prints what it saw as one JSON object for tests/spec/dashboard_ops_spec.lua.

    python3 tests/browser/operator.py URL OUTDIR --token T --pages JSON

PAGES names the jobs the spec made by role: {"waiting", "pending", "queued", "late", "slow",
"passed", "done", "failedA", "failedB", "failedC", "expired"} -> Notion page id. Every step uses the page as a
person does (clicks, typing, keys; the confirmation dialog), with the token in the page:
  narrow     at 360 px: the widths (scrollWidth against innerWidth, and the table's box) of the
             list and of a job's panel; OUTDIR/dashboard-narrow.png (the whole page) and
             dashboard-narrow-job.png
  wide       at 1280 px with jobs in every state: counters, rows, live mode, the charts, each
             row's speed and ETA, the deadline-passed counter and banner, the queue (and the
             API's answers beside them); the widths at 1280 and 1400 px;
             OUTDIR/dashboard-wide.png (the whole page)
  filters    the rows shown after each filter and search typed or picked (and the
             deadline-passed counter clicked), and the #fragment
  shared     the rows of a fresh load of a #fragment (a shared view)
  paging     ?page=3: the rows of every page through Older, then Newest
  sse        with polling off: the ms from an API call (cancel of the pending job) to its row's
             change, and whether the page was reloaded meanwhile
  fallback   the page's stream cut: its mode text, the polls made in 1.5 s at ?poll=500, and
             the stream taken again
  cancel     the panel's Cancel, the dialog's text, then the panel's state
  redownload the panel's "Download again", the dialog, the state seen
  bulk       "Retry all failed" on status=failed&batch=B1: the dialog's text and the notice
  job        the panel of a retried job: attempts, their outcome, events and causes, assets,
             the Notion link; OUTDIR/dashboard-job.png
  humanError the panel of a failed job: the error for a person and its folded details
  keyboard   Enter on a row's Details opens the panel with the focus in it, Escape closes it
             and gives the focus back, "/" focuses the search
  console    browser console entries at level SEVERE
On a failure it prints {"error": "..."} with what it saw so far, and exits 1.
"""
import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request

from webdriver import Browser, WebDriverError, missing

ENTER, ESCAPE = "\ue007", "\ue00c"

ROWS = """
const o = [];
for (const r of document.querySelectorAll('#jobs tr[id^=job-]')) o.push(r.id.slice(4));
return o;
"""

ROW = """
const r = document.getElementById('job-' + arguments[0]);
if (!r) return null;
const rate = r.querySelector('.rate');
return {status: r.dataset.status, state: r.querySelector('.state').textContent,
        flags: [...r.querySelectorAll('.badge')].map(b => b.textContent),
        progress: r.querySelector('.progress').textContent.trim(), left: r.querySelector('.left').textContent,
        rate: {text: rate.textContent, late: rate.dataset.late || null, bps: rate.dataset.bps ? Number(rate.dataset.bps) : null,
               eta: rate.dataset.eta ? Number(rate.dataset.eta) : null, red: getComputedStyle(rate).color},
        error: r.querySelector('.err').textContent, late: r.classList.contains('late')};
"""

WIDTHS = """
const t = document.querySelector('.tablewrap'), q = document.getElementById('queue');
return {scrollWidth: document.documentElement.scrollWidth, innerWidth: innerWidth, bodyScroll: document.body.scrollWidth,
        table: {scrollWidth: t.scrollWidth, clientWidth: t.clientWidth}, queue: {scrollWidth: q.scrollWidth, clientWidth: q.clientWidth}};
"""

QUEUE = """
const item = li => ({page: li.dataset.page, held: li.dataset.held || null, pos: li.querySelector('.pos') ? li.querySelector('.pos').textContent : null,
  speed: li.querySelector('.speed') ? li.querySelector('.speed').textContent : null,
  heldText: li.querySelector('.held') ? li.querySelector('.held').textContent : null,
  due: li.querySelector('.due').textContent});
const q = document.getElementById('queue');
return {sum: document.getElementById('queue-sum').textContent, visible: q.offsetParent !== null,
        running: [...q.querySelectorAll('#queue-running li[data-page]')].map(item),
        waiting: [...q.querySelectorAll('#queue-waiting li[data-page]')].map(item)};
"""

PASSED = """
const c = document.getElementById('count-passed'), b = document.getElementById('passed');
return {count: Number(c.querySelector('b').textContent), label: c.querySelector('span').textContent, bad: c.classList.contains('bad'),
        color: getComputedStyle(c.querySelector('b')).color,
        banner: {visible: getComputedStyle(b).display !== 'none', text: b.textContent, count: Number(b.dataset.count),
                 color: getComputedStyle(b).color}};
"""

PANEL = """
const p = document.getElementById('panel');
if (p.hidden) return null;
const q = s => p.querySelector(s);
return {page: p.dataset.page, status: p.dataset.status, state: q('#panel-state') ? q('#panel-state').textContent : null,
        retries: q('#panel-retries') ? q('#panel-retries').textContent : null,
        notionHref: q('#panel-notion-link') ? q('#panel-notion-link').href : null,
        notion: q('#panel-notion') ? q('#panel-notion').textContent : null,
        error: q('#panel-error .human') ? q('#panel-error .human').textContent : null,
        errorDetails: q('#panel-error details') ? {open: q('#panel-error details').open, text: q('#panel-error details pre').textContent} : null,
        assets: [...p.querySelectorAll('#panel-assets tbody tr')].map(tr => ({type: tr.dataset.type, version: Number(tr.dataset.version),
                 cells: [...tr.children].map(td => td.textContent), href: tr.querySelector('a').getAttribute('href')})),
        attempts: [...p.querySelectorAll('.attempt')].map(a => ({n: Number(a.dataset.n), outcome: a.dataset.outcome,
                   title: a.querySelector('h4').textContent,
                   events: [...a.querySelectorAll('.event')].map(e => ({kind: e.dataset.kind, text: e.querySelector('.what').textContent,
                            time: e.querySelector('time').getAttribute('datetime')}))})),
        actions: [...p.querySelectorAll('.actions button')].map(b => b.id)};
"""

DIALOG = "const d = document.getElementById('confirm'); return d.open ? document.getElementById('confirm-text').textContent : null;"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("outdir")
    ap.add_argument("--token", required=True)
    ap.add_argument("--pages", required=True)
    a = ap.parse_args()
    base, pages = a.url.rstrip("/"), json.loads(a.pages)
    os.makedirs(a.outdir, exist_ok=True)
    auth = {"Authorization": "Bearer " + a.token}
    out = {}

    def call(method, path, body=None):
        req = urllib.request.Request(base + path, method=method, headers=dict(auth, **{"Content-Type": "application/json"}),
                                     data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def job(page):
        return call("POST", "/api/downloads/status", {"notionPageId": page})[1]

    def wait_api(page, pred, what, timeout=20):
        deadline = time.time() + timeout
        while True:
            j = job(page)
            if pred(j):
                return j
            if time.time() > deadline:
                raise WebDriverError(f"timed out waiting for {what}: {j.get('status')}")
            time.sleep(0.1)

    loads = [0]

    def load(b, query="", fragment="", poll=600000):
        """A fresh load (the query changes each time: a new fragment alone would not reload);
        by default the page polls too seldom for a poll to pass for the stream."""
        loads[0] += 1
        frag = "token=" + urllib.parse.quote(a.token, safe="") + ("&" + fragment if fragment else "")
        b.get(base + f"/?poll={poll}&load={loads[0]}" + query + "#" + frag)
        b.wait("return document.body.dataset.ready === '1'", timeout=10, what="the first render")
        b.wait("return document.getElementById('live').dataset.mode === 'live'", timeout=10, what="the live stream")

    def rows(b):
        return sorted(b.run(ROWS))

    def settle(b, want=None, timeout=10):
        """The rows once they stop changing (a filter's request answered), or equal to WANT."""
        deadline, last, since = time.time() + timeout, None, time.time()
        while time.time() < deadline:
            now = rows(b)
            if want is not None and now == sorted(want):
                return now
            if now != last:
                last, since = now, time.time()
            elif want is None and time.time() - since > 0.8:
                return now
            time.sleep(0.1)
        return last

    def open_panel(b, page):
        if not b.run("return document.getElementById('panel').hidden"):
            b.click("#panel-close")           # it covers the rows beside it, as it would a person's
        b.click(f"#job-{page} button.open")
        return b.wait(f"const p = document.getElementById('panel'); return !p.hidden && p.dataset.page === '{page}' && "
                      "!!p.querySelector('#panel-timeline')", timeout=10, what="the panel of " + page)

    def confirm(b, button):
        b.click(button)
        text = b.wait(DIALOG, timeout=5, what="the confirmation dialog")
        b.click("#confirm-ok")
        return text

    why = missing()
    if why:
        print(json.dumps({"error": why}))
        return 1
    try:
        # ---- narrow: 360 px, before anything changes (jobs in every state) ------------------
        with Browser(width=800, height=900) as b:
            b.viewport(360, 780)
            load(b)
            b.wait("return document.querySelectorAll('#jobs tr[id^=job-]').length >= 9", timeout=10, what="every row")
            out["narrow"] = {"list": b.run(WIDTHS)}
            b.full_screenshot(os.path.join(a.outdir, "dashboard-narrow.png"), 360)
            open_panel(b, pages["failedB"])
            out["narrow"]["panel"] = b.run(WIDTHS)
            b.screenshot(os.path.join(a.outdir, "dashboard-narrow-job.png"))
            out["narrow"]["console"] = [e for e in b.console() if e.get("level") == "SEVERE"]

        with Browser(width=1280, height=900) as b:
            out["browser"] = b.version
            # ---- wide, every state ------------------------------------------------------------
            load(b)
            b.wait("return Number(document.querySelector('#chart-throughput svg').dataset.samples || 0) >= 3 && "
                   "document.querySelector('#job-%s .rate').dataset.late !== undefined && "
                   "document.querySelectorAll('#queue-running .speed').length === 3 && "
                   "[...document.querySelectorAll('#queue-running .speed')].every(s => /\\/s$/.test(s.textContent))" % pages["late"],
                   timeout=15, what="throughput samples, the late job's ETA and the queue's speeds")
            out["wide"] = {
                "rows": {p: b.run(ROW, p) for p in rows(b)},
                "counters": b.run("const o = {}; for (const c of document.querySelectorAll('.counter[data-state]')) o[c.dataset.state] = Number(c.querySelector('b').textContent); return o;"),
                "passed": b.run(PASSED),
                "queue": b.run(QUEUE),
                "live": b.run("return document.getElementById('live').textContent"),
                "instances": b.run("return document.getElementById('instances').textContent"),
                "throughput": b.run("const s = document.querySelector('#chart-throughput svg'); return {samples: Number(s.dataset.samples), "
                                    "text: document.getElementById('throughput-now').textContent, line: !!s.querySelector('polyline')}"),
                "deadlines": b.run("const s = document.querySelector('#chart-deadlines svg'); return {counts: s.dataset.counts.split(',').map(Number), "
                                   "bars: s.querySelectorAll('rect').length, text: document.getElementById('deadlines-total').textContent}"),
                "widths": b.run(WIDTHS),
            }
            st = call("GET", "/api/downloads/status")[1]
            out["wide"]["apiDeadlines"] = st["deadlines"]
            out["wide"]["apiPassed"] = {"summary": st["summary"]["deadlinePassed"], "count": st["deadlinePassed"],
                                        "pages": [j["notionPageId"] for j in st["deadlinePassedDownloads"]]}
            out["wide"]["apiQueue"] = call("GET", "/api/queue")[1]
            out["wide"]["apiInstances"] = call("GET", "/api/instances")[1]
            b.viewport(1400, 900)
            time.sleep(0.3)
            out["wide"]["widths1400"] = b.run(WIDTHS)
            b.viewport(1280, 900)
            time.sleep(0.3)
            b.run("window.scrollTo(0, 0)")
            b.full_screenshot(os.path.join(a.outdir, "dashboard-wide.png"), 1280)

            # ---- filters and search, as typed and picked --------------------------------------
            f = {}
            b.run("const s = document.getElementById('f-status'); s.value = 'failed'; s.dispatchEvent(new Event('change'))")
            f["failed"] = settle(b)
            b.type_into("#f-batch", "B1")
            f["failedB1"] = settle(b)
            f["hash"] = b.run("return location.hash")
            b.click("#f-clear")
            f["cleared"] = settle(b)
            b.run("const s = document.getElementById('f-provider'); s.value = 'openai'; s.dispatchEvent(new Event('change'))")
            f["openai"] = settle(b)
            b.click("#f-clear")
            settle(b)
            b.type_into("#f-q", pages["waiting"].replace("-", "")[:12].upper())    # no dashes, other case
            f["search"] = settle(b)
            b.click("#f-clear")
            settle(b)
            b.type_into("#f-q", "video_slow")
            f["searchVideo"] = settle(b)
            b.click("#f-clear")
            settle(b)
            b.click("#f-risk")
            f["atRisk"] = settle(b)
            b.click("#f-clear")
            f["all"] = settle(b)
            b.click("#count-expired")                  # a counter is a filter too
            f["counter"] = settle(b)
            f["counterPressed"] = b.run("return document.getElementById('count-expired').getAttribute('aria-pressed')")
            b.click("#f-clear")
            settle(b)
            b.click("#count-passed")                   # the deadline-passed counter too
            f["passed"] = settle(b)
            f["passedPressed"] = b.run("return document.getElementById('count-passed').getAttribute('aria-pressed')")
            f["passedChecked"] = b.run("return document.getElementById('f-passed').checked")
            f["passedHash"] = b.run("return location.hash")
            f["passedRow"] = b.run(ROW, pages["passed"])
            b.click("#f-clear")
            settle(b)
            out["filters"] = f

            # ---- a shared view: a fresh load of a fragment ------------------------------------
            load(b, fragment="status=failed&batch=B1")
            out["shared"] = {"rows": settle(b), "status": b.run("return document.getElementById('f-status').value"),
                             "batch": b.run("return document.getElementById('f-batch').value")}

            # ---- keyset paging, 3 a page ------------------------------------------------------
            load(b, query="&page=3")
            seen, n = [], 0
            while True:
                n += 1
                seen.append(b.run(ROWS))
                if b.run("return document.getElementById('page-older').disabled") or n > 10:
                    break
                before = b.run(ROWS)
                b.click("#page-older")
                t0 = time.time()
                while b.run(ROWS) == before and time.time() - t0 < 10:
                    time.sleep(0.05)
            b.click("#page-newest")
            out["paging"] = {"pages": seen, "newest": settle(b), "hash": b.run("return location.hash")}

            # ---- live: an API change reaches the page through the stream, not a poll ----------
            load(b)
            b.run("window.__marker = 'not reloaded'; window.__seen = null;"
                  "const page = arguments[0];"
                  "new MutationObserver(() => { const r = document.getElementById('job-' + page);"
                  " if (r && r.dataset.status === 'failed' && !window.__seen) window.__seen = Date.now(); })"
                  ".observe(document.getElementById('jobs'), {subtree: true, childList: true, attributes: true});", pages["pending"])
            t0 = time.time()
            status, _ = call("POST", "/api/downloads/cancel", {"notionPageId": pages["pending"]})
            seen_at = b.wait("return window.__seen", timeout=10, what="the canceled job's row on the page")
            out["sse"] = {"cancelStatus": status, "ms": seen_at - t0 * 1000, "marker": b.run("return window.__marker"),
                          "mode": b.run("return document.getElementById('live').dataset.mode"),
                          "row": b.run(ROW, pages["pending"])}

            # ---- the stream drops: the page polls, then takes the stream again ----------------
            load(b, poll=500)
            b.run("window.__polls = 0; new MutationObserver(() => window.__polls++)"
                  ".observe(document.getElementById('updated'), {childList: true, characterData: true, subtree: true});"
                  "stream.abort();")                 # the page's own stream, cut as a network would
            polling = b.wait("const e = document.getElementById('live'); return e.dataset.mode === 'polling' && e.textContent",
                             timeout=5, what="the polling mode")
            time.sleep(1.5)
            polls = b.run("return window.__polls")
            b.wait("return document.getElementById('live').dataset.mode === 'live'", timeout=10, what="the stream again")
            out["fallback"] = {"polling": polling, "polls": polls}

            # ---- cancel from the job's panel --------------------------------------------------
            open_panel(b, pages["slow"])
            actions = b.run(PANEL)["actions"]
            text = confirm(b, "#act-cancel")
            b.wait("return document.getElementById('panel').dataset.status === 'failed'", timeout=10, what="the panel after the cancel")
            out["cancel"] = {"actions": actions, "dialog": text, "panel": b.run(PANEL),
                             "notice": b.run("return document.getElementById('notice').textContent")}

            # ---- download again from the panel ------------------------------------------------
            open_panel(b, pages["done"])
            text = confirm(b, "#act-redownload")
            states, t0 = [], time.time()
            while time.time() - t0 < 20:
                st = b.run("return document.getElementById('panel').dataset.status")
                if not states or states[-1] != st:
                    states.append(st)
                if st == "completed" and len(states) > 1:
                    break
                time.sleep(0.05)
            wait_api(pages["done"], lambda j: j["status"] == "completed" and j["version"] == 2, "V2 of the re-download")
            b.wait("return document.querySelectorAll('#panel-assets tbody tr').length === 6", timeout=10, what="six stored files")
            out["redownload"] = {"dialog": text, "states": states, "panel": b.run(PANEL)}
            b.click("#panel-close")

            # ---- bulk retry of the failed jobs of batch B1 ------------------------------------
            load(b, fragment="status=failed&batch=B1")
            settle(b)
            text = confirm(b, "#bulk-retry")
            b.wait("return document.getElementById('notice').dataset.retried !== undefined", timeout=15, what="the bulk retry's notice")
            out["bulk"] = {"dialog": text, "notice": b.run("const n = document.getElementById('notice'); return {text: n.textContent, "
                                                           "retried: Number(n.dataset.retried), refused: Number(n.dataset.refused)}")}

            # ---- the job view of a retried job ------------------------------------------------
            wait_api(pages["failedA"], lambda j: j["status"] == "completed", "the retried job completed")
            load(b)
            open_panel(b, pages["failedA"])
            b.wait("return document.getElementById('panel').dataset.status === 'completed' && "
                   "document.querySelectorAll('#panel .attempt').length === 2 && "
                   "document.getElementById('panel-notion').textContent.startsWith('synced')", timeout=15,
                   what="two attempts and the Notion page synced")
            out["job"] = b.run(PANEL)
            b.screenshot(os.path.join(a.outdir, "dashboard-job.png"))

            # ---- keyboard: Escape closes and gives the focus back; Enter opens; "/" searches ---
            b.press(ESCAPE)
            k = {"closed": b.run("return document.getElementById('panel').hidden"),
                 "focusBack": b.run("return document.activeElement.classList.contains('open') && "
                                    "document.activeElement.closest('tr').id")}
            b.run("document.querySelector('#job-%s button.open').focus()" % pages["failedB"])
            b.press(ENTER)
            b.wait("return !document.getElementById('panel').hidden && document.getElementById('panel').dataset.page === arguments[0]",
                   pages["failedB"], timeout=10, what="the panel opened with Enter")
            k["focusInPanel"] = b.run("return document.getElementById('panel').contains(document.activeElement) && document.activeElement.id")
            out["humanError"] = b.run(PANEL)
            b.press(ESCAPE)
            b.run("document.activeElement.blur()")
            b.press("/")
            k["slashFocus"] = b.run("return document.activeElement.id")
            out["keyboard"] = k
            out["console"] = [e for e in b.console() if e.get("level") == "SEVERE"]
    except Exception as e:              # whatever broke, say so in the JSON the spec reads
        out["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
