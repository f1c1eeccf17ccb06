"""The per-request counters' bucket choice: Prometheus ``le`` semantics."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelserve.metrics import LATENCY_BUCKETS, ModelStats, bucket_of


@pytest.mark.parametrize(
    ("seconds", "index"),
    [
        (0.0, 0),
        (LATENCY_BUCKETS[0], 0),  # le: a value on a bound counts in that bucket
        (0.00010001, 1),
        (0.003, 6),
        (LATENCY_BUCKETS[-1], len(LATENCY_BUCKETS) - 1),
        (11.0, len(LATENCY_BUCKETS)),  # above the largest: the +Inf bucket
    ],
)
def test_bucket_of(seconds: float, index: int) -> None:
    assert bucket_of(seconds) == index


@given(st.floats(min_value=0.0, max_value=100.0))
def test_bucket_of_agrees_with_bisect(seconds: float) -> None:
    assert bucket_of(seconds) == bisect_left(LATENCY_BUCKETS, seconds)


def test_observe_counts_statuses_buckets_and_sums() -> None:
    stats = ModelStats("m", "1")
    stats.observe(200, 0.003, 0.002)
    stats.observe(500, 20.0, None)
    statuses, requests, request_sum, predicts, predict_sum = stats.take()
    assert statuses == {200: 1, 500: 1}
    assert requests[6] == 1 and requests[-1] == 1 and sum(requests) == 2
    assert predicts[5] == 1 and sum(predicts) == 1
    assert request_sum == pytest.approx(20.003)
    assert predict_sum == pytest.approx(0.002)
    assert stats.take()[0] == {}
