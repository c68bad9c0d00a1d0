"""A real HTTP receiver on 127.0.0.1 (http.server on a thread) for the webhook tests.

`mode` decides each answer: "ok" (200), "fail" (500), "slow" (sleeps `delay` seconds, longer than
the sender's timeout, then 200) or "hold" (signals `arrived` and waits for `release` before
answering: a delivery caught in flight). Every request is kept, in order.
"""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.smtp import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.json["id"]


class Receiver:
    def __init__(self, mode: str = "ok", delay: float = 3.0) -> None:
        self.mode = mode
        self.delay = delay
        self.requests: list[Received] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.processed: set[str] = set()  # event ids handled once: what a real receiver dedupes on
        self.duplicates = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                receiver.requests.append(received)
                if receiver.mode == "hold" and not receiver.arrived.is_set():
                    receiver.arrived.set()
                    receiver.release.wait(60)
                if receiver.mode == "slow":
                    time.sleep(receiver.delay)
                status = 500 if receiver.mode == "fail" else 200
                if status == 200:
                    event_id = json.loads(body)["id"]
                    if event_id in receiver.processed:
                        receiver.duplicates += 1
                    receiver.processed.add(event_id)
                answer = b'{"ok": true}' if status == 200 else b"Internal error: the database is down"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the sender gave up (timeout, or its worker was killed)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/prm"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def down_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/hooks/prm"
