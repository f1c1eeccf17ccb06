"""``modelserve serve`` as processes: several workers, respawn, drain on SIGTERM, recycling,
keep-alive. Real sockets on 127.0.0.1, real ``python -m modelserve serve`` processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from serve_helpers import (
    StartService,
    fresh_connections,
    in_flight,
    infer_many,
    metric_sum,
    wait_for_log,
    wait_until,
    worker_of,
    worker_pids,
)

from modelserve.testing import RunningService

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only (/proc)"),
]


def test_requests_over_fresh_connections_are_answered_by_every_worker(
    main_service: RunningService,
) -> None:
    responses = infer_many(main_service, 200)

    assert [r.status_code for r in responses] == [200] * 200
    assert [r.json()["output"] for r in responses] == [2.0 * i for i in range(200)]
    assert len(worker_pids(main_service)) == 2
    answered_by = {worker_of(r.headers["x-request-id"]) for r in responses}
    assert len(answered_by) == 2, answered_by


def test_a_worker_killed_with_sigkill_is_replaced_and_the_service_keeps_answering(
    start_service: StartService,
) -> None:
    service = start_service("killed", {"fast": {}}, workers=2)
    before = worker_pids(service)
    assert len(before) == 2
    victim = min(before)

    os.kill(victim, signal.SIGKILL)
    # Right away, every request gets an HTTP answer: the surviving worker's, or a 503 with
    # Retry-After from the replacement while it loads its model.
    during = infer_many(service, 100)

    def replaced() -> set[int] | None:
        pids = worker_pids(service)
        return pids if len(pids) == 2 and victim not in pids else None

    after = wait_until(replaced, 10, "a replacement worker")
    assert len(after - before) == 1
    exited = wait_for_log(
        service, lambda line: line.get("event") == "worker_exited" and line.get("pid") == victim
    )
    assert exited["signal"] == "SIGKILL"
    assert {r.status_code for r in during} <= {200, 503}
    assert all("retry-after" in r.headers for r in during if r.status_code == 503)
    # Once the replacement has loaded its model, both workers answer 200.
    wait_until(
        lambda: [line.get("event") for line in service.log_lines()].count("models loaded") == 3,
        10,
        "the replacement to load its model",
    )
    responses = infer_many(service, 100)
    assert [r.status_code for r in responses] == [200] * 100
    assert len({worker_of(r.headers["x-request-id"]) for r in responses}) == 2
    assert service.process is not None and service.process.poll() is None


def test_sigterm_lets_twenty_in_flight_requests_finish_and_the_master_exits_0(
    start_service: StartService,
) -> None:
    service = start_service(
        "drain", {"sleepy": {"executor": "thread"}}, workers=2, server={"predict_threads": 12}
    )
    body = {"model_id": "sleepy", "features": {"sleep": 2.0}}
    with ThreadPoolExecutor(20) as pool:
        pending = [
            pool.submit(httpx.post, service.url + "/infer", json=body, timeout=30)
            for _ in range(20)
        ]
        # Every one of the 20 is received (the scrape counts itself, hence 21) before SIGTERM;
        # the other worker's gauge is at most one flush (1 s) late.
        wait_until(lambda: in_flight(service) >= 21, 1.8, "20 requests in flight")
        assert not any(future.done() for future in pending)

        code = service.stop(signal.SIGTERM, timeout=30)

        responses = [future.result() for future in pending]
    assert code == 0, service.logs()
    assert [r.status_code for r in responses] == [200] * 20
    assert all(r.json()["output"] == 2.0 for r in responses)
    assert all(r.headers.get("connection") == "close" for r in responses)
    events = [line.get("event") for line in service.log_lines()]
    assert events.count("worker draining") == 2
    assert "master_stopped" in events


def test_recycled_workers_drop_no_request_and_the_counter_never_goes_back(
    start_service: StartService,
) -> None:
    service = start_service(
        "recycle", {"fast": {}}, workers=2, server={"max_requests": 50, "max_requests_jitter": 10}
    )
    failures: list[Any] = []
    counts: list[float] = []
    sent = 0
    with httpx.Client(timeout=10) as keep_alive, fresh_connections() as fresh:
        for batch in range(12):
            client = keep_alive if batch % 2 == 0 else fresh
            for _ in range(25):
                try:
                    response = client.post(
                        service.url + "/infer", json={"model_id": "fast", "features": {"x": 1}}
                    )
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                else:
                    if response.status_code != 200:
                        failures.append((response.status_code, response.text))
                sent += 1
            text = fresh.get(service.url + "/metrics").text
            counts.append(metric_sum(text, "modelserve_requests_total", model="fast"))
            # A worker checks its count once a tick (0.25 s): let one pass between batches,
            # so each worker recycles within a batch of its limit and several recycles happen.
            time.sleep(0.3)

    assert sent == 300
    assert failures == []
    assert counts == sorted(counts), counts

    def recycles() -> int:
        return [line.get("event") for line in service.log_lines()].count("worker_recycled")

    wait_until(lambda: recycles() >= 2, 5, "two workers to be recycled")

    def counted() -> float:
        text = httpx.get(service.url + "/metrics").text
        return metric_sum(text, "modelserve_requests_total", model="fast")

    wait_until(lambda: counted() >= sent, 5, f"the counter to reach {sent}")


def test_a_replacement_worker_takes_no_request_before_its_model_is_loaded(
    start_service: StartService,
) -> None:
    # A model that takes 1 s to load, as real ones do: while a recycled worker's replacement
    # loads it, the other worker must be the one answering.
    service = start_service(
        "replacement",
        {"slow_load": {}},
        workers=2,
        server={"max_requests": 40, "max_requests_jitter": 20},
        env={"SVC_LOAD_SECONDS": "1"},
    )
    statuses: list[int] = []
    with fresh_connections() as client:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            response = client.post(
                service.url + "/infer", json={"model_id": "slow_load", "features": {"x": 1}}
            )
            statuses.append(response.status_code)
            events = [line.get("event") for line in service.log_lines()]
            if events.count("models loaded") >= 3:  # a replacement has loaded its model
                break
            time.sleep(0.01)

    assert "worker_recycled" in events
    assert set(statuses) == {200}, f"{statuses.count(503)} of {len(statuses)} answered 503"


def test_one_client_sends_a_hundred_requests_over_one_connection(
    main_service: RunningService,
) -> None:
    with httpx.Client(timeout=10) as client:
        responses = [
            client.post(
                main_service.url + "/infer", json={"model_id": "fast", "features": {"x": i}}
            )
            for i in range(100)
        ]
        local_ports = {
            r.extensions["network_stream"].get_extra_info("client_addr") for r in responses
        }

    assert [r.status_code for r in responses] == [200] * 100
    assert [r.headers.get("connection") for r in responses] == [None] * 100
    assert len(local_ports) == 1
    assert len({worker_of(r.headers["x-request-id"]) for r in responses}) == 1
