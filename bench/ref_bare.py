"""Reference "bare" server: the practical limit of a Python model server on one core.

uvloop + httptools, one ``asyncio.Protocol``, orjson, ``predict`` called inline in the
protocol callback, HTTP/1.1 keep-alive (pipelining-safe: responses are written in order).
No framework, no routing table, no logging, no middleware.

Run (the harness does this): ``python ref_bare.py PORT`` with ``BENCH_ARTIFACTS`` pointing at
the trained artifacts and ``bench/`` on ``PYTHONPATH``. Same contract as the others:
``POST /infer`` ``{"model_id": ..., "features": [...]}`` -> ``{"model_id": ..., "output": ...}``,
``GET /health/ready`` -> 200.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httptools
import orjson
import uvloop
from models import load_all

MODELS = load_all(os.environ["BENCH_ARTIFACTS"])

_JSON = b"Content-Type: application/json\r\nContent-Length: "
_STATUS = {
    200: b"HTTP/1.1 200 OK\r\n",
    400: b"HTTP/1.1 400 Bad Request\r\n",
    404: b"HTTP/1.1 404 Not Found\r\n",
    405: b"HTTP/1.1 405 Method Not Allowed\r\n",
    500: b"HTTP/1.1 500 Internal Server Error\r\n",
}
_READY_BODY = b'{"ready":true}'


def _response(status: int, body: bytes, keep_alive: bool) -> bytes:
    return b"".join(
        (
            _STATUS[status],
            _JSON,
            str(len(body)).encode(),
            b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n",
            body,
        )
    )


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": message})


def infer(raw: bytes) -> tuple[int, bytes]:
    try:
        req = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error(400, "body is not valid JSON")
    if not isinstance(req, dict):
        return _error(400, "body must be a JSON object")
    model_id = req.get("model_id")
    model = MODELS.get(model_id) if isinstance(model_id, str) else None
    if model is None:
        return _error(404, f"unknown model_id {model_id!r}")
    features = req.get("features")
    if not isinstance(features, list):
        return _error(400, "features must be a list")
    try:
        output = model.predict(features)
    except Exception:
        return _error(500, "predict failed")
    return 200, orjson.dumps(
        {"model_id": model_id, "output": output}, option=orjson.OPT_SERIALIZE_NUMPY
    )


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("body", "parser", "transport", "url")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_response(400, b'{"error":"bad request"}', False))
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        keep_alive = parser.should_keep_alive()
        url = self.url
        method = parser.get_method()
        if url == b"/infer":
            if method == b"POST":
                body = self.body
                status, out = infer(body[0] if len(body) == 1 else b"".join(body))
            else:
                status, out = _error(405, "use POST")
        elif url == b"/health/ready" or url == b"/health/live":
            status, out = 200, _READY_BODY
        else:
            status, out = _error(404, "not found")
        self.transport.write(_response(status, out, keep_alive))
        if not keep_alive:
            self.transport.close()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8124
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(HttpProtocol, "127.0.0.1", port, backlog=2048, reuse_address=True)
    )
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


if __name__ == "__main__":
    main()
