"""A LightGBM regressor: minutes from pickup to drop-off.

Its ``test_data`` is a list of ``(input, expected)`` pairs; the expectations are hand-written
estimates, hence the tolerance of two minutes.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np

import modelserve


class EtaRegressor(modelserve.Model):
    """Gradient-boosted trees over distance and hour of day."""

    atol = 2.0
    rtol = 0.0

    def train(self, out_dir: Path) -> None:
        rng = np.random.default_rng(11)
        distance = rng.uniform(0.5, 30.0, 4000)
        hour = rng.integers(0, 24, 4000).astype(float)
        rush = np.isin(hour, [7, 8, 17, 18]).astype(float)
        minutes = 3.0 + 2.0 * distance * (1.0 + 0.5 * rush) + rng.normal(0, 0.5, 4000)
        params = {
            "objective": "regression",
            "num_leaves": 15,
            "learning_rate": 0.1,
            "deterministic": True,
            "num_threads": 1,
            "seed": 11,
            "verbose": -1,
        }
        booster = lightgbm.train(params, lightgbm.Dataset(np.c_[distance, hour], minutes), 200)
        booster.save_model(str(Path(out_dir) / "eta.txt"))

    def load(self, file):
        self.booster = lightgbm.Booster(model_file=str(Path(file) / "eta.txt"))

    def predict(self, features):
        row = np.array([[float(features["distance_km"]), float(features["hour"])]])
        return round(float(self.booster.predict(row, num_threads=1)[0]), 4)

    @property
    def test_data(self):
        return [
            ({"distance_km": 10.0, "hour": 12}, 23.0),
            ({"distance_km": 10.0, "hour": 8}, 33.0),
            ({"distance_km": 2.0, "hour": 3}, 7.0),
        ]
