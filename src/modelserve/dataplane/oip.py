"""Open Inference Protocol (KServe V2) codec: parsed JSON dicts in, JSON-ready dicts out.

Nothing here speaks HTTP; numpy and pandas are imported only when a model asks for them.

Requests (:func:`decode_infer_request`). ``data`` may be flat or nested, row-major; nesting is
flattened (it must be regular at each depth) and only the element count is checked against
``shape``. Elements must fit ``datatype``: ``BOOL`` takes ``true``/``false``; ``INTn``/``UINTn``
take JSON integers in range (``1.0`` is refused, not truncated); ``FP16``/``FP32``/``FP64`` take
integers and floats, integers coerced to float, finite values beyond the type's range refused
(``FP16`` travels as JSON numbers and becomes ``float16`` only in the numpy/dataframe formats);
``BYTES`` takes strings. Declared ``Model.inputs`` must all be sent, with the declared datatype
and shape (``-1`` matches any size); undeclared inputs are refused. An empty ``outputs`` list
means all outputs. What ``predict`` receives depends on ``Model.input_format``:

- ``"rows"`` (default): every input needs a batch dimension first, all with the same size N;
  the model gets N dicts ``{input_name: value}``, one per row, where the value is a scalar for
  shape ``[N]``, a list of k for ``[N, k]``, nested lists for higher ranks.
- ``"numpy"``: one dict ``{input_name: ndarray}`` reshaped to ``shape``, dtype exactly the
  datatype's (``BYTES`` -> ``object`` array of ``str``).
- ``"dataframe"``: one pandas DataFrame, one column per input in request order; inputs must be
  ``[N]`` or ``[N, 1]`` (use ``"numpy"`` for wider tensors).

Responses (:func:`encode_infer_response`). For ``"rows"`` the output is the list of per-row
results: scalars give one tensor of shape ``[N]``, lists of k give ``[N, k]``, dicts give one
tensor per key (every row must have the same keys). For the other formats a dict (or a
DataFrame) gives one tensor per key (column); anything else is one tensor. A single unnamed
tensor is called after the first declared output, else ``output0``. The datatype is the
declared one when ``Model.outputs`` declares it, else the numpy dtype's exact counterpart, else
inferred from values: bool -> BOOL, int -> INT64, float (or int mixed with float) -> FP64,
str/bytes -> BYTES. ``data`` is flattened row-major. NaN and infinity cannot be written as JSON:
such an output fails with :class:`PredictError` (HTTP 500). Requested outputs filter the
response in request order; an unknown name is a 400.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from modelserve.errors import InvalidRequestError, PredictError
from modelserve.model import InputFormat, Model, TensorSpec

__all__ = [
    "DATATYPES",
    "DecodedRequest",
    "decode_infer_request",
    "encode_infer_response",
    "model_metadata",
]

_INT_RANGES: dict[str, tuple[int, int]] = {
    **{f"INT{b}": (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in (8, 16, 32, 64)},
    **{f"UINT{b}": (0, 2**b - 1) for b in (8, 16, 32, 64)},
}
_FP_LIMITS: dict[str, float] = {"FP16": 65504.0, "FP32": 3.4028234663852886e38, "FP64": math.inf}
_NUMPY_DTYPES: dict[str, str] = {
    **{name: name.lower() for name in _INT_RANGES},
    "BOOL": "bool",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_DATATYPE_OF_DTYPE = {dtype: name for name, dtype in _NUMPY_DTYPES.items() if name != "BYTES"}
#: The thirteen Open Inference Protocol datatypes.
DATATYPES: frozenset[str] = frozenset(_NUMPY_DTYPES)
_ALLOWED_TYPES: dict[str, frozenset[type]] = {
    **{name: frozenset({int}) for name in _INT_RANGES},
    **{name: frozenset({int, float}) for name in _FP_LIMITS},
    "BOOL": frozenset({bool}),
    "BYTES": frozenset({str}),
}
_SEQUENCES = frozenset({list, tuple})
_PLAIN = frozenset({bool, int, float, str, list, tuple})


@dataclass(frozen=True)
class DecodedRequest:
    """A validated inference request, converted to what the model's ``predict`` takes."""

    id: str | None
    parameters: dict[str, Any]
    #: Output names the client asked for, in order; None: all outputs.
    requested_outputs: list[str] | None
    format: InputFormat
    #: The argument of ``predict``: the row list, the dict of arrays or the DataFrame.
    value: Any
    #: For the rows format, the row dicts (call ``predict`` once per row or
    #: ``predict_batch`` once); None for the other formats.
    rows: list[dict[str, Any]] | None
    batch_size: int


