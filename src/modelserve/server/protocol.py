"""HTTP/1.1 connections on asyncio (uvloop) with httptools: parsing, limits, keep-alive.

One :class:`HttpConnection` per TCP connection. It parses with httptools' C parser, enforces
the body limit while the body arrives (so a chunked body over the limit is refused as early as
one with a ``Content-Length`` over it), answers pipelined requests in order, and keeps idle
connections open for the keep-alive timeout. What a request means is the router's business
(:mod:`modelserve.server.routes`); this module only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Final

import httptools

if TYPE_CHECKING:
    from modelserve.server.routes import Router

__all__ = ["ConnectionPool", "HttpConnection", "Request"]

_MAX_HEADERS: Final = 100
_MAX_ID_LENGTH: Final = 200
#: While draining, idle keep-alive connections are closed after this many idle seconds.
DRAIN_IDLE_GRACE = 1.0
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}
_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\ncontent-type: " % (status.value, status.phrase.encode())
    for status in HTTPStatus
}
_PATH_CACHE = 256
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

    def __init__(
        self,
        method: str = "",
        path: str = "",
        body: bytes = b"",
        content_type: bytes | None = None,
        request_id: str = "",
        trace_id: str | None = None,
        keep_alive: bool = True,
        started: float = 0.0,
    ) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.content_type = content_type
        self.request_id = request_id
        self.trace_id = trace_id
        self.keep_alive = keep_alive
        #: ``perf_counter()`` when the request was complete (latency counts from here).
        self.started = started


class ConnectionPool:
    """State shared by every connection of one worker: limits, ids, the date header."""

    def __init__(self, router: Router, *, max_body: int, keepalive_timeout: float) -> None:
        self.router = router
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self.id_prefix = os.urandom(6).hex()
        self.id_count = 0
        #: Request targets seen before and their paths (bounded: callers choose them).
        self.paths: dict[bytes, str] = {}
        self.date_header = b""
        self.refresh_date()

    def new_request_id(self) -> str:
        """A worker-unique request id: a random prefix per worker and a counter."""
        self.id_count += 1
        return self.id_prefix + str(self.id_count)

    def path_of(self, url: bytes) -> str:
        """The path of a request target (the query dropped); plain ones are remembered."""
        # bytes.find, not `in`: `x in bytes` first tries x as an int and raises inside
        if url.find(b"?") < 0 and url.find(b"%") < 0 and url.startswith(b"/"):
            path = url.decode("utf-8", "replace")
            if len(self.paths) < _PATH_CACHE:
                self.paths[url] = path
            return path
        with contextlib.suppress(httptools.HttpParserInvalidURLError):  # then: unknown path
            url = httptools.parse_url(url).path or b""
        return url.decode("utf-8", "replace")

    def refresh_date(self) -> None:
        """Recompute the ``date`` header (called once a second)."""
        self.date_header = b"date: " + formatdate(usegmt=True).encode() + b"\r\n"

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
    """One client connection.

    The parser's callbacks run once per request each, so they do as little as they can: the
    message's fields are kept on the connection while it arrives and become a
    :class:`Request` when it is complete. (httptools skips a callback the protocol does not
    define; there is no ``on_message_begin`` or ``on_headers_complete`` here for that reason.)
    """

    __slots__ = (
        "body",
        "busy",
        "content_type",
        "dropped",
        "header_count",
        "in_message",
        "last_active",
        "max_body",
        "parser",
        "paths",
        "pending",
        "pool",
        "rejected",
        "request_id",
        "router",
        "trace_id",
        "transport",
        "url",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.router = pool.router
        self.paths = pool.paths
        self.max_body = pool.max_body
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        # the message being received
        self.in_message = False
        self.url = b""
        self.content_type: bytes | None = None
        self.request_id = ""
        self.trace_id: str | None = None
        self.header_count = 0
        self.body: bytes | bytearray = b""
        self.rejected = False
        self.dropped = 0  # body bytes read and dropped after a refusal
        # requests received while an earlier one runs in a thread
        self.pending: deque[Request] = deque()
        self.busy = False
        self.last_active = monotonic()

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

    def on_url(self, url: bytes) -> None:
        self.in_message = True
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        length = len(name)
        # content-type and x-request-id: 12, traceparent: 11, content-length: 14
        if length != 12 and length != 14 and length != 11:  # most headers stop here
            if self.header_count > _MAX_HEADERS:
                self._header(b"", value)
            return
        name = name.lower()
        if name == b"content-type" and self.header_count <= _MAX_HEADERS:
            self.content_type = value
        else:
            self._header(name, value)

    def _header(self, name: bytes, value: bytes) -> None:
        if self.rejected:
            return
        if self.header_count > _MAX_HEADERS:
            self.reject(431, f"more than {_MAX_HEADERS} header fields")
        elif name == b"content-length":
            if value.isdigit() and int(value) > self.max_body:
                self.reject(413, f"body is over the limit of {self.max_body} bytes")
        elif name == b"x-request-id":
            # visible ASCII without quote or backslash: the id goes back out in a header and
            # into JSON (log lines, bodies) as it is
            if (
                0 < len(value) <= _MAX_ID_LENGTH
                and value.isascii()
                and min(value) > 32
                and value.find(b'"') < 0
                and value.find(b"\\") < 0
            ):
                self.request_id = value.decode()
        elif name == b"traceparent":
            self.trace_id = _trace_id(value)

    def on_body(self, body: bytes) -> None:
        if self.body or self.rejected or len(body) > self.max_body:
            self._more_body(body)
        else:
            self.body = body

    def _more_body(self, body: bytes) -> None:
        # a body in several pieces, or over the limit, or of a request already refused
        if self.rejected:  # read and dropped, up to a point
            self.dropped += len(body)
            if self.dropped > self.max_body * _DISCARD_FACTOR:
                self.close()
        elif len(self.body) + len(body) > self.max_body:
            self.reject(413, f"body is over the limit of {self.max_body} bytes")
        else:
            if type(self.body) is bytes:
                self.body = bytearray(self.body)
            self.body += body

    def on_message_complete(self) -> None:
        if self.rejected:
            self.close()
            return
        request = self._take_request()
        if self.busy or self.pending:
            self.pending.append(request)
            return
        self.router.dispatch(self, request)

    def _take_request(self) -> Request:
        """The message received so far as a :class:`Request`; resets for the next one."""
        parser = self.parser
        url = self.url
        method = parser.get_method()
        body = self.body
        request = Request(
            _METHODS.get(method) or method.decode("ascii", "replace"),
            self.paths.get(url) or self.pool.path_of(url),
            body if type(body) is bytes else bytes(body),
            self.content_type,
            self.request_id or self.pool.new_request_id(),
            self.trace_id,
            parser.should_keep_alive(),
            perf_counter(),
        )
        self.url = self.body = b""
        self.in_message = False
        if self.header_count:
            self.content_type = self.trace_id = None
            self.request_id = ""
            self.header_count = 0
        return request

    # -- answering ------------------------------------------------------------------------

    def reject(self, status: int, message: str) -> None:
        """Answer an unreadable request at once and close the connection afterwards."""
        if self.rejected:
            return
        self.rejected = True
        request = self._take_request()
        request.keep_alive = False
        self.in_message = True  # the rest of the message is read and dropped
        self.router.reject(self, request, status, message)

    def write_response(
        self,
        request: Request,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        extra_headers: bytes = b"",
    ) -> None:
        """Send one response (and close the connection if it is not kept alive)."""
        transport = self.transport
        if transport is None:
            return
        keep_alive = request.keep_alive and not self.pool.draining and not self.rejected
        transport.write(
            b"".join(
                (
                    _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\ncontent-type: " % status,
                    content_type,
                    b"\r\ncontent-length: ",
                    str(len(body)).encode(),
                    b"\r\nx-request-id: ",
                    request.request_id.encode(),
                    b"\r\n",
                    self.pool.date_header,
                    extra_headers,
                    b"\r\n" if keep_alive else b"connection: close\r\n\r\n",
                    body,
                )
            )
        )
        self.last_active = monotonic()
        if not keep_alive and not self.rejected:
            self.close()

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
