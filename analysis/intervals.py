"""Confidence intervals the notebooks report beside their estimates.

- :func:`t_interval`: mean of independent replications with a Student-t interval (replications of a
  simulation are independent and their means roughly normal: the usual method of independent replications).
- :func:`poisson_rate_interval`: a rate from an event count over an exposure (e.g. false pages per month),
  with the exact (Garwood) chi-square interval.
- :func:`quantile_interval`: a quantile of one i.i.d. sample (e.g. the p99 of simulated response times) with
  the distribution-free order-statistic interval: the number of observations below the true q-quantile is
  Binomial(n, q), so the order statistics at that binomial's central interval bracket it with at least the
  stated confidence.

Both use scipy.special only, the same functions scipy.stats calls (``stdtrit`` for the t quantile, ``bdtr``
for the binomial cdf): importing scipy.stats costs about 1 CPU-s per process, more than many quick runs'
own work.
"""
from __future__ import annotations

import math

import numpy as np

from analysis import checks
from analysis._lazy import lazy_module

special = lazy_module("scipy.special")    # imported on first use

__all__ = ["t_interval", "quantile_interval", "binomial_quantile", "poisson_rate_interval"]


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of independent replications ``values`` with a Student-t interval at
    ``confidence``. With one replication there is no spread to estimate: low = high = mean."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-d sequence of replications, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite, got {v[~np.isfinite(v)][:3].tolist()} among them")
    level = checks.open_unit("confidence", confidence)
    mean = float(v.mean())
    if v.size < 2:
        return mean, mean, mean
    half = float(special.stdtrit(v.size - 1, 0.5 + level / 2)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return mean, mean - half, mean + half


def binomial_quantile(p: float, n: int, q: float) -> int:
    """The least k in 0..n with P(Binomial(n, q) <= k) >= p, p in (0, 1) (scipy.stats.binom.ppf)."""
    p = checks.open_unit("p", p)
    n = checks.integer("n", n, 1)
    q = checks.open_unit("q", q)
    if special.bdtr(0, n, q) >= p:
        return 0
    lo, hi = 0, n                       # cdf(lo) < p <= cdf(hi) = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if special.bdtr(mid, n, q) >= p:
            hi = mid
        else:
            lo = mid
    return hi


def quantile_interval(sample, q: float, confidence: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) of the ``q``-quantile of an i.i.d. ``sample``: numpy's quantile and the
    order statistics at the central ``confidence`` interval of Binomial(n, q) (distribution-free; for a
    tail quantile it needs n(1 - q) of at least a few observations to be informative)."""
    x = np.sort(np.asarray(sample, dtype=float).ravel())
    if x.size == 0:
        raise ValueError("sample is empty")
    if np.isnan(x).any():
        raise ValueError("sample contains NaN")
    q = checks.open_unit("q", q)
    level = checks.open_unit("confidence", confidence)
    lo = binomial_quantile((1 - level) / 2, x.size, q)
    hi = binomial_quantile((1 + level) / 2, x.size, q)
    return float(np.quantile(x, q)), float(x[max(lo - 1, 0)]), float(x[min(hi, x.size - 1)])


def poisson_rate_interval(count: int, exposure: float, confidence: float = 0.95) -> tuple[float, float, float]:
    """(rate, low, high) of a Poisson process from ``count`` events over ``exposure`` (in the rate's time unit,
    e.g. months): the exact (Garwood) interval chi2((1-c)/2; 2k)/2 .. chi2((1+c)/2; 2k+2)/2, divided by the
    exposure; low is 0 when no event was seen."""
    k = checks.integer("count", count, 0)
    t = checks.positive("exposure", exposure)
    level = checks.open_unit("confidence", confidence)
    # chi-square quantiles as scipy.stats.chi2.ppf computes them: 2 * gammaincinv(df / 2, p)
    low = float(2 * special.gammaincinv(k, (1 - level) / 2)) / 2 / t if k > 0 else 0.0
    high = float(2 * special.gammaincinv(k + 1, (1 + level) / 2)) / 2 / t
    return k / t, low, high
