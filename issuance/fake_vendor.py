"""A small real HTTP vendor for the demo (``manage.py fake_vendor``) and the tests.

``POST /redeem/<mode>`` answers by mode:
  ok         200 {"data": {"voucherCode": "V-<reference>", "validTill": "2027-11-01",
                 "offer": "demo-offer", "seriesId": "234"}}
  novoucher  200 {"data": {}}
  error      500 {"error": "boom"}
  garbage    200 with a body that is not JSON
  slow       sleeps ``slow_seconds`` then answers like ok
  drop       closes the connection without answering
``GET /status/<reference>`` answers 200 with the voucher of an earlier successful
redemption of that reference, 404 otherwise (the recovery look-up).
Every request is recorded in ``server.calls``; references in ``server.redeemed``.
Listens on loopback only.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: "FakeVendor"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _answer(self, status: int, body: bytes, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _voucher(self, reference: str) -> bytes:
        return json.dumps(
            {"data": {"voucherCode": f"V-{reference}", "validTill": "2027-11-01", "offer": "demo-offer",
                      "seriesId": "234"}}
        ).encode()

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        mode = self.path.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        reference = str(body.get("reference", "")) if isinstance(body, dict) else ""
        with self.server.lock:
            self.server.calls.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        if mode == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode == "slow":
            time.sleep(self.server.slow_seconds)
            mode = "ok"
        if mode == "ok":
            with self.server.lock:
                self.server.redeemed[reference] = self.server.redeemed.get(reference, 0) + 1
            self._answer(200, self._voucher(reference))
        elif mode == "novoucher":
            self._answer(200, b'{"data": {}}')
        elif mode == "error":
            self._answer(500, b'{"error": "boom"}')
        elif mode == "garbage":
            self._answer(200, b"<html>not json", content_type="text/html")
        else:
            self._answer(404, b'{"error": "unknown mode"}')

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/status/"):
            reference = self.path[len("/status/"):]
            with self.server.lock:
                known = reference in self.server.redeemed
            if known:
                self._answer(200, self._voucher(reference))
            else:
                self._answer(404, b'{"error": "unknown reference"}')
            return
        self._answer(404, b"{}")


class FakeVendor(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, *, slow_seconds: float = 2.0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.lock = threading.Lock()
        self.calls: list[dict] = []
        self.redeemed: dict[str, int] = {}
        self.slow_seconds = slow_seconds
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "FakeVendor":
        self._thread = threading.Thread(target=self.serve_forever, name="fake-vendor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
