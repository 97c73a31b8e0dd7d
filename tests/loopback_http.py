"""One loopback HTTP server for the tests that need a peer (a weights mirror, a Hub, a redirect
target): bound to 127.0.0.1 on a free port, served from a daemon thread, closed on exit."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class LoopbackServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``with serving(Handler) as url:`` the base URL while the block runs."""
    srv = LoopbackServer(handler)
    try:
        yield srv.url
    finally:
        srv.close()