@dataclass
class _Tensor:
    name: str
    datatype: str
    shape: list[int]
    flat: list[Any]


class _BadElement(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _check_elements(flat: list[Any], datatype: str, types: set[type]) -> list[Any]:
    """Check (in bulk where possible) that every element fits ``datatype``; return them,
    integers coerced to float for the FP types. Raises :class:`_BadElement`."""
    allowed = _ALLOWED_TYPES[datatype]
    if not types <= allowed:
        index = next(i for i, x in enumerate(flat) if type(x) not in allowed)
        raise _BadElement(index, f"{_show(flat[index])} is not a valid {datatype}")
    if datatype in _INT_RANGES and flat:
        lo, hi = _INT_RANGES[datatype]
        if min(flat) < lo or max(flat) > hi:
            index = next(i for i, x in enumerate(flat) if not lo <= x <= hi)
            raise _BadElement(index, f"{flat[index]} is out of range for {datatype} [{lo}, {hi}]")
    elif datatype in _FP_LIMITS:
        if int in types:
            try:
                flat = list(map(float, flat))
            except OverflowError:
                index = next(i for i, x in enumerate(flat) if abs(x) > sys.float_info.max)
                raise _BadElement(
                    index, f"{_show(flat[index])} is too large for {datatype}"
                ) from None
        limit = _FP_LIMITS[datatype]
        if limit < math.inf:
            for index, x in enumerate(flat):
                if limit < abs(x) < math.inf:
                    raise _BadElement(index, f"{x} is out of range for {datatype}")
    return flat


def _flatten(data: list[Any], where: str) -> tuple[list[Any], set[type]]:
    flat = data
    while True:
        types = set(map(type, flat))
        if list not in types:
            return flat, types
        if types != {list}:
            raise InvalidRequestError(f"{where}.data: mixes nested lists and values at one depth")
        flat = list(chain.from_iterable(flat))


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where}: expected an object, got {_json_type(value)}")
    for key, item in value.items():
        if type(item) not in (str, int, float, bool):
            raise InvalidRequestError(
                f"{where}[{key!r}]: expected a string, number or boolean, got {_json_type(item)}"
            )
    return dict(value)


def _shape_matches(shape: Sequence[int], declared: Sequence[int]) -> bool:
    return len(shape) == len(declared) and all(
        d == -1 or d == s for s, d in zip(shape, declared, strict=True)
    )


def _names(specs: Sequence[TensorSpec] | Mapping[str, Any]) -> str:
    names = list(specs) if isinstance(specs, Mapping) else [s.name for s in specs]
    return ", ".join(names) or "(none)"


