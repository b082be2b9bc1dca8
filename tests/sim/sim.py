#!/usr/bin/env python3
"""Local simulator of the OpenAI videos API and the Notion API, for assetd.

assetd downloads generated videos from an OpenAI-compatible videos API before
they expire and records them on Notion pages. This simulator speaks real
HTTP/1.1 (keep-alive, Content-Length, ranges) on loopback so that integration
tests, the demo and the benchmarks can run without network access and can
inject faults deterministically.

Python 3.11 standard library only. One process, one port, four surfaces:

  /v1/videos...          OpenAI videos API (video objects, content variants)
  /notion/v1/pages/...   Notion pages API (PATCH/GET page properties)
  /files/{name}          generic signed URLs (expiring asset links)
  /_control/...          test control API (no auth): define videos, inject
                         faults, read the request log and the Notion patches

Usage:
  python3 tests/sim/sim.py [--host 127.0.0.1] [--port 0] [--openai-key KEY]
      [--notion-token TOKEN] [--notion-rate N] [--demo N]
      [--demo-spread SECONDS] [--quiet]

After binding it prints exactly one line, `listening http://HOST:PORT`, to
stdout. Request logging goes to stderr (dropped, never blocking, if stderr is
not drained) unless --quiet. See tests/sim/README.md for the control API.

Content bodies are deterministic functions of (key, variant, size) where key is
the video id (or file name, plus an optional seed). They are streamed from a
precomputed 64 KiB block with the file-format header/trailer patched in, so a
500 MiB body costs no memory.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as _dt
import hashlib
import hmac
import http.server
import json
import os
import queue
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
from typing import Any, Iterator

try:  # send-queue length ioctl (Linux); used to make "reset" faults precise
    import fcntl
    import termios
    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - non-Linux
    _TIOCOUTQ = None

# --------------------------------------------------------------------------
# Content generation
# --------------------------------------------------------------------------

BLOCK = 64 * 1024          # repeating block size
WRITE_CHUNK = 64 * 1024    # bytes per socket write (<= BLOCK)
MIB = 1024 * 1024

VARIANTS = ("video", "thumbnail", "spritesheet")
CONTENT_TYPES = {"video": "video/mp4", "thumbnail": "image/webp",
                 "spritesheet": "image/jpeg"}
DEFAULT_SIZES = {"video": 1 * MIB, "thumbnail": 20 * 1024,
                 "spritesheet": 60 * 1024}


def _header_trailer(kind: str, total: int) -> tuple[bytes, bytes]:
    """File-format header and trailer bytes for a body of `total` bytes."""
    if kind == "video":
        # ftyp box (24 bytes) then the header of an mdat box covering the rest
        ftyp = struct.pack(">I4s4sI4s4s", 0x18, b"ftyp", b"isom", 0x200,
                           b"isom", b"mp42")
        rest = total - 24
        mdat = struct.pack(">I4s", rest if 8 <= rest <= 0xFFFFFFFF else 0,
                           b"mdat")
        return ftyp + mdat, b""
    if kind == "thumbnail":
        # RIFF/WEBP container with a lossy VP8 key frame header (320x180)
        part = max(0, min(total - 30, 0x7FFFF))
        tag = (0 << 0) | (0 << 1) | (1 << 4) | (part << 5)   # key, v0, shown
        hdr = (b"RIFF" + struct.pack("<I", max(0, total - 8) & 0xFFFFFFFF)
               + b"WEBP" + b"VP8 "
               + struct.pack("<I", max(0, total - 20) & 0xFFFFFFFF)
               + struct.pack("<I", tag)[:3] + b"\x9d\x01\x2a"
               + struct.pack("<HH", 320, 180))
        return hdr, b""
    # spritesheet: JPEG/JFIF
    hdr = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01"
           b"\x00\x00")
    return hdr, b"\xff\xd9"


class _BlockCache:
    """LRU cache of the doubled 64 KiB block per (key, kind)."""

    def __init__(self, capacity: int = 256) -> None:
        self._lock = threading.Lock()
        self._cap = capacity
        self._d: collections.OrderedDict[tuple[str, str], memoryview] = \
            collections.OrderedDict()

    def get(self, key: str, kind: str) -> memoryview:
        k = (key, kind)
        with self._lock:
            mv = self._d.get(k)
            if mv is not None:
                self._d.move_to_end(k)
                return mv
        seed = f"assetd-sim\x00{key}\x00{kind}".encode()
        block = hashlib.shake_256(seed).digest(BLOCK)
        mv = memoryview(block + block)   # any BLOCK-long window is contiguous
        with self._lock:
            self._d[k] = mv
            self._d.move_to_end(k)
            while len(self._d) > self._cap:
                self._d.popitem(last=False)
        return mv


BLOCKS = _BlockCache()


class Body:
    """A deterministic, streamable body for (key, kind, total)."""

    __slots__ = ("key", "kind", "total", "header", "trailer")

    def __init__(self, key: str, kind: str, total: int) -> None:
        self.key, self.kind, self.total = key, kind, total
        self.header, self.trailer = _header_trailer(kind, total)

    @property
    def etag(self) -> str:
        h = hashlib.sha256(f"{self.key}|{self.kind}|{self.total}".encode())
        return '"' + h.hexdigest()[:32] + '"'

    def chunks(self, start: int = 0, end: int | None = None,
               chunk: int = WRITE_CHUNK) -> Iterator[memoryview | bytes]:
        """Yield the bytes [start, end) in chunks of at most `chunk` bytes."""
        total = self.total
        end = total if end is None else min(end, total)
        chunk = max(1, min(chunk, BLOCK))
        run = BLOCKS.get(self.key, self.kind)
        hlen, tlen = len(self.header), len(self.trailer)
        tstart = total - tlen
        pos = start
        while pos < end:
            off = pos % BLOCK
            n = min(chunk, end - pos)
            piece: memoryview | bytes = run[off:off + n]
            if pos < hlen or pos + n > tstart:
                buf = bytearray(piece)
                # patch header bytes overlapping [pos, pos+n)
                for i in range(max(pos, 0), min(pos + n, hlen)):
                    buf[i - pos] = self.header[i]
                for i in range(max(pos, tstart), min(pos + n, total)):
                    buf[i - pos] = self.trailer[i - tstart]
                piece = bytes(buf)
            yield piece
            pos += n


class _ShaCache:
    """sha256 of full bodies, computed once per (key, kind, size)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[tuple[str, str, int], str] = {}
        self._busy: dict[tuple[str, str, int], threading.Lock] = {}

    def get(self, key: str, kind: str, size: int) -> str:
        k = (key, kind, size)
        with self._lock:
            if k in self._done:
                return self._done[k]
            lk = self._busy.setdefault(k, threading.Lock())
        with lk:
            with self._lock:
                if k in self._done:
                    return self._done[k]
            h = hashlib.sha256()
            for piece in Body(key, kind, size).chunks(chunk=BLOCK):
                h.update(piece)
            hexd = h.hexdigest()
            with self._lock:
                self._done[k] = hexd
                self._busy.pop(k, None)
            return hexd


