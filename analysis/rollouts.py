"""Canary and blue/green rollouts: how much traffic and time detects a latency regression (seconds, requests/s).

A regression multiplies the latency distribution by ``regression`` (1.05 = +5 %). On log latency this is a
shift of ln(regression) at the same log-sd ``sigma_log``, so a one-sided two-sample t-test on log latency has
Cohen's effect size d = ln(regression) / sigma_log. Its power is the noncentral-t formula of statsmodels'
``TTestIndPower`` (Cohen 1988), evaluated here with the scipy.special functions statsmodels calls
(``stdtrit``, ``nctdtr``): the same numbers without importing statsmodels and scipy.stats (about 1 CPU-s);
``tests/test_rollouts.py`` checks power and sample size against ``TTestIndPower``. :func:`simulate_canaries`
runs the test on simulated canaries to check the computed power.
"""
from __future__ import annotations

import math

import numpy as np

from analysis import checks


def _args(regression, sigma_log, alpha, ratio):
    r = checks.positive("regression", regression)
    if r <= 1:
        raise ValueError(f"regression must be > 1 (a latency multiplier, 1.05 = +5 %), got {regression}")
    s = checks.positive("sigma_log", sigma_log)
    a = checks.open_unit("alpha", alpha)
    k = checks.positive("ratio", ratio)
    return r, s, a, k


def effect_size(regression: float, sigma_log: float) -> float:
    """Cohen's d of a latency multiplier on log latency: ln(regression) / sigma_log."""
    r, s, _, _ = _args(regression, sigma_log, 0.05, 1.0)
    return math.log(r) / s


def _power(d: float, n1: float, ratio: float, alpha: float) -> float:
    """Power of the one-sided ("larger") pooled two-sample t-test with effect size ``d``, ``n1`` and
    ``ratio * n1`` observations at level ``alpha``: P(T > t_(1-alpha, df)) for T noncentral t with
    df = n1 + n2 - 2 and noncentrality d sqrt(n1 n2 / (n1 + n2)). statsmodels' ``TTestIndPower.power``
    step by step (its ``stats.t.isf(alpha, df)`` is ``-stdtrit(df, alpha)``)."""
    from scipy.special import nctdtr, stdtrit

    n2 = n1 * ratio
    df = n1 - 1 + n2 - 1
    nobs = 1.0 / (1.0 / n1 + 1.0 / n2)
    crit = -stdtrit(df, alpha)
    return float(1 - nctdtr(df, d * math.sqrt(nobs), crit))


def canary_sample_size(regression: float, sigma_log: float, *, alpha: float = 0.01, power: float = 0.9,
                       ratio: float = 1.0) -> int:
    """Requests the canary must serve (the baseline serves ``ratio`` times as many) so that a one-sided
    pooled t-test on log latency at level ``alpha`` detects ``regression`` with probability ``power``: the
    smallest whole n >= 2 whose :func:`canary_power` reaches ``power`` (the power grows with n)."""
    r, s, a, k = _args(regression, sigma_log, alpha, ratio)
    p = checks.open_unit("power", power)
    d = math.log(r) / s
    lo, hi = 1, 2                        # power(lo) < p (or lo = 1, below the smallest n) <= power(hi)
    while _power(d, hi, k, a) < p:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _power(d, mid, k, a) >= p else (mid, hi)
    return hi


def canary_power(n: int, regression: float, sigma_log: float, *, alpha: float = 0.01, ratio: float = 1.0) -> float:
    """Power of the test with ``n`` canary requests (the formula of statsmodels ``TTestIndPower.power``)."""
    r, s, a, k = _args(regression, sigma_log, alpha, ratio)
    n = checks.integer("n", n, minimum=2)
    return _power(math.log(r) / s, n, k, a)


