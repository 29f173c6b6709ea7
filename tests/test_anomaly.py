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
