"""JSON log records and access lines, in process."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator

import pytest

from modelserve.logs import AccessLog, JsonFormatter, inline_request, request_id_var


def _format(message: str) -> dict[str, object]:
    record = logging.LogRecord("team", logging.INFO, __file__, 1, message, (), None)
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


@pytest.fixture
def loop_thread() -> Iterator[None]:
    """This thread plays the event loop's, inside an inline predict of request 'r-1'."""
    inline_request.thread = threading.get_ident()
    inline_request.request_id = "r-1"
    yield
    inline_request.request_id = None
    inline_request.thread = 0


def test_a_record_during_an_inline_predict_carries_its_request_id(loop_thread: None) -> None:
    assert _format("from predict")["request_id"] == "r-1"


def test_a_record_of_another_thread_meanwhile_does_not(loop_thread: None) -> None:
    entries: list[dict[str, object]] = []
    other = threading.Thread(target=lambda: entries.append(_format("from the loader")))
    other.start()
    other.join()
    assert "request_id" not in entries[0]


def test_the_context_variable_wins_in_a_predict_thread(loop_thread: None) -> None:
    token = request_id_var.set("r-2")
    try:
        assert _format("from the pool")["request_id"] == "r-2"
    finally:
        request_id_var.reset(token)


def test_no_request_no_request_id() -> None:
    assert "request_id" not in _format("idle")


def _lines(log: AccessLog, read_end: int) -> list[dict[str, object]]:
    log.flush()
    return [json.loads(line) for line in os.read(read_end, 1 << 16).decode().splitlines()]


def test_access_lines_are_json_with_every_field() -> None:
    read_end, write_end = os.pipe()
    log = AccessLog(write_end)
    log.request("id-1", "POST", "/infer", 200, 0.0123456, None, "churn", 3)
    log.request("id-2", "GET", '/odd"path\\', 404, 0.0000004, "ab" * 16)
    log.request("id-3", "POST", "/infer", 200, 2.5, None, "churn", 3)

    first, second, third = _lines(log, read_end)
    assert first["event"] == "request"
    assert isinstance(first["ts"], float)
    assert {key: first[key] for key in first if key != "ts"} == {
        "event": "request",
        "request_id": "id-1",
        "method": "POST",
        "path": "/infer",
        "status": 200,
        "latency_ms": 12.346,
        "model": "churn",
        "version": 3,
    }
    assert second["path"] == '/odd"path\\'
    assert second["latency_ms"] == 0.0
    assert second["trace_id"] == "ab" * 16
    assert "model" not in second
    assert third["latency_ms"] == 2500.0
    os.close(read_end)
    os.close(write_end)


def test_the_cache_of_repeating_fields_is_bounded() -> None:
    read_end, write_end = os.pipe()
    log = AccessLog(write_end)
    for n in range(300):
        log.request(f"id-{n}", "GET", f"/p{n}", 404, 0.001, None)
        if n % 50 == 0:
            _lines(log, read_end)
    assert len(log._middles) == 256
    assert _lines(log, read_end)[-1]["path"] == "/p299"
    os.close(read_end)
    os.close(write_end)
