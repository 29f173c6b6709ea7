"""Call depth and shared dependencies: end-to-end latency of sequential calls (closed forms).

Times in seconds, rates in requests/s. A request that calls n services one after the other,
each an M/M/1 queue at the same arrival rate, spends independent exponential times at each
(tandem M/M/1 queues: the sojourn times of one request are independent, Reich 1957; Burke's
output theorem keeps every station M/M/1), so its end-to-end response is the sum: Erlang(n,
mu - lambda) for identical stations, hypoexponential in general. Several services that each
call one shared database (feed-forward Jackson network, an overtake-free path) give each
caller's requests the sum of two independent exponentials: Exp(mu_s - lambda_s) at the caller
and Exp(mu_db - Lambda) at the database, Lambda the total rate of all callers.

General service distributions (any Dist of analysis.topology: Lognormal, Mixture, ...): a FIFO
station's input stays Poisson only behind exponential single-server stations (Burke), so a closed
form holds for the mean when every station before the non-exponential one is M/M/1: that station
is M/G/1 and its mean response is Pollaczek-Khinchine's, E[S] + lambda E[S^2] / (2 (1 - rho)).
:func:`chain_mean_response` (exponential stations, the last any distribution) and
:func:`shared_database_mean_response` (exponential callers, a database of any service distribution)
give it; quantiles and every other case come from the exact recursion engine
(``run_trials(..., path="auto")``, Lindley per FIFO station), which handles any service distribution.
"""
from __future__ import annotations

import math

import numpy as np

from analysis._lazy import lazy_module

optimize = lazy_module("scipy.optimize")    # imported on first use
special = lazy_module("scipy.special")    # imported on first use

from analysis import checks, theory
from analysis.topology import Dist, Exponential

__all__ = ["hypoexponential_survival", "hypoexponential_quantile", "chain_response",
           "shared_database_response", "mg1_mean_response", "chain_mean_response",
           "shared_database_mean_response"]


def _rates(name: str, rates) -> np.ndarray:
    r = np.atleast_1d(np.asarray(rates, dtype=float))
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"{name} must be positive finite rates (1/s), got {rates!r}")
    return r


def _erlang_sf(x, k: int):
    """P(Erlang(k, rate 1) > x): scipy.stats.gamma.sf(x, k)'s formula, without importing scipy.stats."""
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore"):
        out = np.where(x > 0, special.gammaincc(k, np.where(x > 0, x, 1.0)), 1.0)
    return np.where(np.isnan(x), np.nan, out)[()]


def _erlang_ppf(q: float, k: int) -> float:
    """q-quantile of Erlang(k, rate 1), q in (0, 1): scipy.stats.gamma.ppf(q, k)'s formula."""
    return float(special.gammaincinv(k, q))


def hypoexponential_survival(rates, t):
    """P(X_1 + ... + X_n > t), X_i independent Exponential(rates[i]) (rates in 1/s, t in s).
    Equal rates: Erlang (gamma) survival; two rates: the closed form (vectorised); otherwise the
    phase-type form exp(t Q) (scipy expm)."""
    r = _rates("rates", rates)
    t = np.asarray(t, dtype=float)
    if np.allclose(r, r[0], rtol=1e-12, atol=0):
        out = _erlang_sf(t * r[0], r.size)
        return float(out) if np.ndim(out) == 0 else out
    if r.size == 2:
        out = np.clip(_two_rate_survival(float(r.min()), float(r.max()), np.maximum(t, 0.0)), 0.0, 1.0)
        return float(out) if out.ndim == 0 else out
    from scipy.linalg import expm
    q = np.diag(-r) + np.diag(r[:-1], 1)
    flat = np.atleast_1d(t).ravel()
    out = np.array([expm(q * max(x, 0.0))[0].sum() if x > 0 else 1.0 for x in flat])
    out = np.clip(out, 0.0, 1.0).reshape(np.shape(t))
    return float(out) if out.ndim == 0 else out


