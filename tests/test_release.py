"""Publishing a model version (self-test checkpoint 1): what is recorded, and what is refused."""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelserve.errors import (
    ArtifactError,
    ModelClassError,
    ModelLoadError,
    ModelserveError,
    SelfTestFailedError,
)
from modelserve.model import Model, TestCase
from modelserve.registry import Registry
from modelserve.release import publish, train_and_publish
from modelserve.selftest import SelfTestReport

pytestmark = pytest.mark.usefixtures("clean_env", "fast_fingerprint")


class Shift(Model):
    """Adds the artifact's bias to ``x``; the expectations hold exactly."""

    atol = 1e-6
    rtol = 0.0

    def load(self, file: Path) -> None:
        self.bias = json.loads(Path(file).read_text())["bias"]

    def predict(self, features: Any) -> Any:
        return features["x"] + self.bias

    @property
    def test_data(self) -> Any:
        return [({"x": 1.0}, 2.5), ({"x": 2.0}, 3.5)]


class SlightlyOff(Shift):
    """Within tolerance of the expectations, but not equal to them."""

    def predict(self, features: Any) -> Any:
        return features["x"] + self.bias + 3e-7


class Wrong(Shift):
    def predict(self, features: Any) -> Any:
        return features["x"] + self.bias + 0.01


class PredictRaises(Shift):
    def predict(self, features: Any) -> Any:
        raise ValueError("feature 'x' is out of range")


class NotJsonable(Shift):
    def predict(self, features: Any) -> Any:
        return object()


class InputNotJsonable(Shift):
    """Its canary input passes predict but has no JSON form to record in the manifest."""

    def predict(self, features: Any) -> Any:
        return 2.5

    @property
    def test_data(self) -> Any:
        return [(object(), 2.5)]


class LoadRaises(Shift):
    def load(self, file: Path) -> None:
        raise OSError("weights are corrupt")


class ConstructorRaises(Shift):
    def __init__(self) -> None:
        raise RuntimeError("no GPU")


class Trains(Shift):
    def train(self, out_dir: Path) -> None:
        (out_dir / "weights.json").write_text('{"bias": 1.5}')

    def load(self, file: Path) -> None:
        self.bias = json.loads((Path(file) / "weights.json").read_text())["bias"]


class TrainsNothing(Trains):
    def train(self, out_dir: Path) -> None:
        pass


class TrainRaises(Trains):
    def train(self, out_dir: Path) -> None:
        raise MemoryError("dataset too large")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def registry(tmp_path: Path, store: Path) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path}/registry.db", str(store), tmp_path / "cache") as reg:
        yield reg


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "artifacts" / "weights.json"
    path.parent.mkdir()
    path.write_text('{"bias": 1.5}')
    return path


def _stored_files(store: Path) -> list[Path]:
    return sorted(p for p in store.rglob("*") if p.is_file())


# ------------------------------------------------------------------ what a version records


def test_publish_records_the_actual_outputs_as_golden(registry: Registry, artifact: Path) -> None:
    manifest, report = publish(registry, "shift", SlightlyOff, artifact)

    assert report.passed
    assert manifest.version == report.version == 1
    assert manifest.golden == pytest.approx([2.5000003, 3.5000003], abs=1e-12)
    assert manifest.golden != [2.5, 3.5]  # the outputs, not the expectations
    assert [case["expected"] for case in manifest.test_data] == [2.5, 3.5]
    assert manifest.class_path == f"{SlightlyOff.__module__}:SlightlyOff"
    assert manifest.tolerance == {"atol": 1e-6, "rtol": 0.0}
    assert registry.get("shift", 1) == manifest


