"""The request path as plain Python: what ``MODELSERVE_COMPILE=0`` installs.

The rest of the suite runs the modules setup.py compiles with mypyc (when the install
compiled them). This runs a service from a copy of the package without the compiled
modules, so the pure-Python fallback keeps serving the same answers.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx
import pytest
from serve_helpers import StartService, metric_sum, wait_for_log

import modelserve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]


def test_the_pure_python_request_path_serves_the_same(
    start_service: StartService, tmp_path: Path
) -> None:
    package = Path(modelserve.__file__).parent
    shutil.copytree(
        package, tmp_path / "modelserve", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    service = start_service("interpreted", {"fast": {}}, env={"PYTHONPATH": str(tmp_path)})

    started = wait_for_log(service, lambda line: line.get("event") == "worker started", 10)
    assert started["compiled"] is False

    answer = httpx.post(
        service.url + "/infer",
        json={"model_id": "fast", "features": {"x": 21}},
        headers={"x-request-id": "plain-python-1"},
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "model_id": "fast",
        "model_version": 1,
        "output": 42.0,
        "request_id": "plain-python-1",
    }
    unknown = httpx.post(service.url + "/infer", json={"model_id": "nope", "features": {}})
    assert unknown.status_code == 404
    assert "models: fast" in unknown.json()["error"]
    missing = httpx.get(service.url + "/no/such/path")
    assert missing.status_code == 404

    line = wait_for_log(service, lambda line: line.get("request_id") == "plain-python-1")
    assert line["status"] == 200
    assert line["model"] == "fast"
    assert line["latency_ms"] >= 0
    metrics = httpx.get(service.url + "/metrics").text
    assert metric_sum(metrics, "modelserve_requests_total", model="fast", status="200") == 1
