"""The connection pool's request-target handling, without a socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.config import Settings
from modelserve.dataplane.core import DataPlane
from modelserve.host import ModelHost
from modelserve.metrics import Metrics
from modelserve.registry import Registry
from modelserve.server.protocol import ConnectionPool
from modelserve.server.routes import Router


@pytest.fixture
def pool(tmp_path: Path) -> ConnectionPool:
    # a service without models: path handling never reaches the router
    settings = Settings(root=tmp_path)
    metrics = Metrics()
    host = ModelHost(settings, lambda: Registry.from_settings(settings), metrics=metrics)
    router = Router(
        DataPlane(host),
        metrics,
        None,
        service="test",
        version="0",
        predict_threads=1,
        retry_after=1,
    )
    return ConnectionPool(router, max_body=1024, keepalive_timeout=5)


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/infer", "/infer"),
        (b"/infer?x=1&y=2", "/infer"),
        (b"/v2/models/a%20b/infer", "/v2/models/a%20b/infer"),
        (b"http://example.com/health/ready?probe=1", "/health/ready"),
        (b"not a target", "not a target"),
    ],
)
def test_the_path_of_a_request_target(pool: ConnectionPool, target: bytes, path: str) -> None:
    assert pool.path_of(target) == path


def test_remembered_paths_are_bounded(pool: ConnectionPool) -> None:
    for i in range(1000):
        pool.path_of(b"/unknown/%d" % i)
    pool.path_of(b"/infer?x=1")  # a query is never remembered: callers choose it

    assert len(pool.paths) == 256
    assert all(b"?" not in target for target in pool.paths)


def test_request_ids_are_unique_in_a_worker(pool: ConnectionPool) -> None:
    ids = [pool.new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert len({i[:12] for i in ids}) == 1  # one random prefix per worker, then a counter
