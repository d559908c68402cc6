"""Outside services faked on loopback for the tests: a webhook receiver that records each POST, and
Slack's Web API for slack_sdk."""

from __future__ import annotations

import http.server
import json
import threading
from contextlib import contextmanager


@contextmanager
def http_receiver(statuses: list[int] | None = None, hold=None):
    """A real HTTP server on loopback that records every POST (headers, body) and answers with the
    next of `statuses` (then 200); yields (url, received). With `hold` (a threading.Event), each
    answer waits until it is set (30 s at most)."""
    answers = list(statuses or [])
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if hold is not None:
                hold.wait(30)
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def fake_slack():
    """Slack's Web API on loopback, for slack_sdk's WebClient (base_url: the URL yielded): records
    each call (method, Authorization header, JSON body) and answers as Slack does, `{"ok": true,
    "channel", "ts"}`, or `{"ok": false, "error": ...}` for a channel named in `errors` (a dict
    the test fills). Yields (url, calls, errors)."""
    calls: list[dict] = []
    errors: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            method = self.path.rpartition("/")[2]
            calls.append({"method": method, "authorization": self.headers.get("Authorization"), "body": body})
            channel = body.get("channel", "")
            if channel in errors:
                answer = {"ok": False, "error": errors[channel]}
            elif method == "chat.postEphemeral":
                answer = {"ok": True, "message_ts": f"{1_800_000_000 + len(calls)}.000200"}
            else:
                answer = {"ok": True, "channel": channel, "ts": body.get("ts") or f"{1_800_000_000 + len(calls)}.000100"}
            encoded = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/", calls, errors
    finally:
        server.shutdown()
        server.server_close()