def canary_duration(n: int, arrival_rate: float, canary_fraction: float) -> float:
    """Seconds until a canary receiving ``canary_fraction`` of ``arrival_rate`` requests/s has served ``n``."""
    n = checks.integer("n", n)
    lam = checks.positive("arrival_rate", arrival_rate)
    f = checks.open_unit("canary_fraction", canary_fraction)
    return n / (lam * f)


def simulate_canaries(n: int, regression: float, sigma_log: float, *, alpha: float = 0.01, ratio: float = 1.0,
                      canaries: int = 400, seed: int = 0) -> dict:
    """Run ``canaries`` simulated canaries: ``n`` lognormal canary latencies (multiplied by ``regression``;
    pass 1.0 for no regression) against ``ratio * n`` baseline ones, one-sided pooled t-test on log latency at
    level ``alpha``. Returns ``detected`` (count), ``canaries`` and ``rate`` (fraction detected)."""
    from scipy.special import stdtrit    # the Student t quantile (scipy.stats.t.ppf calls it)

    r = checks.positive("regression", regression)
    _, s, a, k = _args(1.5, sigma_log, alpha, ratio)
    n1 = checks.integer("n", n, minimum=2)
    n2 = max(2, int(round(k * n1)))
    m = checks.integer("canaries", canaries)
    rng = np.random.default_rng(seed)
    x = math.log(r) + s * rng.standard_normal((m, n1))    # log latency of the canary (median 1, shifted)
    y = s * rng.standard_normal((m, n2))                  # log latency of the baseline
    df = n1 + n2 - 2
    pooled = ((n1 - 1) * x.var(axis=1, ddof=1) + (n2 - 1) * y.var(axis=1, ddof=1)) / df
    tstat = (x.mean(axis=1) - y.mean(axis=1)) / np.sqrt(pooled * (1.0 / n1 + 1.0 / n2))
    detected = int((tstat > stdtrit(df, 1 - a)).sum())
    return {"detected": detected, "canaries": m, "rate": detected / m}


def binomial_interval(successes: int, trials: int, confidence: float = 0.99) -> tuple[float, float]:
    """Clopper-Pearson interval of a binomial proportion (beta quantiles: scipy.special.betaincinv, what
    scipy.stats.beta.ppf computes)."""
    from scipy.special import betaincinv

    n = checks.integer("trials", trials)
    x = checks.integer("successes", successes, minimum=0)
    if x > n:
        raise ValueError(f"successes must be <= trials ({n}), got {x}")
    c = checks.open_unit("confidence", confidence)
    lo = 0.0 if x == 0 else float(betaincinv(x, n - x + 1, (1 - c) / 2))
    hi = 1.0 if x == n else float(betaincinv(x + 1, n - x, 1 - (1 - c) / 2))
    return lo, hi


def rollout_comparison(n: int, arrival_rate: float, canary_fraction: float, *, servers: int,
                       bake_s: float) -> dict:
    """Time, share of users exposed and extra server-seconds until a bad release has served the ``n``
    requests the test needs.

    canary: ``canary_fraction`` of the traffic goes to the new version, so n requests take
    :func:`canary_duration` s, with ``canary_fraction`` x ``servers`` extra servers meanwhile. blue/green: all
    traffic switches to the new fleet, n requests take n / arrival_rate s, every user is exposed, and the old
    fleet (``servers``) is kept for ``bake_s`` s for an instant switch back. Both expose n requests before the
    verdict; they differ in who is exposed at once and in what the safety net costs.
    """
    lam = checks.positive("arrival_rate", arrival_rate)
    c = checks.integer("servers", servers)
    t_canary = canary_duration(n, lam, canary_fraction)
    bake = checks.nonnegative("bake_s", bake_s)
    return {"canary_s": t_canary, "canary_users_exposed": canary_fraction,
            "canary_extra_server_s": c * canary_fraction * t_canary,
            "bluegreen_s": n / lam, "bluegreen_users_exposed": 1.0, "bluegreen_extra_server_s": c * bake}
