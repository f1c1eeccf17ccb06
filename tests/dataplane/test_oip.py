"""The Open Inference Protocol codec: request validation, input formats, response encoding."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from modelserve.dataplane import oip
from modelserve.errors import InvalidRequestError, PredictError
from modelserve.model import InputFormat, Model, TensorSpec


class Rows(Model):
    pass


class Numpy(Model):
    input_format: ClassVar[InputFormat] = "numpy"


class Frame(Model):
    input_format: ClassVar[InputFormat] = "dataframe"


class Declared(Model):
    inputs = (TensorSpec("age", "INT64", (-1,)), TensorSpec("emb", "FP32", (-1, 3)))
    outputs = (TensorSpec("score", "FP32", (-1,)), TensorSpec("label", "BYTES", (-1,)))


def tensor(name: str = "x", shape: Any = None, datatype: str = "FP64", data: Any = None) -> Any:
    data = [1.0, 2.0] if data is None else data
    return {"name": name, "shape": [len(data)] if shape is None else shape, "datatype": datatype,
            "data": data}  # fmt: skip


def request(*inputs: Any, **extra: Any) -> dict[str, Any]:
    return {"inputs": list(inputs) or [tensor()], **extra}


def decode(payload: Any, model_cls: type[Model] = Rows) -> oip.DecodedRequest:
    return oip.decode_infer_request(payload, model_cls)


def invalid(payload: Any, model_cls: type[Model] = Rows) -> str:
    with pytest.raises(InvalidRequestError) as info:
        decode(payload, model_cls)
    return str(info.value)


def encode(output: Any, model_cls: type[Model] = Rows, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"model_name": "m", "model_version": "3", "request_id": None,
                            "requested_outputs": None, **kwargs}  # fmt: skip
    return oip.encode_infer_response(output, model_cls, **args)


# ---------------------------------------------------------------- datatypes


ACCEPTED: list[tuple[str, list[Any]]] = [
    ("BOOL", [True, False]),
    ("INT8", [-128, 127]),
    ("INT16", [-32768, 32767]),
    ("INT32", [-(2**31), 2**31 - 1]),
    ("INT64", [-(2**63), 2**63 - 1]),
    ("UINT8", [0, 255]),
    ("UINT16", [0, 65535]),
    ("UINT32", [0, 2**32 - 1]),
    ("UINT64", [0, 2**64 - 1]),
    ("FP16", [1, 65504.0]),
    ("FP32", [1, -3.4e38]),
    ("FP64", [1, 1.5e308]),
    ("BYTES", ["a", ""]),
]


@pytest.mark.parametrize(("datatype", "data"), ACCEPTED)
def test_every_datatype_accepts_values_in_range(datatype: str, data: list[Any]) -> None:
    rows = decode(request(tensor(datatype=datatype, data=data))).rows
    assert rows == [{"x": data[0]}, {"x": data[1]}]
    if datatype.startswith("FP"):
        assert all(type(row["x"]) is float for row in rows or [])  # ints coerced


def test_datatypes_constant_lists_all_thirteen() -> None:
    assert {d for d, _ in ACCEPTED} == oip.DATATYPES
    assert len(oip.DATATYPES) == 13


REFUSED = [
    ("BOOL", [True, 1], "inputs[0].data[1]: 1 is not a valid BOOL"),
    ("BOOL", ["true"], "inputs[0].data[0]: 'true' is not a valid BOOL"),
    ("INT8", [0, 128], "inputs[0].data[1]: 128 is out of range for INT8 [-128, 127]"),
    ("INT8", [-129], "inputs[0].data[0]: -129 is out of range for INT8"),
    ("INT16", [32768], "inputs[0].data[0]: 32768 is out of range for INT16"),
    ("INT32", [0, 1, 2, "x"], "inputs[0].data[3]: 'x' is not a valid INT32"),
    ("INT32", [2**31], "inputs[0].data[0]: 2147483648 is out of range for INT32"),
    ("INT64", [2**63], "out of range for INT64"),
    ("INT64", [1.0], "inputs[0].data[0]: 1.0 is not a valid INT64"),
    ("INT64", [True], "inputs[0].data[0]: True is not a valid INT64"),
    ("UINT8", [256], "inputs[0].data[0]: 256 is out of range for UINT8 [0, 255]"),
    ("UINT16", [-1], "inputs[0].data[0]: -1 is out of range for UINT16"),
    ("UINT32", [2**32], "out of range for UINT32"),
    ("UINT64", [2**64], "out of range for UINT64"),
    ("FP16", [70000.0], "inputs[0].data[0]: 70000.0 is out of range for FP16"),
    ("FP32", [1.0, 1e39], "inputs[0].data[1]: 1e+39 is out of range for FP32"),
    ("FP64", [10**400], "inputs[0].data[0]: 1000000000"),
    ("FP64", [1.0, "2"], "inputs[0].data[1]: '2' is not a valid FP64"),
    ("FP64", [None], "inputs[0].data[0]: None is not a valid FP64"),
    ("FP32", [False], "inputs[0].data[0]: False is not a valid FP32"),
    ("BYTES", ["a", 1], "inputs[0].data[1]: 1 is not a valid BYTES"),
    ("BYTES", [{"k": 1}], "inputs[0].data[0]: {'k': 1} is not a valid BYTES"),
]


@pytest.mark.parametrize(("datatype", "data", "message"), REFUSED)
def test_values_outside_the_datatype_are_refused(
    datatype: str, data: list[Any], message: str
) -> None:
    assert message in invalid(request(tensor(datatype=datatype, data=data)))


def test_fp_inputs_keep_nan_and_infinity() -> None:
    rows = decode(request(tensor(datatype="FP32", data=[math.inf, math.nan]))).rows or []
    assert rows[0]["x"] == math.inf and math.isnan(rows[1]["x"])


# ---------------------------------------------------------------- data layout


@pytest.mark.parametrize(
    ("shape", "nested"),
    [
        ([2, 3], [[1, 2, 3], [4, 5, 6]]),
        ([2, 3], [[1, 2], [3, 4], [5, 6]]),  # any regular nesting, only the count matters
        ([1, 2, 3], [[[1, 2, 3], [4, 5, 6]]]),
        ([6], [[1, 2, 3, 4, 5, 6]]),
    ],
)
def test_nested_and_flat_data_decode_the_same(shape: list[int], nested: list[Any]) -> None:
    flat = [1, 2, 3, 4, 5, 6]
    for model_cls in (Rows, Numpy):
        a = decode(request(tensor(shape=shape, datatype="INT32", data=nested)), model_cls).value
        b = decode(request(tensor(shape=shape, datatype="INT32", data=flat)), model_cls).value
        if model_cls is Numpy:
            np.testing.assert_array_equal(a["x"], b["x"])
            assert a["x"].shape == tuple(shape)
        else:
            assert a == b


def test_ragged_nesting_is_refused() -> None:
    message = invalid(request(tensor(shape=[3], datatype="INT32", data=[1, [2, 3]])))
    assert message.startswith("inputs[0].data: mixes nested lists")


@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([2, 3], [1, 2, 3, 4, 5], "inputs[0].data: shape [2, 3] needs 6 elements, got 5"),
        ([2, 3], [[1, 2, 3], [4, 5, 6], [7]], "needs 6 elements, got 7"),
        ([4], [], "inputs[0].data: shape [4] needs 4 elements, got 0"),
        ([], [1, 2], "inputs[0].data: shape [] needs 1 elements, got 2"),
        ([0], [1], "shape [0] needs 0 elements, got 1"),
    ],
)
def test_shape_and_element_count_must_agree(shape: list[int], data: Any, message: str) -> None:
    assert message in invalid(request(tensor(shape=shape, datatype="INT32", data=data)))


def test_count_mismatch_names_the_right_input() -> None:
    message = invalid(request(tensor("a"), tensor("b", shape=[2, 3], data=[1.0] * 5)))
    assert message == "inputs[1].data: shape [2, 3] needs 6 elements, got 5"


# ---------------------------------------------------------------- envelope


ENVELOPE = [
    ([1], "request body: expected an object, got an array"),
    ({}, "inputs: expected a non-empty array"),
    ({"inputs": []}, "inputs: expected a non-empty array"),
    ({"inputs": {"x": 1}}, "inputs: expected a non-empty array"),
    (request(id=42), "id: expected a string, got a number"),
    (request(parameters=[1]), "parameters: expected an object, got an array"),
    (request(parameters={"k": [1]}), "parameters['k']: expected a string, number or boolean"),
    (request(parameters={"k": None}), "parameters['k']: expected a string, number or boolean"),
    (request(outputs={"name": "y"}), "outputs: expected an array, got an object"),
    (request(outputs=["y"]), "outputs[0]: expected an object, got a string"),
    (request(outputs=[{"name": 1}]), "outputs[0].name: expected a non-empty string"),
    (request(outputs=[{"name": "y", "parameters": 3}]), "outputs[0].parameters: expected an"),
    (request("x"), "inputs[0]: expected an object, got a string"),
    (request({**tensor(), "name": None}), "inputs[0].name: expected a non-empty string"),
    (request({**tensor(), "name": ""}), "inputs[0].name: expected a non-empty string"),
    (request({**tensor(), "shape": 2}), "inputs[0].shape: expected a list of non-negative"),
    (request({**tensor(), "shape": [-1]}), "inputs[0].shape: expected a list of non-negative"),
    (request({**tensor(), "shape": [2.0]}), "inputs[0].shape: expected a list of non-negative"),
    (request({**tensor(), "shape": [True]}), "inputs[0].shape: expected a list of non-negative"),
    (request({**tensor(), "datatype": "FLOAT"}), "inputs[0].datatype: expected one of BOOL,"),
    (request({**tensor(), "datatype": "fp64"}), "inputs[0].datatype: expected one of"),
    (request({**tensor(), "datatype": ["FP64"]}), "inputs[0].datatype: expected one of"),
    (request({**tensor(), "parameters": "p"}), "inputs[0].parameters: expected an object"),
    (request({**tensor(), "data": "1,2"}), "inputs[0].data: expected an array, got a string"),
    (request({**tensor(), "data": None}), "inputs[0].data: expected an array, got null"),
    (request(tensor("a"), tensor("a")), "inputs[1].name: duplicate input 'a' (also inputs[0])"),
]


@pytest.mark.parametrize(("payload", "message"), ENVELOPE)
def test_malformed_envelopes_name_the_field(payload: Any, message: str) -> None:
    assert invalid(payload).startswith(message)


def test_missing_data_mentions_binary_extension_only_when_used() -> None:
    plain = {k: v for k, v in tensor().items() if k != "data"}
    assert invalid(request(plain)) == "inputs[0].data: missing"
    binary = {**plain, "parameters": {"binary_data_size": 16}}
    assert "binary tensor data extension is not supported" in invalid(request(binary))


def test_envelope_fields_are_passed_through() -> None:
    outputs = [{"name": "y"}, {"name": "z", "parameters": {"binary_data": False}}, {"name": "y"}]
    decoded = decode(request(id="42", parameters={"a": "b", "n": 1.5, "f": True}, outputs=outputs))
    assert decoded.id == "42"
    assert decoded.parameters == {"a": "b", "n": 1.5, "f": True}
    assert decoded.requested_outputs == ["y", "z"]


@pytest.mark.parametrize("outputs", [None, []])
def test_absent_or_empty_outputs_mean_all(outputs: Any) -> None:
    payload = request() if outputs is None else request(outputs=outputs)
    decoded = decode(payload)
    assert decoded.requested_outputs is None and decoded.id is None and decoded.parameters == {}


# ---------------------------------------------------------------- declared inputs


def declared_request(**overrides: Any) -> dict[str, Any]:
    inputs = {
        "age": tensor("age", [2], "INT64", [30, 40]),
        "emb": tensor("emb", [2, 3], "FP32", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        **overrides,
    }
    return request(*[value for value in inputs.values() if value is not None])


def test_declared_inputs_accept_a_matching_request() -> None:
    rows = decode(declared_request(), Declared).rows
    assert rows == [{"age": 30, "emb": [0.1, 0.2, 0.3]}, {"age": 40, "emb": [0.4, 0.5, 0.6]}]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"emb": None}, "inputs: missing declared input 'emb'"),
        ({"age": None, "emb": None, "z": tensor("z")}, "inputs[0].name: unknown input 'z'; "),
        ({"z": tensor("z")}, "inputs[2].name: unknown input 'z'; declared inputs: age, emb"),
        (
            {"age": tensor("age", [2], "INT32", [1, 2])},
            "inputs[0].datatype: input 'age' is declared INT64, got INT32",
        ),
        (
            {"emb": tensor("emb", [1, 6], "FP32", [0.0] * 6)},
            "inputs[1].shape: [1, 6] does not match the declared shape [-1, 3] of input 'emb'",
        ),
        (
            {"emb": tensor("emb", [6], "FP32", [0.0] * 6)},
            "inputs[1].shape: [6] does not match the declared shape [-1, 3]",
        ),
    ],
)
def test_declared_inputs_are_enforced(overrides: dict[str, Any], message: str) -> None:
    assert invalid(declared_request(**overrides), Declared).startswith(message)


def test_requested_outputs_checked_against_declared_outputs() -> None:
    payload = {**declared_request(), "outputs": [{"name": "score"}, {"name": "nope"}]}
    assert invalid(payload, Declared).startswith(
        "outputs[1].name: unknown output 'nope'; declared outputs: score, label"
    )


# ---------------------------------------------------------------- input formats


def test_rows_format_one_dict_per_row_across_inputs() -> None:
    decoded = decode(
        request(
            tensor("a", [3], "INT64", [1, 2, 3]),
            tensor("b", [3, 2], "BYTES", [["p", "q"], ["r", "s"], ["t", "u"]]),
            tensor("c", [3, 1, 2], "BOOL", [True, False] * 3),
        )
    )
    assert decoded.format == "rows" and decoded.batch_size == 3
    assert decoded.rows is decoded.value
    assert decoded.rows == [
        {"a": 1, "b": ["p", "q"], "c": [[True, False]]},
        {"a": 2, "b": ["r", "s"], "c": [[True, False]]},
        {"a": 3, "b": ["t", "u"], "c": [[True, False]]},
    ]


def test_rows_format_single_wide_input_gives_row_dicts() -> None:
    payload = request(tensor("input", [1, 20], "FP64", [[float(i) for i in range(20)]]))
    assert decode(payload).rows == [{"input": [float(i) for i in range(20)]}]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([tensor("a", [2]), tensor("b", [3], data=[1.0] * 3)], "inputs[1].shape: batch size 3"),
        ([tensor("a", [], data=[1.0])], "inputs[0].shape: the 'rows' input format needs a batch"),
    ],
)
def test_rows_format_needs_one_batch_size(inputs: list[Any], message: str) -> None:
    assert invalid(request(*inputs)).startswith(message)


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [("BOOL", np.bool_), ("INT8", np.int8), ("INT16", np.int16), ("INT32", np.int32),
     ("INT64", np.int64), ("UINT8", np.uint8), ("UINT16", np.uint16), ("UINT32", np.uint32),
     ("UINT64", np.uint64), ("FP16", np.float16), ("FP32", np.float32), ("FP64", np.float64),
     ("BYTES", np.object_)],
)  # fmt: skip
def test_numpy_format_uses_the_exact_dtype(datatype: str, dtype: Any) -> None:
    data = dict(ACCEPTED)[datatype] * 3
    decoded = decode(request(tensor("x", [3, 2], datatype, data)), Numpy)
    array = decoded.value["x"]
    assert decoded.rows is None and decoded.format == "numpy" and decoded.batch_size == 3
    assert array.dtype == np.dtype(dtype) and array.shape == (3, 2)
    expected = np.array(data, dtype=dtype).tolist()  # FP32/FP16 round
    assert array.tolist() == [expected[0:2], expected[2:4], expected[4:6]]


def test_numpy_format_accepts_scalars_and_mixed_batches() -> None:
    decoded = decode(request(tensor("a", [], "INT32", [7]), tensor("b", [2])), Numpy)
    assert decoded.value["a"].shape == () and decoded.value["a"].item() == 7
    assert decoded.batch_size == 1


def test_dataframe_format_one_column_per_input() -> None:
    decoded = decode(
        request(tensor("a", [2], "INT32", [1, 2]), tensor("b", [2, 1], "BYTES", [["x"], ["y"]])),
        Frame,
    )
    frame = decoded.value
    assert isinstance(frame, pd.DataFrame) and decoded.rows is None and decoded.batch_size == 2
    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].dtype == np.int32 and frame["b"].tolist() == ["x", "y"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([tensor("a", [2, 3], data=[1.0] * 6)], "inputs[0].shape: the 'dataframe' input format"),
        ([tensor("a", [1, 1, 1], data=[1.0])], "takes shape [N] or [N, 1], got [1, 1, 1]"),
        ([tensor("a", [2]), tensor("b", [1], data=[1.0])], "inputs[1].shape: batch size 1"),
    ],
)
def test_dataframe_format_refuses_wide_or_unequal_inputs(inputs: list[Any], message: str) -> None:
    assert message in invalid(request(*inputs), Frame)


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    ("rows", "datatype", "shape", "data"),
    [
        ([1.5, 2.5], "FP64", [2], [1.5, 2.5]),
        ([1, 2], "INT64", [2], [1, 2]),
        ([1, 2.5], "FP64", [2], [1.0, 2.5]),
        ([True, False], "BOOL", [2], [True, False]),
        (["a", b"b"], "BYTES", [2], ["a", "b"]),
        ([[1, 2, 3], [4, 5, 6]], "INT64", [2, 3], [1, 2, 3, 4, 5, 6]),
        ([(0.5, 1.0)], "FP64", [1, 2], [0.5, 1.0]),
        ([np.float32(0.5), np.float32(2.0)], "FP32", [2], [0.5, 2.0]),
        ([np.array([1, 2], dtype=np.uint8)], "UINT8", [1, 2], [1, 2]),
        ([], "FP64", [0], []),
    ],
)
def test_encode_rows_of_scalars_and_lists(
    rows: list[Any], datatype: str, shape: list[int], data: list[Any]
) -> None:
    (out,) = encode(rows)["outputs"]
    assert out == {"name": "output0", "datatype": datatype, "shape": shape, "data": data}
    assert [type(x) for x in out["data"]] == [type(x) for x in data]


def test_encode_rows_of_dicts_gives_one_tensor_per_key() -> None:
    outputs = encode([{"p": 0.25, "tags": ["a", "b"]}, {"p": 0.75, "tags": ["c", "d"]}])["outputs"]
    assert outputs == [
        {"name": "p", "datatype": "FP64", "shape": [2], "data": [0.25, 0.75]},
        {"name": "tags", "datatype": "BYTES", "shape": [2, 2], "data": ["a", "b", "c", "d"]},
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"a": 1}, {"b": 1}], "row 1 output has keys ['b'], row 0 has ['a']"),
        ([{"a": 1}, 2], "row outputs mix dicts and other values"),
        ([[1, 2], [3]], "output 'output0' is ragged"),
        ([[1, 2], 3], "output 'output0' is ragged"),
        ([1, "a"], "output 'output0': no OIP datatype holds values of type int, str"),
        ([None], "no OIP datatype holds values of type NoneType"),
        ([True, 1], "no OIP datatype holds values of type bool, int"),
        ([b"\xff"], "is not UTF-8"),
        ([1.0, math.nan], "output 'output0' element [1] is nan, which JSON cannot carry"),
        ([math.inf], "element [0] is inf, which JSON cannot carry"),
        ([2**64], "output 'output0' element [0]: 18446744073709551616 is out of range for INT64"),
        ({"a": 1}, "expected one output per row, got dict"),
    ],
)
def test_encode_refuses_outputs_that_cannot_be_encoded(rows: Any, message: str) -> None:
    with pytest.raises(PredictError) as info:
        encode(rows)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [(np.bool_, "BOOL"), (np.int8, "INT8"), (np.int16, "INT16"), (np.int32, "INT32"),
     (np.int64, "INT64"), (np.uint8, "UINT8"), (np.uint16, "UINT16"), (np.uint32, "UINT32"),
     (np.uint64, "UINT64"), (np.float16, "FP16"), (np.float32, "FP32"), (np.float64, "FP64"),
     (np.str_, "BYTES"), (np.object_, "BYTES")],
)  # fmt: skip
def test_encode_numpy_arrays_maps_dtypes_exactly(dtype: Any, datatype: str) -> None:
    values = ["a", "b", "c", "d"] if datatype == "BYTES" else [1, 0, 1, 1]
    array = np.array(values, dtype=dtype).reshape(2, 2)
    (out,) = encode(array, Numpy)["outputs"]
    assert out == {"name": "output0", "datatype": datatype, "shape": [2, 2],
                   "data": array.reshape(-1).tolist()}  # fmt: skip
    json.dumps(out, allow_nan=False)


def test_encode_numpy_dict_and_unsupported_dtype() -> None:
    outputs = encode({"a": np.zeros(2, np.float32), "b": np.int64(3)}, Numpy)["outputs"]
    assert [(o["name"], o["datatype"], o["shape"]) for o in outputs] == [
        ("a", "FP32", [2]),
        ("b", "INT64", []),
    ]
    with pytest.raises(PredictError, match="numpy dtype complex128 has no Open Inference"):
        encode(np.zeros(2, np.complex128), Numpy)
    with pytest.raises(PredictError, match="element \\[1\\] is nan"):
        encode(np.array([0.0, np.nan], np.float32), Numpy)


def test_encode_dataframe_output_one_tensor_per_column() -> None:
    frame = pd.DataFrame({"p": np.array([0.5, 1.5], np.float32), "k": ["a", "b"]})
    outputs = encode(frame, Frame)["outputs"]
    assert outputs == [
        {"name": "p", "datatype": "FP32", "shape": [2], "data": [0.5, 1.5]},
        {"name": "k", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
    ]
    (series,) = encode(pd.Series([1, 2]), Frame)["outputs"]
    assert series["datatype"] == "INT64" and series["data"] == [1, 2]


def test_encode_uses_declared_outputs() -> None:
    outputs = encode([{"score": 1, "label": "a"}, {"score": 0.5, "label": "b"}], Declared)
    assert outputs["outputs"] == [
        {"name": "score", "datatype": "FP32", "shape": [2], "data": [1.0, 0.5]},
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
    ]
    (single,) = encode([0.1, 0.2], Declared)["outputs"]  # unnamed -> first declared output
    assert single["name"] == "score" and single["datatype"] == "FP32"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"score": 1.0, "other": 1}], "predict returned undeclared output 'other'"),
        ([{"score": 1.0, "label": 3}], "output 'label' element [0]: 3 is not a valid BYTES"),
        ([{"score": 1e39, "label": "a"}], "output 'score' element [0]: 1e+39 is out of range"),
        ([{"score": [1.0], "label": "a"}], "output 'score' has shape [1, 1], not the declared"),
    ],
)
def test_encode_enforces_declared_outputs(rows: Any, message: str) -> None:
    with pytest.raises(PredictError) as info:
        encode(rows, Declared)
    assert message in str(info.value)


def test_requested_outputs_filter_in_request_order() -> None:
    rows = [{"a": 1, "b": 2, "c": 3}]
    outputs = encode(rows, requested_outputs=["c", "a", "c"])["outputs"]
    assert [o["name"] for o in outputs] == ["c", "a"]
    with pytest.raises(InvalidRequestError, match="outputs: unknown output 'z'; the model "):
        encode(rows, requested_outputs=["a", "z"])


@pytest.mark.parametrize(
    ("request_id", "version", "expected"),
    [
        ("42", "3", {"model_name": "m", "model_version": "3", "id": "42"}),
        (None, "3", {"model_name": "m", "model_version": "3"}),
        ("", "", {"model_name": "m", "id": ""}),
    ],
)
def test_response_envelope_echoes_id(
    request_id: str | None, version: str, expected: dict[str, Any]
) -> None:
    response = encode([1.0], request_id=request_id, model_version=version)
    assert {k: v for k, v in response.items() if k != "outputs"} == expected
    assert json.loads(json.dumps(response, allow_nan=False)) == response


def test_round_trip_decode_predict_encode() -> None:
    decoded = decode(request(tensor("x", [2, 2], "FP32", [[1, 2], [3, 4]]), id="r1"))
    outputs = [sum(row["x"]) for row in decoded.rows or []]
    response = encode(outputs, request_id=decoded.id, requested_outputs=decoded.requested_outputs)
    assert response["id"] == "r1" and response["outputs"][0]["data"] == [3.0, 7.0]


# ---------------------------------------------------------------- metadata


def test_metadata_from_declared_specs() -> None:
    assert oip.model_metadata(Declared, "fraud", ["3"]) == {
        "name": "fraud",
        "versions": ["3"],
        "platform": "modelserve",
        "inputs": [
            {"name": "age", "datatype": "INT64", "shape": [-1]},
            {"name": "emb", "datatype": "FP32", "shape": [-1, 3]},
        ],
        "outputs": [
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def test_metadata_without_specs() -> None:
    meta = oip.model_metadata(Rows, "m", ["1", "2"], platform="sklearn_pickle")
    assert meta == {"name": "m", "versions": ["1", "2"], "platform": "sklearn_pickle",
                    "inputs": [], "outputs": []}  # fmt: skip


def test_module_imports_without_numpy() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numpy'] = None; sys.modules['pandas'] = None\n"
        "from modelserve.dataplane import oip\n"
        "from modelserve.model import Model\n"
        "d = oip.decode_infer_request({'inputs': [{'name': 'x', 'shape': [1], "
        "'datatype': 'FP64', 'data': [1]}]}, Model)\n"
        "print(oip.encode_infer_response([2.0], Model, model_name='m', model_version='1', "
        "request_id=None, requested_outputs=None)['outputs'][0]['data'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[2.0]"