SHAS = _ShaCache()

# --------------------------------------------------------------------------
# Simulator state (all mutable state lives here, guarded by one lock)
# --------------------------------------------------------------------------

FAULT_KINDS = ("status", "429", "truncate", "reset", "slow", "delay",
               "norange", "corrupt", "nolength")

DIGEST_KINDS = ("repr", "content", "amz", "none")
# Above this size a body gets a digest only when one is asked for by name: hashing it before
# the headers go out would hold the first answer (the benchmarks serve 500 MiB bodies).
DIGEST_AUTO_MAX = 64 * MIB


class ContentOpts:
    """How content answers describe a body: validators, length, digest."""

    __slots__ = ("etag", "last_modified", "length", "digest", "digest_given")

    def __init__(self, etag: bool = True, last_modified: float | None = None,
                 length: bool = True, digest: str | None = None) -> None:
        if digest is not None and digest not in DIGEST_KINDS:
            raise SimError(f"bad digest {digest!r}; one of {DIGEST_KINDS}")
        self.etag, self.last_modified, self.length = etag, last_modified, length
        self.digest_given = digest is not None
        self.digest = digest or "repr"


def http_date(t: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


class SimError(Exception):
    """Bad control request; answered 400 with {"error": message}."""


class Video:
    def __init__(self, spec: dict[str, Any], now: float) -> None:
        if not isinstance(spec, dict):
            raise SimError("video must be an object")
        vid = spec.get("id")
        if not isinstance(vid, str) or not vid or "/" in vid:
            raise SimError("video id must be a non-empty string without '/'")
        self.id = vid
        self.status = spec.get("status", "completed")
        if self.status not in ("completed", "in_progress", "failed",
                               "queued"):
            raise SimError(f"bad status {self.status!r}")
        try:
            self.created = float(spec.get("created_at", now))
            self.completes_in = float(spec.get("completes_in", 0))
            self.queued_for = float(spec.get("queued_for", 0))
            self.expires_in = float(spec.get("expires_in", 3600))
            ea = spec.get("expires_at")
            self.expires_at_abs = None if ea is None else int(ea)
            pr = spec.get("progress")
            self.progress = None if pr is None else int(pr)
        except (TypeError, ValueError) as e:
            raise SimError(f"bad number in video {vid}: {e}") from None
        self.no_expires = bool(spec.get("no_expires_at", False))
        self.ranges = bool(spec.get("ranges", True))
        lm = spec.get("last_modified", False)
        try:
            lm_t = None if lm is False or lm is None else (
                self.created if lm is True else float(lm))
        except (TypeError, ValueError):
            raise SimError(f"bad last_modified in video {vid}") from None
        self.content = ContentOpts(etag=bool(spec.get("etag", True)),
                                   last_modified=lm_t,
                                   length=bool(spec.get("length", True)),
                                   digest=spec.get("digest"))
        self.model = str(spec.get("model", "sora-2"))
        self.seconds = str(spec.get("seconds", "8"))
        self.size = str(spec.get("size", "1280x720"))
        seed = spec.get("seed")
        self.key = vid if seed in (None, "") else f"{vid}#{seed}"
        err = spec.get("error")
        if self.status == "failed" and not err:
            err = {"code": "video_generation_failed",
                   "message": "Video generation failed."}
        self.error = err if self.status == "failed" else None
        sizes = dict(DEFAULT_SIZES)
        given = spec.get("sizes") or {}
        if not isinstance(given, dict):
            raise SimError("sizes must be an object")
        for k, v in given.items():
            if k not in VARIANTS:
                raise SimError(f"bad variant in sizes: {k!r}")
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SimError(f"bad size for {k}: {v!r}")
            sizes[k] = v
        self.sizes = sizes

    def done_at(self) -> float:
        return self.created + self.completes_in

    def state(self, now: float) -> tuple[str, int]:
        """(status, progress) at time `now`."""
        if now < self.done_at():
            if now < self.created + self.queued_for:
                return "queued", 0
            span = self.completes_in - self.queued_for
            el = now - self.created - self.queued_for
            p = int(100 * el / span) if span > 0 else 0
            return "in_progress", max(0, min(99, p))
        if self.status == "completed":
            return "completed", 100
        if self.status == "failed":
            return "failed", self.progress if self.progress is not None else 0
        return self.status, self.progress if self.progress is not None else 0

    def expires_at(self, now: float) -> int | None:
        st, _ = self.state(now)
        if self.no_expires:
            return None
        if self.expires_at_abs is not None:
            return self.expires_at_abs
        if st != "completed":
            return None
        return int(self.done_at() + self.expires_in)

    def api_object(self, now: float) -> dict[str, Any]:
        st, prog = self.state(now)
        return {
            "id": self.id, "object": "video", "model": self.model,
            "status": st, "progress": prog,
            "created_at": int(self.created),
            "completed_at": int(self.done_at()) if st == "completed" else None,
            "expires_at": self.expires_at(now),
            "seconds": self.seconds, "size": self.size,
            "remixed_from_video_id": None,
            "error": self.error if st == "failed" else None,
        }


class Fault:
    def __init__(self, spec: dict[str, Any]) -> None:
        if not isinstance(spec, dict):
            raise SimError("fault must be an object")
        kind = str(spec.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise SimError(f"bad fault kind {kind!r}; one of {FAULT_KINDS}")
        try:
            self.regex = re.compile(str(spec.get("path", "")))
        except re.error as e:
            raise SimError(f"bad path regex: {e}") from None
        m = spec.get("method")
        self.method = str(m).upper() if m else None
        self.kind = kind
        try:
            self.count = int(spec.get("count", 1))
            st = spec.get("status", 500 if kind == "status" else 429)
            self.status = int(st)
            a = spec.get("after")
            if kind == "corrupt":   # offsets into the representation
                offs = [] if a is None else (a if isinstance(a, list) else [a])
                self.offsets = sorted({int(o) for o in offs})
                self.after = None
            else:
                self.after = None if a is None else int(a)
            self.rate = float(spec.get("rate", 65536))
            self.seconds = float(spec.get("seconds", 1))
        except (TypeError, ValueError) as e:
            raise SimError(f"bad number in fault: {e}") from None
        if kind == "slow" and self.rate <= 0:
            raise SimError("rate must be > 0")
        self.retry_after = str(spec.get("retry_after", "1"))
        self.body = spec.get("body")
        b64 = spec.get("body_base64")
        if b64 is not None:   # bytes JSON cannot carry (broken UTF-8)
            try:
                self.body = base64.b64decode(str(b64), validate=True)
            except ValueError:
                raise SimError("body_base64 must be base64") from None
        hdrs = spec.get("headers") or {}
        if not isinstance(hdrs, dict):
            raise SimError("headers must be an object")
        self.headers = {str(k): str(v) for k, v in hdrs.items()}
        self.spec = spec
        self.hits = 0

    def describe(self) -> dict[str, Any]:
        d = dict(self.spec)
        d["remaining"] = self.count
        d["hits"] = self.hits
        return d


class State:
    def __init__(self, notion_rate: float = 0.0, log_cap: int = 200_000
                 ) -> None:
        self.lock = threading.Lock()
        self.videos: dict[str, Video] = {}
        self.faults: list[Fault] = []
        self.log: collections.deque[dict[str, Any]] = \
            collections.deque(maxlen=log_cap)
        self.pages: dict[str, dict[str, Any]] = {}
        self.page_created: dict[str, str] = {}
        self.patches: list[dict[str, Any]] = []
        self.notion_rate = notion_rate
        self._tokens = notion_rate
        self._tok_t = time.monotonic()

    # videos
    def put_videos(self, specs: list[Any]) -> int:
        now = time.time()
        vids = [Video(s, now) for s in specs]   # validate all first
        with self.lock:
            for v in vids:
                self.videos[v.id] = v
        return len(vids)

    def video(self, vid: str) -> Video | None:
        with self.lock:
            return self.videos.get(vid)

    def all_videos(self) -> list[Video]:
        with self.lock:
            return list(self.videos.values())

    # faults
    def add_faults(self, specs: list[Any]) -> int:
        fs = [Fault(s) for s in specs]
        with self.lock:
            self.faults.extend(fs)
        return len(fs)

    def take_fault(self, method: str, target: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.count == 0:
                    continue
                if f.method and f.method != method:
                    continue
                if not f.regex.search(target):
                    continue
                if f.count > 0:
                    f.count -= 1
                f.hits += 1
                return f
        return None

    # log
    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)

    # notion
    def notion_allow(self) -> bool:
        if self.notion_rate <= 0:
            return True
        with self.lock:
            now = time.monotonic()
            self._tokens = min(self.notion_rate, self._tokens
                               + (now - self._tok_t) * self.notion_rate)
            self._tok_t = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def patch_page(self, page_id: str, props: dict[str, Any],
                   version: str) -> dict[str, Any]:
        now = time.time()
        with self.lock:
            cur = self.pages.setdefault(page_id, {})
            cur.update(props)
            self.page_created.setdefault(page_id, iso(now))
            self.patches.append({"t": now, "page_id": page_id,
                                 "properties": props,
                                 "notion_version": version})
            return page_object(page_id, cur, self.page_created[page_id], now)

    def get_page(self, page_id: str) -> dict[str, Any] | None:
        with self.lock:
            if page_id not in self.pages:
                return None
            return page_object(page_id, self.pages[page_id],
                               self.page_created[page_id], time.time())

    def reset(self) -> None:
        with self.lock:
            self.videos.clear()
            self.faults.clear()
            self.log.clear()
            self.pages.clear()
            self.page_created.clear()
            self.patches.clear()
            self._tokens = self.notion_rate


def iso(t: float) -> str:
    d = _dt.datetime.fromtimestamp(t, _dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def page_object(page_id: str, props: dict[str, Any], created: str,
                now: float) -> dict[str, Any]:
    return {"object": "page", "id": page_id, "created_time": created,
            "last_edited_time": iso(now), "in_trash": False,   # "archived" before 2026-03-11
            "properties": json.loads(json.dumps(props)),
            "url": f"https://www.notion.so/{page_id.replace('-', '')}"}


# --------------------------------------------------------------------------
# Error bodies
# --------------------------------------------------------------------------

def openai_error(message: str, code: str | None,
                 etype: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": etype, "param": None,
                      "code": code}}


NOTION_CODES = {400: "validation_error", 401: "unauthorized",
                403: "restricted_resource", 404: "object_not_found",
                409: "conflict_error", 429: "rate_limited",
                500: "internal_server_error", 502: "bad_gateway",
                503: "service_unavailable", 504: "gateway_timeout"}
OPENAI_CODES = {400: "bad_request", 401: "invalid_api_key",
                403: "unsupported_country_region_territory",
                404: "not_found", 429: "rate_limit_exceeded",
                500: "server_error", 502: "bad_gateway",
                503: "service_unavailable", 504: "gateway_timeout"}


def notion_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"object": "error", "status": status, "code": code,
            "message": message}


def fault_error_body(path: str, status: int) -> dict[str, Any]:
    msg = f"Simulated error {status}"
    if path.startswith("/notion/"):
        return notion_error(status, NOTION_CODES.get(status, "internal_server_error"),
                            msg)
    etype = "server_error" if status >= 500 else (
        "rate_limit_error" if status == 429 else "invalid_request_error")
    return openai_error(msg, OPENAI_CODES.get(status, "error"), etype)


# --------------------------------------------------------------------------
# Stderr logger: never blocks request threads
# --------------------------------------------------------------------------

class StderrLog:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.q: queue.Queue[str] = queue.Queue(maxsize=10000)
        if not quiet:
            threading.Thread(target=self._run, daemon=True,
                             name="stderr-log").start()

    def write(self, line: str) -> None:
        if self.quiet:
            return
        try:
            self.q.put_nowait(line)
        except queue.Full:
            pass

    def _run(self) -> None:
        while True:
            line = self.q.get()
            try:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            except Exception:
                pass


# --------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------

class _Abort(Exception):
    """The connection was reset or dropped deliberately; stop quietly."""


RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, total: int
                ) -> tuple[int, int] | str | None:
    """None = ignore (serve full), 'unsat' = 416, (start, end_exclusive)."""
    if not header:
        return None
    m = RANGE_RE.match(header)
    if not m:
        return None                       # multi-range or garbage: ignore
    a, b = m.group(1), m.group(2)
    if a == "" and b == "":
        return None
    if a == "":                           # suffix: last b bytes
        n = int(b)
        if n == 0 or total == 0:
            return "unsat"
        return max(0, total - n), total
    start = int(a)
    if b != "" and int(b) < start:
        return None                       # invalid: ignore per RFC 9110
    if start >= total:
        return "unsat"
    end = total if b == "" else min(int(b) + 1, total)
    return start, end


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "assetd-sim/1.0"
    sys_version = ""
    timeout = 300                          # idle keep-alive / stalled client

    server: "SimServer"

    def version_string(self) -> str:
        return self.server_version

    # ----- plumbing -----
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        self.server.stderr.write("%s %s" % (self.address_string(),
                                            format % args))

    def do_GET(self) -> None: self.dispatch()
    def do_HEAD(self) -> None: self.dispatch()
    def do_POST(self) -> None: self.dispatch()
    def do_PATCH(self) -> None: self.dispatch()
    def do_PUT(self) -> None: self.dispatch()
    def do_DELETE(self) -> None: self.dispatch()

    def read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise _Abort()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(n)
                self.rfile.readline(1024)
                if len(out) > 64 * MIB:
                    raise ValueError("body too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > 64 * MIB:
            raise ValueError("bad Content-Length")
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            raise _Abort()
        return data

    def dispatch(self) -> None:
        self._sent_headers = False
        self._bytes = 0
        self._status = 0
        self._fault: Fault | None = None
        t0 = time.time()
        method = self.command
        target = self.path
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        self._query = urllib.parse.parse_qs(parts.query)
        control = path.startswith("/_control")
        # The log entry is appended now and updated in place (status before
        # the headers go out, bytes before each write), so a client that has
        # seen its response always finds the entry already there.
        self._entry: dict[str, Any] | None = None
        if not control:
            h = self.headers
            self._entry = {
                "t": t0, "method": method, "path": target,
                "headers": {
                    "range": h.get("Range"),
                    "if-range": h.get("If-Range"),
                    "authorization": h.get("Authorization") is not None,
                    "notion-version": h.get("Notion-Version"),
                },
                "status": 0, "bytes": 0, "fault": None,
            }
            self.server.state.record(self._entry)
        try:
            try:
                self._req_body = self.read_body()
            except ValueError as e:
                self.close_connection = True
                self.send_json(400, {"error": f"bad request body: {e}"})
                return
            if control:
                self.route_control(method, path)
                return
            f = self.server.state.take_fault(method, target)
            if f is not None and not self.apply_pre_fault(f, path):
                return
            if path == "/v1" or path.startswith("/v1/"):
                self.route_openai(method, path)
            elif path == "/notion/v1" or path.startswith("/notion/v1/"):
                self.route_notion(method, path)
            elif path.startswith("/files/"):
                self.route_files(method, path)
            else:
                self.send_json(404, {"error": "no such endpoint"})
        except _Abort:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                TimeoutError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # bug in the simulator: report, keep serving
            self.server.stderr.write(f"internal error on {method} {target}: "
                                     f"{e!r}")
            if not self._sent_headers:
                try:
                    self.send_json(500, {"error": f"simulator bug: {e!r}"})
                except OSError:
                    pass
            self.close_connection = True
        finally:
            if self._entry is not None:   # final, exact figures
                self._entry["status"] = self._status
                self._entry["bytes"] = self._bytes

    # ----- faults -----
    def apply_pre_fault(self, f: Fault, path: str) -> bool:
        """Apply the request-level part of a fault; False = answered."""
        self._fault = f
        if self._entry is not None:
            self._entry["fault"] = f.kind
        if f.kind == "delay":
            time.sleep(max(0.0, f.seconds))
            return True
        if f.kind == "status" or f.kind == "429":
            status = f.status if f.kind == "status" else 429
            headers = dict(f.headers)
            if f.kind == "429":
                headers.setdefault("Retry-After", f.retry_after)
            if f.body is None:
                self.send_json(status, fault_error_body(path, status), headers)
            elif isinstance(f.body, (str, bytes)):
                raw = f.body.encode() if isinstance(f.body, str) else f.body
                self.send_bytes(status, raw, "text/plain; charset=utf-8",
                                headers)
            else:
                self.send_json(status, f.body, headers)
            return False
        if f.kind == "reset" and not f.after:
            self.abort_connection()
        return True   # truncate / reset(after) / slow / norange: at body time

    def abort_connection(self) -> None:
        """Close with SO_LINGER 0 so the peer sees a connection reset."""
        self.close_connection = True
        if self._bytes:
            self.drain_send_queue()
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()   # drop makefile's ref so close() is real
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass
        raise _Abort()

    def drain_send_queue(self, limit: float = 2.0) -> None:
        """Wait (Linux: TIOCOUTQ) until the bytes already written have left
        our send queue, so a reset arrives after them rather than
        discarding them."""
        if _TIOCOUTQ is None:
            time.sleep(0.05)
            return
        deadline = time.monotonic() + limit
        buf = bytearray(4)
        try:
            while time.monotonic() < deadline:
                fcntl.ioctl(self.connection.fileno(), _TIOCOUTQ, buf)
                if struct.unpack("i", buf)[0] <= 0:
                    return
                time.sleep(0.002)
        except OSError:
            pass

    # ----- response writing -----
    def start(self, status: int, headers: dict[str, str], length: int | None,
              ctype: str) -> None:
        """length None: no Content-Length; the body ends when the
        connection closes."""
        self._status = status
        if self._entry is not None:
            self._entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is None:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        f = self._fault
        if f is not None and f.kind in ("truncate", "reset"):
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._sent_headers = True

    def send_json(self, status: int, obj: Any,
                  headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_bytes(status, data, "application/json", headers)

    def send_bytes(self, status: int, data: bytes, ctype: str,
                   headers: dict[str, str] | None = None) -> None:
        self.start(status, headers or {}, len(data), ctype)
        if self.command != "HEAD":
            self.write_body([memoryview(data)], len(data))

    def write_body(self, pieces: Any, length: int, start: int = 0) -> None:
        """Write an iterable of byte pieces totalling `length` (the bytes
        from offset `start` of the representation), honouring truncate /
        reset / slow / corrupt faults."""
        f = self._fault
        if f is not None and f.kind == "corrupt":
            pieces = self.corrupted(pieces, start, length, f)
        w = self.wfile
        limit = length
        if f is not None and f.kind == "truncate":
            limit = length // 2 if f.after is None else max(0, f.after)
        elif f is not None and f.kind == "reset":
            limit = max(0, f.after or 0)
        rate = f.rate if f is not None and f.kind == "slow" else 0.0
        slow_chunk = max(1, min(16384, int(rate / 20) or 1)) if rate else 0
        entry = self._entry
        t0 = time.monotonic()
        sent = 0
        for piece in pieces:
            if sent >= limit:
                break
            if len(piece) > limit - sent:
                piece = piece[:limit - sent]
            if rate:
                for i in range(0, len(piece), slow_chunk):
                    sub = piece[i:i + slow_chunk]
                    d = t0 + (sent + len(sub)) / rate - time.monotonic()
                    if d > 0:
                        time.sleep(d)
                    if entry is not None:
                        entry["bytes"] = sent + len(sub)
                    w.write(sub)
                    sent += len(sub)
                    self._bytes = sent
            else:
                if entry is not None:
                    entry["bytes"] = sent + len(piece)
                w.write(piece)
                sent += len(piece)
                self._bytes = sent
        if f is not None and f.kind == "reset":
            self.abort_connection()
        if f is not None and f.kind == "truncate":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            raise _Abort()

    @staticmethod
    def corrupted(pieces: Any, start: int, length: int, f: Fault) -> Any:
        """The pieces with the bytes at f.offsets (default: the middle of
        the whole answer) flipped; the length is kept."""
        offs = f.offsets or [start + length // 2]
        pos = start
        for piece in pieces:
            hit = [o - pos for o in offs if pos <= o < pos + len(piece)]
            if hit:
                buf = bytearray(piece)
                for i in hit:
                    buf[i] ^= 0xFF
                piece = bytes(buf)
            pos += len(piece)
            yield piece

    def validators(self, body: Body, opts: ContentOpts) -> dict[str, str]:
        h: dict[str, str] = {}
        if opts.etag:
            h["ETag"] = body.etag
        if opts.last_modified is not None:
            h["Last-Modified"] = http_date(opts.last_modified)
        return h

    @staticmethod
    def digest_headers(body: Body, opts: ContentOpts,
                       status: int) -> dict[str, str]:
        """The digest of the whole representation (a 206 gets only
        Repr-Digest, which still describes all of it)."""
        if opts.digest == "none" or (not opts.digest_given
                                     and body.total > DIGEST_AUTO_MAX):
            return {}
        if status == 206 and opts.digest != "repr":
            return {}
        raw = bytes.fromhex(SHAS.get(body.key, body.kind, body.total))
        b64 = base64.b64encode(raw).decode()
        if opts.digest == "amz":
            return {"x-amz-checksum-sha256": b64}
        name = "Repr-Digest" if opts.digest == "repr" else "Content-Digest"
        return {name: f"sha-256=:{b64}:"}

    def serve_content(self, body: Body, ranges: bool,
                      extra: dict[str, str] | None = None,
                      opts: ContentOpts | None = None) -> None:
        """Full or ranged response for a generated body."""
        opts = opts or ContentOpts()
        total = body.total
        headers = self.validators(body, opts)
        if extra:
            headers.update(extra)
        f = self._fault
        use_ranges = ranges and not (f is not None and f.kind == "norange")
        if ranges:
            headers["Accept-Ranges"] = "bytes"
        ctype = CONTENT_TYPES[body.kind]
        rng = None
        if use_ranges:
            rh = self.headers.get("Range")
            ir = self.headers.get("If-Range")
            # RFC 9110 13.1.5: the range only when If-Range matches exactly (a
            # strong ETag or the Last-Modified date); else the whole body
            if rh and (ir is None or ir.strip() in (headers.get("ETag"),
                                                    headers.get("Last-Modified"))):
                rng = parse_range(rh, total)
        if rng == "unsat":
            headers["Content-Range"] = f"bytes */{total}"
            data = json.dumps(openai_error("Requested range not satisfiable",
                                           "range_not_satisfiable")).encode()
            self.send_bytes(416, data, "application/json", headers)
            return
        if rng is None:
            start, end, status = 0, total, 200
        else:
            start, end = rng  # type: ignore[misc]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        headers.update(self.digest_headers(body, opts, status))
        nolength = not opts.length or (f is not None and f.kind == "nolength")
        self.start(status, headers, None if nolength else end - start, ctype)
        if self.command != "HEAD":
            self.write_body(body.chunks(start, end), end - start, start)

    # ----- OpenAI -----
    def route_openai(self, method: str, path: str) -> None:
        key = self.server.openai_key
        if key is not None:
            auth = self.headers.get("Authorization") or ""
            if not hmac.compare_digest(auth.encode(),
                                       f"Bearer {key}".encode()):
                self.send_json(401, openai_error(
                    "Incorrect API key provided", "invalid_api_key"))
                return
        segs = [urllib.parse.unquote(s) for s in path.split("/")[1:]]
        # segs[0] == "v1"
        if len(segs) >= 2 and segs[1] == "videos":
            if len(segs) == 2 and method in ("GET", "HEAD"):
                self.list_videos()
                return
            if len(segs) == 3 and segs[2] and method in ("GET", "HEAD"):
                v = self.server.state.video(segs[2])
                if v is None:
                    self.send_json(404, openai_error("Video not found",
                                                     "not_found"))
                else:
                    self.send_json(200, v.api_object(time.time()))
                return
            if (len(segs) == 4 and segs[3] == "content"
                    and method in ("GET", "HEAD")):
                self.video_content(segs[2])
                return
        self.send_json(404, openai_error(
            f"Invalid URL ({method} {path})", "unknown_url"))

    def list_videos(self) -> None:
        now = time.time()
        q = self._query
        order = (q.get("order") or ["desc"])[0]
        try:
            limit = max(1, min(100, int((q.get("limit") or ["20"])[0])))
        except ValueError:
            self.send_json(400, openai_error("Invalid limit", "invalid_value"))
            return
        vids = sorted(self.server.state.all_videos(),
                      key=lambda v: (v.created, v.id),
                      reverse=(order != "asc"))
        after = (q.get("after") or [None])[0]
        if after:
            ids = [v.id for v in vids]
            vids = vids[ids.index(after) + 1:] if after in ids else []
        page = vids[:limit]
        data = [v.api_object(now) for v in page]
        self.send_json(200, {"object": "list", "data": data,
                             "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None,
                             "has_more": len(vids) > limit})

    def video_content(self, vid: str) -> None:
        variant = (self._query.get("variant") or ["video"])[0]
        if variant not in VARIANTS:
            self.send_json(400, openai_error(
                f"Invalid variant {variant!r}; expected one of "
                "video, thumbnail, spritesheet", "invalid_value"))
            return
        v = self.server.state.video(vid)
        if v is None:
            self.send_json(404, openai_error("Video not found", "not_found"))
            return
        now = time.time()
        st, _ = v.state(now)
        if st != "completed":
            self.send_json(404, openai_error(
                f"Video content is not available (status {st})",
                "video_not_ready"))
            return
        exp = v.expires_at(now)
        if exp is not None and now >= exp:
            self.send_json(404, openai_error("Video content has expired",
                                             "video_expired"))
            return
        self.serve_content(Body(v.key, variant, v.sizes[variant]), v.ranges,
                           opts=v.content)

    # ----- generic signed files -----
    def route_files(self, method: str, path: str) -> None:
        if method not in ("GET", "HEAD"):
            self.send_json(405, {"error": "method not allowed"})
            return
        name = urllib.parse.unquote(path[len("/files/"):])
        q = self._query
        kind = (q.get("kind") or ["video"])[0]
        if not name or kind not in VARIANTS:
            self.send_json(400, {"error": "bad name or kind"})
            return
        try:
            size = int((q.get("size") or [DEFAULT_SIZES[kind]])[0])
            exp = q.get("expires")
            expires = None if not exp else float(exp[0])
        except ValueError:
            self.send_json(400, {"error": "bad size or expires"})
            return
        if size < 0:
            self.send_json(400, {"error": "bad size"})
            return
        if expires is not None and time.time() >= expires:
            self.send_json(403, {"error": "expired"})
            return
        try:
            lm = q.get("last_modified")
            opts = ContentOpts(
                etag=(q.get("etag") or ["1"])[0] != "0",
                last_modified=None if not lm else float(lm[0]),
                length=(q.get("length") or ["1"])[0] != "0",
                digest=(q.get("digest") or [None])[0])
        except (ValueError, SimError) as e:
            self.send_json(400, {"error": f"bad content option: {e}"})
            return
        self.serve_content(Body("file:" + name, kind, size), True, opts=opts)

    # ----- Notion -----
    def route_notion(self, method: str, path: str) -> None:
        srv = self.server
        if not srv.state.notion_allow():
            self.send_json(429, notion_error(
                429, "rate_limited", "You have been rate limited. Please try "
                "again in a few minutes."), {"Retry-After": "1"})
            return
        if srv.notion_token is not None:
            auth = self.headers.get("Authorization") or ""
            if not hmac.compare_digest(auth.encode(),
                                       f"Bearer {srv.notion_token}".encode()):
                self.send_json(401, notion_error(401, "unauthorized",
                                                 "API token is invalid."))
                return
        version = self.headers.get("Notion-Version")
        if not version:
            self.send_json(400, notion_error(
                400, "missing_version",
                "Notion-Version header failed validation: Notion-Version "
                "header should be defined, instead was `undefined`."))
            return
        segs = [urllib.parse.unquote(s) for s in path.split("/")[1:]]
        # ["notion", "v1", "pages", id]
        if len(segs) == 4 and segs[2] == "pages" and segs[3]:
            pid = segs[3]
            if method == "PATCH":
                self.notion_patch(pid, version)
                return
            if method in ("GET", "HEAD"):
                page = srv.state.get_page(pid)
                if page is None:
                    self.send_json(404, notion_error(
                        404, "object_not_found",
                        f"Could not find page with ID: {pid}."))
                else:
                    self.send_json(200, page)
                return
        self.send_json(400, notion_error(
            400, "invalid_request_url", "Invalid request URL."))

    def notion_patch(self, pid: str, version: str) -> None:
        try:
            doc = json.loads(self._req_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.send_json(400, notion_error(
                400, "invalid_json", "Error parsing JSON body."))
            return
        if not isinstance(doc, dict) or not isinstance(
                doc.get("properties"), dict):
            self.send_json(400, notion_error(
                400, "validation_error",
                "body failed validation: body.properties should be an "
                "object."))
            return
        page = self.server.state.patch_page(pid, doc["properties"], version)
        self.send_json(200, page)

    # ----- control -----
    def control_json(self) -> Any:
        try:
            return json.loads(self._req_body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError) as e:
            raise SimError(f"invalid JSON: {e}") from None

    def route_control(self, method: str, path: str) -> None:
        st = self.server.state
        segs = [urllib.parse.unquote(s) for s in path.split("/")[2:]]
        try:
            res = self._control(st, method, segs)
        except SimError as e:
            self.send_json(400, {"error": str(e)})
            return
        if res is None:
            self.send_json(404, {"error": f"no control endpoint "
                                          f"{method} {path}"})
        else:
            self.send_json(*res)

    def _control(self, st: State, method: str, segs: list[str]
                 ) -> tuple[int, Any] | None:
        what = segs[0] if segs else ""
        rest = segs[1:]
        if what == "videos":
            if not rest and method == "POST":
                doc = self.control_json()
                specs = doc if isinstance(doc, list) else [doc]
                return 201, {"created": st.put_videos(specs)}
            if not rest and method == "GET":
                now = time.time()
                return 200, {"videos": [v.api_object(now)
                                        for v in st.all_videos()]}
            if len(rest) == 1 and method == "GET":
                v = st.video(rest[0])
                if v is None:
                    return 404, {"error": "unknown video"}
                return 200, {"id": v.id, "sizes": dict(v.sizes),
                             "sha256": {k: SHAS.get(v.key, k, v.sizes[k])
                                        for k in VARIANTS}}
        elif what == "faults" and not rest:
            if method == "POST":
                doc = self.control_json()
                specs = doc if isinstance(doc, list) else [doc]
                return 201, {"added": st.add_faults(specs)}
            if method == "DELETE":
                with st.lock:
                    st.faults.clear()
                return 200, {"cleared": True}
            if method == "GET":
                with st.lock:
                    return 200, [f.describe() for f in st.faults]
        elif what == "reset" and not rest and method == "POST":
            st.reset()
            return 200, {"reset": True}
        elif what == "log" and not rest:
            if method == "GET":
                with st.lock:
                    return 200, [dict(e) for e in st.log]
            if method == "DELETE":
                with st.lock:
                    st.log.clear()
                return 200, {"cleared": True}
        elif what == "notion" and not rest and method == "GET":
            with st.lock:
                return 200, json.loads(json.dumps({
                    "patches": st.patches, "pages": st.pages}))
        elif what == "files" and len(rest) == 1 and method == "GET":
            q = self._query
            kind = (q.get("kind") or ["video"])[0]
            if kind not in VARIANTS:
                raise SimError("bad kind")
            try:
                size = int((q.get("size") or [DEFAULT_SIZES[kind]])[0])
            except ValueError:
                raise SimError("bad size") from None
            return 200, {"name": rest[0], "kind": kind, "size": size,
                         "sha256": SHAS.get("file:" + rest[0], kind, size)}
        elif what == "health" and method == "GET":
            return 200, {"ok": True}
        return None


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------

class SimServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], state: State,
                 stderr: StderrLog, openai_key: str | None,
                 notion_token: str | None) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.stderr = stderr
        self.openai_key = openai_key
        self.notion_token = notion_token
        super().__init__(addr, Handler)

    def server_bind(self) -> None:
        # skip HTTPServer's getfqdn() (can be slow without DNS)
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout,
                            _Abort)):
            return
        self.stderr.write(f"error serving {client_address}: {exc!r}")