def test_publish_fingerprints_python_platform_and_the_models_libraries(
    registry: Registry, artifact: Path, team_code: Any
) -> None:
    import sklearn

    module = team_code.write(
        """
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LinearRegression

import modelserve


class Linear(modelserve.Model):
    def load(self, file):
        bias = json.loads(Path(file).read_text())["bias"]
        self.model = LinearRegression().fit(np.array([[0.0], [1.0]]), np.array([bias, bias + 1]))

    def predict(self, features):
        return round(float(self.model.predict(np.array([[features["x"]]]))[0]), 6)

    @property
    def test_data(self):
        return [({"x": 2.0}, 3.5)]
"""
    )

    manifest, _ = publish(registry, "linear", f"{module}:Linear", artifact)

    environment = manifest.environment
    assert environment["python"] == platform.python_version()
    assert environment["implementation"] == platform.python_implementation()
    assert environment["platform"] == f"{platform.system()}-{platform.machine()}"
    packages = environment["packages"]
    assert packages["numpy"] == np.__version__
    assert packages["scikit-learn"] == sklearn.__version__
    assert "modelserve" in packages
    # only what the model's code uses, not whatever happens to be installed or imported
    assert "pytest" not in packages
    assert "lightgbm" not in packages


def test_the_recorded_test_data_survives_a_json_round_trip(
    registry: Registry, artifact: Path
) -> None:
    manifest, _ = publish(registry, "shift", Shift, artifact)

    document = json.dumps(registry.get("shift", 1).to_dict())
    assert (
        json.loads(document)["test_data"]
        == manifest.test_data
        == [
            {"name": "0", "input": {"x": 1.0}, "expected": 2.5},
            {"name": "1", "input": {"x": 2.0}, "expected": 3.5},
        ]
    )


@pytest.mark.parametrize(
    ("atol", "rtol", "publishes"),
    [
        (None, None, False),  # the class's 1e-6 refuses an error of 0.01
        (0.02, None, True),
        (None, 0.01, True),  # 0.01 * |2.5| and 0.01 * |3.5| both cover 0.01
        (0.001, 0.0, False),
    ],
)
def test_explicit_tolerances_override_the_classs(
    registry: Registry, artifact: Path, atol: float | None, rtol: float | None, publishes: bool
) -> None:
    if not publishes:
        with pytest.raises(SelfTestFailedError):
            publish(registry, "wrong", Wrong, artifact, atol=atol, rtol=rtol)
        return
    manifest, _ = publish(registry, "wrong", Wrong, artifact, atol=atol, rtol=rtol)
    assert manifest.tolerance == {
        "atol": Wrong.atol if atol is None else atol,
        "rtol": Wrong.rtol if rtol is None else rtol,
    }


# ------------------------------------------------------------------ test_data shapes

SEED_FRAME = [[[1, 0, 0], 1], [[1, 1, 0], 1]]
SEED_RECORDED = [
    {"name": "0", "input": [1, 0, 0], "expected": 1},
    {"name": "1", "input": [1, 1, 0], "expected": 1},
]


class FirstFeature(Model):
    """The seed's shape: ``load(self, file)``, a list of features in, an int out."""

    def load(self, file: Path) -> None:
        self.weights = Path(file).read_text()

    def predict(self, features: Any) -> Any:
        return int(features[0])


@pytest.mark.parametrize(
    ("make_data", "recorded"),
    [
        pytest.param(
            lambda: pd.DataFrame(SEED_FRAME, columns=["input", "score"]),
            SEED_RECORDED,
            id="seed DataFrame",
        ),
        pytest.param(
            lambda: pd.DataFrame(
                {"input": [np.array([1, 0, 0]), np.array([1, 1, 0])], "expected": np.int64(1)}
            ),
            SEED_RECORDED,
            id="DataFrame of numpy values",
        ),
        pytest.param(lambda: [([1, 0, 0], 1), ([1, 1, 0], 1)], SEED_RECORDED, id="pairs"),
        pytest.param(
            lambda: [
                {"input": [1, 0, 0], "expected": 1, "name": "new rider"},
                {"input": (1, 1, 0), "expected": 1},
            ],
            [
                {"name": "new rider", "input": [1, 0, 0], "expected": 1},
                {"name": "1", "input": [1, 1, 0], "expected": 1},
            ],
            id="dicts",
        ),
        pytest.param(
            lambda: [TestCase([1, 0, 0], 1, "a"), TestCase([1, 1, 0], 1, "b")],
            [
                {"name": "a", "input": [1, 0, 0], "expected": 1},
                {"name": "b", "input": [1, 1, 0], "expected": 1},
            ],
            id="TestCase objects",
        ),
    ],
)
@pytest.mark.parametrize("style", ["property", "method"])
def test_every_test_data_shape_is_recorded_as_plain_json(
    registry: Registry,
    artifact: Path,
    make_data: Any,
    recorded: list[dict[str, Any]],
    style: str,
) -> None:
    def test_data(self: Model) -> Any:
        return make_data()

    member = property(test_data) if style == "property" else test_data
    cls = type("Seeded", (FirstFeature,), {"test_data": member})

    manifest, report = publish(registry, "seed", cls, artifact)

    assert manifest.test_data == recorded
    assert json.loads(json.dumps(manifest.test_data)) == recorded
    assert [type(case["expected"]) for case in manifest.test_data] == [int, int]
    assert manifest.golden == [1, 1]
    assert len(report.cases) == 2


