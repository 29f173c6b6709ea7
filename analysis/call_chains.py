"""Call depth and shared dependencies: end-to-end latency of sequential calls (closed forms).

Times in seconds, rates in requests/s. A request that calls n services one after the other,
each an M/M/1 queue at the same arrival rate, spends independent exponential times at each
(tandem M/M/1 queues: the sojourn times of one request are independent, Reich 1957; Burke's
output theorem keeps every station M/M/1), so its end-to-end response is the sum: Erlang(n,
mu - lambda) for identical stations, hypoexponential in general. Several services that each
call one shared database (feed-forward Jackson network, an overtake-free path) give each
caller's requests the sum of two independent exponentials: Exp(mu_s - lambda_s) at the caller
and Exp(mu_db - Lambda) at the database, Lambda the total rate of all callers.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize

from analysis._lazy import lazy_module

stats = lazy_module("scipy.stats")    # imported on first use (about 1 CPU-s)

from analysis import checks

__all__ = ["hypoexponential_survival", "hypoexponential_quantile", "chain_response",
           "shared_database_response"]


def _rates(name: str, rates) -> np.ndarray:
    r = np.atleast_1d(np.asarray(rates, dtype=float))
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"{name} must be positive finite rates (1/s), got {rates!r}")
    return r


def hypoexponential_survival(rates, t):
    """P(X_1 + ... + X_n > t), X_i independent Exponential(rates[i]) (rates in 1/s, t in s).
    Equal rates: Erlang (gamma) survival; otherwise the phase-type form exp(t Q) (scipy expm)."""
    r = _rates("rates", rates)
    t = np.asarray(t, dtype=float)
    if np.allclose(r, r[0], rtol=1e-12, atol=0):
        out = stats.gamma.sf(t * r[0], r.size)
        return float(out) if np.ndim(out) == 0 else out
    from scipy.linalg import expm
    q = np.diag(-r) + np.diag(r[:-1], 1)
    flat = np.atleast_1d(t).ravel()
    out = np.array([expm(q * max(x, 0.0))[0].sum() if x > 0 else 1.0 for x in flat])
    out = np.clip(out, 0.0, 1.0).reshape(np.shape(t))
    return float(out) if out.ndim == 0 else out


def hypoexponential_quantile(rates, q) -> float:
    """q-quantile (s) of a sum of independent exponentials with ``rates`` (1/s)."""
    r = _rates("rates", rates)
    q = checks.open_unit("q", q)
    if np.allclose(r, r[0], rtol=1e-12, atol=0):
        return float(stats.gamma.ppf(q, r.size) / r[0])
    hi = float(np.sum(1.0 / r))
    while hypoexponential_survival(r, hi) > 1.0 - q:
        hi *= 2.0
    return float(optimize.brentq(lambda x: hypoexponential_survival(r, x) - (1.0 - q), 0.0, hi,
                                 xtol=1e-14, rtol=1e-12))


def _stable(what: str, lam: float, mu: float) -> float:
    if lam >= mu:
        raise ValueError(f"{what}: arrival_rate {lam:g} requests/s is not below its "
                         f"service_rate {mu:g} requests/s (unstable)")
    return mu - lam


def chain_response(arrival_rate, service_rate, depth, quantiles=(0.5, 0.99)) -> dict:
    """End-to-end response of a chain of ``depth`` identical M/M/1 services called one after the
    other: mean_response (s) = depth / (mu - lambda) and one ``pNN_response`` per quantile
    (Erlang(depth, mu - lambda))."""
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    n = checks.integer("depth", depth, 1)
    theta = _stable("chain", lam, mu)
    out = {"mean_response": n / theta}
    for q in quantiles:
        q = checks.open_unit("quantile", q)
        out[f"p{q * 100:g}_response"] = float(stats.gamma.ppf(q, n) / theta)
    return out


def shared_database_response(caller_rate, caller_service_rate, callers, database_service_rate,
                             quantiles=(0.5, 0.99)) -> dict:
    """Response of one caller's requests when ``callers`` identical M/M/1 services (each
    ``caller_rate`` requests/s, ``caller_service_rate`` per server) each call one shared M/M/1
    database (``database_service_rate``): mean_response (s), database_utilisation and one
    ``pNN_response`` per quantile (a sum of two independent exponentials)."""
    lam = checks.positive("caller_rate", caller_rate)
    mu = checks.positive("caller_service_rate", caller_service_rate)
    m = checks.integer("callers", callers, 1)
    mu_db = checks.positive("database_service_rate", database_service_rate)
    a = _stable("caller", lam, mu)
    b = _stable("database", m * lam, mu_db)
    out = {"mean_response": 1.0 / a + 1.0 / b, "database_utilisation": m * lam / mu_db}
    for q in quantiles:
        q = checks.open_unit("quantile", q)
        out[f"p{q * 100:g}_response"] = hypoexponential_quantile([a, b], q)
    return out
