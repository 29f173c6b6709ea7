"""Confidence intervals: the t-interval and the order-statistic quantile interval, against scipy.stats and
against their promised coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.intervals import binomial_quantile, poisson_rate_interval, quantile_interval, t_interval


def test_t_interval_is_the_student_t_interval():
    values = [1.0, 1.3, 0.8, 1.1, 1.6]
    mean, lo, hi = t_interval(values, 0.95)
    sd = np.std(values, ddof=1)
    half = stats.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert mean == pytest.approx(np.mean(values))
    assert (lo, hi) == (pytest.approx(mean - half, rel=1e-15), pytest.approx(mean + half, rel=1e-15))
    assert t_interval([2.5]) == (2.5, 2.5, 2.5)           # one replication: no spread to estimate


@pytest.mark.parametrize("bad, name", [([], "values"), ([[1.0, 2.0]], "values"), ([1.0, float("nan")], "finite")])
def test_t_interval_rejects_bad_values(bad, name):
    with pytest.raises(ValueError, match=name):
        t_interval(bad)


def test_t_interval_rejects_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=1.5)


@pytest.mark.parametrize("n", [1, 2, 7, 20, 59, 100, 999, 4000, 123_457])
@pytest.mark.parametrize("q", [0.01, 0.5, 0.9, 0.99, 0.999])
def test_binomial_quantile_is_scipys(n, q):
    for p in (0.005, 0.025, 0.975, 0.995):
        assert binomial_quantile(p, n, q) == stats.binom.ppf(p, n, q)


def test_quantile_interval_covers_the_true_quantile_as_promised():
    rng = np.random.default_rng(11)
    q, true = 0.99, -math.log(0.01)                     # the p99 of Exponential(1)
    trials, n = 400, 2_000
    covered = 0
    for _ in range(trials):
        est, lo, hi = quantile_interval(rng.exponential(1.0, n), q)
        assert lo <= est <= hi
        covered += lo <= true <= hi
    # the order-statistic interval is conservative: coverage >= 95% up to sampling noise of 400 trials
    assert covered / trials >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)


def test_quantile_interval_matches_the_binomial_order_statistics():
    x = np.arange(1000, dtype=float)[::-1]              # unsorted on purpose
    est, lo, hi = quantile_interval(x, 0.9)
    a, b = stats.binom.interval(0.95, 1000, 0.9)
    assert (lo, hi) == (float(int(a) - 1), float(int(b)))
    assert est == np.quantile(x, 0.9)


@pytest.mark.parametrize("kwargs, name", [(dict(sample=[], q=0.5), "empty"), (dict(sample=[1.0, np.nan], q=0.5), "NaN"),
                                          (dict(sample=[1.0], q=1.0), "q"),
                                          (dict(sample=[1.0], q=0.5, confidence=0.0), "confidence")])
def test_quantile_interval_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        quantile_interval(**kwargs)


@pytest.mark.parametrize("count", [0, 1, 3, 17, 250])
def test_poisson_rate_interval_is_the_garwood_interval(count):
    rate, lo, hi = poisson_rate_interval(count, 2.5)
    assert rate == count / 2.5
    assert lo == pytest.approx(stats.chi2.ppf(0.025, 2 * count) / 2 / 2.5 if count else 0.0, rel=1e-13)
    assert hi == pytest.approx(stats.chi2.ppf(0.975, 2 * count + 2) / 2 / 2.5, rel=1e-13)


def test_poisson_rate_interval_covers_as_promised():
    rng = np.random.default_rng(5)
    true_rate, exposure = 1.7, 3.0
    hits = sum(lo <= true_rate <= hi for lo, hi in
               (poisson_rate_interval(int(k), exposure)[1:] for k in rng.poisson(true_rate * exposure, 2_000)))
    assert hits / 2_000 >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / 2_000)     # exact interval: conservative


@pytest.mark.parametrize("kwargs, name", [(dict(count=-1, exposure=1.0), "count"), (dict(count=2, exposure=0.0), "exposure"),
                                          (dict(count=2, exposure=1.0, confidence=1.0), "confidence")])
def test_poisson_rate_interval_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        poisson_rate_interval(**kwargs)
