"""A scikit-learn classifier: will a rider churn this month?

Its ``test_data`` is the seed's DataFrame form: an ``input`` column and one expected column.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import modelserve

FEATURES = ("rides_last_30d", "cancellations_last_30d", "days_since_last_ride")


class ChurnClassifier(modelserve.Model):
    """Logistic regression over three rider features; predicts 1 (churn) or 0 (stays)."""

    def train(self, out_dir: Path) -> None:
        rng = np.random.default_rng(7)
        rides = rng.poisson(6, 2000).astype(float)
        cancels = rng.poisson(1, 2000).astype(float)
        idle = rng.exponential(10, 2000)
        logit = -0.6 * rides + 0.9 * cancels + 0.25 * idle - 0.5
        churned = (logit + rng.normal(0, 0.5, 2000) > 0).astype(int)
        model = LogisticRegression(max_iter=1000).fit(np.c_[rides, cancels, idle], churned)
        joblib.dump(model, Path(out_dir) / "churn.joblib")

    def load(self, file):
        self.model = joblib.load(Path(file) / "churn.joblib")

    def predict(self, features):
        row = [[float(features[name]) for name in FEATURES]]
        return int(self.model.predict(row)[0])

    @property
    def test_data(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                [{"rides_last_30d": 20, "cancellations_last_30d": 0, "days_since_last_ride": 1}, 0],
                [{"rides_last_30d": 0, "cancellations_last_30d": 4, "days_since_last_ride": 40}, 1],
                [{"rides_last_30d": 1, "cancellations_last_30d": 2, "days_since_last_ride": 25}, 1],
            ],
            columns=["input", "score"],
        )
