"""JSON logs on stdout: one object per line, carrying the request id of the request at hand.

Events (model loads, self-tests, worker lifecycle, errors with tracebacks) go through stdlib
``logging`` with :class:`JsonFormatter`, so team code that logs gets the same format and the
current request's id for free. Access lines, one per request, take a faster path:
:class:`AccessLog` serialises with orjson into a buffer that is written out when it fills up
and at least every flush interval, so a request never waits on a write to stdout.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from contextvars import ContextVar
from time import sleep, time
from typing import IO, Any

import orjson

__all__ = [
    "AccessLog",
    "InlineRequest",
    "JsonFormatter",
    "configure_logging",
    "inline_request",
    "request_id_var",
]

#: The id of the request being handled in this context (None outside a request).
request_id_var: ContextVar[str | None] = ContextVar("modelserve_request_id", default=None)


class InlineRequest:
    """The request whose ``predict`` runs inline on the event loop right now, if any.

    Setting :data:`request_id_var` around every inline ``predict`` would cost more than the
    rest of the request's bookkeeping. The loop's thread runs one inline ``predict`` at a
    time, so a plain attribute says the same for the log records of that thread.
    """

    __slots__ = ("request_id", "thread")

    def __init__(self) -> None:
        self.request_id: str | None = None
        self.thread = 0  # threading.get_ident() of the loop thread (Router.attach)


inline_request = InlineRequest()

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}


class JsonFormatter(logging.Formatter):
    """Formats a log record as one JSON object; ``extra=`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is None and record.thread == inline_request.thread:
            request_id = inline_request.request_id
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (stdout by default) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic announces its dialect on every start; only its warnings matter to operators.
    logging.getLogger("alembic").setLevel(logging.WARNING)


_THOUSANDTHS = tuple(b".%03d" % n for n in range(1000))
_MODEL = b',"model":"%s","version":%d'
_TRACE = b',"trace_id":"%s"}\n'
_CACHE_LIMIT = 256  # repeating field sets kept, at most (callers choose the paths)


class AccessLog:
    """Buffered JSON access lines written to a file descriptor (stdout by default)."""

    def __init__(self, fd: int | None = None, max_buffer: int = 64 * 1024) -> None:
        self.fd = sys.stdout.fileno() if fd is None else fd
        self.max_buffer = max_buffer
        self.buffer = bytearray()
        #: the fields that repeat from request to request, encoded once: (method, path,
        #: status, model, version) -> '","method":...,"latency_ms":'
        self._middles: dict[tuple[str, str, int, str | None, int | None], bytes] = {}
        self._head_until = 0.0
        self._head = b""

    def request(
        self,
        request_id: str,
        method: str,
        path: str,
        status: int,
        seconds: float,
        trace_id: str | None,
        model: str | None = None,
        version: int | None = None,
    ) -> None:
        """Queue the access line of one request.

        Joined from pieces instead of a dict and a JSON encoder: it runs once per request.
        Model names are registry names, trace ids are hex and request ids are checked by the
        protocol (visible ASCII, no quote or backslash), so only the path can need escaping.
        """
        key = (method, path, status, model, version)
        middle = self._middles.get(key) or self._middle(key)
        now = time()
        if now >= self._head_until:  # the timestamp has millisecond resolution
            self._head_until = now + 0.001
            self._head = b'{"ts":%.3f,"event":"request","request_id":"' % now
        # latency in ms with 3 decimals, from integer microseconds: cheaper than "%.3f"
        micros = int(seconds * 1_000_000.0 + 0.5)
        self.buffer += b"".join(
            (
                self._head,
                request_id.encode(),
                middle,
                str(micros // 1000).encode(),
                _THOUSANDTHS[micros % 1000],
                b"}\n" if trace_id is None else _TRACE % trace_id.encode(),
            )
        )
        if len(self.buffer) >= self.max_buffer:
            self.flush()

    def _middle(self, key: tuple[str, str, int, str | None, int | None]) -> bytes:
        method, path, status, model, version = key
        encoded = b'","method":"%s","path":%s,"status":%d%s,"latency_ms":' % (
            method.encode(),
            orjson.dumps(path),
            status,
            b"" if model is None else _MODEL % (model.encode(), version),
        )
        if len(self._middles) < _CACHE_LIMIT:
            self._middles[key] = encoded
        return encoded

    def flush(self) -> None:
        """Write out every queued line."""
        if not self.buffer:
            return
        data, self.buffer = bytes(self.buffer), bytearray()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                sleep(0.001)
                continue
            except OSError:
                return  # stdout closed: nothing sensible left to do with the lines
            view = view[written:]
