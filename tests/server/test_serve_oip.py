"""The Open Inference Protocol endpoints of ``modelserve serve``, with the real (unmodified)
``tritonclient.http`` client and with raw JSON; and ``GET /openapi.json``."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelserve.testing import RunningService

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]

DECLARED_INPUTS = [
    {"name": "x", "datatype": "FP64", "shape": [-1, 2]},
    {"name": "n", "datatype": "INT64", "shape": [-1]},
    {"name": "label", "datatype": "BYTES", "shape": [-1]},
]
DECLARED_OUTPUTS = [
    {"name": "total", "datatype": "FP64", "shape": [-1]},
    {"name": "next", "datatype": "INT64", "shape": [-1]},
    {"name": "shout", "datatype": "BYTES", "shape": [-1]},
]


@pytest.fixture
def client(main_service: RunningService) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=main_service.url.removeprefix("http://"))


def tensor_inputs() -> list[triton.InferInput]:
    values = {
        "x": np.array([[1.0, 2.0], [3.5, 4.5]], dtype=np.float64),
        "n": np.array([4, 41], dtype=np.int64),
        "label": np.array(["a", "bc"], dtype=np.object_),
    }
    datatypes = {"x": "FP64", "n": "INT64", "label": "BYTES"}
    inputs = []
    for name, value in values.items():
        item = triton.InferInput(name, list(value.shape), datatypes[name])
        item.set_data_from_numpy(value, binary_data=False)  # binary data is an extension
        inputs.append(item)
    return inputs


def test_tritonclient_sees_a_live_and_ready_server_with_metadata(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "svc-main"
    assert isinstance(metadata["version"], str) and metadata["version"]
    assert metadata["extensions"] == []


def test_tritonclient_reads_model_readiness_and_metadata(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_model_ready("tensors")
    assert client.is_model_ready("tensors", "1")
    assert not client.is_model_ready("tensors", "9")
    assert not client.is_model_ready("no-such-model")
    for version in ("", "1"):
        metadata = client.get_model_metadata("tensors", version)
        assert metadata["name"] == "tensors"
        assert metadata["versions"] == ["1"]
        assert metadata["inputs"] == DECLARED_INPUTS
        assert metadata["outputs"] == DECLARED_OUTPUTS
    with pytest.raises(InferenceServerException, match="no version 9"):
        client.get_model_metadata("tensors", "9")


@pytest.mark.parametrize("request_outputs", [True, False], ids=["outputs-named", "all-outputs"])
@pytest.mark.parametrize("version", ["", "1"], ids=["latest", "version-1"])
def test_tritonclient_infers_fp64_int64_and_bytes_tensors(
    client: triton.InferenceServerClient, request_outputs: bool, version: str
) -> None:
    outputs = (
        [triton.InferRequestedOutput(n["name"], binary_data=False) for n in DECLARED_OUTPUTS]
        if request_outputs
        else None
    )

    result = client.infer(
        "tensors", tensor_inputs(), model_version=version, outputs=outputs, request_id="oip-42"
    )

    total = result.as_numpy("total")
    assert total.dtype == np.float64
    assert total.tolist() == [6.0, 16.0]
    following = result.as_numpy("next")
    assert following.dtype == np.int64
    assert following.tolist() == [5, 42]
    assert result.as_numpy("shout").tolist() == ["A!", "BC!"]
    response = result.get_response()
    assert response["id"] == "oip-42"
    assert response["model_name"] == "tensors"
    assert response["model_version"] == "1"


def test_tritonclient_infers_a_rows_model_one_row_per_batch_element(
    client: triton.InferenceServerClient,
) -> None:
    x = triton.InferInput("x", [3], "FP64")
    x.set_data_from_numpy(np.array([1.0, 2.5, -4.0]), binary_data=False)

    result = client.infer("fast", [x])

    assert result.as_numpy("output0").tolist() == [2.0, 5.0, -8.0]
    assert "id" not in result.get_response()


def test_tritonclient_gets_an_error_for_an_unknown_model(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException, match="'no-such-model' is not served here"):
        client.infer("no-such-model", tensor_inputs())


# -- raw JSON -------------------------------------------------------------------------------


def tensors_request(**changes: Any) -> dict[str, Any]:
    """A valid request for model ``tensors``; ``changes`` replace fields of named inputs."""
    inputs = {
        "x": {"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 2.0]},
        "n": {"name": "n", "datatype": "INT64", "shape": [1], "data": [4]},
        "label": {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["a"]},
    }
    for name, fields in changes.items():
        if fields is None:
            del inputs[name]
        else:
            inputs[name] = {**inputs[name], **fields}
    return {"inputs": list(inputs.values())}


def test_a_raw_json_request_is_answered_per_the_spec(main_service: RunningService) -> None:
    response = httpx.post(main_service.url + "/v2/models/tensors/infer", json=tensors_request())

    assert response.status_code == 200
    assert response.json() == {
        "model_name": "tensors",
        "model_version": "1",
        "outputs": [
            {"name": "total", "datatype": "FP64", "shape": [1], "data": [6.0]},
            {"name": "next", "datatype": "INT64", "shape": [1], "data": [5]},
            {"name": "shout", "datatype": "BYTES", "shape": [1], "data": ["A!"]},
        ],
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        pytest.param("/v2/models/tensors/infer", tensors_request(x={"shape": [2, 2]}), 400,
                     "inputs[0].data: shape [2, 2] needs 4 elements, got 2", id="shape-vs-data"),
        pytest.param("/v2/models/tensors/infer", tensors_request(x={"datatype": "FP32"}), 400,
                     "input 'x' is declared FP64, got FP32", id="datatype-vs-declared"),
        pytest.param("/v2/models/tensors/infer", tensors_request(x={"shape": [2]}), 400,
                     "does not match the declared shape [-1, 2]", id="shape-vs-declared"),
        pytest.param("/v2/models/tensors/infer", tensors_request(n={"data": [1.5]}), 400,
                     "inputs[1].data[0]: 1.5 is not a valid INT64", id="float-in-int64"),
        pytest.param("/v2/models/tensors/infer", tensors_request(label={"data": [3]}), 400,
                     "inputs[2].data[0]: 3 is not a valid BYTES", id="number-in-bytes"),
        pytest.param("/v2/models/tensors/infer", tensors_request(label=None), 400,
                     "missing declared input 'label'", id="missing-input"),
        pytest.param("/v2/models/tensors/infer", {"inputs": []}, 400,
                     "inputs: expected a non-empty", id="no-inputs"),
        pytest.param("/v2/models/nope/infer", tensors_request(), 404,
                     "model 'nope' is not served here", id="unknown-model"),
        pytest.param("/v2/models/tensors/versions/9/infer", tensors_request(), 404,
                     "no version 9", id="unknown-version"),
    ],
)  # fmt: skip
def test_a_bad_raw_json_request_is_refused_naming_the_field(
    main_service: RunningService, path: str, body: Any, status: int, message: str
) -> None:
    response = httpx.post(main_service.url + path, json=body)

    assert response.status_code == status
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2", 200),
        ("/v2/health/live", 200),
        ("/v2/health/ready", 200),
        ("/v2/models/tensors", 200),
        ("/v2/models/tensors/ready", 200),
        ("/v2/models/tensors/versions/1", 200),
        ("/v2/models/tensors/versions/1/ready", 200),
        ("/v2/models/tensors/versions/9", 404),
        ("/v2/models/tensors/versions/9/ready", 404),
        ("/v2/models/nope", 404),
        ("/v2/models/nope/ready", 404),
        ("/v2/models/nope/versions/1/ready", 404),
    ],
)
def test_oip_get_endpoints_answer_their_status(
    main_service: RunningService, path: str, status: int
) -> None:
    response = httpx.get(main_service.url + path)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    if status == 404:
        assert list(response.json()) == ["error"]


def test_the_openapi_document_lists_the_inference_paths(main_service: RunningService) -> None:
    response = httpx.get(main_service.url + "/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {
        "/infer",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    } <= set(document["paths"])
    assert "post" in document["paths"]["/infer"]
    assert "post" in document["paths"]["/v2/models/{name}/infer"]
