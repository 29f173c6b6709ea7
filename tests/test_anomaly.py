"""Streaming detectors never look ahead; they flag an obvious spike."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import anomaly as an


def _series(n=1500, period=96, seed=1):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.3, n)


@pytest.mark.parametrize("detector", [
    lambda x: an.rolling_gaussian_scores(x, window=96),
    lambda x: an.stl_residual_scores(x, period=96),
    lambda x: an.stl_residual_scores(x, period=96, calibrate=False),
])
def test_no_look_ahead(detector):
    x = _series()
    base = detector(x)
    for cut in (400, 777, 1200):
        y = x.copy()
        y[cut:] = np.random.default_rng(cut).normal(1e3, 50, y.size - cut)   # rewrite the future
        changed = detector(y)
        np.testing.assert_array_equal(changed[:cut], base[:cut])
        assert changed[cut] > base[cut]   # the new value itself is scored


@pytest.mark.parametrize("detector", [
    lambda x: an.rolling_gaussian_scores(x, window=96),
    lambda x: an.stl_residual_scores(x, period=96),
])
def test_spike_is_top_score(detector):
    x = _series()
    x[1000] += 8.0
    s = detector(x)
    assert int(np.argmax(s)) == 1000
    assert np.all((s >= 0) & (s <= 1))


def test_scores_order_like_z():
    np.testing.assert_allclose(an.z_to_score([0, 1, -3, np.inf, np.nan]), [0, 0.5, 0.75, 1.0, 0.0])


def test_score_to_z_inverts_z_to_score():
    z = np.array([0.0, 0.5, 1.0, 3.0, -4.0, 20.0, 1e6])
    np.testing.assert_allclose(an.score_to_z(an.z_to_score(z)), np.abs(z), rtol=1e-9)
    np.testing.assert_allclose(an.score_to_z([0.0, 0.5, 0.75, 0.8]), [0.0, 1.0, 3.0, 4.0])
    top = an.score_to_z([1.0])[0]                    # an infinite |z|: finite, above any usable threshold
    assert np.isfinite(top) and top > 1e14
    for bad in ([0.2, -0.1], [1.5], [np.nan]):
        with pytest.raises(ValueError, match="scores: row"):
            an.score_to_z(bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="window=1"):
        an.rolling_gaussian_scores(np.ones(10), window=1)
    with pytest.raises(ValueError, match="row 3 is nan"):
        an.rolling_gaussian_scores([1.0, 2.0, 3.0, np.nan])
    with pytest.raises(ValueError, match="period=0"):
        an.stl_residual_scores(np.ones(100), period=0)


def test_stl_scale_choice_and_no_look_ahead_of_sd_scale():
    x = _series()
    x[1000] += 8.0
    robust = an.stl_residual_scores(x, period=96)
    sd = an.stl_residual_scores(x, period=96, scale="sd")
    assert int(np.argmax(sd)) == 1000 and not np.array_equal(robust, sd)
    y = x.copy()
    y[700:] = 0.0
    np.testing.assert_array_equal(an.stl_residual_scores(y, period=96, scale="sd")[:700], sd[:700])
    with pytest.raises(ValueError, match="scale='iqr'"):
        an.stl_residual_scores(x, period=96, scale="iqr")


def test_rank_calibration_equalises_exceedance_rates_across_tails():
    """Robust z of a Gaussian and of a Cauchy-tailed series exceed one threshold at very different rates; after
    rank calibration one threshold gives about the same rate (1 - threshold) in both (fails uncalibrated)."""
    rng = np.random.default_rng(11)
    n, period = 6000, 48
    t = np.arange(n)
    base = 10 + 3 * np.sin(2 * np.pi * t / period)
    series = {"gauss": base + rng.normal(0, 0.3, n), "cauchy": base + 0.3 * rng.standard_cauchy(n)}
    raw = {k: an.stl_residual_scores(v, period, calibrate=False) for k, v in series.items()}
    cal = {k: an.stl_residual_scores(v, period) for k, v in series.items()}
    tail = slice(1000, None)
    thr = 0.8  # |z| > 4
    r_raw = {k: np.mean(v[tail] > thr) for k, v in raw.items()}
    r_cal = {k: np.mean(v[tail] > 0.99) for k, v in cal.items()}
    assert r_raw["cauchy"] > 20 * r_raw["gauss"]
    assert 0.5 < r_cal["cauchy"] / r_cal["gauss"] < 2.0
    assert all(0.004 < r < 0.02 for r in r_cal.values())
    assert all(np.all((v >= 0) & (v <= 1)) for v in cal.values())


def test_rank_calibrate_orders_by_rank_then_score():
    s = np.array([0.1, 0.2, 0.3, 0.25, 0.9, 0.5])
    out = an.rank_calibrate(s, history=10, min_periods=1)
    # row 4 is a new maximum among 5 values: (5 - 1 + 0.9) / 5; row 3 ranks 3rd of 4: (3 - 1 + 0.25) / 4
    assert out[4] == pytest.approx(4.9 / 5) and out[3] == pytest.approx(2.25 / 4)
    with pytest.raises(ValueError, match="row 1 is 1.5"):
        an.rank_calibrate([0.1, 1.5], history=5)

