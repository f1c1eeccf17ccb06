"""Error answers and request ids of ``modelserve serve`` over a real socket.

Every error is ``{"error": "..."}`` with the right status; 405 carries ``Allow``; 413 comes as
early for a chunked body as for a ``Content-Length`` over the limit; a 500 keeps its traceback
in the log line of its request id. 503 while not ready is in test_serve_health.py.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from serve_helpers import MAIN_MAX_BODY, MAIN_MODELS, request_lines, wait_for_log

from modelserve.testing import RunningService

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]

JSON = "application/json"
FEATURES = {"x": 1}


# (method, path, body: bytes | JSON-able | None, content type, status, part of the message)
ERRORS = [
    pytest.param("POST", "/infer", b'{"model_id": "fast", ', JSON, 400, "body: malformed JSON",
                 id="malformed-json"),
    pytest.param("POST", "/infer", b"", JSON, 400, "body: empty", id="empty-body"),
    pytest.param("POST", "/infer", [1, 2], JSON, 400, "body: expected a JSON object",
                 id="not-an-object"),
    pytest.param("POST", "/infer", {"model_id": 7, "features": FEATURES}, JSON, 400,
                 "model_id: must be a string", id="model-id-not-a-string"),
    pytest.param("POST", "/infer", {"features": FEATURES}, JSON, 400, "model_id: required",
                 id="model-id-missing"),
    pytest.param("POST", "/infer", {"model_id": "fast"}, JSON, 400, "features: required",
                 id="features-missing"),
    pytest.param("POST", "/infer", {"model_id": "fast", "features": FEATURES, "version": "1"},
                 JSON, 400, "version: must be an integer", id="version-not-an-integer"),
    pytest.param("POST", "/infer", {"model_id": "fast", "instances": 3}, JSON, 400,
                 "instances: must be a list", id="instances-not-a-list"),
    pytest.param("POST", "/infer", {"model_id": "nope", "features": FEATURES}, JSON, 404,
                 "model 'nope' is not served here; models: " + ", ".join(sorted(MAIN_MODELS)),
                 id="unknown-model"),
    pytest.param("POST", "/infer", {"model_id": "fast", "features": FEATURES, "version": 9},
                 JSON, 404, "has no version 9 served here; versions: 1", id="unknown-version"),
    pytest.param("POST", "/infer", {"model_id": "fast", "features": FEATURES}, "text/plain", 415,
                 "'text/plain' not supported", id="text-plain"),
    pytest.param("GET", "/infer", None, None, 405, "method GET not allowed on /infer",
                 id="get-infer"),
    pytest.param("POST", "/health/live", b"", JSON, 405, "allowed: GET", id="post-liveness"),
    pytest.param("GET", "/v2/models/fast/infer", None, None, 405, "allowed: POST",
                 id="get-v2-infer"),
    pytest.param("GET", "/nope", None, None, 404, "path /nope not found", id="unknown-path"),
    pytest.param("GET", "/v2/models/fast/versions", None, None, 404, "not found",
                 id="v2-versions-without-number"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status", "message"), ERRORS)
def test_refused_requests_get_their_status_and_a_json_error(
    main_service: RunningService,
    method: str,
    path: str,
    body: Any,
    content_type: str | None,
    status: int,
    message: str,
) -> None:
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"content-type": content_type} if content_type else {}

    response = httpx.request(method, main_service.url + path, content=content, headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"] == JSON
    assert response.headers["x-request-id"]
    assert list(response.json()) == ["error"]
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/infer", "POST"),
        ("DELETE", "/health/ready", "GET"),
        ("POST", "/metrics", "GET"),
        ("GET", "/v2/models/fast/infer", "POST"),
        ("POST", "/v2/models/fast/ready", "GET"),
    ],
)
def test_a_method_not_allowed_is_a_405_with_an_allow_header(
    main_service: RunningService, method: str, path: str, allow: str
) -> None:
    response = httpx.request(method, main_service.url + path)

    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json() == {"error": f"method {method} not allowed on {path}; allowed: {allow}"}


def raw_exchange(url: str, head: str, chunks: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send a request over a plain socket; read the answer until the server closes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # refused early: the server may close before the body is all sent
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    header_block, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def infer_body(size: int) -> bytes:
    """A valid /infer body of exactly ``size`` bytes (padded inside the features)."""
    empty = json.dumps({"model_id": "fast", "features": {"x": 1, "pad": ""}}).encode()
    return json.dumps(
        {"model_id": "fast", "features": {"x": 1, "pad": "a" * (size - len(empty))}}
    ).encode()


def chunked(body: bytes, size: int = 1000) -> list[bytes]:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize(("size", "status"), [(MAIN_MAX_BODY, 200), (MAIN_MAX_BODY + 1, 413)])
def test_a_body_over_max_body_bytes_is_refused_with_413(
    main_service: RunningService, framing: str, size: int, status: int
) -> None:
    body = infer_body(size)
    assert len(body) == size
    if framing == "content-length":
        head = f"Content-Length: {size}\r\n"
        chunks = [body]
    else:
        head = "Transfer-Encoding: chunked\r\n"
        chunks = chunked(body)
    request = (
        "POST /infer HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\n{head}\r\n"
    )

    got, headers, answer = raw_exchange(main_service.url, request, chunks)

    assert got == status, answer
    if status == 413:
        assert json.loads(answer) == {"error": f"body is over the limit of {MAIN_MAX_BODY} bytes"}
        assert headers["connection"] == "close"
    else:
        assert json.loads(answer)["output"] == 2.0


@pytest.mark.parametrize(("extra_headers", "status"), [(97, 200), (98, 431)])
def test_more_than_100_header_fields_is_a_431(
    main_service: RunningService, extra_headers: int, status: int
) -> None:
    body = json.dumps({"model_id": "fast", "features": {"x": 1}}).encode()
    fields = "".join(f"X-Extra-{i}: {i}\r\n" for i in range(extra_headers))
    request = (
        "POST /infer HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n{fields}\r\n"
    )  # 3 fields above + the extra ones

    got, _, answer = raw_exchange(main_service.url, request, [body])

    assert got == status, answer
    if status == 431:
        assert json.loads(answer) == {"error": "more than 100 header fields"}


@pytest.mark.parametrize("model", ["exploding", "exploding_threaded"])
def test_a_predict_that_raises_is_a_500_without_traceback_and_the_log_has_it(
    main_service: RunningService, model: str
) -> None:
    request_id = f"explode-{uuid.uuid4().hex}"
    response = httpx.post(
        main_service.url + "/infer",
        json={"model_id": model, "features": {"x": 1, "explode": True}},
        headers={"x-request-id": request_id},
    )

    assert response.status_code == 500
    assert response.json() == {
        "error": f"model {model!r} version 1 failed to predict (RuntimeError); "
        "see the service log for this request id"
    }
    assert "Traceback" not in response.text
    assert "secret-internal-detail" not in response.text
    logged = wait_for_log(
        main_service, lambda line: line.get("request_id") == request_id and "exception" in line
    )
    assert logged["level"] == "error"
    assert logged["exception"].startswith("Traceback")
    assert "RuntimeError: secret-internal-detail" in logged["exception"]
    access = wait_for_log(
        main_service,
        lambda line: line.get("event") == "request" and line.get("request_id") == request_id,
    )
    assert access["status"] == 500
    assert access["model"] == model


# -- request ids and log lines --------------------------------------------------------------


def test_a_given_x_request_id_is_echoed_in_the_header_the_body_and_the_log_line(
    main_service: RunningService,
) -> None:
    request_id = f"caller-{uuid.uuid4().hex}"
    response = httpx.post(
        main_service.url + "/infer",
        json={"model_id": "fast", "features": {"x": 1}},
        headers={"x-request-id": request_id},
    )

    assert response.headers["x-request-id"] == request_id
    assert response.json()["request_id"] == request_id
    line = wait_for_log(
        main_service,
        lambda entry: entry.get("event") == "request" and entry.get("request_id") == request_id,
    )
    assert line["status"] == 200
    assert line["path"] == "/infer"
    assert line["model"] == "fast"
    assert str(line["version"]) == "1"


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("x" * 201, id="over-200-characters"),
        # ids go into JSON bodies and log lines as they are: no character that needs escaping
        pytest.param('abc"def', id="quote"),
        pytest.param("abc\\def", id="backslash"),
        pytest.param("abc def", id="space"),
    ],
)
def test_a_request_id_is_generated_when_none_usable_is_given(
    main_service: RunningService, given: str | None
) -> None:
    headers = {} if given is None else {"x-request-id": given}
    responses = [
        httpx.post(main_service.url + "/infer", json={"model_id": "fast", "features": {"x": 1}},
                   headers=headers)
        for _ in range(2)
    ]  # fmt: skip

    ids = [r.headers["x-request-id"] for r in responses]
    assert all(ids) and ids[0] != ids[1]
    assert given not in ids
    assert [r.json()["request_id"] for r in responses] == ids
    for request_id in ids:
        wait_for_log(
            main_service,
            lambda entry, rid=request_id: (
                entry.get("event") == "request" and entry.get("request_id") == rid
            ),
        )


@pytest.mark.parametrize(
    ("traceparent", "trace_id"),
    [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
         "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("garbage", None),
    ],
    ids=["valid", "uppercase", "all-zero", "garbage"],
)  # fmt: skip
def test_the_traceparent_trace_id_is_in_the_request_log_line(
    main_service: RunningService, traceparent: str, trace_id: str | None
) -> None:
    request_id = f"traced-{uuid.uuid4().hex}"
    httpx.get(
        main_service.url + "/health/live",
        headers={"x-request-id": request_id, "traceparent": traceparent},
    )

    line = wait_for_log(
        main_service,
        lambda entry: entry.get("event") == "request" and entry.get("request_id") == request_id,
    )
    assert line.get("trace_id") == trace_id


def test_every_line_the_service_writes_is_a_json_object(main_service: RunningService) -> None:
    httpx.post(main_service.url + "/infer", json={"model_id": "fast", "features": {"x": 1}})
    wait_for_log(main_service, lambda entry: entry.get("event") == "request")

    lines = [line for line in main_service.logs().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]

    assert all(isinstance(entry, dict) and "event" in entry for entry in parsed)
    assert {"ts", "level", "logger"} <= set(parsed[0])
    assert request_lines(main_service)


def test_pipelined_requests_are_answered_in_order(main_service: RunningService) -> None:
    """Three requests in one write: a slow one in the thread pool, then two inline ones
    (with a query string); the answers come back in the order the requests were sent."""

    def request(body: dict[str, Any], path: str = "/infer", close: bool = False) -> bytes:
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{'Connection: close' if close else 'X-A: b'}\r\n\r\n"
        )
        return head.encode() + data

    pipelined = (
        request({"model_id": "sleepy", "features": {"sleep": 0.3}})
        + request({"model_id": "fast", "features": {"x": 1}}, "/infer?trace=1")
        + request({"model_id": "fast", "features": {"x": 5}}, close=True)
    )
    parts = urlsplit(main_service.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(pipelined)
        received = b""
        while data := sock.recv(65536):
            received += data

    bodies = [
        json.loads(piece.split(b"\r\n\r\n", 1)[1]) for piece in received.split(b"HTTP/1.1 ")[1:]
    ]
    assert [b["output"] for b in bodies] == [0.3, 2.0, 10.0]
    assert received.count(b"HTTP/1.1 200 OK") == 3


def test_latency_counts_from_the_complete_request(main_service: RunningService) -> None:
    """A client slow to send its body does not make the request look slow: the access line's
    latency (like the duration histogram) starts when the request is complete."""
    request_id = f"slow-client-{uuid.uuid4().hex}"
    body = json.dumps({"model_id": "fast", "features": {"x": 1}}).encode()
    head = (
        f"POST /infer HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"X-Request-Id: {request_id}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    parts = urlsplit(main_service.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode())
        time.sleep(0.5)
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")

    line = wait_for_log(main_service, lambda entry: entry.get("request_id") == request_id)
    assert line["event"] == "request"
    assert line["latency_ms"] < 250, line
