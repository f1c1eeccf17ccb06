"""Helpers for tests of ``modelserve serve`` over a real socket (fixtures: conftest.py).

One service directory per test session holds a module of small test model classes
(``svc_models.py``, :data:`MODELS_SOURCE`), a SQLite registry and a local artifact store; every
model of :data:`PUBLISHED` is published once and aliased ``production``. Each test then starts
``modelserve serve`` on that directory with a configuration file of its own (chosen through
``MODELSERVE_CONFIG``): its models, workers and ``[server]`` settings.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from modelserve.testing import RunningService

MODELS_SOURCE = '''
"""Test model classes served by tests/server; each loads a number (the factor) from its file."""

import os
import time
from pathlib import Path

import modelserve
from modelserve.model import TensorSpec


class Doubler(modelserve.Model):
    """Fast and pure Python: {"x": n} -> factor * n."""

    def load(self, file):
        self.factor = float(Path(file).read_text())

    def predict(self, features):
        return self.factor * float(features["x"])

    test_data = [({"x": 1.0}, 2.0), ({"x": 3}, 6.0)]


class SlowLoader(Doubler):
    """Doubler whose load takes SVC_LOAD_SECONDS seconds (0 when unset, e.g. at publish)."""

    def load(self, file):
        time.sleep(float(os.environ.get("SVC_LOAD_SECONDS", "0")))
        super().load(file)


class Sleeper(modelserve.Model):
    """predict sleeps features["sleep"] seconds and returns it."""

    def load(self, file):
        Path(file).read_text()

    def predict(self, features):
        time.sleep(float(features.get("sleep", 0)))
        return features.get("sleep", 0)

    test_data = [({"sleep": 0}, 0)]


class Miscalibrated(Doubler):
    """Passes its self-test at publish; in a service with SVC_MISCALIBRATED=1 its hand-written
    expectation is wrong, so the load-time self-test fails."""

    @property
    def test_data(self):
        offset = 1.0 if os.environ.get("SVC_MISCALIBRATED") else 0.0
        return [({"x": 1.0}, 2.0 + offset)]


class Exploding(Doubler):
    """predict raises when the features say so, with a detail that must stay in the log."""

    def predict(self, features):
        if features.get("explode"):
            raise RuntimeError("secret-internal-detail")
        return super().predict(features)


class Tensors(modelserve.Model):
    """An Open Inference Protocol model with declared FP64, INT64 and BYTES tensors."""

    input_format = "numpy"
    inputs = (
        TensorSpec("x", "FP64", (-1, 2)),
        TensorSpec("n", "INT64", (-1,)),
        TensorSpec("label", "BYTES", (-1,)),
    )
    outputs = (
        TensorSpec("total", "FP64", (-1,)),
        TensorSpec("next", "INT64", (-1,)),
        TensorSpec("shout", "BYTES", (-1,)),
    )

    def load(self, file):
        self.factor = float(Path(file).read_text())

    def predict(self, tensors):
        import numpy as np

        x = np.asarray(tensors["x"], dtype="float64")
        labels = [str(s).upper() + "!" for s in tensors["label"]]
        return {
            "total": x.sum(axis=1) * self.factor,
            "next": np.asarray(tensors["n"], dtype="int64") + 1,
            "shout": np.array(labels, dtype=object),
        }

    test_data = [
        (
            {"x": [[1.0, 2.0]], "n": [4], "label": ["a"]},
            {"total": [6.0], "next": [5], "shout": ["A!"]},
        )
    ]
'''

#: Registry name -> test model class; every one is published once, version 1 = production.
PUBLISHED = {
    "fast": "Doubler",
    "slow_load": "SlowLoader",
    "sleepy": "Sleeper",
    "refused": "Miscalibrated",
    "warned": "Miscalibrated",
    "exploding": "Exploding",
    "exploding_threaded": "Exploding",
    "tensors": "Tensors",
}


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, numbers and booleans read the same in TOML


def write_config(
    root: Path,
    label: str,
    models: Mapping[str, Mapping[str, Any]],
    server: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<label>.toml`` serving ``models`` (name -> extra keys) with ``[server]`` keys."""
    lines = [f'service = "svc-{label}"', ""]
    for name, extra in models.items():
        lines.append(f"[models.{name}]")
        lines.append(f'class = "svc_models:{PUBLISHED[name]}"')
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in extra.items())
        lines.append("")
    lines.append("[server]")
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in (server or {}).items())
    path = root / f"{label}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def stop_quietly(service: RunningService) -> None:
    """SIGTERM (so the master removes its metrics directory), SIGKILL if that takes too long."""
    process = service.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except Exception:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def running_service(
    root: Path,
    label: str,
    models: Mapping[str, Mapping[str, Any]],
    *,
    workers: int = 1,
    server: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    wait_ready: float | None = 60.0,
) -> Iterator[RunningService]:
    """``modelserve serve`` on the session's service directory with its own configuration."""
    config = write_config(root, label, models, server)
    service = RunningService(
        root, workers=workers, env={"MODELSERVE_CONFIG": str(config), **(env or {})}
    )
    try:
        service.start(wait_ready=wait_ready)
        if wait_ready is not None:
            wait_every_worker_ready(service, workers, wait_ready)
        yield service
    finally:
        stop_quietly(service)


