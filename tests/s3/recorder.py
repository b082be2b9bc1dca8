#!/usr/bin/env python3
# The object-storage specs' recorder: an HTTP proxy in front of s3rver that checks every
# request's SigV4 signature on its own (s3rver 3.7.1 checks none), writes one JSON line per
# request to --log, refuses a bad signature as S3 does (403 SignatureDoesNotMatch) and
# answers the three calls s3rver lacks (ListParts, ListMultipartUploads, AbortMultipartUpload)
# from s3rver's own upload directory. `recorder.py --self-test` checks the verifier on AWS's
# published example (GET /test.txt, docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html).
import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def uri_encode(s, keep_slash):
    # SigV4's encoding: RFC 3986 unreserved characters stay, everything else is %XX
    safe = "-_.~" + ("/" if keep_slash else "")
    return urllib.parse.quote(s, safe=safe)


def canonical_query(raw):
    pairs = []
    for item in raw.split("&") if raw else []:
        k, _, v = item.partition("=")
        k, v = urllib.parse.unquote_plus(k), urllib.parse.unquote_plus(v)
        pairs.append((uri_encode(k, False), uri_encode(v, False)))
    pairs.sort()
    return "&".join(k + "=" + v for k, v in pairs)


def signing_key(secret, date, region, service):
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def verify(method, path, query, headers, secret, payload_hash=None):
    """Checks a request's Authorization header: returns (ok, reason). HEADERS maps lower-case
    names to values; the canonical request is built from the request as received."""
    auth = headers.get("authorization", "")
    m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?"
                 r"SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$", auth)
    if not m:
        return False, "no SigV4 Authorization header: %r" % auth[:80]
    _key, date, region, service, signed, signature = m.groups()
    names = signed.split(";")
    for need in ("host", "x-amz-date", "x-amz-content-sha256"):
        if need not in names:
            return False, "%s is not signed" % need
    for h in headers:
        if h.startswith("x-amz-") and h not in names:
            return False, "%s is sent but not signed" % h
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        return False, "x-amz-date %s is not of the credential's day %s" % (amz_date, date)
    canon_headers = "".join("%s:%s\n" % (n, " ".join(headers.get(n, "").split())) for n in names)
    body_hash = payload_hash or headers.get("x-amz-content-sha256", "")
    creq = "\n".join([method, uri_encode(urllib.parse.unquote(path), True), canonical_query(query),
                      canon_headers, signed, body_hash])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, "%s/%s/%s/aws4_request" % (date, region, service),
                     hashlib.sha256(creq.encode()).hexdigest()])
    want = hmac.new(signing_key(secret, date, region, service), sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, signature):
        return False, "signature mismatch (canonical request %r)" % creq
    return True, "ok"


