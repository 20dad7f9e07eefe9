"""A loopback HTTP server for download tests: real requests, real files, no network."""
from __future__ import annotations

import http.server
import io
import tarfile
import threading
import zipfile


class Server:
    """A loopback HTTP server: serves `files` (path -> bytes) with Range support; can fail a path's
    first N requests with 503 (`fail`) or cut their body off halfway (`cut`), serve a corrupted
    body (`corrupt`), ignore Range headers (`no_range`). `seen` lists (path, Range header) of
    every request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, int] = {}
        self.cut: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.no_range = False
        self.seen: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.seen.append((self.path, self.headers.get("Range")))
                if server.fail.get(self.path, 0) > 0:
                    server.fail[self.path] -= 1
                    return self._send(503, b"busy")
                if self.path not in server.files:
                    return self._send(404, b"not here")
                body = server.files[self.path]
                if self.path in server.corrupt:
                    body = bytes(b ^ 0xFF for b in body)
                wanted = self.headers.get("Range")
                if wanted and not server.no_range:
                    start = int(wanted.removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        return self._send(416, b"")
                    span = f"bytes {start}-{len(body) - 1}/{len(body)}"
                    return self._send(206, body[start:], {"Content-Range": span})
                if server.cut.get(self.path, 0) > 0:
                    server.cut[self.path] -= 1
                    return self._send(200, body, length=len(body) // 2)
                return self._send(200, body)

            def _send(self, status, body, headers=None, length=None):
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body[:length])   # HTTP/1.0: the connection closes after the response

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base + path

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]


def tar_bytes(members: dict[str, bytes], compression: str = "gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
