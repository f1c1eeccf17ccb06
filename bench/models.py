"""The two benchmark models, written once as modelserve model classes.

Every server under test (the Flask/Gunicorn baseline, the bare uvloop + httptools reference
and modelserve itself) imports these classes, so all of them compute exactly the same thing:

* ``sklearn`` -> :class:`SklearnLogReg`: scikit-learn ``LogisticRegression`` fitted on
  ``make_classification(n_samples=1000, n_features=20, random_state=0)``; output: int class.
  ``predict`` calls ``estimator.predict`` per request (~150-170 us on this VM, nearly all of it
  sklearn's input validation).
* ``light`` -> :class:`LightLogReg`: the same kind of model as a numpy dot product with fixed
  coefficients, ``1 / (1 + exp(-(x @ coef + b)))`` (a few us); output: float.

Input to ``predict``: one row, a list of 20 floats.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import modelserve

N_FEATURES = 20

# First rows of make_classification(n_samples=1000, n_features=20, random_state=0), rounded
# to 6 decimals; used as canaries (test_data) and as the benchmark's request rows.
ROWS: list[list[float]] = [
    [
        -1.06378,
        0.676409,
        1.069356,
        -0.21758,
        0.460215,
        -0.399167,
        -0.079188,
        1.209385,
        -0.785315,
        -0.172186,
        -1.085357,
        -0.993119,
        0.306935,
        0.064058,
        -1.054233,
        -0.527496,
        -0.074183,
        -0.355628,
        1.057214,
        -0.902592,
    ],
    [
        0.070848,
        -1.695281,
        2.449449,
        -0.530494,
        -0.932962,
        2.865204,
        2.435729,
        -1.6185,
        1.300717,
        0.348402,
        0.544934,
        0.225324,
        0.605563,
        -0.192101,
        -0.068027,
        0.971681,
        -1.792048,
        0.017083,
        -0.375669,
        -0.623236,
    ],
    [
        0.940284,
        -0.492146,
        0.677956,
        -0.227754,
        1.401753,
        1.231653,
        -0.777464,
        0.015616,
        1.331713,
        1.084773,
        -0.978052,
        -0.05012,
        0.948386,
        -0.173428,
        -0.477672,
        0.760896,
        1.001158,
        -0.069464,
        1.359046,
        -1.18959,
    ],
    [
        -0.299517,
        0.75989,
        0.182803,
        -1.550233,
        0.338218,
        0.363241,
        -2.100525,
        -0.438068,
        -0.166393,
        -0.340835,
        0.424356,
        1.178724,
        2.83148,
        0.142414,
        -0.202819,
        2.405715,
        0.313305,
        0.404356,
        -0.287546,
        -2.847803,
    ],
]

# Fixed coefficients of the light model: np.random.default_rng(42).normal(0, 0.3, 20), 4 dp.
LIGHT_COEF: list[float] = [
    0.0914,
    -0.312,
    0.2251,
    0.2822,
    -0.5853,
    -0.3907,
    0.0384,
    -0.0949,
    -0.005,
    -0.2559,
    0.2638,
    0.2333,
    0.0198,
    0.3382,
    0.1403,
    -0.2578,
    0.1106,
    -0.2877,
    0.2635,
    -0.015,
]
LIGHT_INTERCEPT = 0.1


def _artifact(file: Path | str, name: str) -> Path:
    """``file`` as published: the artifact directory (holding ``name``) or the file itself."""
    path = Path(file)
    return path / name if path.is_dir() else path


class SklearnLogReg(modelserve.Model):
    """scikit-learn LogisticRegression, 20 features, binary; predicts the int class."""

    ARTIFACT = "model.joblib"

    def train(self, out_dir: Path) -> None:
        import joblib
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression

        x, y = make_classification(n_samples=1000, n_features=N_FEATURES, random_state=0)
        model = LogisticRegression().fit(x, y)
        joblib.dump(model, Path(out_dir) / self.ARTIFACT)

    def load(self, file: Path) -> None:
        import joblib

        self.model = joblib.load(_artifact(file, self.ARTIFACT))

    def predict(self, features: list[float]) -> int:
        return int(self.model.predict([features])[0])

    @property
    def test_data(self) -> list[tuple[list[float], int]]:
        return list(zip(ROWS, [0, 1, 1, 1], strict=True))


class LightLogReg(modelserve.Model):
    """Logistic regression as one numpy dot product; predicts the probability (float)."""

    ARTIFACT = "light.npz"
    atol = 1e-9
    rtol = 1e-9

    def train(self, out_dir: Path) -> None:
        np.savez(
            Path(out_dir) / self.ARTIFACT,
            coef=np.asarray(LIGHT_COEF, dtype=np.float64),
            intercept=np.float64(LIGHT_INTERCEPT),
        )

    def load(self, file: Path) -> None:
        with np.load(_artifact(file, self.ARTIFACT)) as data:
            self.coef = np.ascontiguousarray(data["coef"], dtype=np.float64)
            self.intercept = float(data["intercept"])

    def predict(self, features: list[float]) -> float:
        z = float(np.asarray(features, dtype=np.float64) @ self.coef) + self.intercept
        return 1.0 / (1.0 + math.exp(-z))

    @property
    def test_data(self) -> list[tuple[list[float], float]]:
        expected = [0.4186893294130896, 0.5512465086285019, 0.2217488873349767, 0.24528596969060237]
        return list(zip(ROWS, expected, strict=True))


#: model id -> class, as the benchmark's services name them.
MODELS: dict[str, type[modelserve.Model]] = {"sklearn": SklearnLogReg, "light": LightLogReg}


def load_all(artifacts: Path | str) -> dict[str, modelserve.Model]:
    """Instantiate and load every model from ``<artifacts>/<model_id>/`` (for the references)."""
    loaded: dict[str, modelserve.Model] = {}
    for model_id, cls in MODELS.items():
        model = cls()
        model.load(Path(artifacts) / model_id)
        loaded[model_id] = model
    return loaded


def train_all(artifacts: Path | str) -> None:
    """Train every model into ``<artifacts>/<model_id>/`` and check its canaries."""
    for model_id, cls in MODELS.items():
        out = Path(artifacts) / model_id
        out.mkdir(parents=True, exist_ok=True)
        cls().train(out)
        model = cls()
        model.load(out)
        for row, want in model.test_data:
            got = model.predict(row)
            if abs(float(got) - float(want)) > cls.atol + cls.rtol * abs(float(want)):
                raise AssertionError(f"{model_id}: canary gave {got!r}, expected {want!r}")