def self_test():
    headers = {
        "host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA, "x-amz-date": "20130524T000000Z",
        "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                         "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                         "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    }
    ok, why = verify("GET", "/test.txt", "", headers, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    if not ok:
        sys.exit("self-test failed: " + why)
    ok, _ = verify("GET", "/test.txt", "", headers, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ")
    if ok:
        sys.exit("self-test failed: a wrong secret verified")
    print("self-test ok")


def xml(status_code, body, handler):
    data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()
    handler.send_response(status_code)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Uploads:
    """s3rver's multipart uploads on disk: DIR/BUCKET/.../uploads/ID/{key,N,N.md5}."""

    def __init__(self, root):
        self.root = root

    def all(self, bucket):
        out = []
        for dirpath, dirnames, _ in os.walk(os.path.join(self.root, bucket)):
            if os.path.basename(dirpath) == "._S3rver_uploads":   # s3rver: BUCKET/._S3rver_uploads/ID
                for uid in dirnames:
                    d = os.path.join(dirpath, uid)
                    try:
                        key = open(os.path.join(d, "key")).read()
                    except OSError:
                        continue
                    out.append((uid, key, d))
        return out

    def find(self, bucket, uid):
        for u in self.all(bucket):
            if u[0] == uid:
                return u
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self, entry):
        with self.server.lock:
            with open(self.server.log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def handle_any(self):
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        n = int(headers.get("content-length", "0") or 0)
        body = self.rfile.read(n) if n else b""
        body_sha = hashlib.sha256(body).hexdigest()
        ok, why = verify(self.command, path, query, headers, self.server.secret)
        declared = headers.get("x-amz-content-sha256")
        hash_ok = declared in (body_sha, "UNSIGNED-PAYLOAD")
        self.record({"method": self.command, "path": path, "query": query, "headers": headers,
                     "body_sha256": body_sha, "body_len": len(body), "signature_ok": ok, "why": why,
                     "content_sha256_ok": hash_ok})
        if self.server.answer:
            code, text = self.server.answer
            return xml(code, "<Error><Code>%s</Code><Message>told to answer so</Message></Error>" % text, self)
        if not ok:
            return xml(403, "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we "
                            "calculated does not match the signature you provided. %s</Message></Error>"
                       % escape(why[:200]), self)
        if not hash_ok:
            return xml(400, "<Error><Code>XAmzContentSHA256Mismatch</Code><Message>The provided "
                            "'x-amz-content-sha256' header does not match what was computed.</Message></Error>", self)
        if self.shim(path, query):
            return
        if self.server.slow_parts and "partNumber=" in query:
            time.sleep(self.server.slow_parts)      # a slow link: room to kill the daemon mid-upload
        self.forward(path, query, headers, body)

    def shim(self, path, query):
        """ListParts, ListMultipartUploads, AbortMultipartUpload: s3rver 3.7.1 has none."""
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        parts = path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        up = Uploads(self.server.s3dir)
        if self.command == "GET" and len(parts) == 1 and "uploads" in q:
            prefix = q.get("prefix", [""])[0]
            items = "".join("<Upload><Key>%s</Key><UploadId>%s</UploadId></Upload>" % (escape(k), u)
                            for u, k, _ in up.all(bucket) if k.startswith(prefix))
            xml(200, "<ListMultipartUploadsResult><Bucket>%s</Bucket>%s</ListMultipartUploadsResult>"
                % (escape(bucket), items), self)
            return True
        if len(parts) < 2 or "uploadId" not in q or self.command not in ("GET", "DELETE"):
            return False
        found = up.find(bucket, q["uploadId"][0])
        if not found:
            xml(404, "<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist."
                     "</Message></Error>", self)
            return True
        uid, key, d = found
        if self.command == "DELETE":
            shutil.rmtree(d, ignore_errors=True)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        items = []
        for name in sorted((f for f in os.listdir(d) if f.isdigit()), key=int):
            size = os.path.getsize(os.path.join(d, name))
            md5 = open(os.path.join(d, name + ".md5")).read().strip()
            items.append("<Part><PartNumber>%s</PartNumber><ETag>\"%s\"</ETag><Size>%d</Size></Part>"
                         % (name, md5, size))
        xml(200, "<ListPartsResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>%s</ListPartsResult>"
            % (escape(bucket), escape(key), uid, "".join(items)), self)
        return True

    def forward(self, path, query, headers, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=60)
        fwd = {k: v for k, v in headers.items() if k not in ("expect", "connection", "transfer-encoding")}
        fwd["content-length"] = str(len(body))
        conn.request(self.command, path + ("?" + query if query else ""), body=body, headers=fwd)
        res = conn.getresponse()
        data = res.read()
        self.send_response(res.status)
        for k, v in res.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                self.send_header(k, v)
        # a HEAD's answer keeps the object's length; its body is empty
        length = res.getheader("content-length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--upstream", type=int, help="s3rver's port")
    p.add_argument("--s3dir", help="s3rver's directory")
    p.add_argument("--secret", default="S3RVER")
    p.add_argument("--log")
    p.add_argument("--answer", help="CODE:S3ERROR: answer every request so (a refusing server)")
    p.add_argument("--slow-parts", type=float, default=0, help="seconds to hold each UploadPart")
    a = p.parse_args()
    if a.self_test:
        return self_test()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.upstream, srv.s3dir, srv.secret, srv.log_path = a.upstream, a.s3dir, a.secret, a.log
    srv.lock = threading.Lock()
    srv.answer = None
    srv.slow_parts = a.slow_parts
    if a.answer:
        code, text = a.answer.split(":", 1)
        srv.answer = (int(code), text)
    print("listening http://127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
