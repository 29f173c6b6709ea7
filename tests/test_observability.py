"""Sketch error guarantee and merge, alert episodes, burn-rate alerts, sampling and volume."""
from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import observability as ob


@pytest.mark.parametrize("alpha", [0.01, 0.02, 0.05])
def test_sketch_quantiles_within_relative_error(alpha):
    rng = np.random.default_rng(7)
    x = rng.lognormal(-3, 1.2, 50_000)
    sk = ob.DDSketch(alpha).add(x)
    xs = np.sort(x)
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = xs[math.floor(q * (x.size - 1))]
        assert abs(sk.quantile(q) - exact) <= alpha * exact * (1 + 1e-12), q
    assert sk.n_buckets < 2000


def test_sketch_merge_equals_sketch_of_union():
    rng = np.random.default_rng(8)
    parts = [rng.lognormal(m, 0.5, 5000) for m in (-4, -3, -2)]
    merged = ob.DDSketch(0.01)
    for p in parts:
        merged.merge(ob.DDSketch(0.01).add(p))
    whole = ob.DDSketch(0.01).add(np.concatenate(parts))
    assert merged.buckets == whole.buckets and merged.count == whole.count
    # and the average of per-part p99s is not the p99 of the union
    avg = np.mean([np.quantile(p, 0.99) for p in parts])
    assert abs(avg - np.quantile(np.concatenate(parts), 0.99)) > 0.05 * avg
    with pytest.raises(ValueError, match="relative_accuracy"):
        merged.merge(ob.DDSketch(0.02))
    with pytest.raises(ValueError, match="row 1 is -1.0"):
        ob.DDSketch().add([1.0, -1.0])


def test_episode_stats():
    a = np.zeros(288 * 2, dtype=bool)
    a[[10, 11, 12, 100, 300]] = True
    st = ob.episode_stats(a, [(95, 120), (400, 410)], step_s=300)
    assert st["pages"] == 3 and st["false_pages"] == 2 and st["detected"] == 1
    assert st["recall"] == 0.5 and st["median_delay_s"] == 5 * 300
    assert st["pages_per_day"] == pytest.approx(1.5)


def test_burn_rate_pages_fast_burn_not_slow():
    step = 60.0
    n = 3 * 1440
    total = np.full(n, 1000.0)
    bad = np.full(n, 0.5)              # 0.05% errors: under a 99.9% SLO, burn rate 0.5
    bad[2000:2030] = 200.0             # 20% errors for 30 min: burn 200
    pages = ob.burn_rate_alerts(bad, total, step, slo=0.999)
    assert not pages[:2000].any()
    first = int(np.flatnonzero(pages)[0])
    assert 2000 <= first < 2010        # the 5-min short window reacts within minutes
    assert not ob.burn_rate_alerts(np.full(n, 0.5), total, step, slo=0.999).any()


def test_aggregate_interval():
    m, k = ob.aggregate_interval(np.arange(12.0), 300, 900)
    assert k == 3 and list(m) == [1.0, 4.0, 7.0, 10.0]
    with pytest.raises(ValueError, match="interval_s=1000"):
        ob.aggregate_interval(np.arange(12.0), 300, 1000)


def test_sampling_tail_beats_head_at_low_rate():
    rng = np.random.default_rng(3)
    lat = rng.lognormal(-3, 1.0, 200_000)
    cut = float(np.quantile(lat, 0.95))
    head = [abs(ob.sampled_p99_error(lat, 0.01, rng, "head")) for _ in range(20)]
    tail = [abs(ob.sampled_p99_error(lat, 0.01, rng, "tail", tail_cut_s=cut)) for _ in range(20)]
    assert np.mean(tail) < 0.2 * np.mean(head)
    assert ob.sampled_p99_error(lat, 1.0, rng, "head") == 0.0


def test_telemetry_volume():
    v = ob.telemetry_volume(10, 100, 50, 60, bytes_per_point=16, price_per_gb_month=0.5)
    assert v["series"] == 50_000 and v["points_per_s"] == pytest.approx(50_000 / 60)
    assert v["gb_per_month"] == pytest.approx(50_000 / 60 * 30 * 86400 * 16 / 1e9)
    with pytest.raises(ValueError, match="resolution_s=0"):
        ob.telemetry_volume(1, 1, 1, 0)


def test_alerts_at_interval_raised_at_bucket_end_and_diluted():
    rng = np.random.default_rng(4)
    x = 100 + rng.normal(0, 1.0, 3000)
    y, inc = ob.inject_incidents(x, [2000, 2500], [3, 30], [1.2, 1.2])   # +20 (20 sd) for 3 and 30 rows
    assert inc == [(2000, 2002), (2500, 2529)]
    a1 = ob.alerts_at_interval(y, 60.0, 60.0, 6.0, history_s=600 * 60.0)
    a15 = ob.alerts_at_interval(y, 60.0, 900.0, 6.0, history_s=600 * 60.0)
    assert a1[2000] and a1[2500]                            # 1-min metric: seen in the first minute
    # 15-min buckets: the 3-min spike is averaged to +4 (bucket sd ~0.26: still visible), raised at the bucket end
    first15 = np.flatnonzero(a15[2000:2100])
    assert first15.size and (2000 + first15[0] + 1) % 15 == 0
    # the future never changes an earlier alert
    z = y.copy()
    z[2700:] += 500
    np.testing.assert_array_equal(ob.alerts_at_interval(z, 60.0, 900.0, 6.0, 600 * 60.0)[:2700], a15[:2700])
    with pytest.raises(ValueError, match="overlaps"):
        ob.inject_incidents(x, [10, 12], [5, 5], [2, 2])
    with pytest.raises(ValueError, match="history_s=60"):
        ob.alerts_at_interval(y, 60.0, 900.0, 6.0, history_s=60.0)


def test_alerts_at_interval_seasonal_lag_sees_through_a_daily_cycle():
    rng = np.random.default_rng(6)
    t = np.arange(4 * 1440)                                        # four days of 1-min rows
    x = 1000 + 600 * np.sin(2 * np.pi * t / 1440) + rng.normal(0, 5, t.size)
    y, _ = ob.inject_incidents(x, [3 * 1440 + 300], [30], [0.8])   # -20% for 30 min on day 4
    level = ob.alerts_at_interval(y, 60.0, 300.0, 5.0, history_s=86400.0)
    seasonal = ob.alerts_at_interval(y, 60.0, 300.0, 5.0, history_s=86400.0, seasonal_lag_s=86400.0)
    inside = slice(3 * 1440 + 300, 3 * 1440 + 335)
    assert seasonal[inside].any() and not level[inside].any()
    assert not seasonal[:1440].any()                               # no alert without one lag of past
    with pytest.raises(ValueError, match="seasonal_lag_s=1000"):
        ob.alerts_at_interval(y, 60.0, 300.0, 5.0, 86400.0, seasonal_lag_s=1000.0)
