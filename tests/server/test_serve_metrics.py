"""``GET /metrics`` of a two-worker ``modelserve serve``: sums over workers, bounded labels."""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import httpx
import pytest
from serve_helpers import (
    StartService,
    infer_many,
    metric_samples,
    metric_sum,
    wait_for_log,
    wait_until,
    worker_of,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]

REQUESTS = 120


def test_metrics_sum_every_workers_requests_and_callers_cannot_add_label_values(
    start_service: StartService,
) -> None:
    service = start_service("metrics", {"fast": {}}, workers=2)
    responses = infer_many(service, REQUESTS)
    unknown = httpx.post(
        service.url + "/infer", json={"model_id": "no-such-model-xyz", "features": {"x": 1}}
    )
    assert [r.status_code for r in responses] == [200] * REQUESTS
    assert len({worker_of(r.headers["x-request-id"]) for r in responses}) == 2
    assert unknown.status_code == 404

    def scrape() -> str:
        return httpx.get(service.url + "/metrics").text

    def served() -> float:
        return metric_sum(scrape(), "modelserve_requests_total", model="fast", status="200")

    wait_until(lambda: served() >= REQUESTS, 5, f"{REQUESTS} requests counted")
    time.sleep(1.5)  # every worker has flushed again: nothing is counted twice
    text = scrape()

    assert metric_sum(text, "modelserve_requests_total", model="fast", status="200") == REQUESTS
    assert metric_sum(text, "modelserve_requests_total", model="", status="404") == 1
    assert "no-such-model-xyz" not in text
    assert {labels["model"] for labels, _ in metric_samples(text, "modelserve_requests_total")} == {
        "fast",
        "",
    }
    for histogram in ("modelserve_request_duration_seconds", "modelserve_predict_duration_seconds"):
        buckets = {
            labels["le"]: value
            for labels, value in metric_samples(text, histogram + "_bucket")
            if labels.get("model") == "fast"
        }
        assert buckets["+Inf"] == REQUESTS, histogram
        assert metric_sum(text, histogram + "_count", model="fast", version="1") == REQUESTS
    assert metric_sum(text, "modelserve_model_ready", model="fast", version="1") == 1
    # each worker loads and self-tests the model once
    assert metric_sum(text, "modelserve_selftests_total", model="fast", outcome="pass") == 2
    assert (
        metric_sum(
            text, "modelserve_model_load_duration_seconds_count", model="fast", outcome="pass"
        )
        == 2
    )


def test_an_unexpected_error_is_a_500_and_the_log_has_its_traceback(
    start_service: StartService, tmp_path: Path
) -> None:
    """A failing dependency (here: an unreadable file in the multiprocess metrics store) is
    answered with a 500 without details, not mistaken for a malformed request; the log line
    with the request id has the traceback, and the connection and service keep working."""
    service = start_service("broken-store", {"fast": {}}, env={"TMPDIR": str(tmp_path)})
    (store,) = tmp_path.glob("modelserve-metrics-*")
    # prometheus_client's file layout, with a key that is not the JSON it expects
    key = b"not json"
    padded = key + b" " * (8 - (len(key) + 4) % 8)
    entry = struct.pack(f"i{len(padded)}sdd", len(key), padded, 1.0, 0.0)
    (store / "counter_999999.db").write_bytes(struct.pack("ii", 8 + len(entry), 0) + entry)

    with httpx.Client(timeout=5) as client:
        scrape = client.get(service.url + "/metrics", headers={"x-request-id": "scrape-1"})
        after = client.post(service.url + "/infer", json={"model_id": "fast", "features": {"x": 1}})

    assert scrape.status_code == 500
    assert scrape.json() == {"error": "internal error"}
    assert after.status_code == 200
    line = wait_for_log(
        service,
        lambda entry: (
            entry.get("event") == "unexpected error" and entry.get("request_id") == "scrape-1"
        ),
    )
    assert "Traceback" in line["exception"]


def test_a_store_file_a_starting_worker_has_not_written_yet_does_not_break_a_scrape(
    start_service: StartService, tmp_path: Path
) -> None:
    """A worker creates its metric files empty, then sizes them; a scrape in between (which
    happens when workers are recycled under load) still answers, with every count."""
    service = start_service("starting-worker", {"fast": {}}, env={"TMPDIR": str(tmp_path)})
    (store,) = tmp_path.glob("modelserve-metrics-*")
    for _ in range(3):
        httpx.post(service.url + "/infer", json={"model_id": "fast", "features": {"x": 1}})
    (store / "counter_999999.db").write_bytes(b"")

    def counted() -> float:
        response = httpx.get(service.url + "/metrics")
        assert response.status_code == 200, response.text
        return metric_sum(response.text, "modelserve_requests_total", model="fast")

    wait_until(lambda: counted() == 3, 5, "the 3 requests to be counted")
