"""Routes: what each path means, in terms of the data plane; errors become JSON here.

This is the one place where errors turn into HTTP: every :class:`ModelserveError` carries its
status, the body is always ``{"error": "..."}``, a 503 carries ``Retry-After``, and a 500 never
carries a traceback (the log line with the same request id does).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from threading import get_ident
from time import perf_counter
from typing import Any

import orjson
from orjson import dumps, loads

from modelserve.dataplane.core import Call, DataPlane
from modelserve.errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    ModelserveError,
    NotReadyError,
    PathNotFoundError,
    RequestError,
    UnsupportedMediaTypeError,
)
from modelserve.logs import AccessLog, inline_request, request_id_var
from modelserve.metrics import Metrics
from modelserve.server.openapi import openapi_document
from modelserve.server.protocol import HttpConnection, Request

__all__ = ["Router"]

log = logging.getLogger("modelserve.server")

JSON = b"application/json"
_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
Handler = Callable[[HttpConnection, Request], None]


def _json_default(value: Any) -> Any:
    from modelserve.selftest import to_jsonable

    converted = to_jsonable(value)
    if converted is value:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return converted


def _dumps(value: Any) -> bytes:
    return dumps(value, default=_json_default, option=_DUMP_OPTIONS)


class Router:
    """Maps requests to handlers; runs predictions inline or in the predict thread pool."""

    def __init__(
        self,
        dataplane: DataPlane,
        metrics: Metrics,
        access_log: AccessLog | None,
        *,
        service: str,
        version: str,
        predict_threads: int,
        retry_after: int,
    ) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.access_log = access_log
        self.service = service
        self.version = version
        self.executor = ThreadPoolExecutor(predict_threads, thread_name_prefix="predict")
        self.retry_after = b"retry-after: %d\r\n" % retry_after
        self.loop: asyncio.AbstractEventLoop | None = None
        self.static: dict[str, dict[str, Handler]] = {
            "/infer": {"POST": self.infer},
            "/health/live": {"GET": self.live},
            "/health/ready": {"GET": self.ready},
            "/v2/health/live": {"GET": self.live},
            "/v2/health/ready": {"GET": self.ready},
            "/v2": {"GET": self.server_metadata},
            "/metrics": {"GET": self.prometheus},
            "/models": {"GET": self.models},
            "/openapi.json": {"GET": self.openapi},
        }
        self._openapi: bytes | None = None
        self.served = 0
        self._limit = -1
        self._at_limit: Callable[[], None] = _nothing

    # -- entry points from the connection --------------------------------------------------

    def dispatch(self, conn: HttpConnection, request: Request) -> None:
        """Handle one complete request."""
        self.metrics.inflight_now += 1
        served = self.served
        path = request.path
        try:
            if path == "/infer" and request.method == "POST":
                self.infer(conn, request)  # the hot path, before the table lookup
                return
            methods = self.static.get(path)
            if methods is not None:
                handler = methods.get(request.method)
                if handler is None:
                    raise MethodNotAllowedError(request.method, path, list(methods))
                handler(conn, request)
            elif path.startswith("/v2/models/"):
                self.v2_model(conn, request)
            else:
                raise PathNotFoundError(f"path {path} not found")
        except ModelserveError as exc:
            self.fail(conn, request, exc)
        except Exception as exc:  # a bug, or a failing dependency (the metrics store, ...)
            if self.served == served:  # not answered yet
                self._internal_error(conn, request, exc)
            else:
                log.error(
                    "error after answering", exc_info=exc, extra={"request_id": request.request_id}
                )

    def reject(self, conn: HttpConnection, request: Request, status: int, message: str) -> None:
        """Answer a request the connection could not read (bad HTTP, too large)."""
        self.metrics.inflight_now += 1
        self.respond(conn, request, status, _dumps({"error": message}))

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve on ``loop``; called from the thread that runs it (inline predictions run
        there, and log records from that thread get the inline request's id)."""
        self.loop = loop
        inline_request.thread = get_ident()

    def on_limit(self, limit: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, right after the ``limit``-th answer (0: never)."""
        self._limit = limit or -1
        self._at_limit = callback

    # -- answering ----------------------------------------------------------------------------

    def respond(
        self,
        conn: HttpConnection,
        request: Request,
        status: int,
        body: bytes,
        content_type: bytes = JSON,
        extra_headers: bytes = b"",
        call: Call | None = None,
    ) -> None:
        conn.write_response(request, status, body, content_type, extra_headers)
        seconds = perf_counter() - request.started
        self.metrics.inflight_now -= 1
        self.served += 1
        if self.served == self._limit:
            self._at_limit()
        if call is not None:
            resident = call.resident
            if resident.stats is not None:
                resident.stats.observe(status, seconds, call.predict_seconds)
            if self.access_log is not None:
                self.access_log.request(
                    request.request_id,
                    request.method,
                    request.path,
                    status,
                    seconds,
                    request.trace_id,
                    resident.name,
                    resident.version,
                )
            return
        if request.path.endswith("/infer"):
            # refused before a model was chosen: counted without a caller-chosen label value
            self.metrics.unrouted.observe(status, seconds, None)
        if self.access_log is not None:
            self.access_log.request(
                request.request_id, request.method, request.path, status, seconds, request.trace_id
            )

    def fail(
        self, conn: HttpConnection, request: Request, exc: ModelserveError, call: Call | None = None
    ) -> None:
        status = exc.http_status
        headers = self.retry_after if status == 503 else b""
        if isinstance(exc, MethodNotAllowedError):
            headers = b"allow: " + ", ".join(exc.allowed).encode() + b"\r\n"
        self.respond(conn, request, status, _dumps({"error": str(exc)}), JSON, headers, call)

    def run(self, conn: HttpConnection, request: Request, call: Call) -> None:
        """Run a planned prediction inline or in the thread pool, then answer it."""
        if call.inline:
            inline = inline_request
            inline.request_id = request.request_id
            try:
                body = dumps(call.runner(call), default=_json_default, option=_DUMP_OPTIONS)
            except RequestError as exc:
                self.fail(conn, request, exc, call)
                return
            except TypeError as exc:
                self._not_json(conn, request, call, exc)
                return
            finally:
                inline.request_id = None
            self.respond(conn, request, 200, body, JSON, b"", call)
            return
        conn.begin_background()
        context = contextvars.copy_context()
        context.run(request_id_var.set, request.request_id)
        future = self.executor.submit(context.run, call.runner, call)
        loop = self.loop
        assert loop is not None
        future.add_done_callback(
            lambda done: loop.call_soon_threadsafe(self._finish, conn, request, call, done)
        )

    def _finish(
        self, conn: HttpConnection, request: Request, call: Call, done: Future[dict[str, Any]]
    ) -> None:
        exc = done.exception()
        if exc is None:
            self._answer(conn, request, call, done.result())
        elif isinstance(exc, ModelserveError):
            self.fail(conn, request, exc, call)
        else:
            self._internal_error(conn, request, exc, call)
        conn.end_background()

    def _internal_error(
        self, conn: HttpConnection, request: Request, exc: BaseException, call: Call | None = None
    ) -> None:
        """A 500 without details; the log line with the request id has the traceback."""
        log.error("unexpected error", exc_info=exc, extra={"request_id": request.request_id})
        self.fail(conn, request, ModelserveError("internal error"), call)

    def _answer(
        self, conn: HttpConnection, request: Request, call: Call, result: dict[str, Any]
    ) -> None:
        try:
            body = _dumps(result)
        except TypeError as exc:
            self._not_json(conn, request, call, exc)
            return
        self.respond(conn, request, 200, body, JSON, b"", call)

    def _not_json(self, conn: HttpConnection, request: Request, call: Call, exc: Exception) -> None:
        name = call.resident.name
        error = ModelserveError(f"model {name!r} returned an output that is not JSON: {exc}")
        self.fail(conn, request, error, call)

    # -- handlers -------------------------------------------------------------------------------

    def infer(self, conn: HttpConnection, request: Request) -> None:
        payload = self._json_body(request)
        self.run(conn, request, self.dataplane.plan_infer(payload, request.request_id))

    def live(self, conn: HttpConnection, request: Request) -> None:
        self.respond(conn, request, 200, b'{"live":true}')

    def ready(self, conn: HttpConnection, request: Request) -> None:
        if self.dataplane.ready:
            self.respond(conn, request, 200, b'{"ready":true}')
            return
        reason = "shutting down" if self.dataplane.draining else "models not ready"
        raise NotReadyError(f"not ready: {reason}; see GET /models")

    def server_metadata(self, conn: HttpConnection, request: Request) -> None:
        body = {"name": self.service, "version": self.version, "extensions": []}
        self.respond(conn, request, 200, _dumps(body))

    def prometheus(self, conn: HttpConnection, request: Request) -> None:
        body, content_type = self.metrics.exposition()
        self.respond(conn, request, 200, body, content_type.encode())

    def models(self, conn: HttpConnection, request: Request) -> None:
        host = self.dataplane.host
        body = {"service": self.service, "ready": self.dataplane.ready, "models": host.summary()}
        self.respond(conn, request, 200, _dumps(body))

    def openapi(self, conn: HttpConnection, request: Request) -> None:
        if self._openapi is None:
            self._openapi = _dumps(openapi_document(self.service, self.version))
        self.respond(conn, request, 200, self._openapi)

    def v2_model(self, conn: HttpConnection, request: Request) -> None:
        """``/v2/models/{name}[/versions/{v}][/ready|/infer]``."""
        parts = request.path[len("/v2/models/") :].split("/")
        action = ""
        if parts[-1] in ("ready", "infer"):
            action = parts.pop()
        version: str | None = None
        if len(parts) == 3 and parts[1] == "versions" and parts[2]:
            version = parts[2]
        elif len(parts) != 1:
            raise PathNotFoundError(f"path {request.path} not found")
        name = parts[0]
        if not name:
            raise PathNotFoundError(f"path {request.path} not found")
        expected = "POST" if action == "infer" else "GET"
        if request.method != expected:
            raise MethodNotAllowedError(request.method, request.path, [expected])
        if action == "infer":
            payload = self._json_body(request)
            self.run(conn, request, self.dataplane.plan_infer_v2(name, version, payload))
        elif action == "ready":
            ready = self.dataplane.model_ready_v2(name, version)
            if not ready:
                raise NotReadyError(f"model {name!r} is not ready")
            self.respond(conn, request, 200, _dumps({"name": name, "ready": True}))
        else:
            metadata = self.dataplane.model_metadata_v2(name, version)
            self.respond(conn, request, 200, _dumps(metadata))

    def _json_body(self, request: Request) -> Any:
        content_type = request.content_type
        if content_type is not None and content_type != JSON:
            media = content_type.split(b";", 1)[0].strip().lower()
            if media != JSON and not media.endswith(b"+json"):
                raise UnsupportedMediaTypeError(
                    f"content-type {media.decode(errors='replace')!r} not supported; "
                    "send application/json"
                )
        try:
            return loads(request.body)
        except orjson.JSONDecodeError as exc:
            if not request.body:
                raise InvalidRequestError("body: empty; expected a JSON object") from None
            raise InvalidRequestError(f"body: malformed JSON: {exc}") from None


def _nothing() -> None:
    pass
