#!/usr/bin/env python3
"""A Standard Webhooks receiver for the Rust tests (tests/api/webhooks.rs).

Every request is verified with the `standardwebhooks` package from PyPI, an
implementation independent of Latchkey's. Usage:

    receiver.py /path=whsec_… [/other=whsec_… …]

Prints its port, then serves:
  POST /path         a webhook: verified, logged, answered (204 unless planned)
  POST /control      {"path": "/path", "answers": [500, 410, …]}: the next answers
  GET  /log          every webhook received, in arrival order, as JSON
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

hooks = {}
for arg in sys.argv[1:]:
    path, secret = arg.split("=", 1)
    hooks[path] = Webhook(secret)

lock = threading.Lock()
received = []
plans = {}
in_flight = {}


class Handler(BaseHTTPRequestHandler):
    def _answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/control":
            command = json.loads(body)
            with lock:
                plans[command["path"]] = list(command["answers"])
            return self._answer(204)
        hook = hooks.get(self.path)
        if hook is None:
            return self._answer(404)
        with lock:
            in_flight[self.path] = in_flight.get(self.path, 0) + 1
            overlapping = in_flight[self.path] > 1
        try:
            payload = hook.verify(body, dict(self.headers.items()))
            valid = True
        except Exception as error:  # any refusal is a failed check
            payload, valid = {"error": str(error)}, False
        # Long enough that a second, concurrent delivery would overlap this one.
        time.sleep(0.02)
        with lock:
            in_flight[self.path] -= 1
            plan = plans.get(self.path, [])
            status = plan.pop(0) if plan else 204
            if not valid:
                status = 400
            received.append({
                "path": self.path,
                "id": self.headers.get("webhook-id"),
                "timestamp": self.headers.get("webhook-timestamp"),
                "valid": valid,
                "overlapping": overlapping,
                "answered": status,
                "payload": payload,
            })
        self._answer(status)

    def do_GET(self):
        if self.path != "/log":
            return self._answer(404)
        with lock:
            data = json.dumps(received).encode()
        self._answer(200, data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