def demo_specs(n: int, spread: float) -> list[dict[str, Any]]:
    width = max(3, len(str(n)))
    specs = []
    for i in range(n):
        specs.append({
            "id": f"video_demo_{i + 1:0{width}d}",
            "status": "completed",
            "completes_in": spread * (i + 1) / n,
            "expires_in": 3600,
            "sizes": {
                "video": 2 * MIB + (i * 2654435761 % 4097) * 1024,  # 2..6 MiB
                "thumbnail": 28 * 1024 + (i * 37 % 5) * 1024,
                "spritesheet": 116 * 1024 + (i * 53 % 9) * 1024,
            },
        })
    return specs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--openai-key", default=None)
    ap.add_argument("--notion-token", default=None)
    ap.add_argument("--notion-rate", type=float, default=0.0,
                    help="Notion requests/second (token bucket), 0=unlimited")
    ap.add_argument("--demo", type=int, default=0, metavar="N")
    ap.add_argument("--demo-spread", type=float, default=60.0,
                    metavar="SECONDS")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    threading.stack_size(512 * 1024)
    state = State(notion_rate=args.notion_rate)
    if args.demo > 0:
        state.put_videos(demo_specs(args.demo, args.demo_spread))
    log = StderrLog(args.quiet)
    srv = SimServer((args.host, args.port), state, log, args.openai_key,
                    args.notion_token)
    host, port = srv.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    sys.stdout.write(f"listening http://{shown}:{port}\n")
    sys.stdout.flush()

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        srv.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    rc = main()
    # Exit without waiting on handler threads stuck on slow/stalled clients.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(rc)
