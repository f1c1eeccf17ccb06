"""Self-tests: run a model's canary cases through ``predict`` and compare the outputs.

A self-test runs at publish, at every load and in CI (DESIGN §2.2). Each case's output is
compared with the hand-written expectation and, when given, with the golden output recorded
at publish. Numbers match when ``|a - b| <= atol + rtol * |b|`` (``a`` actual, ``b``
expected); NaN never matches; bools, ints and strings match exactly; containers match
element-wise and a mismatch names the path to the first difference, e.g. ``$[2]['score']``.

numpy and pandas values are handled when present but never imported: they are recognised by
duck typing and turned into JSON-able values (:func:`to_jsonable`) before comparison.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import numbers
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from modelserve.model import Model, TestCase

__all__ = [
    "CaseResult",
    "Difference",
    "SelfTestReport",
    "Tolerance",
    "compare",
    "run_selftest",
    "to_jsonable",
    "write_junit",
]

_PLAIN = (type(None), bool, int, float, str)
_PREVIEW_CHARS = 80


@dataclass(frozen=True)
class Tolerance:
    """How far an actual number may be from the expected one: ``|a-b| <= atol + rtol*|b|``."""

    atol: float = 1e-6
    rtol: float = 1e-6

    def __post_init__(self) -> None:
        for label, value in (("atol", self.atol), ("rtol", self.rtol)):
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")

    @classmethod
    def for_model(
        cls, model_cls: type[Model], atol: float | None = None, rtol: float | None = None
    ) -> Tolerance:
        """The model class's ``atol``/``rtol``, with explicit overrides (from config) winning."""
        return cls(
            atol=model_cls.atol if atol is None else atol,
            rtol=model_cls.rtol if rtol is None else rtol,
        )

    def to_dict(self) -> dict[str, float]:
        return {"atol": self.atol, "rtol": self.rtol}


@dataclass(frozen=True)
class Difference:
    """The first place where an actual output differs from the expected one.

    ``expected`` and ``actual`` are JSON-able renderings of the values at ``path``; ``reason``
    reads actual-first, like the formula: ``"length 3 != 4"`` means actual 3, expected 4.
    """

    path: str
    expected: Any
    actual: Any
    reason: str
    tolerance: Tolerance

    def describe(self) -> str:
        """One line for logs and summaries: where, what was expected, what came, why."""
        return (
            f"at {self.path}: expected {_preview(self.expected)}, "
            f"actual {_preview(self.actual)}, {self.reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "expected": self.expected,
            "actual": self.actual,
            "reason": self.reason,
            "tolerance": self.tolerance.to_dict(),
        }


