"""The load generator's pure parts (testkit/load): arrival schedules, latency and percentiles."""

from __future__ import annotations

import math
import random

import pytest

from testkit.load.drivers import arrival_offsets
from testkit.load.stats import LoadResult, Sample, percentile


def test_a_constant_schedule_is_evenly_spaced_at_the_rate() -> None:
    offsets = arrival_offsets(10.0, 2.0, poisson=False, rng=random.Random(0))
    assert len(offsets) == 20 and offsets[0] == 0.0
    assert offsets == pytest.approx([i / 10 for i in range(20)])


def test_a_poisson_schedule_has_the_rate_and_is_reproducible() -> None:
    offsets = arrival_offsets(50.0, 100.0, poisson=True, rng=random.Random(1))
    assert abs(len(offsets) - 5000) < 5 * math.sqrt(5000)  # Poisson count: 5 standard deviations
    assert offsets == sorted(offsets) and 0 < offsets[0] and offsets[-1] < 100.0
    assert offsets == arrival_offsets(50.0, 100.0, poisson=True, rng=random.Random(1))
    assert arrival_offsets(0.0, 10.0, poisson=True, rng=random.Random(1)) == []


def test_open_loop_latency_counts_from_the_scheduled_time_not_the_send() -> None:
    # Sent 0.5 s late (the generator lagged) and answered 0.1 s after that: 0.6 s of latency.
    late = Sample(scheduled=10.0, sent=10.5, done=10.6, status=200)
    assert late.latency == pytest.approx(0.6)
    run = LoadResult("x", "open", 1.0, (10.0, 11.0), [late, Sample(11.5, 11.5, 11.6, 200)])
    assert run.measured == [late]  # open loop: what was due inside the window
    assert run.send_lag_ms(0.5) == pytest.approx(500.0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0 and percentile([3.0], 0.99) == 3.0
    assert math.isnan(percentile([], 0.5))
