"""Tests of the self-test engine: comparison rules, the runner, JSON rendering, JUnit XML."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelserve.model import Model, TestCase
from modelserve.selftest import (
    CaseResult,
    Difference,
    SelfTestReport,
    Tolerance,
    compare,
    run_selftest,
    to_jsonable,
    write_junit,
)

TOL = Tolerance()
NAN = float("nan")
INF = float("inf")


# --------------------------------------------------------------------------- compare: matches


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        pytest.param(0.5, 0.5, id="same-float"),
        pytest.param(0.5, 0.5 + 5e-7, id="float-within-atol"),
        pytest.param(1e9, 1e9 + 900.0, id="float-within-rtol"),
        pytest.param(-2.0, -2.0 - 1e-6, id="negative-within"),
        pytest.param(3, 3, id="same-int"),
        pytest.param(3, 3.0000001, id="int-vs-float-within"),
        pytest.param(3.0, 3, id="float-vs-int"),
        pytest.param(INF, INF, id="inf-same-sign"),
        pytest.param(-INF, -INF, id="minus-inf"),
        pytest.param(True, True, id="bool"),
        pytest.param("fraud", "fraud", id="str"),
        pytest.param(None, None, id="none"),
        pytest.param([1, 2.0, "x"], (1, 2.0, "x"), id="list-vs-tuple"),
        pytest.param({"a": [1, {"b": 2.0}]}, {"a": (1, {"b": 2.0000001})}, id="nested"),
        pytest.param({}, {}, id="empty-dict"),
        pytest.param([], [], id="empty-list"),
        pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, id="dict-key-order-ignored"),
        pytest.param(10**30, 10**30, id="big-ints-exact"),
        pytest.param(Decimal("0.25"), 0.25, id="decimal"),
    ],
)
def test_compare_matches(expected: Any, actual: Any) -> None:
    assert compare(expected, actual, TOL) is None


# --------------------------------------------------------------------------- compare: differences


@pytest.mark.parametrize(
    ("expected", "actual", "path", "reason"),
    [
        pytest.param(0.5, 0.51, "$", "|a-b|=0.01 > atol+rtol*|b|=1.5e-06", id="float-out"),
        pytest.param(0.5, 0.5 + 3e-6, "$", "|a-b|=3e-06", id="float-just-out"),
        pytest.param(NAN, NAN, "$", "NaN never matches", id="nan-vs-nan"),
        pytest.param(NAN, 1.0, "$", "NaN never matches", id="nan-expected"),
        pytest.param(1.0, NAN, "$", "NaN never matches", id="nan-actual"),
        pytest.param(INF, -INF, "$", "inf matches only the same inf", id="inf-sign"),
        pytest.param(INF, 1e308, "$", "inf matches only the same inf", id="inf-vs-finite"),
        pytest.param(1e308, INF, "$", "inf matches only the same inf", id="finite-vs-inf"),
        pytest.param(3, 4, "$", "4 != 3", id="ints-exact"),
        pytest.param(10**30, 10**30 + 1, "$", "!=", id="big-ints-exact"),
        pytest.param(3, 3.5, "$", "|a-b|=0.5", id="int-vs-float-out"),
        pytest.param(1, True, "$", "type bool != int", id="true-is-not-1"),
        pytest.param(True, 1, "$", "type int != bool", id="1-is-not-true"),
        pytest.param(0.0, False, "$", "type bool != float", id="false-is-not-0.0"),
        pytest.param(True, False, "$", "False != True", id="bools"),
        pytest.param("fraud", "Fraud", "$", "strings differ at index 0", id="str-case"),
        pytest.param("ab", "abc", "$", "strings differ at index 2", id="str-prefix"),
        pytest.param("1", 1, "$", "type int != str", id="str-vs-int"),
        pytest.param(None, 0.0, "$", "type float != None", id="none-vs-float"),
        pytest.param(0.0, None, "$", "type None != float", id="float-vs-none"),
        pytest.param([1, 2, 3], [1, 2], "$", "length 2 != 3", id="list-length"),
        pytest.param([1, 2, 3], [1, 2, 4], "$[2]", "4 != 3", id="list-element"),
        pytest.param([1], {"0": 1}, "$", "type dict != list", id="list-vs-dict"),
        pytest.param({"x": 1}, {}, "$['x']", "missing key 'x'", id="missing-key"),
        pytest.param({}, {"y": 1}, "$['y']", "unexpected key 'y'", id="unexpected-key"),
        pytest.param(
            [{"score": 0.1}, {"score": 0.2}, {"score": 0.3}],
            [{"score": 0.1}, {"score": 0.2}, {"score": 0.31}],
            "$[2]['score']",
            "|a-b|=0.01",
            id="nested-path",
        ),
        pytest.param(
            {"a": {"b": [0, {"c": "x"}]}},
            {"a": {"b": [0, {"c": "y"}]}},
            "$['a']['b'][1]['c']",
            "strings differ",
            id="deep-path",
        ),
        pytest.param(
            {"a": 1.0, "b": 2.0},
            {"a": 9.0, "b": 9.0},
            "$['a']",
            "|a-b|=8",
            id="first-difference-only",
        ),
    ],
)
def test_compare_differences(expected: Any, actual: Any, path: str, reason: str) -> None:
    diff = compare(expected, actual, TOL)
    assert diff is not None
    assert diff.path == path
    assert reason in diff.reason
    assert diff.tolerance == TOL


def test_difference_carries_the_values_at_the_path() -> None:
    diff = compare({"p": [0.1, 0.2]}, {"p": [0.1, 0.25]}, TOL)
    assert diff is not None
    assert (diff.expected, diff.actual) == (0.2, 0.25)
    assert diff.describe().startswith("at $['p'][1]: expected 0.2, actual 0.25, |a-b|=0.05")


def test_predict_plus_a_hundredth_fails_with_default_tolerance() -> None:
    expected = [0.03, 0.91]
    actual = [value + 0.01 for value in expected]
    diff = compare(expected, actual, Tolerance(atol=1e-6, rtol=0.0))
    assert diff is not None
    assert diff.path == "$[0]"
    assert diff.reason.startswith("|a-b|=0.01 > atol+rtol*|b|=1e-06")


def test_tolerance_is_relative_to_the_expected_value() -> None:
    tol = Tolerance(atol=0.0, rtol=0.1)
    assert compare(10.0, 11.0, tol) is None  # 1 <= 0.1 * 10
    assert compare(11.0, 10.0, tol) is None  # 1 <= 0.1 * 11
    assert compare(10.0, 11.5, tol) is not None
    assert compare(1.0, 1.2, Tolerance(atol=0.25, rtol=0.0)) is None


# --------------------------------------------------------------------------- numpy and pandas


@pytest.mark.parametrize(
    ("expected", "actual", "path"),
    [
        pytest.param([0.1, 0.2], np.array([0.1, 0.2]), None, id="list-vs-array"),
        pytest.param(np.array([0.1, 0.2]), [0.1, 0.2], None, id="array-vs-list"),
        pytest.param([0.1, 0.2], np.array([0.1, 0.2], dtype=np.float32), None, id="float32"),
        pytest.param(0.5, np.float64(0.5), None, id="np-float64"),
        pytest.param(0.5, np.float32(0.5), None, id="np-float32"),
        pytest.param(7, np.int64(7), None, id="np-int64"),
        pytest.param(True, np.bool_(True), None, id="np-bool"),
        pytest.param([[1, 2], [3, 4]], np.array([[1, 2], [3, 4]]), None, id="2d"),
        pytest.param({"p": [0.25]}, {"p": np.array([0.25])}, None, id="array-in-dict"),
        pytest.param([0.1, 0.2], pd.Series([0.1, 0.2]), None, id="series"),
        pytest.param(
            [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}],
            pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}),
            None,
            id="dataframe-records",
        ),
        pytest.param([0.1, 0.2], np.array([0.1, 0.3]), "$[1]", id="array-element-out"),
        pytest.param(1, np.bool_(True), "$", id="np-bool-is-not-1"),
        pytest.param(np.zeros((2, 3)), np.zeros((3, 2)), "$", id="shape-mismatch"),
        pytest.param([0.1, 0.2, 0.3], np.array([0.1, 0.2]), "$", id="length-mismatch"),
        pytest.param(0.5, np.array([0.5]), "$", id="scalar-vs-1-element-array"),
        pytest.param([NAN], np.array([np.nan]), "$[0]", id="np-nan-never-matches"),
        pytest.param(
            [{"x": 1}, {"x": 2}],
            pd.DataFrame({"x": [1, 3]}),
            "$[1]['x']",
            id="dataframe-cell",
        ),
        pytest.param([0.1, 0.2], pd.Series([0.1, 0.2, 0.3]), "$", id="series-length"),
    ],
)
def test_compare_numpy_and_pandas(expected: Any, actual: Any, path: str | None) -> None:
    diff = compare(expected, actual, TOL)
    if path is None:
        assert diff is None
    else:
        assert diff is not None
        assert diff.path == path


def test_shape_mismatch_is_named_in_the_reason() -> None:
    diff = compare(np.zeros((2, 3)), np.zeros((3, 2)), TOL)
    assert diff is not None
    assert diff.reason == "shape (3, 2) != (2, 3)"
    json.dumps(diff.to_dict())  # renderings are JSON-able


def test_golden_read_back_from_json_equals_numpy_output() -> None:
    output = {"proba": np.array([[0.1, 0.9], [0.35, 0.65]], dtype=np.float32)}
    golden = json.loads(json.dumps(to_jsonable(output)))
    assert compare(golden, output, TOL) is None
    assert compare(golden, {"proba": output["proba"] + 0.01}, TOL) is not None


# --------------------------------------------------------------------------- to_jsonable


@dataclass
class _Point:
    x: int
    y: float


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        pytest.param((1, (2, 3)), [1, [2, 3]], id="tuples"),
        pytest.param(
            {1: "a", None: "b", False: "c"}, {"1": "a", "null": "b", "false": "c"}, id="keys"
        ),
        pytest.param({2.5: 1, np.int64(3): 2}, {"2.5": 1, "3": 2}, id="number-keys"),
        pytest.param({3, 1, 2}, [1, 2, 3], id="set-sorted"),
        pytest.param(np.int64(4), 4, id="np-int"),
        pytest.param(np.float32(0.5), 0.5, id="np-float32"),
        pytest.param(np.bool_(False), False, id="np-bool"),
        pytest.param(np.array([[1, 2]]), [[1, 2]], id="np-2d"),
        pytest.param(np.array(3.5), 3.5, id="np-0d"),
        pytest.param({"a": np.arange(2)}, {"a": [0, 1]}, id="nested-array"),
        pytest.param(pd.Series([1, 2], index=["a", "b"]), [1, 2], id="series"),
        pytest.param(pd.DataFrame({"x": [1], "y": ["z"]}), [{"x": 1, "y": "z"}], id="dataframe"),
        pytest.param(pd.NA, None, id="pd-na"),
        pytest.param(pd.NaT, None, id="pd-nat"),
        pytest.param(pd.Timestamp("2024-05-01T12:00"), "2024-05-01T12:00:00", id="timestamp"),
        pytest.param(Decimal("1.5"), 1.5, id="decimal"),
        pytest.param(_Point(1, 2.0), {"x": 1, "y": 2.0}, id="dataclass"),
    ],
)
def test_to_jsonable(value: Any, rendered: Any) -> None:
    result = to_jsonable(value)
    assert result == rendered
    assert json.loads(json.dumps(result)) == rendered


def test_to_jsonable_keeps_nan_as_a_float() -> None:
    result = to_jsonable([np.float64("nan"), float("nan")])
    assert all(type(x) is float and math.isnan(x) for x in result)


def test_to_jsonable_rejects_values_without_a_json_rendering() -> None:
    with pytest.raises(TypeError, match="cannot render a object as JSON"):
        to_jsonable({"x": object()})


def test_importing_selftest_does_not_import_numpy_or_pandas() -> None:
    code = (
        "import sys, modelserve.selftest as s\n"
        "s.compare([1.0, {'a': (2, None)}], [1.0, {'a': [2, None]}], s.Tolerance())\n"
        "print(sorted(m for m in ('numpy', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- Tolerance


class _Loose(Model):
    atol = 0.05
    rtol = 0.0


def test_tolerance_for_model_reads_class_attributes() -> None:
    assert Tolerance.for_model(Model) == Tolerance(1e-6, 1e-6)
    assert Tolerance.for_model(_Loose) == Tolerance(0.05, 0.0)


def test_tolerance_overrides_win_over_class_attributes() -> None:
    assert Tolerance.for_model(_Loose, atol=0.5) == Tolerance(0.5, 0.0)
    assert Tolerance.for_model(_Loose, rtol=0.1) == Tolerance(0.05, 0.1)
    assert Tolerance.for_model(_Loose, atol=0.0, rtol=0.0) == Tolerance(0.0, 0.0)


@pytest.mark.parametrize("bad", [-1e-9, NAN, INF, True, "0.1"])
def test_tolerance_rejects_invalid_values(bad: Any) -> None:
    with pytest.raises(ValueError, match="atol must be a finite number"):
        Tolerance(atol=bad)
    with pytest.raises(ValueError, match="rtol must be a finite number"):
        Tolerance(rtol=bad)


# --------------------------------------------------------------------------- run_selftest


class _Doubler(Model):
    """predict doubles the number; raises on strings; returns numpy for lists."""

    def predict(self, features: Any) -> Any:
        if isinstance(features, str):
            raise ValueError(f"boom: {features}")
        if isinstance(features, list):
            return np.array(features) * 2
        if isinstance(features, dict):
            features.pop("x")  # mutates its input: the report must show it unmutated
            return {"y": 1}
        return features * 2


CASES = [
    TestCase(1.0, 2.0, "one"),
    TestCase([1, 2], [2, 4], "list"),
    TestCase(3.0, 6.01, "off"),
    TestCase("bad", 0, "raises"),
]


def test_run_selftest_passing_cases() -> None:
    report = run_selftest(_Doubler(), CASES[:2], TOL, name="doubler", version=3)
    assert report.passed and report.expectations_passed
    assert report.failures == []
    assert [c.actual for c in report.cases] == [2.0, [2, 4]]
    assert report.summary() == "doubler v3: 2/2 cases passed"
    assert report.max_predict_seconds >= 0.0
    assert all(not c.has_golden for c in report.cases)


def test_run_selftest_reports_a_failing_case() -> None:
    report = run_selftest(_Doubler(), CASES[:3], TOL, name="doubler", version=3)
    assert not report.passed and not report.expectations_passed
    (failed,) = report.failures
    assert failed.name == "off" and failed.error is None
    assert failed.expected_diff is not None
    assert failed.expected_diff.path == "$"
    assert failed.actual == 6.0
    assert report.summary().startswith(
        "doubler v3: 2/3 cases passed (1 failed: case off at $: expected 6.01, actual 6.0, |a-b|="
    )


def test_run_selftest_records_a_raising_predict_without_crashing() -> None:
    report = run_selftest(_Doubler(), CASES, TOL, name="doubler")
    raised = report.cases[3]
    assert not raised.passed
    assert raised.error == "ValueError: boom: bad"
    assert raised.actual is None and raised.expected_diff is None
    assert raised.traceback is not None and "ValueError" in raised.traceback
    assert "case raises raised ValueError: boom: bad" in report.summary()
    assert report.summary().startswith("doubler: 2/4 cases passed (2 failed:")


def test_run_selftest_lets_keyboard_interrupt_through() -> None:
    class Interrupted(Model):
        def predict(self, features: Any) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_selftest(Interrupted(), CASES[:1], TOL)


def test_run_selftest_records_input_before_predict_mutates_it() -> None:
    report = run_selftest(_Doubler(), [TestCase({"x": 1}, {"y": 1})], TOL)
    assert report.passed
    assert report.cases[0].input == {"x": 1}


def test_run_selftest_names_model_and_cases_by_default() -> None:
    report = run_selftest(_Doubler(), [TestCase(1.0, 2.0)], TOL)
    assert report.model == "_Doubler"
    assert report.cases[0].name == "0"


def test_run_selftest_with_non_json_output_fails_the_case() -> None:
    class Weird(Model):
        def predict(self, features: Any) -> Any:
            return object()

    report = run_selftest(Weird(), [TestCase(1, 1)], TOL)
    assert report.cases[0].error is not None
    assert report.cases[0].error.startswith("TypeError: predict output is not JSON-able")


def test_run_selftest_with_no_cases_passes_vacuously() -> None:
    report = run_selftest(_Doubler(), [], TOL, name="empty")
    assert report.passed and report.cases == []
    assert report.max_predict_seconds == 0.0
    assert report.summary() == "empty: 0/0 cases passed"


# --------------------------------------------------------------------------- golden outputs


def test_golden_outputs_are_compared_separately_from_expectations() -> None:
    golden = [2.0, [2, 4], 6.5]  # third golden differs; its expectation differs too
    report = run_selftest(_Doubler(), CASES[:3], TOL, name="d", golden=golden)
    assert [c.has_golden for c in report.cases] == [True, True, True]
    assert [c.golden_diff is None for c in report.cases] == [True, True, False]
    diff = report.cases[2].golden_diff
    assert diff is not None and (diff.expected, diff.actual) == (6.5, 6.0)


def test_golden_mismatch_fails_the_report_but_not_the_expectations() -> None:
    report = run_selftest(_Doubler(), CASES[:2], TOL, name="d", golden=[2.0, [2, 5]])
    assert report.expectations_passed
    assert not report.passed
    assert "case list vs golden at $[1]: expected 5, actual 4" in report.summary()


def test_golden_none_is_distinguished_from_no_golden() -> None:
    class NoneModel(Model):
        def predict(self, features: Any) -> Any:
            return None

    with_golden = run_selftest(NoneModel(), [TestCase(1, None)], TOL, golden=[None])
    without = run_selftest(NoneModel(), [TestCase(1, None)], TOL)
    assert with_golden.passed and without.passed
    assert with_golden.cases[0].has_golden and not without.cases[0].has_golden
    wrong = run_selftest(NoneModel(), [TestCase(1, None)], TOL, golden=[0.0])
    assert not wrong.passed


def test_golden_list_from_manifest_matches_numpy_output() -> None:
    first = run_selftest(_Doubler(), [CASES[1]], TOL)
    golden = json.loads(json.dumps([c.actual for c in first.cases]))
    again = run_selftest(_Doubler(), [CASES[1]], TOL, golden=golden)
    assert again.passed


def test_golden_length_must_match_cases() -> None:
    with pytest.raises(ValueError, match="1 golden outputs given for 2 cases"):
        run_selftest(_Doubler(), CASES[:2], TOL, golden=[2.0])


def test_report_to_dict_is_json_serialisable() -> None:
    report = run_selftest(_Doubler(), CASES, TOL, name="d", version=1, golden=[2.0, [2, 4], 6, 0])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["model"] == "d" and data["version"] == 1
    assert (data["passed"], data["total"], data["failed"]) == (False, 4, 2)
    assert data["tolerance"] == {"atol": 1e-6, "rtol": 1e-6}
    assert data["cases"][2]["expected_diff"]["path"] == "$"
    assert data["cases"][3]["error"] == "ValueError: boom: bad"
    assert data["summary"] == report.summary()


def test_summary_lists_at_most_three_failures() -> None:
    cases = [TestCase(float(i), -1.0, f"c{i}") for i in range(5)]
    summary = run_selftest(_Doubler(), cases, TOL, name="m").summary()
    assert summary.count("case c") == 3
    assert summary.endswith("; and 2 more)")


# --------------------------------------------------------------------------- JUnit XML


@pytest.fixture
def junit_file(tmp_path: Path) -> Path:
    passing = run_selftest(_Doubler(), CASES[:2], TOL, name="ok", version=1)
    mixed = run_selftest(_Doubler(), CASES, TOL, name="mixed", version=2)
    path = tmp_path / "reports" / "selftest.xml"
    write_junit([passing, mixed], path)
    return path


def test_junit_parses_with_junitparser(junit_file: Path) -> None:
    import junitparser

    xml = junitparser.JUnitXml.fromfile(str(junit_file))
    suites = list(xml)
    assert [s.name for s in suites] == ["ok v1", "mixed v2"]
    assert [(s.tests, s.failures, s.errors) for s in suites] == [(2, 0, 0), (4, 1, 1)]
    cases = {c.name: c for c in suites[1]}
    assert cases["case one"].is_passed
    (failure,) = cases["case off"].result
    assert isinstance(failure, junitparser.Failure)
    assert "at $: expected 6.01, actual 6.0" in (failure.message or "")
    (error,) = cases["case raises"].result
    assert isinstance(error, junitparser.Error)
    assert error.message == "ValueError: boom: bad"
    assert error.type == "ValueError"


def test_junit_parses_with_elementtree(junit_file: Path) -> None:
    root = ET.parse(junit_file).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("6", "1", "1")
    mixed = root.findall("testsuite")[1]
    props = {p.get("name"): p.get("value") for p in mixed.iter("property")}
    assert props == {"model": "mixed", "version": "2", "atol": "1e-06", "rtol": "1e-06"}
    failure = mixed.find("testcase[@name='case off']/failure")
    assert failure is not None and failure.text is not None
    for line in ("path: $", "expected: 6.01", "actual: 6.0", "tolerance: atol=1e-06"):
        assert line in failure.text
    error = mixed.find("testcase[@name='case raises']/error")
    assert error is not None and error.text is not None
    assert "Traceback" in error.text
    assert mixed.find("testcase[@name='case one']/failure") is None


def test_junit_drops_characters_xml_cannot_carry(tmp_path: Path) -> None:
    report = SelfTestReport(
        "m\x00odel",
        None,
        [CaseResult(name="c\x01", input=None, expected=1, error="ValueError: bad \x07 byte")],
    )
    path = tmp_path / "out.xml"
    write_junit([report], path)
    root = ET.parse(path).getroot()
    assert root.find("testsuite/testcase/error") is not None
    assert root.find("testsuite").get("name") == "model"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- properties

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(finite)
def test_property_value_matches_itself(x: float) -> None:
    assert compare(x, x, Tolerance(0.0, 0.0)) is None
    assert compare([x, {"k": x}], (x, {"k": x}), TOL) is None


@given(finite, st.floats(min_value=1.01, max_value=1e3))
def test_property_beyond_tolerance_fails(x: float, factor: float) -> None:
    bound = TOL.atol + TOL.rtol * abs(x)
    diff = compare(x, x + factor * bound, TOL)
    assert diff is not None
    assert diff.reason.startswith("|a-b|=")


@given(finite, st.floats(min_value=0.0, max_value=0.99))
def test_property_within_tolerance_passes(x: float, factor: float) -> None:
    bound = TOL.atol + TOL.rtol * abs(x)
    assert compare(x, x - factor * bound, TOL) is None


@given(st.lists(finite, min_size=1, max_size=8), st.data())
def test_property_path_points_at_the_changed_element(values: list[float], data: Any) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(values) - 1))
    changed = list(values)
    changed[index] = values[index] + 1.0 + abs(values[index])
    diff = compare(values, changed, TOL)
    assert isinstance(diff, Difference)
    assert diff.path == f"$[{index}]"