def test_a_seed_dataframe_whose_expectation_fails_is_refused(
    registry: Registry, artifact: Path
) -> None:
    frame = pd.DataFrame([[[1, 0, 0], 1], [[0, 1, 0], 1]], columns=["input", "score"])
    cls = type("Seeded", (FirstFeature,), {"test_data": property(lambda self: frame)})

    with pytest.raises(SelfTestFailedError) as caught:
        publish(registry, "seed", cls, artifact)

    assert [case.name for case in caught.value.report.failures] == ["1"]


# ------------------------------------------------------------------ refusals register nothing


@pytest.mark.parametrize(
    ("cls", "error", "fragments"),
    [
        pytest.param(Wrong, SelfTestFailedError, ["nothing published", "1e-06"], id="wrong output"),
        pytest.param(
            PredictRaises,
            SelfTestFailedError,
            ["ValueError: feature 'x' is out of range"],
            id="predict raises",
        ),
        pytest.param(NotJsonable, SelfTestFailedError, ["not JSON-able"], id="output not JSON"),
        pytest.param(
            InputNotJsonable,
            ModelClassError,
            ["test_data case 0 cannot be recorded", "cannot render a object as JSON"],
            id="input not JSON",
        ),
        pytest.param(
            LoadRaises,
            ModelLoadError,
            ["LoadRaises", "OSError: weights are corrupt"],
            id="load raises",
        ),
        pytest.param(
            ConstructorRaises, ModelClassError, ["RuntimeError: no GPU"], id="constructor raises"
        ),
    ],
)
@pytest.mark.parametrize("existing", [False, True], ids=["new model", "existing model"])
def test_a_version_that_fails_is_not_registered(
    registry: Registry,
    artifact: Path,
    store: Path,
    cls: type[Model],
    error: type[Exception],
    fragments: list[str],
    existing: bool,
) -> None:
    if existing:
        publish(registry, "shift", Shift, artifact)
    before = (registry.models(), _stored_files(store))

    with pytest.raises(error) as caught:
        publish(registry, "shift", cls, artifact)

    for fragment in fragments:
        assert fragment in str(caught.value)
    assert (registry.models(), _stored_files(store)) == before
    if existing:
        assert [m.version for m in registry.versions("shift")] == [1]


def test_a_refused_publish_carries_the_report(registry: Registry, artifact: Path) -> None:
    with pytest.raises(SelfTestFailedError) as caught:
        publish(registry, "shift", Wrong, artifact)

    report = caught.value.report
    assert isinstance(report, SelfTestReport)
    assert not report.passed
    assert [case.name for case in report.failures] == ["0", "1"]
    assert report.failures[0].expected_diff is not None
    assert report.failures[0].actual == pytest.approx(2.51)


@pytest.mark.parametrize(
    ("make_artifact", "fragment"),
    [
        pytest.param(lambda root: root / "missing.json", "does not exist", id="missing"),
        pytest.param(lambda root: _file(root / "empty.json", ""), "empty file", id="empty file"),
        pytest.param(lambda root: _dir(root / "empty"), "without files", id="empty directory"),
        pytest.param(
            lambda root: _dir(root / "nested" / "deeper" / "deepest").parents[1],
            "without files",
            id="directory of empty directories",
        ),
    ],
)
def test_a_missing_or_empty_artifact_is_refused_before_anything_is_written(
    registry: Registry, store: Path, tmp_path: Path, make_artifact: Any, fragment: str
) -> None:
    path = make_artifact(tmp_path)

    # LoadRaises: an ArtifactError proves the artifact was checked before load was tried
    with pytest.raises(ArtifactError) as caught:
        publish(registry, "shift", LoadRaises, path)

    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)
    assert registry.models() == []
    assert _stored_files(store) == []