def _decode_input(index: int, item: Any, declared: dict[str, TensorSpec] | None) -> _Tensor:
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequestError(f"{where}: expected an object, got {_json_type(item)}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"{where}.name: expected a non-empty string, got {_show(name)}")
    shape = item.get("shape")
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidRequestError(
            f"{where}.shape: expected a list of non-negative integers, got {_show(shape)}"
        )
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidRequestError(
            f"{where}.datatype: expected one of {', '.join(sorted(DATATYPES))}, "
            f"got {_show(datatype)}"
        )
    parameters = _parameters(item.get("parameters"), f"{where}.parameters")
    if declared is not None:
        spec = declared.get(name)
        if spec is None:
            raise InvalidRequestError(
                f"{where}.name: unknown input {name!r}; declared inputs: {_names(declared)}"
            )
        if datatype != spec.datatype:
            raise InvalidRequestError(
                f"{where}.datatype: input {name!r} is declared {spec.datatype}, got {datatype}"
            )
        if not _shape_matches(shape, spec.shape):
            raise InvalidRequestError(
                f"{where}.shape: {shape} does not match the declared shape "
                f"{list(spec.shape)} of input {name!r}"
            )
    if "data" not in item:
        hint = " (the binary tensor data extension is not supported)"
        raise InvalidRequestError(
            f"{where}.data: missing{hint if 'binary_data_size' in parameters else ''}"
        )
    data = item["data"]
    if type(data) is not list:
        raise InvalidRequestError(f"{where}.data: expected an array, got {_json_type(data)}")
    flat, types = _flatten(data, where)
    count = math.prod(shape)
    if len(flat) != count:
        raise InvalidRequestError(
            f"{where}.data: shape {shape} needs {count} elements, got {len(flat)}"
        )
    try:
        flat = _check_elements(flat, datatype, types)
    except _BadElement as bad:
        raise InvalidRequestError(f"{where}.data[{bad.index}]: {bad}") from None
    return _Tensor(name, datatype, shape, flat)


def _requested_outputs(value: Any, declared: Sequence[TensorSpec] | None) -> list[str] | None:
    if value is None:
        return None
    if type(value) is not list:
        raise InvalidRequestError(f"outputs: expected an array, got {_json_type(value)}")
    names: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequestError(
                f"outputs[{index}]: expected an object, got {_json_type(item)}"
            )
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(
                f"outputs[{index}].name: expected a non-empty string, got {_show(name)}"
            )
        _parameters(item.get("parameters"), f"outputs[{index}].parameters")
        if declared is not None and name not in {spec.name for spec in declared}:
            raise InvalidRequestError(
                f"outputs[{index}].name: unknown output {name!r}; "
                f"declared outputs: {_names(declared)}"
            )
        if name not in names:
            names.append(name)
    return names or None


def _batch_size(tensors: list[_Tensor], fmt: str) -> int:
    batch = -1
    for index, tensor in enumerate(tensors):
        if not tensor.shape:
            raise InvalidRequestError(
                f"inputs[{index}].shape: the {fmt!r} input format needs a batch dimension, got []"
            )
        if fmt == "dataframe" and not (len(tensor.shape) == 1 or tensor.shape[1:] == [1]):
            raise InvalidRequestError(
                f"inputs[{index}].shape: the 'dataframe' input format takes shape [N] or "
                f"[N, 1], got {tensor.shape}; use input_format 'numpy' for wider tensors"
            )
        if batch == -1:
            batch = tensor.shape[0]
        elif tensor.shape[0] != batch:
            raise InvalidRequestError(
                f"inputs[{index}].shape: batch size {tensor.shape[0]} differs from "
                f"inputs[0]'s {batch}"
            )
    return batch


def _nest(flat: list[Any], dims: list[int]) -> list[Any]:
    if len(dims) == 1:
        return flat
    step = math.prod(dims[1:])
    return [_nest(flat[j * step : (j + 1) * step], dims[1:]) for j in range(dims[0])]


def _row_values(tensor: _Tensor) -> list[Any]:
    if len(tensor.shape) == 1:
        return tensor.flat
    inner = tensor.shape[1:]
    size = math.prod(inner)
    flat = tensor.flat
    return [_nest(flat[i * size : (i + 1) * size], inner) for i in range(tensor.shape[0])]


def _to_numpy(tensor: _Tensor) -> Any:
    import numpy as np

    if tensor.datatype == "BYTES":
        array = np.empty(len(tensor.flat), dtype=object)
        array[:] = tensor.flat
    else:
        array = np.asarray(tensor.flat, dtype=_NUMPY_DTYPES[tensor.datatype])
    return array.reshape(tensor.shape)


def decode_infer_request(payload: Any, model_cls: type[Model]) -> DecodedRequest:
    """Validate an OIP ``$inference_request`` and convert it for ``model_cls.predict``.

    Raises :class:`InvalidRequestError` naming the offending field.
    """
    if not isinstance(payload, dict):
        raise InvalidRequestError(f"request body: expected an object, got {_json_type(payload)}")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError(f"id: expected a string, got {_json_type(request_id)}")
    parameters = _parameters(payload.get("parameters"), "parameters")
    requested = _requested_outputs(payload.get("outputs"), model_cls.outputs)
    inputs = payload.get("inputs")
    if type(inputs) is not list or not inputs:
        raise InvalidRequestError(f"inputs: expected a non-empty array, got {_show(inputs)}")
    declared = None if model_cls.inputs is None else {s.name: s for s in model_cls.inputs}
    tensors: list[_Tensor] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(inputs):
        tensor = _decode_input(index, item, declared)
        if tensor.name in seen:
            raise InvalidRequestError(
                f"inputs[{index}].name: duplicate input {tensor.name!r} "
                f"(also inputs[{seen[tensor.name]}])"
            )
        seen[tensor.name] = index
        tensors.append(tensor)
    missing = [name for name in declared or () if name not in seen]
    if missing:
        raise InvalidRequestError(f"inputs: missing declared input {', '.join(map(repr, missing))}")

    fmt = model_cls.input_format
    if fmt == "numpy":
        arrays = {t.name: _to_numpy(t) for t in tensors}
        batch = tensors[0].shape[0] if tensors[0].shape else 1
        return DecodedRequest(request_id, parameters, requested, fmt, arrays, None, batch)
    batch = _batch_size(tensors, fmt)
    if fmt == "dataframe":
        import pandas as pd

        frame = pd.DataFrame({t.name: _to_numpy(t).reshape(-1) for t in tensors})
        return DecodedRequest(request_id, parameters, requested, fmt, frame, None, batch)
    names = [t.name for t in tensors]
    if len(tensors) == 1:
        rows = [{names[0]: value} for value in _row_values(tensors[0])]
    else:
        columns = [_row_values(t) for t in tensors]
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    return DecodedRequest(request_id, parameters, requested, "rows", rows, rows, batch)


def _plain(value: Any) -> tuple[Any, str | None]:
    """numpy arrays and scalars -> Python values plus the OIP datatype of their dtype."""
    dtype = getattr(value, "dtype", None)
    if dtype is None or not hasattr(value, "tolist"):
        return value, None
    name = str(dtype.name)
    if name in _DATATYPE_OF_DTYPE:
        return value.tolist(), _DATATYPE_OF_DTYPE[name]
    return value.tolist(), "BYTES" if dtype.kind in "OUS" else f"numpy dtype {name}"


def _stack(values: list[Any]) -> tuple[list[Any], str | None]:
    plain = [_plain(v) for v in values]
    hints = {hint for _, hint in plain}
    return [v for v, _ in plain], hints.pop() if len(hints) == 1 else None


def _output_values(output: Any, model_cls: type[Model]) -> list[tuple[str, Any, str | None]]:
    default = model_cls.outputs[0].name if model_cls.outputs else "output0"
    if model_cls.input_format == "rows":
        if not isinstance(output, (list, tuple)):
            raise PredictError(f"expected one output per row, got {type(output).__name__}")
        dicts = [isinstance(row, dict) for row in output]
        if output and all(dicts):
            keys = list(output[0])
            for index, row in enumerate(output):
                if row.keys() != output[0].keys():
                    raise PredictError(
                        f"row {index} output has keys {sorted(map(str, row))}, "
                        f"row 0 has {sorted(map(str, keys))}"
                    )
            return [(str(key), *_stack([row[key] for row in output])) for key in keys]
        if any(dicts):
            raise PredictError("row outputs mix dicts and other values")
        return [(default, *_stack(list(output)))]
    if type(output).__name__ == "DataFrame" and hasattr(output, "columns"):
        return [(str(col), *_plain(output[col].to_numpy())) for col in output.columns]
    if type(output).__name__ == "Series" and hasattr(output, "to_numpy"):
        output = output.to_numpy()
    if isinstance(output, dict):
        return [(str(key), *_plain(value)) for key, value in output.items()]
    return [(default, *_plain(output))]


def _normalize(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise PredictError(f"bytes output {_show(value)} is not UTF-8") from None
    return value.tolist() if hasattr(value, "tolist") else value


def _shape_and_flat(value: Any, name: str) -> tuple[list[int], list[Any], set[type]]:
    shape, flat = ([len(value)], list(value)) if type(value) in _SEQUENCES else ([], [value])
    while True:
        types = set(map(type, flat))
        if not types <= _PLAIN:
            flat = [_normalize(x) for x in flat]
            types = set(map(type, flat))
        if not types & _SEQUENCES:
            return shape, flat, types
        lengths = set(map(len, flat)) if types <= _SEQUENCES else set()
        if len(lengths) != 1:
            raise PredictError(f"output {name!r} is ragged: its nested lists differ in length")
        shape.append(lengths.pop())
        flat = list(chain.from_iterable(flat))


def _infer_datatype(types: set[type], name: str) -> str:
    if not types or types <= {int, float}:
        return "INT64" if types == {int} else "FP64"
    if types in ({bool}, {str}):
        return "BOOL" if types == {bool} else "BYTES"
    kinds = ", ".join(sorted(t.__name__ for t in types))
    raise PredictError(f"output {name!r}: no OIP datatype holds values of type {kinds}")


def _encode_tensor(name: str, value: Any, hint: str | None, spec: TensorSpec | None) -> Any:
    shape, flat, types = _shape_and_flat(value, name)
    datatype = spec.datatype if spec else hint or _infer_datatype(types, name)
    if datatype not in DATATYPES:
        raise PredictError(f"output {name!r}: {datatype} has no Open Inference Protocol datatype")
    try:
        flat = _check_elements(flat, datatype, types)
    except _BadElement as bad:
        raise PredictError(f"output {name!r} element [{bad.index}]: {bad}") from None
    if datatype in _FP_LIMITS and not all(map(math.isfinite, flat)):
        index = next(i for i, x in enumerate(flat) if not math.isfinite(x))
        raise PredictError(
            f"output {name!r} element [{index}] is {flat[index]}, which JSON cannot carry"
        )
    if spec and not _shape_matches(shape, spec.shape):
        raise PredictError(
            f"output {name!r} has shape {shape}, not the declared {list(spec.shape)}"
        )
    return {"name": name, "datatype": datatype, "shape": shape, "data": flat}


def encode_infer_response(
    output: Any,
    model_cls: type[Model],
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    requested_outputs: list[str] | None,
) -> dict[str, Any]:
    """Build the OIP ``$inference_response`` for what ``predict`` returned.

    For the rows format ``output`` is the list of per-row results. Raises
    :class:`InvalidRequestError` for an unknown requested output and :class:`PredictError`
    for an output that cannot be encoded.
    """
    values = _output_values(output, model_cls)
    declared = None if model_cls.outputs is None else {s.name: s for s in model_cls.outputs}
    names = [name for name, _, _ in values]
    if declared is not None:
        undeclared = [name for name in names if name not in declared]
        if undeclared:
            raise PredictError(
                f"predict returned undeclared output {undeclared[0]!r}; "
                f"declared outputs: {_names(declared)}"
            )
    if requested_outputs is not None:
        by_name = {value[0]: value for value in values}
        for name in requested_outputs:
            if name not in by_name:
                raise InvalidRequestError(
                    f"outputs: unknown output {name!r}; the model returned: {', '.join(names)}"
                )
        values = [by_name[name] for name in dict.fromkeys(requested_outputs)]
    response: dict[str, Any] = {"model_name": model_name}
    if model_version:
        response["model_version"] = model_version
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [
        _encode_tensor(name, value, hint, (declared or {}).get(name))
        for name, value, hint in values
    ]
    return response


def _spec_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def model_metadata(
    model_cls: type[Model], name: str, versions: list[str], platform: str = "modelserve"
) -> dict[str, Any]:
    """The OIP ``$metadata_model_response``; inputs/outputs are ``[]`` when not declared."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [_spec_json(spec) for spec in model_cls.inputs or ()],
        "outputs": [_spec_json(spec) for spec in model_cls.outputs or ()],
    }
