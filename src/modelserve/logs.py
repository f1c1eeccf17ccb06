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

__all__ = ["AccessLog", "JsonFormatter", "configure_logging", "request_id_var"]

#: The id of the request being handled in this context (None outside a request).
request_id_var: ContextVar[str | None] = ContextVar("modelserve_request_id", default=None)

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


_ACCESS = (
    b'{"ts":%s,"event":"request","request_id":"%s","method":"%s","path":%s,"status":%d,'
    b'"latency_ms":%.3f%s%s}\n'
)
_MODEL = b',"model":"%s","version":%d'
_TRACE = b',"trace_id":"%s"'
_CACHE_LIMIT = 256  # encoded paths (chosen by callers) and model fields kept, at most


class AccessLog:
    """Buffered JSON access lines written to a file descriptor (stdout by default)."""

    def __init__(self, fd: int | None = None, max_buffer: int = 64 * 1024) -> None:
        self.fd = sys.stdout.fileno() if fd is None else fd
        self.max_buffer = max_buffer
        self.buffer = bytearray()
        self._paths: dict[str, bytes] = {}
        self._models: dict[tuple[str, int | None], bytes] = {}
        self._ts_until = 0.0
        self._ts = b"0"

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

        Formatted with ``%`` instead of a dict and a JSON encoder: it runs once per request.
        Model names are registry names, trace ids are hex and request ids are checked by the
        protocol (visible ASCII, no quote or backslash), so only the path can need escaping.
        """
        encoded_path = self._paths.get(path) or self._path(path)
        model_fields = b""
        if model is not None:
            model_fields = self._models.get((model, version)) or self._model(model, version)
        now = time()
        if now >= self._ts_until:  # formatting a float costs more than the rest
            self._ts_until = now + 0.001
            self._ts = b"%.3f" % now
        self.buffer += _ACCESS % (
            self._ts,
            request_id.encode(),
            method.encode(),
            encoded_path,
            status,
            seconds * 1000.0,
            model_fields,
            b"" if trace_id is None else _TRACE % trace_id.encode(),
        )
        if len(self.buffer) >= self.max_buffer:
            self.flush()

    def _model(self, model: str, version: int | None) -> bytes:
        encoded = _MODEL % (model.encode(), version)
        if len(self._models) < _CACHE_LIMIT:
            self._models[(model, version)] = encoded
        return encoded

    def _path(self, path: str) -> bytes:
        encoded = orjson.dumps(path)
        if len(self._paths) < _CACHE_LIMIT:
            self._paths[path] = encoded
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
