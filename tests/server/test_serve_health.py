"""Liveness and readiness of ``modelserve serve``: during a slow load, during a long predict,
and when a model fails its load-time self-test under each policy."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_helpers import StartService, in_flight, metric_sum, wait_for_log, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]


def test_readiness_is_503_with_retry_after_while_a_model_loads_and_liveness_is_200(
    start_service: StartService,
) -> None:
    service = start_service(
        "slow-load", {"slow_load": {}}, env={"SVC_LOAD_SECONDS": "3"}, wait_ready=None
    )
    url = service.url

    for path in ("/health/ready", "/v2/health/ready"):
        response = httpx.get(url + path)
        assert response.status_code == 503, path
        assert response.headers["retry-after"] == "5"
        assert "not ready" in response.json()["error"]
    for path in ("/health/live", "/v2/health/live"):
        assert httpx.get(url + path).status_code == 200, path
    infer = httpx.post(url + "/infer", json={"model_id": "slow_load", "features": {"x": 1}})
    assert infer.status_code == 503
    assert infer.headers["retry-after"] == "5"
    assert infer.json() == {"error": "model 'slow_load' is not ready (loading)"}
    assert httpx.get(url + "/v2/models/slow_load/ready").status_code == 503
    [status] = httpx.get(url + "/models").json()["models"]
    assert status["state"] == "loading"

    service.wait_for("/health/ready", 200, 15)

    assert httpx.get(url + "/v2/health/ready").status_code == 200
    infer = httpx.post(url + "/infer", json={"model_id": "slow_load", "features": {"x": 1}})
    assert infer.status_code == 200
    assert infer.json()["output"] == 2.0
    [status] = httpx.get(url + "/models").json()["models"]
    assert status["state"] == "ready"
    assert status["load_seconds"] >= 3


def test_health_answers_within_half_a_second_while_a_long_predict_runs(
    start_service: StartService,
) -> None:
    service = start_service("long-predict", {"sleepy": {"executor": "thread"}}, workers=1)
    body = {"model_id": "sleepy", "features": {"sleep": 2.0}}
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, service.url + "/infer", json=body, timeout=10)
        # one worker: its gauge is current; the scrape itself is the second request in flight
        wait_until(lambda: in_flight(service) >= 2, 1.5, "the long predict to start")

        timings = {}
        for path in ("/health/live", "/v2/health/live", "/health/ready"):
            started = time.monotonic()
            assert httpx.get(service.url + path, timeout=5).status_code == 200, path
            timings[path] = time.monotonic() - started

        assert not slow.done()
        assert slow.result().status_code == 200
    assert all(seconds < 0.5 for seconds in timings.values()), timings


def test_a_model_failing_its_selftest_under_policy_refuse_keeps_the_service_unready(
    start_service: StartService,
) -> None:
    service = start_service(
        "refuse",
        {"fast": {}, "refused": {"selftest_policy": "refuse"}},
        env={"SVC_MISCALIBRATED": "1"},
        wait_ready=None,
    )
    wait_for_log(service, lambda line: line.get("event") == "models loaded", timeout=10)

    ready = httpx.get(service.url + "/health/ready")
    assert ready.status_code == 503
    assert "retry-after" in ready.headers
    listing = httpx.get(service.url + "/models").json()
    assert listing["ready"] is False
    status = {model["name"]: model for model in listing["models"]}
    assert status["fast"]["state"] == "ready"
    assert status["refused"]["state"] == "failed"
    assert status["refused"]["reason"].startswith("self-test failed")
    assert "expected 3.0, actual 2.0" in status["refused"]["reason"]
    assert status["refused"]["selftest"]["passed"] is False
    refused = httpx.post(service.url + "/infer", json={"model_id": "refused", "features": {"x": 1}})
    assert refused.status_code == 503
    served = httpx.post(service.url + "/infer", json={"model_id": "fast", "features": {"x": 1}})
    assert served.status_code == 200
    logged = wait_for_log(service, lambda line: line.get("model") == "refused")
    assert logged["level"] == "error"
    assert logged["event"] == "self-test failed, model not served"
    metrics = httpx.get(service.url + "/metrics").text
    assert 'modelserve_model_ready{model="refused",version="1"} 0.0' in metrics
    assert metric_sum(metrics, "modelserve_model_ready", model="fast") == 1
    assert metric_sum(metrics, "modelserve_selftests_total", model="refused", outcome="fail") == 1


def test_a_model_failing_its_selftest_under_policy_warn_serves_with_a_warning(
    start_service: StartService,
) -> None:
    service = start_service(
        "warn", {"warned": {"selftest_policy": "warn"}}, env={"SVC_MISCALIBRATED": "1"}
    )

    assert httpx.get(service.url + "/health/ready").status_code == 200
    [status] = httpx.get(service.url + "/models").json()["models"]
    assert status["state"] == "ready"
    assert "policy warn" in status["warning"]
    assert "expected 3.0, actual 2.0" in status["warning"]
    served = httpx.post(service.url + "/infer", json={"model_id": "warned", "features": {"x": 4}})
    assert served.status_code == 200
    assert served.json()["output"] == 8.0
    logged = wait_for_log(service, lambda line: line.get("model") == "warned")
    assert logged["level"] == "warning"
    assert "self-test failed" in logged["event"]