# -- helpers over a running service -------------------------------------------------------


def fresh_connections() -> httpx.Client:
    """A client that opens a new connection for every request."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)


def infer_many(service: RunningService, count: int, threads: int = 8) -> list[httpx.Response]:
    """``count`` requests to model ``fast`` over fresh connections from ``threads`` threads.

    One client per request: threads sharing a client without keep-alive race in httpcore's
    pool (one thread closes a connection another is about to read: EBADF in the client;
    encode/httpcore#1110)."""

    def infer(i: int) -> httpx.Response:
        with fresh_connections() as client:
            return client.post(
                service.url + "/infer", json={"model_id": "fast", "features": {"x": i}}
            )

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(infer, range(count)))


StartService = Callable[..., RunningService]
"""``start_service(label, models, *, workers=1, server=None, env=None, wait_ready=60.0)``."""


def worker_pids(service: RunningService) -> set[int]:
    """The pids of the master's child processes, read from /proc."""
    assert service.process is not None
    pid = service.process.pid
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def request_lines(service: RunningService) -> list[dict[str, Any]]:
    """The service's access lines (``"event": "request"``)."""
    return [line for line in service.log_lines() if line.get("event") == "request"]


def wait_for_log(
    service: RunningService, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """The first JSON log line matching ``predicate``; access lines are flushed each tick."""

    def find() -> dict[str, Any] | None:
        return next((line for line in service.log_lines() if predicate(line)), None)

    try:
        return wait_until(find, timeout, "a matching log line")  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(f"no matching log line in:\n{service.logs()}") from None


def wait_every_worker_ready(service: RunningService, workers: int, timeout: float) -> None:
    """Wait until ``workers`` distinct workers have answered ``/health/ready`` with 200.

    ``RunningService.start`` returns once *a* worker is ready; readiness is per worker process,
    and another worker on the same socket may still be loading (and answer 503).
    """
    import httpx

    ready: dict[str, bool] = {}
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=5) as client:

        def every_worker_ready() -> bool:
            response = client.get(service.url + "/health/ready")
            ready[worker_of(response.headers["x-request-id"])] = response.status_code == 200
            return len(ready) >= workers and all(ready.values())

        wait_until(every_worker_ready, timeout, f"{workers} workers to be ready")


def worker_of(request_id: str) -> str:
    """Which worker generated ``request_id``: each worker prefixes its ids with 12 random hex
    digits of its own (server/protocol.py ``ConnectionPool.new_request_id``)."""
    return request_id[:12]


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of ``name`` in a Prometheus text exposition, with their labels."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                samples.append((dict(sample.labels), float(sample.value)))
    return samples


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample_labels, value in metric_samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


#: The models of the service most tests share, and its ``[server]`` settings.
MAIN_MODELS: dict[str, dict[str, Any]] = {
    "fast": {},
    "sleepy": {"executor": "thread"},
    "exploding": {"executor": "inline"},
    "exploding_threaded": {"executor": "thread"},
    "tensors": {},
}
MAIN_MAX_BODY = 4096


def in_flight(service: RunningService) -> float:
    """``modelserve_requests_in_flight`` summed over workers (this scrape counts itself)."""
    import httpx

    text = httpx.get(service.url + "/metrics", timeout=5).text
    return metric_sum(text, "modelserve_requests_in_flight")
