"""A fake Web Push service on 127.0.0.1 for the e2e tests (PROTOCOL.md §10).

It checks every push with an independent library (Python's `cryptography`): the VAPID
JWT's ES256 signature against the relay's key (`k=`), its `aud` (this origin), `exp`
(in the future, within 24 h) and `sub`; that no payload came; and the `TTL`, `Urgency`
and `Topic` headers. It answers each path with the status its test set.

    python3 tests/fake_push.py   # prints "PORT <n>" once listening

  POST /push/<name>                a push; answered 201, or as set
  POST /control/<name>             body {"status": 410, "retry_after": 5}: how to answer <name>
  GET  /log                        every push so far: [{"name", "at", "ok", "why"}]
"""

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

LOCK = threading.Lock()
LOG = []
ANSWERS = {}


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def check(headers, body, origin):
    """Why this push is wrong, or None."""
    auth = headers.get("Authorization", "")
    if not auth.startswith("vapid "):
        return "no vapid Authorization"
    parts = dict(p.strip().split("=", 1) for p in auth[len("vapid "):].split(","))
    token, key = parts.get("t", ""), parts.get("k", "")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(key))
        header_b64, claims_b64, sig_b64 = token.split(".")
        sig = b64d(sig_b64)
        if len(sig) != 64:
            return "the JWT signature is not 64 bytes"
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the JWT signature does not verify"
    except Exception as e:  # noqa: BLE001 - any malformed token is a failure to report
        return f"a malformed VAPID header: {e}"
    header, claims = json.loads(b64d(header_b64)), json.loads(b64d(claims_b64))
    if header.get("alg") != "ES256":
        return "alg is not ES256"
    if claims.get("aud") != origin:
        return f"aud {claims.get('aud')!r} is not {origin!r}"
    if not (time.time() < claims.get("exp", 0) <= time.time() + 86400):
        return "exp is not within the next 24 h"
    if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
        return "no sub contact"
    if body:
        return "a payload was sent"
    if not headers.get("TTL", "").isdigit() or headers.get("Urgency") != "normal" or not headers.get("Topic"):
        return "TTL, Urgency or Topic missing"
    return None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/log":
            with LOCK:
                return self.answer(200, json.dumps(LOG).encode())
        self.answer(404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length)
        if self.path.startswith("/control/"):
            with LOCK:
                ANSWERS[self.path[len("/control/"):]] = json.loads(body)
            return self.answer(204)
        if not self.path.startswith("/push/"):
            return self.answer(404)
        name = self.path[len("/push/"):]
        origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        why = check(self.headers, body, origin)
        with LOCK:
            LOG.append({"name": name, "at": int(time.time() * 1000), "ok": why is None, "why": why})
            answer = ANSWERS.get(name, {"status": 201})
        extra = [("Retry-After", str(answer["retry_after"]))] if "retry_after" in answer else []
        self.answer(answer["status"], headers=extra)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
