"""HTTP/1.1 connections on asyncio (uvloop) with httptools: parsing, limits, keep-alive.

One :class:`HttpConnection` per TCP connection. It parses with httptools' C parser, enforces
the body limit while the body arrives (so a chunked body over the limit is refused as early as
one with a ``Content-Length`` over it), answers pipelined requests in order, and keeps idle
connections open for the keep-alive timeout. What a request means is the router's business
(:mod:`modelserve.server.routes`); this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from modelserve.server.routes import Router

__all__ = ["ConnectionPool", "HttpConnection", "Request"]

_MAX_HEADERS = 100
_MAX_ID_LENGTH = 200
#: While draining, idle keep-alive connections are closed after this many idle seconds.
DRAIN_IDLE_GRACE = 1.0
# Lengths of the header names read below: content-type / x-request-id, traceparent,
# content-length.
_WANTED_LENGTHS = frozenset((12, 11, 14))
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}
_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\ncontent-type: " % (status.value, status.phrase.encode())
    for status in HTTPStatus
}
# After a 413 the rest of the body is read and dropped, up to this many times the limit.
_DISCARD_FACTOR = 16


class Request:
    """One parsed request, as the router sees it."""

    __slots__ = (
        "body",
        "content_type",
        "keep_alive",
        "method",
        "path",
        "request_id",
        "started",
        "trace_id",
    )

    def __init__(self) -> None:
        self.method = ""
        self.path = ""
        self.body = b""
        self.content_type: bytes | None = None
        self.request_id = ""
        self.trace_id: str | None = None
        self.keep_alive = True
        self.started = 0.0


class ConnectionPool:
    """State shared by every connection of one worker: limits, ids, the date header."""

    def __init__(self, router: Router, *, max_body: int, keepalive_timeout: float) -> None:
        self.router = router
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self._id_prefix = os.urandom(6).hex()
        self._id_counter = 0
        self.date_header = b""
        self.refresh_date()

    def refresh_date(self) -> None:
        """Recompute the ``date`` header (called once a second)."""
        self.date_header = b"date: " + formatdate(usegmt=True).encode() + b"\r\n"

    def new_request_id(self) -> str:
        """A worker-unique id: a random prefix per worker and a counter."""
        self._id_counter += 1
        return self._id_prefix + str(self._id_counter)

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than the keep-alive timeout."""
        limit = now - self.keepalive_timeout
        for conn in list(self.connections):
            if conn.idle() and conn.last_active < limit:
                conn.close()

    def drain(self, now: float) -> None:
        """Stop keeping connections alive.

        Every answer from now on carries ``connection: close``. A connection idle for
        :data:`DRAIN_IDLE_GRACE` seconds is closed (call again to sweep); one that is
        used sooner gets its answer first. Closing an idle keep-alive connection at once
        would race with a request the client is sending on it right then.
        """
        self.draining = True
        limit = now - DRAIN_IDLE_GRACE
        for conn in list(self.connections):
            if conn.idle() and conn.last_active < limit:
                conn.close()


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "body",
        "body_size",
        "busy",
        "header_count",
        "in_message",
        "last_active",
        "parser",
        "pending",
        "pool",
        "rejected",
        "request",
        "router",
        "transport",
        "url",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.router = pool.router
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.request: Request | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        self.header_count = 0
        self.rejected = False
        self.pending: deque[Request] = deque()
        self.busy = False  # a request of this connection is running in a thread
        self.in_message = False
        self.last_active = time.monotonic()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        # last_active is not touched here: a connection inside a request is never idle, and
        # between requests it counts from its last answer.
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.reject(400, "protocol upgrades are not supported")
            self.close()
        except httptools.HttpParserError as exc:
            self.reject(400, f"malformed HTTP request: {exc}")
            self.close()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.url = b""
        self.body_size = 0
        self.header_count = 0
        request = self.request = Request()
        request.started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.request
        if request is None or self.rejected:
            return
        self.header_count += 1
        if self.header_count > _MAX_HEADERS:
            self.reject(431, f"more than {_MAX_HEADERS} header fields")
            return
        if len(name) not in _WANTED_LENGTHS:  # most headers: one len() and a set lookup
            return
        name = name.lower()
        if name == b"content-type":
            request.content_type = value
        elif name == b"x-request-id":
            # visible ASCII only: the id goes back out in a header and into every log line
            if 0 < len(value) <= _MAX_ID_LENGTH and value.isascii() and min(value) > 32:
                request.request_id = value.decode()
        elif name == b"traceparent":
            request.trace_id = _trace_id(value)
        elif name == b"content-length" and value.isdigit() and int(value) > self.pool.max_body:
            self.reject(413, f"body is over the limit of {self.pool.max_body} bytes")

    def on_headers_complete(self) -> None:
        request = self.request
        if request is None or self.rejected:
            return
        url = self.url
        if b"?" in url or b"%" in url or not url.startswith(b"/"):
            request.path = httptools.parse_url(url).path.decode("utf-8", "replace")
        else:
            request.path = url.decode("utf-8", "replace")
        method = self.parser.get_method()
        request.method = _METHODS.get(method) or method.decode("ascii", "replace")
        if not request.request_id:
            request.request_id = self.pool.new_request_id()

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.rejected:
            if self.body_size > self.pool.max_body * _DISCARD_FACTOR:
                self.close()
            return
        if self.body_size > self.pool.max_body:
            self.reject(413, f"body is over the limit of {self.pool.max_body} bytes")
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        request = self.request
        self.request = None
        if self.rejected or request is None:
            self.close()
            return
        request.body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body = []
        request.keep_alive = self.parser.should_keep_alive()
        if self.busy or self.pending:
            self.pending.append(request)
            return
        self.router.dispatch(self, request)

    # -- answering ------------------------------------------------------------------------

    def reject(self, status: int, message: str) -> None:
        """Answer an unreadable request at once and close the connection afterwards."""
        if self.rejected:
            return
        self.rejected = True
        request = self.request or Request()
        request.keep_alive = False
        if not request.request_id:
            request.request_id = self.pool.new_request_id()
        if not request.started:
            request.started = time.perf_counter()
        self.router.reject(self, request, status, message)
        if not self.in_message:
            self.close()

    def write_response(
        self,
        request: Request,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        extra_headers: bytes = b"",
    ) -> bool:
        """Send one response; returns whether the connection stays open."""
        transport = self.transport
        keep_alive = request.keep_alive and not self.pool.draining and not self.rejected
        if transport is None:
            return False
        transport.write(
            b"%s%s\r\ncontent-length: %d\r\nx-request-id: %s\r\n%s%s%s\r\n%s"
            % (
                _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\ncontent-type: " % status,
                content_type,
                len(body),
                request.request_id.encode(),
                self.pool.date_header,
                extra_headers,
                b"" if keep_alive else b"connection: close\r\n",
                body,
            )
        )
        self.last_active = time.monotonic()
        if not keep_alive and not self.rejected:
            self.close()
        return keep_alive

    def begin_background(self) -> None:
        """A request of this connection now runs in a thread: hold later ones back."""
        self.busy = True
        if self.transport is not None:
            self.transport.pause_reading()

    def end_background(self) -> None:
        """The background request was answered: run what queued up behind it."""
        self.busy = False
        while self.pending and not self.busy and self.transport is not None:
            self.router.dispatch(self, self.pending.popleft())
        if not self.busy and self.transport is not None:
            self.transport.resume_reading()

    def idle(self) -> bool:
        return not self.busy and not self.pending and not self.in_message

    def close(self) -> None:
        # connection_lost removes the connection from the pool once the transport has
        # written out what it still buffers and closed.
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _trace_id(value: bytes) -> str | None:
    # W3C traceparent: version-traceid-parentid-flags, 2/32/16/2 lowercase hex.
    parts = value.strip().split(b"-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    trace = parts[1]
    try:
        int(trace, 16)
    except ValueError:
        return None
    if trace == b"0" * 32 or trace.lower() != trace:
        return None
    return trace.decode()
