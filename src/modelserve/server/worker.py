"""One worker process: an event loop serving HTTP on the inherited socket.

The worker loads its models in a background thread after the fork (so every worker owns its
models and liveness answers during a slow load), serves requests on uvloop, flushes metrics and
access lines once a tick, and on SIGTERM drains: readiness fails at once, the listening socket
closes, idle keep-alive connections close, in-flight requests finish, then the worker exits 0.
After ``max_requests`` answers it drains the same way and exits, and the master replaces it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from typing import Any

from modelserve import __version__
from modelserve.config import Settings
from modelserve.dataplane.core import DataPlane
from modelserve.host import ModelHost
from modelserve.logs import AccessLog, configure_logging
from modelserve.metrics import Metrics
from modelserve.registry import Registry
from modelserve.server import routes
from modelserve.server.prefork import RECYCLE_EXIT_CODE
from modelserve.server.protocol import ConnectionPool, HttpConnection
from modelserve.server.routes import Router

__all__ = ["Worker"]

log = logging.getLogger("modelserve.worker")

TICK_SECONDS = 0.25
#: Whether the request path runs as compiled modules (setup.py; MODELSERVE_COMPILE=0: not).
COMPILED = not (routes.__file__ or "").endswith(".py")


class Worker:
    """Everything one worker process runs; :meth:`run` blocks until the worker is done."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics_dir: str | None,
        max_requests: int = 0,
        index: int = 0,
    ) -> None:
        self.settings = settings
        self.index = index
        self.max_requests = max_requests
        self.metrics = Metrics(metrics_dir)
        self.host = ModelHost(
            settings, lambda: Registry.from_settings(settings), metrics=self.metrics
        )
        self.dataplane = DataPlane(self.host, inline_predict_ms=settings.server.inline_predict_ms)
        self.access_log = AccessLog() if settings.server.access_log else None
        self.router = Router(
            self.dataplane,
            self.metrics,
            self.access_log,
            service=settings.service,
            version=__version__,
            predict_threads=settings.server.predict_threads,
            retry_after=settings.server.retry_after_seconds,
        )
        self.pool = ConnectionPool(
            self.router,
            max_body=settings.server.max_body_bytes,
            keepalive_timeout=settings.server.keepalive_timeout,
        )
        self.server: asyncio.AbstractServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self.drain_deadline = 0.0
        self.drain_reason: object = None
        self._second = 0

    def run(self, sock: socket.socket, context: Any = None) -> int:
        """Serve on ``sock`` until drained; returns the exit code."""
        loop = _new_event_loop()
        self.loop = loop
        self.router.attach(loop)
        asyncio.set_event_loop(loop)
        # The first workers accept at once, so probes get answers (live 200, ready 503) while
        # the models load. A worker that replaces another (respawn, recycle) accepts only
        # once its models are loaded: the other workers, or the listen backlog, hold the
        # traffic meanwhile, so no caller sees a 503 because a worker was replaced.
        replacement = bool(getattr(context, "replacement", False))
        try:
            self.server = loop.run_until_complete(
                loop.create_server(
                    lambda: HttpConnection(self.pool),
                    sock=sock,
                    backlog=2048,
                    start_serving=not replacement,
                )
            )
            loop.add_signal_handler(signal.SIGTERM, self.drain, signal.SIGTERM)
            if getattr(context, "stopping", False):  # SIGTERM arrived before the loop ran
                self.drain(signal.SIGTERM)
            self.router.on_limit(self.max_requests, self.drain)
            self.host.start(self._loaded_from_thread if replacement else None)
            log.info(
                "worker started",
                extra={
                    "worker": self.index,
                    "max_requests": self.max_requests,
                    "replacement": replacement,
                    "compiled": COMPILED,
                },
            )
            loop.call_later(TICK_SECONDS, self._tick)
            loop.run_forever()
        finally:
            self._flush()
            self.router.executor.shutdown(wait=False, cancel_futures=True)
            loop.close()
        return 0 if self.drain_reason != "recycle" else RECYCLE_EXIT_CODE

    def _loaded_from_thread(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._start_serving)

    def _start_serving(self) -> None:
        if self.server is not None and not self.stopping and self.loop is not None:
            self.loop.create_task(self.server.start_serving())
            log.info("worker accepting", extra={"worker": self.index})

    def drain(self, reason: object = "recycle") -> None:
        """Stop taking work and exit once what is in flight is answered."""
        if self.stopping:
            return
        self.stopping = True
        self.drain_reason = reason
        self.dataplane.draining = True
        self.drain_deadline = time.monotonic() + self.settings.server.graceful_timeout
        if isinstance(reason, int):
            reason = signal.Signals(reason).name
        log.info(
            "worker draining",
            extra={"worker": self.index, "reason": reason, "in_flight": self.metrics.inflight_now},
        )
        if self.server is not None:
            self.server.close()
        self.pool.drain(time.monotonic())

    def _tick(self) -> None:
        now = time.monotonic()
        second = int(now)
        if second != self._second:
            self._second = second
            self.pool.refresh_date()
            self.pool.sweep(now)
            self.metrics.flush()
        if self.access_log is not None:
            self.access_log.flush()
        if self.stopping:
            self.pool.drain(now)
        if self.stopping and (
            (self.metrics.inflight_now <= 0 and not self.pool.connections)
            or now > self.drain_deadline
        ):
            log.info("worker stopped", extra={"worker": self.index, "served": self.router.served})
            assert self.loop is not None
            self.loop.stop()
            return
        assert self.loop is not None
        self.loop.call_later(TICK_SECONDS, self._tick)

    def _flush(self) -> None:
        try:
            self.metrics.flush()
        finally:
            if self.access_log is not None:
                self.access_log.flush()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def worker_main(sock: socket.socket, context: Any, *, settings: Settings, metrics_dir: str) -> int:
    """Entry point of a forked worker (called by the supervisor)."""
    configure_logging()
    worker = Worker(
        settings,
        metrics_dir=metrics_dir,
        max_requests=getattr(context, "max_requests", 0),
        index=getattr(context, "index", 0),
    )
    return worker.run(sock, context)
