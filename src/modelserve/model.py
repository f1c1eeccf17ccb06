"""The model contract: the one class a team writes.

A model class subclasses :class:`Model` and implements ``load(file)`` and
``predict(features)``; it lists canary inputs with expected outputs in ``test_data``. The
seed's shapes work unchanged: ``load(self, file)`` receives the local path of the published
artifact (a file or a directory, as it was published), and ``test_data`` may be a property or
a method returning a pandas DataFrame with an ``input`` column plus one expected-output column,
a list of ``(input, expected)`` pairs, or a list of ``{"input": ..., "expected": ...}`` dicts.

Nothing here imports an ML library, pandas or numpy.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from modelserve.errors import ModelClassError, ModelLoadError

__all__ = [
    "Model",
    "TensorSpec",
    "TestCase",
    "class_path",
    "import_model_class",
    "instantiate",
    "load_model",
    "test_cases",
]

SelfTestPolicy = Literal["refuse", "warn"]
InputFormat = Literal["rows", "numpy", "dataframe"]


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a model on the Open Inference Protocol.

    ``shape`` uses -1 for a variable dimension (the batch, usually).
    """

    name: str
    datatype: str
    shape: tuple[int, ...] = (-1,)


@dataclass(frozen=True)
class TestCase:
    """One canary: an input and the output the model must give for it."""

    __test__ = False  # not a pytest test class

    input: Any
    expected: Any
    name: str = ""


class Model:
    """Base class for team model code.

    Subclasses implement :meth:`load` and :meth:`predict` and usually :attr:`test_data`.
    Optional members: :meth:`train` (writes artifact files into ``out_dir``),
    :meth:`predict_batch`, the tolerance ``atol``/``rtol`` used by self-tests, the self-test
    policy (``"refuse"``: a failing version never serves; ``"warn"``: it serves and says so),
    and, for the Open Inference Protocol, ``inputs``/``outputs`` tensor specs and the
    ``input_format`` that ``predict`` receives from ``/v2/.../infer``.
    """

    #: Absolute tolerance of self-test comparisons: ``|a - b| <= atol + rtol * |b|``.
    atol: ClassVar[float] = 1e-6
    #: Relative tolerance of self-test comparisons.
    rtol: ClassVar[float] = 1e-6
    #: What a failing self-test at load time does: ``refuse`` (default) or ``warn``.
    selftest_policy: ClassVar[SelfTestPolicy] = "refuse"
    #: Declared inputs for the Open Inference Protocol (None: accept any tensor).
    inputs: ClassVar[Sequence[TensorSpec] | None] = None
    #: Declared outputs for the Open Inference Protocol (None: inferred from the output).
    outputs: ClassVar[Sequence[TensorSpec] | None] = None
    #: How OIP tensors reach ``predict``: one row dict per row (default), a dict of numpy
    #: arrays, or a pandas DataFrame.
    input_format: ClassVar[InputFormat] = "rows"

    def load(self, file: Path) -> None:
        """Read the artifact at ``file`` (a local file or directory) into memory."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement load(file)")

    def predict(self, features: Any) -> Any:
        """Return the prediction for one set of features."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement predict(features)")

    @property
    def test_data(self) -> Any:
        """Canary inputs with expected outputs (see the module docstring for the shapes)."""
        return []


def import_model_class(path: str) -> type[Model]:
    """Import ``"package.module:Class"`` and check that it is a model class.

    Raises :class:`ModelClassError` naming the module and the import error.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ModelClassError(f"model class path {path!r} must look like 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time error of team code is reported the same way
        raise ModelClassError(
            f"cannot import module {module_name!r} for model class {path!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ModelClassError(f"module {module_name!r} has no attribute {attr!r}") from exc
    if not (inspect.isclass(obj) and issubclass(obj, Model)):
        raise ModelClassError(f"{path!r} is not a subclass of modelserve.Model")
    return obj


def instantiate(cls: type[Model]) -> Model:
    """Create the model object; a constructor that raises is reported as a class error."""
    try:
        return cls()
    except Exception as exc:
        raise ModelClassError(f"{class_path(cls)}() raised {type(exc).__name__}: {exc}") from exc


def load_model(cls: type[Model], path: Path, label: str) -> Model:
    """A new ``cls`` object with ``load(path)`` done; a ``load`` that raises is reported as
    ``"<label>: load(<path>) raised ..."``."""
    model = instantiate(cls)
    try:
        model.load(path)
    except Exception as exc:
        raise ModelLoadError(f"{label}: load({path}) raised {type(exc).__name__}: {exc}") from exc
    return model


def class_path(cls: type) -> str:
    """The ``"package.module:Class"`` path that :func:`import_model_class` takes back."""
    return f"{cls.__module__}:{cls.__qualname__}"


def test_cases(model: Model) -> list[TestCase]:
    """Normalise ``model.test_data`` (property or method, any accepted shape) into cases."""
    data = model.test_data
    if callable(data):
        data = data()
    if data is None:
        return []
    if _is_dataframe(data):
        return _cases_from_dataframe(data)
    cases: list[TestCase] = []
    for index, item in enumerate(data):
        if isinstance(item, TestCase):
            cases.append(item)
        elif isinstance(item, dict):
            if "input" not in item or "expected" not in item:
                raise ModelClassError(
                    f"test_data[{index}] is a dict without 'input' and 'expected' keys"
                )
            cases.append(TestCase(item["input"], item["expected"], str(item.get("name", index))))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            cases.append(TestCase(item[0], item[1], str(index)))
        else:
            raise ModelClassError(
                f"test_data[{index}] must be an (input, expected) pair or an "
                f"{{'input': ..., 'expected': ...}} dict, got {type(item).__name__}"
            )
    return cases


def _is_dataframe(data: object) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "columns")


def _cases_from_dataframe(frame: Any) -> list[TestCase]:
    columns = [str(c) for c in frame.columns]
    if "input" not in columns:
        raise ModelClassError(f"test_data DataFrame needs an 'input' column, has {columns}")
    others = [c for c in columns if c != "input"]
    if len(others) != 1:
        raise ModelClassError(
            "test_data DataFrame needs exactly one expected-output column beside 'input', "
            f"has {others}"
        )
    expected_column = others[0]
    return [
        TestCase(row["input"], row[expected_column], str(index))
        for index, row in zip(frame.index, frame.to_dict("records"), strict=True)
    ]