def _file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


# ------------------------------------------------------------------ class paths

IMPORT_CASES = [
    pytest.param(
        None,
        "no_such_team_module:Model",
        ["'no_such_team_module'", "ModuleNotFoundError"],
        id="module missing",
    ),
    pytest.param(
        "import not_installed_library_zz\n",
        "{module}:Model",
        ["'{module}'", "ModuleNotFoundError", "No module named 'not_installed_library_zz'"],
        id="module imports a missing library",
    ),
    pytest.param(
        "RATE = 1 / 0\n",
        "{module}:Model",
        ["'{module}'", "ZeroDivisionError"],
        id="module raises on import",
    ),
    pytest.param(
        "def broken(:\n", "{module}:Model", ["'{module}'", "SyntaxError"], id="syntax error"
    ),
    pytest.param(
        "import modelserve\n",
        "{module}:Missing",
        ["'{module}'", "no attribute 'Missing'"],
        id="class missing",
    ),
    pytest.param(
        "class Plain:\n    pass\n",
        "{module}:Plain",
        ["not a subclass of modelserve.Model"],
        id="not a model class",
    ),
    pytest.param(
        None, "team.models.Fraud", ["must look like 'package.module:Class'"], id="no colon"
    ),
]


@pytest.mark.parametrize(("source", "path", "fragments"), IMPORT_CASES)
def test_a_class_path_that_does_not_import_names_the_module_and_the_error(
    registry: Registry,
    artifact: Path,
    store: Path,
    team_code: Any,
    source: str | None,
    path: str,
    fragments: list[str],
) -> None:
    module = team_code.write(source) if source is not None else "unused"

    with pytest.raises(ModelClassError) as caught:
        publish(registry, "shift", path.format(module=module), artifact)

    for fragment in fragments:
        assert fragment.format(module=module) in str(caught.value)
    assert registry.models() == []
    assert _stored_files(store) == []


# ------------------------------------------------------------------ train_and_publish


def test_train_and_publish_publishes_what_train_wrote(registry: Registry) -> None:
    manifest, report = train_and_publish(registry, "shift", Trains)

    assert report.passed
    assert (manifest.version, manifest.kind, manifest.filename) == (1, "dir", "shift")
    assert manifest.golden == [2.5, 3.5]
    fetched = registry.fetch(manifest)
    assert json.loads((fetched / "weights.json").read_text()) == {"bias": 1.5}


@pytest.mark.parametrize(
    ("cls", "error", "fragment"),
    [
        (Shift, ModelClassError, "has no train(out_dir) method"),
        (TrainsNothing, ArtifactError, "without files"),
        (TrainRaises, ModelserveError, "MemoryError: dataset too large"),
    ],
)
def test_a_training_that_fails_publishes_nothing(
    registry: Registry, store: Path, cls: type[Model], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as caught:
        train_and_publish(registry, "shift", cls)

    assert fragment in str(caught.value)
    assert registry.models() == []
    assert _stored_files(store) == []


# ------------------------------------------------------------------ who published


def test_publish_records_the_given_actor(registry: Registry, artifact: Path) -> None:
    manifest, _ = publish(registry, "shift", Shift, artifact, actor="ci-bot")

    assert manifest.created_by == "ci-bot"


def test_publish_works_where_there_is_no_login_name(
    registry: Registry, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_login_name() -> str:  # containers without a passwd entry or USER/LOGNAME
        raise OSError("No username set in the environment")

    monkeypatch.setattr("getpass.getuser", no_login_name)

    manifest, _ = publish(registry, "shift", Shift, artifact)

    assert manifest.created_by == "unknown"
