"""A local stand-in for the EC2 instance metadata service (IMDSv2) that can announce a spot interruption."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeIMDS:
    """Serves PUT /latest/api/token, GET /latest/meta-data/spot/instance-action and, given `identity`, GET
    /latest/dynamic/instance-identity/document (token required for both GETs). The notice is returned from
    the `interrupt_after`-th poll on once `when()` holds, `notices` times in all (then 404 again)."""

    def __init__(self, interrupt_after: int = 1, notices: int = 1, when=lambda: True, identity=None) -> None:
        self.interrupt_after, self.notices_left, self.when = interrupt_after, notices, when
        self.identity = identity
        self.polls, self.tokens, self.rejected = 0, set(), 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                    self.send_response(400)
                    self.end_headers()
                    return
                token = f"token-{len(fake.tokens)}"
                fake.tokens.add(token)
                self._reply(200, token.encode())

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") not in fake.tokens:
                    fake.rejected += 1
                    self._reply(401, b"")
                    return
                if self.path == "/latest/dynamic/instance-identity/document" and fake.identity is not None:
                    body = fake.identity if isinstance(fake.identity, bytes) else json.dumps(fake.identity).encode()
                    self._reply(200, body)
                    return
                if self.path != "/latest/meta-data/spot/instance-action":
                    self._reply(404, b"")
                    return
                with fake.lock:
                    fake.polls += 1
                    notice = fake.polls >= fake.interrupt_after and fake.notices_left > 0 and fake.when()
                    if notice:
                        fake.notices_left -= 1
                if notice:
                    self._reply(200, json.dumps({"action": "terminate", "time": "2026-11-22T22:00:00Z"}).encode())
                else:
                    self._reply(404, b"")

            def _reply(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeIMDS":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
