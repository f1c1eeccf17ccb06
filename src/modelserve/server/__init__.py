"""The HTTP service: a pre-fork master and uvloop/httptools workers (see docs/performance.md).

Only this package knows HTTP. :func:`serve` binds the socket, prepares the shared metrics
directory and hands both to the :class:`~modelserve.server.prefork.Supervisor`, which forks
the workers (:mod:`modelserve.server.worker`).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile

from modelserve.config import Settings
from modelserve.logs import configure_logging

__all__ = ["serve"]

log = logging.getLogger("modelserve.server")


def serve(settings: Settings) -> int:
    """Run the service until SIGTERM; returns the process exit code."""
    from modelserve.metrics import mark_process_dead
    from modelserve.server.prefork import Supervisor, WorkerSpec, bind_socket
    from modelserve.server.worker import worker_main

    configure_logging()
    server = settings.server
    sock = bind_socket(server.host, server.port)
    host, port = sock.getsockname()[:2]
    metrics_dir = tempfile.mkdtemp(prefix="modelserve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    workers = server.workers or os.cpu_count() or 1
    if server.preload:
        _preload(settings)
    spec = WorkerSpec(
        workers=workers,
        graceful_timeout=server.graceful_timeout,
        max_requests=server.max_requests,
        max_requests_jitter=server.max_requests_jitter,
    )
    log.info(
        "serving",
        extra={
            "service": settings.service,
            "address": f"http://{host}:{port}",
            "workers": workers,
            "models": sorted(settings.models),
        },
    )
    supervisor = Supervisor(
        sock,
        spec,
        functools.partial(worker_main, settings=settings, metrics_dir=metrics_dir),
        on_worker_exit=functools.partial(mark_process_dead, metrics_dir),
        log=_log_event,
    )
    try:
        return supervisor.run()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _preload(settings: Settings) -> None:
    """Import every model class once in the master; workers inherit the modules."""
    from modelserve.errors import ModelClassError
    from modelserve.model import import_model_class

    for name, config in settings.models.items():
        try:
            import_model_class(config.class_path)
        except ModelClassError as exc:  # each worker reports it again as the model's failure
            log.error("model class does not import", extra={"model": name, "reason": str(exc)})


def _log_event(event: dict[str, object]) -> None:
    fields = dict(event)
    message = str(fields.pop("event", "supervisor"))
    level = str(fields.pop("level", "info")).upper()
    log.log(logging.getLevelName(level), message, extra=fields)
