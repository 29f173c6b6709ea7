"""Canary power analysis (statsmodels' TTestIndPower formula, checked against statsmodels) against simulated
canaries; rollout comparison; bad input."""
from __future__ import annotations

import math

import pytest

from analysis import rollouts as ro


def test_sample_size_is_the_smallest_reaching_the_power():
    n = ro.canary_sample_size(1.05, 0.5, alpha=0.01, power=0.9)
    assert ro.canary_power(n, 1.05, 0.5, alpha=0.01) >= 0.9 > ro.canary_power(n - 1, 1.05, 0.5, alpha=0.01)
    # normal approximation: n = 2 (z_a + z_b)^2 / d^2
    from statistics import NormalDist
    z = NormalDist().inv_cdf
    d = math.log(1.05) / 0.5
    assert n == pytest.approx(2 * (z(0.99) + z(0.9)) ** 2 / d ** 2, rel=0.01)


@pytest.mark.parametrize("alpha, ratio", [(0.01, 1.0), (0.05, 0.5), (0.001, 9.0)])
def test_power_and_sample_size_are_statsmodels_ttestindpower(alpha, ratio):
    """The notebook's reference: statsmodels' TTestIndPower (one-sided, pooled), same numbers bit for bit
    for the power and the same whole sample size as ceil(solve_power)."""
    import warnings

    from statsmodels.stats.power import TTestIndPower

    ref = TTestIndPower()
    for regression in (1.02, 1.05, 1.2, 1.5):
        for sigma in (0.3, 0.5, 1.0):
            d = math.log(regression) / sigma
            for power in (0.8, 0.9, 0.99):
                n = ro.canary_sample_size(regression, sigma, alpha=alpha, power=power, ratio=ratio)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")   # statsmodels warns (and gives nan) below n = 2
                    x = float(ref.solve_power(effect_size=d, alpha=alpha, power=power, ratio=ratio,
                                              alternative="larger"))
                assert n == (2 if math.isnan(x) else math.ceil(x)), (regression, sigma, power, n, x)
                for m in (2, 7, n, 3 * n + 1):
                    assert ro.canary_power(m, regression, sigma, alpha=alpha, ratio=ratio) == float(
                        ref.power(effect_size=d, nobs1=m, alpha=alpha, ratio=ratio, alternative="larger"))


def test_binomial_interval_is_clopper_pearson_from_scipy_stats():
    from scipy.stats import beta

    for x, n, c in ((0, 10, 0.95), (3, 10, 0.99), (77, 150, 0.99), (149, 150, 0.999), (150, 150, 0.99)):
        lo, hi = ro.binomial_interval(x, n, c)
        assert lo == (0.0 if x == 0 else float(beta.ppf((1 - c) / 2, x, n - x + 1)))
        assert hi == (1.0 if x == n else float(beta.ppf(1 - (1 - c) / 2, x + 1, n - x)))


def test_canary_functions_import_neither_statsmodels_nor_scipy_stats():
    """About 1 CPU-s of imports the notebook's quick budget cannot afford."""
    import subprocess
    import sys

    code = ("import sys; from analysis import rollouts as ro; n = ro.canary_sample_size(1.05, 0.5); "
            "ro.canary_power(n, 1.05, 0.5); s = ro.simulate_canaries(n, 1.05, 0.5, canaries=20); "
            "ro.binomial_interval(s['detected'], s['canaries']); "
            "print(sorted(m for m in ('scipy.stats', 'statsmodels') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("regression, n", [(1.05, 800), (1.10, 400), (1.03, 3000)])
def test_simulated_canaries_detect_at_the_computed_power(regression, n):
    computed = ro.canary_power(n, regression, 0.5, alpha=0.01)
    sim = ro.simulate_canaries(n, regression, 0.5, alpha=0.01, canaries=600, seed=n)
    lo, hi = ro.binomial_interval(sim["detected"], sim["canaries"], 0.999)
    assert lo <= computed <= hi, (computed, sim)


def test_false_alarm_rate_is_alpha():
    sim = ro.simulate_canaries(500, 1.0, 0.5, alpha=0.05, canaries=3000, seed=9)
    lo, hi = ro.binomial_interval(sim["detected"], sim["canaries"], 0.999)
    assert lo <= 0.05 <= hi


def test_unequal_allocation_uses_the_ratio():
    n1 = ro.canary_sample_size(1.05, 0.5, ratio=1.0)
    n9 = ro.canary_sample_size(1.05, 0.5, ratio=9.0)
    assert n9 < n1 and n9 > n1 / 2               # a 9x larger baseline at most halves the canary's sample
    computed = ro.canary_power(n9, 1.05, 0.5, ratio=9.0)
    sim = ro.simulate_canaries(n9, 1.05, 0.5, ratio=9.0, canaries=300, seed=3)
    lo, hi = ro.binomial_interval(sim["detected"], sim["canaries"], 0.999)
    assert lo <= computed <= hi


def test_duration_and_rollout_comparison():
    assert ro.canary_duration(1000, 100.0, 0.05) == pytest.approx(200.0)
    c = ro.rollout_comparison(1000, 100.0, 0.05, servers=20, bake_s=600.0)
    assert c["bluegreen_s"] == pytest.approx(10.0) and c["canary_s"] == pytest.approx(200.0)
    assert c["canary_extra_server_s"] == pytest.approx(200.0) and c["bluegreen_extra_server_s"] == 12000.0


def test_binomial_interval_edges():
    assert ro.binomial_interval(0, 10)[0] == 0.0 and ro.binomial_interval(10, 10)[1] == 1.0
    lo, hi = ro.binomial_interval(50, 100, 0.95)
    assert lo == pytest.approx(0.3983, abs=1e-3) and hi == pytest.approx(0.6017, abs=1e-3)


@pytest.mark.parametrize("call, name", [
    (lambda: ro.canary_sample_size(0.9, 0.5), "regression"),
    (lambda: ro.canary_sample_size(1.05, -0.5), "sigma_log"),
    (lambda: ro.canary_sample_size(1.05, 0.5, alpha=1.5), "alpha"),
    (lambda: ro.canary_sample_size(1.05, 0.5, power=0), "power"),
    (lambda: ro.canary_duration(100, 10.0, 0.0), "canary_fraction"),
])
def test_bad_parameters_get_a_one_line_error(call, name):
    with pytest.raises(ValueError) as info:
        call()
    assert name in str(info.value) and "\n" not in str(info.value)