def to_jsonable(value: Any) -> Any:
    """Render ``value`` as plain JSON-able Python: dicts with str keys, lists, scalars.

    numpy scalars and arrays become Python scalars and (nested) lists, a pandas Series a list,
    a DataFrame a list of row dicts; tuples and sets become lists; NaN stays ``float('nan')``;
    dates become ISO strings. Raises :class:`TypeError` for values with no JSON rendering.
    """
    if value is None or isinstance(value, (bool, str)):
        return value if type(value) in _PLAIN else _plain_scalar(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        return {_json_key(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        if type(value).__name__ == "NaTType":
            return None
        return value.isoformat()
    foreign = _foreign_to_python(value)
    if foreign is not _NOT_FOREIGN:
        return to_jsonable(foreign)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):  # Decimal is not Real; Fraction is
        return float(value)
    if _is_decimal(value):
        return float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    model_dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(model_dump):
        return to_jsonable(model_dump())
    raise TypeError(f"cannot render a {type(value).__qualname__} as JSON: {_preview(value)}")


_NOT_FOREIGN = object()


def _foreign_to_python(value: Any) -> Any:
    """numpy/pandas (and tensor-like) values as Python objects, without importing them."""
    kind = type(value)
    root = kind.__module__.partition(".")[0]
    if root == "pandas":
        if kind.__name__ in ("NAType", "NaTType"):
            return None
        if kind.__name__ == "DataFrame":
            return value.to_dict("records")
    if kind.__name__ == "NaTType":
        return None
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and (root in ("numpy", "pandas") or hasattr(value, "shape")):
        return tolist()
    return _NOT_FOREIGN


def _plain_scalar(value: Any) -> Any:
    # subclasses of bool/str (np.str_, str enums) become the plain base type
    return str.__str__(value) if isinstance(value, str) else bool(value)


def _is_decimal(value: Any) -> bool:
    return type(value).__module__ in ("decimal", "_decimal") and type(value).__name__ == "Decimal"


def _json_key(key: Any) -> str:
    """Dict keys as JSON writes them: strings stay, True -> "true", None -> "null"."""
    if isinstance(key, str):
        return str.__str__(key)
    rendered = to_jsonable(key)
    if rendered is None:
        return "null"
    if isinstance(rendered, bool):
        return "true" if rendered else "false"
    return str(rendered)


def compare(expected: Any, actual: Any, tol: Tolerance) -> Difference | None:
    """Return the first difference between ``expected`` and ``actual``, or None if they match."""
    return _compare(expected, actual, "$", tol)


def _compare(expected: Any, actual: Any, path: str, tol: Tolerance) -> Difference | None:
    if not _is_json_node(expected) or not _is_json_node(actual):
        exp_shape, act_shape = _shape(expected), _shape(actual)
        if exp_shape is not None and act_shape is not None and exp_shape != act_shape:
            return _diff(path, expected, actual, f"shape {act_shape} != {exp_shape}", tol)
        try:
            expected, actual = to_jsonable(expected), to_jsonable(actual)
        except TypeError as exc:
            return Difference(path, _safe_render(expected), _safe_render(actual), str(exc), tol)

    def differ(reason: str) -> Difference:
        return Difference(path, expected, actual, reason, tol)

    if isinstance(expected, bool) or isinstance(actual, bool):
        if type(expected) is not type(actual):
            return differ(f"type {_type_name(actual)} != {_type_name(expected)}")
        return None if expected == actual else differ(f"{actual} != {expected}")
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        reason = _number_mismatch(expected, actual, tol)
        return None if reason is None else differ(reason)
    if type(expected) is not type(actual):
        return differ(f"type {_type_name(actual)} != {_type_name(expected)}")
    if expected is None:
        return None
    if isinstance(expected, str):
        if expected == actual:
            return None
        at = next(
            (i for i, (x, y) in enumerate(zip(expected, actual, strict=False)) if x != y),
            min(len(expected), len(actual)),
        )
        return differ(f"strings differ at index {at}")
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return differ(f"length {len(actual)} != {len(expected)}")
        for index, (exp_item, act_item) in enumerate(zip(expected, actual, strict=True)):
            found = _compare(exp_item, act_item, f"{path}[{index}]", tol)
            if found is not None:
                return found
        return None
    # dicts: key sets first, then values in the expected order
    for key in expected:
        if key not in actual:
            return Difference(f"{path}[{key!r}]", expected[key], None, f"missing key {key!r}", tol)
    for key in actual:
        if key not in expected:
            return Difference(f"{path}[{key!r}]", None, actual[key], f"unexpected key {key!r}", tol)
    for key in expected:
        found = _compare(expected[key], actual[key], f"{path}[{key!r}]", tol)
        if found is not None:
            return found
    return None


def _is_json_node(value: Any) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is list:
        return True
    return kind is dict and all(type(k) is str for k in value)


def _number_mismatch(expected: int | float, actual: int | float, tol: Tolerance) -> str | None:
    if isinstance(expected, int) and isinstance(actual, int):
        return None if expected == actual else f"{actual} != {expected}"
    floats = [x for x in (expected, actual) if isinstance(x, float)]
    if any(math.isnan(x) for x in floats):
        return "NaN never matches"
    if any(math.isinf(x) for x in floats):
        return None if expected == actual else "inf matches only the same inf"
    try:
        gap = abs(float(actual) - float(expected))
        bound = tol.atol + tol.rtol * abs(float(expected))
        within = gap <= bound
    except OverflowError:  # an int too large for a float: compare exactly with fractions
        exact_gap = abs(Fraction(actual) - Fraction(expected))
        exact_bound = Fraction(tol.atol) + Fraction(tol.rtol) * abs(Fraction(expected))
        within, gap, bound = exact_gap <= exact_bound, math.inf, math.inf
    if within:
        return None
    return f"|a-b|={gap:.3g} > atol+rtol*|b|={bound:.3g}"


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        return shape
    return None


def _diff(path: str, expected: Any, actual: Any, reason: str, tol: Tolerance) -> Difference:
    return Difference(path, _safe_render(expected), _safe_render(actual), reason, tol)


def _safe_render(value: Any) -> Any:
    try:
        return to_jsonable(value)
    except TypeError:
        return repr(value)


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


@dataclass
class CaseResult:
    """The outcome of one canary case: what went in, what came out, how it compared."""

    name: str
    input: Any
    expected: Any
    actual: Any = None
    #: The golden output compared against; meaningful only when ``has_golden`` is true.
    golden: Any = None
    has_golden: bool = False
    #: ``"ValueError: boom"`` when predict raised (or its output had no JSON rendering).
    error: str | None = None
    traceback: str | None = None
    expected_diff: Difference | None = None
    golden_diff: Difference | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and self.expected_diff is None and self.golden_diff is None

    @property
    def expectation_passed(self) -> bool:
        """Whether the hand-written expectation held (golden outputs ignored)."""
        return self.error is None and self.expected_diff is None

    def describe(self) -> str:
        """One line naming the case and its first problem (empty when it passed)."""
        if self.error is not None:
            return f"case {self.name} raised {self.error}"
        if self.expected_diff is not None:
            return f"case {self.name} {self.expected_diff.describe()}"
        if self.golden_diff is not None:
            return f"case {self.name} vs golden {self.golden_diff.describe()}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "input": self.input,
            "expected": self.expected,
            "actual": self.actual,
            "has_golden": self.has_golden,
            "golden": self.golden if self.has_golden else None,
            "error": self.error,
            "expected_diff": None if self.expected_diff is None else self.expected_diff.to_dict(),
            "golden_diff": None if self.golden_diff is None else self.golden_diff.to_dict(),
            "seconds": self.seconds,
        }


@dataclass
class SelfTestReport:
    """All case results of one self-test of one model version."""

    model: str
    version: int | None
    cases: list[CaseResult] = field(default_factory=list)
    tolerance: Tolerance = field(default_factory=Tolerance)

    @property
    def label(self) -> str:
        return self.model if self.version is None else f"{self.model} v{self.version}"

    @property
    def passed(self) -> bool:
        return all(case.passed for case in self.cases)

    @property
    def failures(self) -> list[CaseResult]:
        return [case for case in self.cases if not case.passed]

    @property
    def expectations_passed(self) -> bool:
        """Whether every hand-written expectation held (the publish-time check)."""
        return all(case.expectation_passed for case in self.cases)

    @property
    def max_predict_seconds(self) -> float:
        return max((case.seconds for case in self.cases), default=0.0)

    def summary(self) -> str:
        """One line: ``"iris v3: 4/5 cases passed (1 failed: case 2 at $[0]: ...)"``."""
        total, failures = len(self.cases), self.failures
        head = f"{self.label}: {total - len(failures)}/{total} cases passed"
        if not failures:
            return head
        shown = "; ".join(case.describe() for case in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        return f"{head} ({len(failures)} failed: {shown}{more})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able rendering for logs and the /models status."""
        return {
            "model": self.model,
            "version": self.version,
            "passed": self.passed,
            "expectations_passed": self.expectations_passed,
            "total": len(self.cases),
            "failed": len(self.failures),
            "tolerance": self.tolerance.to_dict(),
            "max_predict_seconds": self.max_predict_seconds,
            "summary": self.summary(),
            "cases": [case.to_dict() for case in self.cases],
        }


def run_selftest(
    model: Model,
    cases: Sequence[TestCase],
    tol: Tolerance,
    *,
    name: str = "",
    version: int | None = None,
    golden: Sequence[Any] | None = None,
) -> SelfTestReport:
    """Run every case through ``model.predict`` and compare; predict errors fail their case.

    ``golden``, when given, holds one recorded output per case (same order). An exception from
    ``predict`` (any :class:`Exception`) is recorded on its case and never re-raised.
    """
    if golden is not None and len(golden) != len(cases):
        raise ValueError(f"{len(golden)} golden outputs given for {len(cases)} cases")
    report = SelfTestReport(name or type(model).__qualname__, version, [], tol)
    for index, case in enumerate(cases):
        result = CaseResult(
            name=case.name or str(index),
            input=_safe_render(case.input),  # rendered before predict can mutate it
            expected=_safe_render(case.expected),
        )
        if golden is not None:
            result.golden, result.has_golden = golden[index], True
        started = time.perf_counter()
        try:
            output = model.predict(case.input)
        except Exception as exc:  # team code: any failure is a failed case, never a crash
            result.seconds = time.perf_counter() - started
            result.error = f"{type(exc).__name__}: {exc}"
            result.traceback = traceback.format_exc()
            report.cases.append(result)
            continue
        result.seconds = time.perf_counter() - started
        try:
            result.actual = to_jsonable(output)
        except TypeError as exc:
            result.error = f"TypeError: predict output is not JSON-able: {exc}"
            report.cases.append(result)
            continue
        result.expected_diff = compare(case.expected, result.actual, tol)
        if golden is not None:
            result.golden_diff = compare(golden[index], result.actual, tol)
        report.cases.append(result)
    return report


def write_junit(reports: Sequence[SelfTestReport], path: Path | str) -> None:
    """Write JUnit XML: one ``<testsuite>`` per model version, one ``<testcase>`` per case."""
    root = ET.Element("testsuites", name="modelserve selftest")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    total_time = 0.0
    for report in reports:
        errors = sum(1 for case in report.cases if case.error is not None)
        failures = len(report.failures) - errors
        seconds = sum(case.seconds for case in report.cases)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_xml_text(report.label),
            tests=str(len(report.cases)),
            failures=str(failures),
            errors=str(errors),
            skipped="0",
            time=f"{seconds:.6f}",
        )
        properties = ET.SubElement(suite, "properties")
        for key, value in (
            ("model", report.model),
            ("version", "" if report.version is None else str(report.version)),
            ("atol", repr(report.tolerance.atol)),
            ("rtol", repr(report.tolerance.rtol)),
        ):
            ET.SubElement(properties, "property", name=key, value=_xml_text(value))
        for case in report.cases:
            _junit_case(suite, report, case)
        totals["tests"] += len(report.cases)
        totals["failures"] += failures
        totals["errors"] += errors
        total_time += seconds
    for key, count in totals.items():
        root.set(key, str(count))
    root.set("time", f"{total_time:.6f}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)


def _junit_case(suite: ET.Element, report: SelfTestReport, case: CaseResult) -> None:
    element = ET.SubElement(
        suite,
        "testcase",
        classname=_xml_text(f"selftest.{report.label}"),
        name=_xml_text(f"case {case.name}"),
        time=f"{case.seconds:.6f}",
    )
    if case.error is not None:
        error = ET.SubElement(
            element,
            "error",
            message=_xml_text(case.error),
            type=_xml_text(case.error.partition(":")[0]),
        )
        error.text = _xml_text(
            f"input: {_preview(case.input)}\n{case.traceback or case.error}".rstrip()
        )
        return
    if case.passed:
        return
    lines = [f"input: {_preview(case.input)}"]
    for label, diff in (("expected", case.expected_diff), ("golden", case.golden_diff)):
        if diff is not None:
            lines += [
                f"check: {label}",
                f"  path: {diff.path}",
                f"  expected: {diff.expected!r}",
                f"  actual: {diff.actual!r}",
                f"  reason: {diff.reason}",
                f"  tolerance: atol={diff.tolerance.atol!r} rtol={diff.tolerance.rtol!r}",
            ]
    failure = ET.SubElement(
        element, "failure", message=_xml_text(case.describe()), type="SelfTestMismatch"
    )
    failure.text = _xml_text("\n".join(lines))


def _xml_text(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (control characters from team output)."""
    return "".join(ch for ch in text if ch in "\t\n\r" or _xml_allowed(ch))


def _xml_allowed(ch: str) -> bool:
    return " " <= ch <= "\ud7ff" or "\ue000" <= ch <= "\ufffd" or ch > "\uffff"