def _two_rate_survival(a: float, b: float, t: np.ndarray) -> np.ndarray:
    """P(X_a + X_b > t) for independent exponentials with rates a < b (1/s), t >= 0 (s):
    (b e^(-a t) - a e^(-b t)) / (b - a), written as e^(-a t) (1 + a (1 - e^(-(b - a) t)) / (b - a))
    so it stays accurate when the rates are close (no cancellation; the Erlang form in the limit).
    The same values as exp(t Q) to rounding, about 1,000 times faster (no matrix exponential)."""
    d = b - a
    return np.exp(-a * t) * (1.0 + a * -np.expm1(-d * t) / d)


def hypoexponential_quantile(rates, q) -> float:
    """q-quantile (s) of a sum of independent exponentials with ``rates`` (1/s)."""
    r = _rates("rates", rates)
    q = checks.open_unit("q", q)
    if np.allclose(r, r[0], rtol=1e-12, atol=0):
        return float(_erlang_ppf(q, r.size) / r[0])
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
        out[f"p{q * 100:g}_response"] = float(_erlang_ppf(q, n) / theta)
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


# ------------------------------------------------------------------ general service distributions
def _service(what: str, dist) -> Dist:
    if not isinstance(dist, Dist):
        raise ValueError(f"{what}={dist!r}: must be a service-time distribution of analysis.topology "
                         "(e.g. Exponential(0.01), Lognormal(0.01, scv=4.0))")
    if not math.isfinite(dist.mean) or not math.isfinite(dist.scv):
        raise ValueError(f"{what}={dist!r}: needs a finite mean and variance (mean {dist.mean:g} s, "
                         f"SCV {dist.scv:g})")
    return dist


def mg1_mean_response(arrival_rate, service) -> float:
    """Pollaczek-Khinchine mean response (s) of one FIFO server with Poisson ``arrival_rate``
    (requests/s) and ``service`` times of any distribution (a Dist; finite variance):
    E[S] + lambda E[S^2] / (2 (1 - lambda E[S]))."""
    lam = checks.positive("arrival_rate", arrival_rate)
    dist = _service("service", service)
    mu = 1.0 / dist.mean
    _stable("station", lam, mu)
    return dist.mean + theory.mg1_mean_wait(lam, mu, service_scv=dist.scv)


def chain_mean_response(arrival_rate, services) -> float:
    """Mean end-to-end response (s) of requests (Poisson, ``arrival_rate`` requests/s) calling the
    single-server FIFO stations with service distributions ``services`` one after the other. Exact when
    every station but the last is exponential (Burke: each feeds the next a Poisson stream), the last of
    any distribution: sum of 1/(mu_i - lambda) plus the last station's Pollaczek-Khinchine mean.
    Other chains: ValueError (their downstream input is not Poisson; use the recursion engine)."""
    lam = checks.positive("arrival_rate", arrival_rate)
    dists = [services] if isinstance(services, Dist) else list(services)
    if not dists:
        raise ValueError("services must name at least one station")
    for i, d in enumerate(dists[:-1]):
        if not isinstance(_service(f"services[{i}]", d), Exponential):
            raise ValueError(f"services[{i}]={d!r}: only the last station of the closed form may be "
                             "non-exponential (behind it the input is no longer Poisson); simulate with "
                             "run_trials")
    total = sum(1.0 / _stable(f"station {i}", lam, 1.0 / d.mean) for i, d in enumerate(dists[:-1]))
    return total + mg1_mean_response(lam, dists[-1])


def shared_database_mean_response(caller_rate, caller_service_rate, callers, database_service) -> dict:
    """Mean response (s) of one caller's requests when ``callers`` identical M/M/1 services (each
    ``caller_rate`` requests/s, ``caller_service_rate`` per server) call one shared single-server
    database whose service time has any distribution ``database_service`` (a Dist): the callers'
    departures are Poisson (Burke), so the database is M/G/1 at the total rate. Returns
    mean_response, database_mean_response (Pollaczek-Khinchine) and database_utilisation."""
    lam = checks.positive("caller_rate", caller_rate)
    mu = checks.positive("caller_service_rate", caller_service_rate)
    m = checks.integer("callers", callers, 1)
    dist = _service("database_service", database_service)
    a = _stable("caller", lam, mu)
    _stable("database", m * lam, 1.0 / dist.mean)
    db = mg1_mean_response(m * lam, dist)
    return {"mean_response": 1.0 / a + db, "database_mean_response": db,
            "database_utilisation": m * lam * dist.mean}
