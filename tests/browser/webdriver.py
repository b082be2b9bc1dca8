"""A small W3C WebDriver client for Debian's chromium + chromedriver, standard library only.

    with Browser() as b:            # starts chromedriver on a free loopback port and a session
        b.get(url)
        b.run("return document.title")
        b.screenshot("out.png")

Chromium runs headless (--headless=new --no-sandbox --disable-gpu) with a fresh user data
directory; leaving the with-block, even on an exception, deletes the session, stops
chromedriver (and with it the browser) and removes the directory.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriverError(Exception):
    pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing():
    """The reason the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (Debian packages chromium and chromium-driver; scripts/install-deps)"
    return None


class Browser:
    def __init__(self, width=1280, height=900, timeout=30, extra_args=()):
        self.width, self.height, self.timeout = width, height, timeout
        self.extra_args = list(extra_args)
        self.driver = None
        self.session = None
        self.profile = None
        self.log_path = None

    # ---- lifecycle ----------------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        why = missing()
        if why:
            raise WebDriverError(why)
        self.profile = tempfile.mkdtemp(prefix="assetd-chromium-")
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}", "--allowed-ips=127.0.0.1", f"--log-path={self.log_path}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.time() + 10
        while True:
            try:
                if self._call("GET", "/status", timeout=1).get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            if self.driver.poll() is not None or time.time() > deadline:
                raise WebDriverError("chromedriver did not start: " + self._log_tail())
            time.sleep(0.05)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={os.path.join(self.profile, 'profile')}",
                f"--window-size={self.width},{self.height}"] + self.extra_args
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "pageLoadStrategy": "normal",
            "timeouts": {"script": self.timeout * 1000, "pageLoad": self.timeout * 1000},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}}
        value = self._call("POST", "/session", caps, timeout=60)
        self.session = value["sessionId"]
        self.version = value["capabilities"].get("browserVersion")

    def close(self):
        if self.session:
            try:
                self._call("DELETE", f"/session/{self.session}", timeout=10)
            except Exception:
                pass
            self.session = None
        if self.driver and self.driver.poll() is None:
            # chromedriver leads its own process group (start_new_session): end the group,
            # which holds chromedriver and any browser it left behind
            try:
                os.killpg(self.driver.pid, signal.SIGTERM)
                self.driver.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.driver.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.driver.wait(5)
        self.driver = None
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def _log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no chromedriver log)"

    # ---- protocol -----------------------------------------------------------------------

    def _call(self, method, path, body=None, timeout=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout + 5) as r:
                answer = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                v = json.loads(e.read()).get("value", {})
            except ValueError:
                v = {}
            raise WebDriverError(f"{method} {path}: {e.code} {v.get('error')}: {v.get('message', '')[:500]}") from None
        return answer.get("value")

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    # ---- commands -----------------------------------------------------------------------

    def get(self, url):
        self.cmd("POST", "/url", {"url": url})

    def run(self, script, *args):
        """Run a synchronous script (a function body) and return its value."""
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def run_async(self, script, *args):
        """Run a script whose last argument is the callback that returns its value."""
        return self.cmd("POST", "/execute/async", {"script": script, "args": list(args)})

    def wait(self, script, *args, timeout=10, what=None):
        """Poll a synchronous script until it returns a truthy value, and return that."""
        deadline = time.time() + timeout
        while True:
            v = self.run(script, *args)
            if v:
                return v
            if time.time() > deadline:
                raise WebDriverError(f"timed out after {timeout}s waiting for {what or script}")
            time.sleep(0.1)

    def find(self, css):
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        """A real click: WebDriver scrolls the element into view and sends pointer events. The
        live page may redraw the element between the find and the click (a job event); then
        it is found again, as a person would see the new button where the old one was."""
        for attempt in range(5):
            try:
                self.cmd("POST", f"/element/{self.find(css)}/click", {})
                return
            except WebDriverError as e:
                if "stale element" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.1)

    def move_to(self, css, x=0, y=0):
        """Move the pointer to (x, y) from the element's centre with real pointer input."""
        origin = {ELEMENT: self.find(css)}
        self.cmd("POST", "/actions", {"actions": [{"type": "pointer", "id": "mouse",
                 "parameters": {"pointerType": "mouse"},
                 "actions": [{"type": "pointerMove", "duration": 0, "origin": origin, "x": x, "y": y}]}]})

    def press(self, *keys):
        """Real key presses (WebDriver key values: "\ue007" Enter, "\ue00c" Escape, "\ue004" Tab)
        sent to whatever has the focus."""
        actions = []
        for k in keys:
            actions += [{"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}]
        self.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})

    def type_into(self, css, text):
        """Focus the element and type TEXT into it, as a person would (input events included)."""
        self.cmd("POST", f"/element/{self.find(css)}/value", {"text": text})

    def viewport(self, width, height):
        """The page's viewport in CSS pixels, below the window's minimum width (a phone's 360 px),
        through Chromium's DevTools device metrics (chromedriver's goog/cdp/execute)."""
        self.cmd("POST", "/goog/cdp/execute", {"cmd": "Emulation.setDeviceMetricsOverride",
                 "params": {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}})

    def full_screenshot(self, path, width):
        """The whole page, not only what the viewport shows: the viewport made as tall as the
        document for the shot, then put back."""
        height = self.run("return innerHeight")
        full = self.run("return document.documentElement.scrollHeight")
        self.viewport(width, full)
        try:
            time.sleep(0.2)                  # a layout and a paint at the new size
            return self.screenshot(path)
        finally:
            self.viewport(width, height)

    def screenshot(self, path):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        return len(png)

    def console(self):
        """The browser console entries since the last call (chromedriver's log extension)."""
        try:
            return self._call("POST", f"/session/{self.session}/se/log", {"type": "browser"}) or []
        except WebDriverError:
            return []
