"""Closed-form queueing results the kit's simulations and notebooks are checked against.

Conventions (analysis/README.md): rates in requests per second (1/s), times in seconds (s).
Closed forms take ``(arrival_rate, service_rate, servers)`` in that order (service_rate is per
server); a function about offered load (Erlangs: arrival rate x mean service time) says so in
its name (``erlang_c_from_load``). Squared coefficients of variation are keywords. Results use
the metric names of the simulation summaries (mean_wait, p_wait, mean_response,
mean_in_system, p99_response, ...) so theory and simulation join on them. Only numpy/scipy.

Contents
- Erlang B and C (stable recursion, O(sqrt(load)) steps whatever the number of servers; loads up
  to MAX_OFFERED_LOAD).
- M/M/c: metrics, waiting- and response-time tail probabilities and quantiles, staffing
  (least servers for a P(wait), mean-wait or service-level target, by rates or by offered
  load), the highest utilisation of c servers meeting a response-time quantile target,
  square-root staffing and the Halfin-Whitt beta.
- M/G/1 (Pollaczek-Khinchine), Kingman's G/G/1 approximation, M/M/1 with priority classes.
- Open Jackson networks (traffic equations, per-node M/M/c metrics, network totals by Little's law).
- Little's law; order statistics of fan-out (fork-join) requests; the supermarket model
  (power-of-d choices, mean-field limit); the Universal Scalability Law and its fit.

Invalid input raises ValueError naming the argument and the offending value.

References
- Kleinrock, Queueing Systems Vol. 1 (1975); Gross, Shortle, Thompson & Harris, Fundamentals of
  Queueing Theory (4th ed., 2008); Bolch, Greiner, de Meer & Trivedi, Queueing Networks and Markov
  Chains (2nd ed., 2006).
- Halfin & Whitt, Heavy-traffic limits for queues with many exponential servers,
  Oper. Res. 29 (1981).
- Kingman, The single server queue in heavy traffic, Proc. Camb. Phil. Soc. 57 (1961).
- Cobham, Priority assignment in waiting line problems, Oper. Res. 2 (1954).
- Jackson, Jobshop-like queueing systems, Management Science 10 (1963).
- Mitzenmacher, The power of two choices in randomized load balancing, IEEE TPDS 12 (2001);
  Vvedenskaya, Dobrushin & Karpelevich, Problems of Information Transmission 32 (1996).
- Gunther, Guerrilla Capacity Planning, Springer (2007) (Universal Scalability Law).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import checks
from analysis._lazy import lazy_module

optimize = lazy_module("scipy.optimize")    # imported on first use
special = lazy_module("scipy.special")    # imported on first use
stats = lazy_module("scipy.stats")    # imported on first use (about 3 s)

__all__ = [
    "MAX_OFFERED_LOAD", "RESPONSE_QUANTILES", "quantile_name",
    "erlang_b", "erlang_c", "erlang_b_from_load", "erlang_c_from_load",
    "mmc_metrics", "mmc_prob_wait_exceeds", "mmc_service_level", "mmc_wait_quantile",
    "mmc_response_survival", "mmc_response_quantile",
    "servers_for_wait_probability", "servers_for_wait_probability_from_load",
    "servers_for_mean_wait", "servers_for_service_level",
    "max_utilisation_for_quantile", "MAX_UTILISATION_SEARCHED",
    "square_root_staffing", "halfin_whitt_alpha", "halfin_whitt_beta",
    "mg1_mean_wait", "mg1_metrics", "kingman_wait",
    "mm1_priority_waits", "mm1_priority_response_times",
    "jackson_traffic", "jackson_network", "jackson_totals", "JacksonTotals",
    "littles_law",
    "fanout_prob_slow", "fanout_max_quantile", "order_statistic_cdf", "fanout_max_mean_exponential",
    "kth_fastest_quantile",
    "supermarket_tail", "supermarket_mean_response",
    "usl_throughput", "USLFit", "fit_usl",
]


# --------------------------------------------------------------------------------------------
# Input validation (every public function checks its arguments before computing anything)
# --------------------------------------------------------------------------------------------

def _stable(arrival_rate: float, service_rate: float, servers: int) -> float:
    rho = arrival_rate / (servers * service_rate)
    if rho >= 1.0:
        raise ValueError(
            f"utilisation arrival_rate/(servers*service_rate) = {rho:.6g} >= 1 "
            f"(arrival_rate={arrival_rate:g}, service_rate={service_rate:g}, servers={servers}): "
            "the queue has no steady state")
    return rho


def _vector(name: str, values, length: int | None = None) -> np.ndarray:
    """A 1-d float array of finite numbers (a scalar is broadcast when ``length`` is given)."""
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}")
    if np.ndim(values) == 0 and length is not None:
        return np.full(length, checks.real(name, values))
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence, got shape {arr.shape}")
    if any(isinstance(v, (bool, np.bool_)) for v in np.asarray(values, dtype=object).ravel()):
        raise ValueError(f"{name} must contain numbers, not bools: {values!r}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] must be finite, got {arr[bad[0]]!r}")
    if length is not None and arr.size != length:
        raise ValueError(f"{name} has length {arr.size}, expected {length} (one per node/class)")
    return arr


def _dist(name: str, dist):
    if not all(callable(getattr(dist, attr, None)) for attr in ("ppf", "isf", "cdf")):
        raise ValueError(f"{name} must be a distribution spec from analysis.topology (e.g. "
                         f"Lognormal, Mixture) or a frozen scipy.stats distribution "
                         f"(with cdf/ppf/isf), got {dist!r}")
    return dist


# --------------------------------------------------------------------------------------------
# Erlang B and C
# --------------------------------------------------------------------------------------------

MAX_OFFERED_LOAD = 1e11
"""Largest offered load (Erlangs) the Erlang functions accept: their cost grows like sqrt(load)
steps (about 4 million steps, a second or two, at this limit); larger loads raise ValueError."""


def _check_load_size(offered_load: float) -> None:
    if offered_load > MAX_OFFERED_LOAD:
        raise ValueError(f"offered load arrival_rate/service_rate = {offered_load:.6g} Erlangs is "
                         f"above the limit MAX_OFFERED_LOAD = {MAX_OFFERED_LOAD:g} of the Erlang "
                         "recursion (its cost grows like sqrt(load)); use the Halfin-Whitt "
                         "approximation (halfin_whitt_alpha, square_root_staffing) instead")


def _burn_in(offered_load: float) -> int:
    """Recursion steps that make a starting error negligible: the recursion contracts by at
    least 1 - 2 B(c) per step near c = A (B ~ 1/sqrt(A) there) and faster elsewhere."""
    return 12 * math.ceil(math.sqrt(offered_load)) + 200


def _erlang_b_steps(offered_load: float, servers: int) -> tuple[float, int]:
    """(Erlang B, recursion steps used). B(k) = A B(k-1) / (k + A B(k-1)) is a contraction, so it
    is started _burn_in(A) steps below ``servers`` from the Poisson hazard P(N=k)/P(N<=k) (scipy,
    log space) when ``servers`` is larger than that, and stops early once B underflows to 0 (it
    stays 0). The step count is bounded by _burn_in(A) + 1, whatever ``servers`` is."""
    a = offered_load
    burn = _burn_in(a)
    if servers <= burn:
        k0, b = 0, 1.0
    else:
        k0 = servers - burn
        with np.errstate(all="ignore"):
            b = math.exp(float(stats.poisson.logpmf(k0, a) - stats.poisson.logcdf(k0, a)))
        if not (0.0 <= b <= 1.0):          # scipy failed at this size: any start in [0, 1] works
            b = max(0.0, 1.0 - k0 / a)
    steps = 0
    for k in range(k0 + 1, servers + 1):
        if b == 0.0:
            break
        ab = a * b
        b = ab / (k + ab)
        steps += 1
    return b, steps


def _erlang_b_from(offered_load: float, servers: int) -> float:
    return _erlang_b_steps(offered_load, servers)[0]


def _c_from_b(b: float, offered_load: float, servers: int) -> float:
    rho = offered_load / servers
    return b / (1.0 - rho * (1.0 - b))


def _load_args(offered_load, servers) -> tuple[float, int]:
    a = checks.positive("offered_load", offered_load)
    c = checks.integer("servers", servers)
    _check_load_size(a)
    return a, c


def erlang_b_from_load(offered_load, servers) -> float:
    """Erlang B blocking probability of an M/M/c/c loss system (dimensionless), from the offered
    load A = arrival_rate / service_rate in Erlangs (> 0, at most MAX_OFFERED_LOAD) and the number
    of servers c (integer >= 1). Stable recursion; cost O(sqrt(A)) steps whatever c is."""
    a, c = _load_args(offered_load, servers)
    return _erlang_b_from(a, c)


def erlang_b(arrival_rate, service_rate, servers) -> float:
    """Erlang B: probability that an arrival to an M/M/c/c loss system is blocked.

    arrival_rate and service_rate (per server) in requests/s, servers c (integer >= 1).
    Same as erlang_b_from_load(arrival_rate / service_rate, servers).
    """
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    return erlang_b_from_load(lam / mu, servers)


def erlang_c_from_load(offered_load, servers) -> float:
    """Erlang C: probability that an arrival to an M/M/c queue waits, from the offered load
    A in Erlangs (0 < A < c) and servers c (integer >= 1). C = B / (1 - (A/c)(1 - B))."""
    a, c = _load_args(offered_load, servers)
    if a >= c:
        raise ValueError(f"utilisation offered_load/servers = {a / c:.6g} >= 1 "
                         f"(offered_load={a:g}, servers={c}): the queue has no steady state")
    return _c_from_b(_erlang_b_from(a, c), a, c)


def erlang_c(arrival_rate, service_rate, servers) -> float:
    """Erlang C: probability that an arrival to an M/M/c queue waits (dimensionless).

    arrival_rate and service_rate (per server) in requests/s, servers c (integer >= 1) with
    arrival_rate < servers * service_rate. Same as erlang_c_from_load(arrival_rate /
    service_rate, servers).
    """
    lam, mu, c, _ = _mmc_args(arrival_rate, service_rate, servers)
    return erlang_c_from_load(lam / mu, c)


# --------------------------------------------------------------------------------------------
# M/M/c
# --------------------------------------------------------------------------------------------

RESPONSE_QUANTILES = (0.5, 0.95, 0.99)
"""Response-time quantiles that mmc_metrics (and the simulation summaries) report, as
p50_response, p95_response, p99_response."""


def quantile_name(q: float, what: str = "response") -> str:
    """Metric name of a quantile shared by theory and simulation: 0.99 -> 'p99_response',
    0.999 -> 'p99.9_response'."""
    q = checks.open_unit("q", q)
    return f"p{100 * q:.10g}_{what}"


def _mmc_args(arrival_rate, service_rate, servers) -> tuple[float, float, int, float]:
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers)
    rho = _stable(lam, mu, c)
    _check_load_size(lam / mu)
    return lam, mu, c, rho


def _mmc_p_wait(lam: float, mu: float, c: int) -> float:
    a = lam / mu
    return _c_from_b(_erlang_b_from(a, c), a, c)


def _mmc_dict(lam: float, mu: float, c: int, quantiles=RESPONSE_QUANTILES) -> dict:
    """M/M/c metrics without validation; lam may be 0 (an idle node of a network)."""
    if lam == 0.0:
        out = dict(utilisation=0.0, p_wait=0.0, mean_wait=0.0, mean_response=1.0 / mu,
                   mean_queue_length=0.0, mean_in_system=0.0)
        p_wait, theta = 0.0, c * mu
    else:
        _check_load_size(lam / mu)
        p_wait = _mmc_p_wait(lam, mu, c)
        mean_wait = p_wait / (c * mu - lam)
        mean_response = mean_wait + 1.0 / mu
        theta = c * mu - lam
        out = dict(utilisation=lam / (c * mu), p_wait=p_wait, mean_wait=mean_wait,
                   mean_response=mean_response, mean_queue_length=lam * mean_wait,
                   mean_in_system=lam * mean_response)
    for q in quantiles:
        out[quantile_name(q)] = _response_quantile(mu, theta, p_wait, q)
    return out


def mmc_metrics(arrival_rate, service_rate, servers, quantiles=RESPONSE_QUANTILES) -> dict:
    """Steady-state M/M/c metrics, under the metric names of the simulation summaries.

    arrival_rate lambda and service_rate mu (per server) in requests/s, servers c >= 1 with
    lambda < c mu. Returns a dict: utilisation (lambda/(c mu)), p_wait (Erlang C), mean_wait
    (s, time in queue), mean_response (s, wait + service), mean_queue_length and mean_in_system
    (requests, by Little's law), and one response-time quantile (s) per entry of ``quantiles``
    (default p50_response, p95_response, p99_response; see quantile_name).
    """
    lam, mu, c, _ = _mmc_args(arrival_rate, service_rate, servers)
    qs = [checks.open_unit("quantiles", q) for q in quantiles]
    return _mmc_dict(lam, mu, c, qs)


def mmc_prob_wait_exceeds(arrival_rate, service_rate, servers, wait_within) -> float:
    """P(W > wait_within) for the FCFS M/M/c waiting time: C * exp(-(c mu - lambda) t).

    Rates in requests/s, wait_within t in seconds (>= 0). At t = 0 this is Erlang C.
    """
    lam, mu, c, _ = _mmc_args(arrival_rate, service_rate, servers)
    t = checks.nonnegative("wait_within", wait_within)
    return _mmc_p_wait(lam, mu, c) * math.exp(-(c * mu - lam) * t)


def mmc_service_level(arrival_rate, service_rate, servers, wait_within) -> float:
    """Service level of the FCFS M/M/c queue: the fraction of requests that wait at most
    ``wait_within`` seconds, P(W <= t) = 1 - C exp(-(c mu - lambda) t). Rates in requests/s."""
    return 1.0 - mmc_prob_wait_exceeds(arrival_rate, service_rate, servers, wait_within)


def mmc_wait_quantile(arrival_rate, service_rate, servers, q) -> float:
    """q-quantile of the FCFS M/M/c waiting time in queue, in seconds.

    Zero when q <= 1 - C (that fraction of requests does not wait at all); otherwise
    ln(C / (1 - q)) / (c mu - lambda). q in (0, 1).
    """
    lam, mu, c, _ = _mmc_args(arrival_rate, service_rate, servers)
    q = checks.open_unit("q", q)
    p_wait = _mmc_p_wait(lam, mu, c)
    if 1.0 - q >= p_wait:
        return 0.0
    return math.log(p_wait / (1.0 - q)) / (c * mu - lam)


def _response_survival(t: float, mu: float, theta: float, p_wait: float) -> float:
    """P(T > t), T = W + S with W = 0 w.p. 1-C else Exp(theta), S ~ Exp(mu) independent.

    P(Exp(theta) + Exp(mu) > t) = e^{-mu t} [1 + mu t g(delta t)], delta = theta - mu,
    g(x) = (1 - e^{-x}) / x (g(0) = 1, i.e. the Erlang-2 case theta == mu); expm1 keeps it exact
    when theta is close to mu. For theta < mu the same value is written e^{-mu t} + C mu t
    e^{-theta t} (1 - e^{-(mu - theta) t}) / ((mu - theta) t): every factor stays in [0, 1], so a
    server at 99.99% utilisation (theta -> 0, t in the thousands of seconds) does not overflow.
    """
    x = (theta - mu) * t
    e = math.exp(-mu * t)
    if x >= 0.0:              # theta >= mu: g(x) in (0, 1]
        g = 1.0 if x == 0.0 else -math.expm1(-x) / x
        return (1.0 - p_wait) * e + p_wait * e * (1.0 + mu * t * g)
    # theta < mu (one server near saturation: theta -> 0): e^{-mu t} g(x) = e^{-theta t} h(-x) with
    # h(y) = (1 - e^{-y}) / y in (0, 1], so nothing overflows (e^{-x} alone would, from |x| > 709)
    y = -x
    h = -math.expm1(-y) / y
    return e + p_wait * mu * t * math.exp(-theta * t) * h


def _response_quantile(mu: float, theta: float, p_wait: float, q: float) -> float:
    target = 1.0 - q

    def f(t: float) -> float:
        return _response_survival(t, mu, theta, p_wait) - target

    # Start at the exponential-tail scale and double until the survival is below the target.
    hi = -math.log(target) / min(mu, theta)
    while f(hi) > 0:
        hi *= 2.0
    return optimize.brentq(f, 0.0, hi, xtol=1e-14 * hi, rtol=1e-14, maxiter=500)


def mmc_response_survival(arrival_rate, service_rate, servers, t) -> float:
    """P(T > t) for the FCFS M/M/c response time (wait + service); t in seconds (>= 0).

    Exact: the wait is 0 with probability 1 - C and Exponential(c mu - lambda) otherwise,
    independent of the Exponential(mu) service; the case c mu - lambda == mu is handled.
    """
    lam, mu, c, _ = _mmc_args(arrival_rate, service_rate, servers)
    t = checks.nonnegative("t", t)
    return _response_survival(t, mu, c * mu - lam, _mmc_p_wait(lam, mu, c))


def mmc_response_quantile(arrival_rate, service_rate, servers, q) -> float:
    """q-quantile of the FCFS M/M/c response time (wait + service), in seconds.

    Found by numeric inversion (Brent) of the exact response-time distribution (see
    mmc_response_survival); q in (0, 1). For c = 1 this is -ln(1-q)/(mu - lambda).
    """
    lam, mu, c, _ = _mmc_args(arrival_rate, service_rate, servers)
    q = checks.open_unit("q", q)
    return _response_quantile(mu, c * mu - lam, _mmc_p_wait(lam, mu, c), q)


# --------------------------------------------------------------------------------------------
# Staffing
# --------------------------------------------------------------------------------------------

def _staff_steps(offered_load: float, accept, start: int | None = None) -> tuple[int, int]:
    """(least c >= start accepted by accept(c, erlang_b), recursion steps used). Walks c upward
    with one O(1) Erlang B step per server after an O(sqrt(A)) start (see _erlang_b_steps);
    ``start`` defaults to the least stable c = floor(A) + 1."""
    a = offered_load
    _check_load_size(a)
    c = math.floor(a) + 1 if start is None else start
    while c <= a:          # guard against floating-point ties at an integer load
        c += 1
    b, steps = _erlang_b_steps(a, c)
    while not accept(c, b):
        c += 1
        ab = a * b
        b = ab / (c + ab)
        steps += 1
    return c, steps


def _rates(arrival_rate, service_rate) -> tuple[float, float]:
    return (checks.positive("arrival_rate", arrival_rate),
            checks.positive("service_rate", service_rate))


def servers_for_wait_probability(arrival_rate, service_rate, target) -> int:
    """Least number of servers c with Erlang C P(wait) <= target (target in (0, 1)).

    Rates in requests/s. Always at least floor(lambda/mu) + 1 (a stable queue).
    """
    lam, mu = _rates(arrival_rate, service_rate)
    return servers_for_wait_probability_from_load(lam / mu, target)


def servers_for_wait_probability_from_load(offered_load, target) -> int:
    """Least number of servers c with Erlang C P(wait) <= target, for an offered load A in
    Erlangs (arrival rate x mean service time, > 0); target in (0, 1)."""
    a = checks.positive("offered_load", offered_load)
    target = checks.open_unit("target", target)
    return _staff_steps(a, lambda c, b: _c_from_b(b, a, c) <= target)[0]


def servers_for_mean_wait(arrival_rate, service_rate, target_wait) -> int:
    """Least number of servers c whose M/M/c mean wait in queue is <= target_wait (seconds, > 0)."""
    lam, mu = _rates(arrival_rate, service_rate)
    target_wait = checks.positive("target_wait", target_wait)
    a = lam / mu
    return _staff_steps(a, lambda c, b: _c_from_b(b, a, c) / (c * mu - lam) <= target_wait)[0]


def servers_for_service_level(arrival_rate, service_rate, wait_within, fraction) -> int:
    """Least number of servers c such that at least ``fraction`` of requests wait at most
    ``wait_within`` seconds in the M/M/c queue (a service level such as "80% answered within
    20 s": wait_within=20, fraction=0.8).

    Rates in requests/s, wait_within >= 0 s (0: the fraction that does not wait at all),
    fraction in (0, 1). Criterion: C exp(-(c mu - lambda) t) <= 1 - fraction.
    """
    lam, mu = _rates(arrival_rate, service_rate)
    t = checks.nonnegative("wait_within", wait_within)
    fraction = checks.open_unit("fraction", fraction)
    limit = 1.0 - fraction
    a = lam / mu
    return _staff_steps(
        a, lambda c, b: _c_from_b(b, a, c) * math.exp(-(c * mu - lam) * t) <= limit)[0]


MAX_UTILISATION_SEARCHED = 0.999
"""Upper end of the utilisation searched by max_utilisation_for_quantile (fraction)."""


def max_utilisation_for_quantile(service_rate, servers, target_s, quantile=0.99) -> float:
    """Highest utilisation rho (fraction, < MAX_UTILISATION_SEARCHED = 0.999) at which the FCFS
    M/M/c response-time ``quantile`` stays <= ``target_s`` seconds, for ``servers`` servers of
    ``service_rate`` requests/s each (arrival rate rho * servers * service_rate).

    40 bisection steps on [0, 0.999] of mmc_response_quantile (resolution 1e-12; the result is the
    lower end, so it meets the target). For one server: 1 - ln(1/(1-q)) / (mu target_s). A target
    at or below the service time's own quantile ln(1/(1-q))/mu is met at no utilisation: ValueError.
    """
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers, 1)
    target_s = checks.positive("target_s", target_s)
    q = checks.open_unit("quantile", quantile)
    floor_s = -math.log1p(-q) / mu          # the response quantile of an idle system: service alone
    if target_s <= floor_s:
        raise ValueError(f"target_s={checks.show(target_s)} s is at or below the service time's own "
                         f"{q:g}-quantile {floor_s:.6g} s (service_rate={checks.show(mu)} requests/s): "
                         "no utilisation meets it")
    lo, hi = 0.0, MAX_UTILISATION_SEARCHED
    for _ in range(40):
        mid = (lo + hi) / 2
        ok = mmc_response_quantile(mid * c * mu, mu, c, q) <= target_s
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo


def square_root_staffing(offered_load, beta) -> int:
    """Square-root staffing: c = ceil(R + beta sqrt(R)) servers for an offered load R (Erlangs).

    beta >= 0 is the quality-of-service parameter (see halfin_whitt_beta); beta = 0 gives the
    critically loaded ceil(R). A 1e-9 tolerance stops float noise from adding a server.
    """
    r = checks.positive("offered_load", offered_load)
    beta = checks.nonnegative("beta", beta)
    return max(1, math.ceil(r + beta * math.sqrt(r) - 1e-9))


def halfin_whitt_alpha(beta) -> float:
    """Halfin-Whitt limiting probability of wait alpha(beta) = [1 + beta Phi(beta)/phi(beta)]^-1.

    The limit of Erlang C when c = R + beta sqrt(R) and R -> infinity (beta > 0).
    """
    beta = checks.positive("beta", beta)
    return _hw_alpha(beta)


def _hw_alpha(beta: float) -> float:
    # log Phi(beta) - log phi(beta), as scipy.stats.norm computes them, without importing scipy.stats
    ratio = math.exp(special.log_ndtr(beta) - (-beta ** 2 / 2.0 - math.log(math.sqrt(2 * math.pi))))
    return 1.0 / (1.0 + beta * ratio)


def halfin_whitt_beta(p_wait) -> float:
    """The Halfin-Whitt beta giving a target probability of wait p_wait in (0, 1).

    Solves alpha = [1 + beta Phi(beta)/phi(beta)]^-1 for beta > 0; use with
    square_root_staffing(R, beta) for large pools (Halfin & Whitt 1981).
    """
    p = checks.open_unit("p_wait", p_wait)
    target = math.log(p)

    def f(b: float) -> float:
        return math.log(_hw_alpha(b)) - target

    hi = 1.0
    while f(hi) > 0:
        hi *= 2.0
    return optimize.brentq(f, 0.0, hi, xtol=1e-14, rtol=1e-14)   # alpha(0) = 1 > p_wait


# --------------------------------------------------------------------------------------------
# M/G/1, Kingman, priorities
# --------------------------------------------------------------------------------------------

def mg1_mean_wait(arrival_rate, service_rate, *, service_scv) -> float:
    """Pollaczek-Khinchine mean wait in queue of the M/G/1 queue, in seconds.

    arrival_rate and service_rate (1 / mean service time) in requests/s; service_scv =
    Var(S)/E[S]^2 >= 0 (keyword). W = rho E[S] (1 + scv) / (2 (1 - rho)), rho = lambda/mu < 1.
    (scv = 1: M/M/1; scv = 0: M/D/1, half the M/M/1 wait.)
    """
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    scv = checks.nonnegative("service_scv", service_scv)
    rho = _stable(lam, mu, 1)
    return rho / mu * (1.0 + scv) / (2.0 * (1.0 - rho))


def mg1_metrics(arrival_rate, service_rate, *, service_scv) -> dict:
    """M/G/1 metrics (same keys as mmc_metrics, without quantiles): utilisation, p_wait
    (= rho by PASTA), mean_wait and mean_response (s), mean_queue_length and mean_in_system
    (requests). Rates in requests/s, service_scv (keyword) >= 0."""
    w = mg1_mean_wait(arrival_rate, service_rate, service_scv=service_scv)
    lam, es = float(arrival_rate), 1.0 / float(service_rate)
    rho = lam * es
    return dict(utilisation=rho, p_wait=rho, mean_wait=w, mean_response=w + es,
                mean_queue_length=lam * w, mean_in_system=lam * (w + es))


def kingman_wait(arrival_rate, service_rate, *, arrival_scv, service_scv) -> float:
    """Kingman's G/G/1 approximation of the mean wait in queue, in seconds.

    W ~ rho/(1 - rho) * (ca^2 + cs^2)/2 * E[S], with rates in requests/s and the squared
    coefficients of variation (keywords) ca^2 = arrival_scv (inter-arrival) and cs^2 =
    service_scv (service), >= 0. Exact for M/M/1
    (ca^2 = cs^2 = 1) and for M/G/1 (ca^2 = 1).
    """
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    ca2 = checks.nonnegative("arrival_scv", arrival_scv)
    cs2 = checks.nonnegative("service_scv", service_scv)
    rho = _stable(lam, mu, 1)
    return rho / (1.0 - rho) * (ca2 + cs2) / 2.0 / mu


def _priority_args(arrival_rates, service_rate):
    lam = _vector("arrival_rates", arrival_rates)
    for i, v in enumerate(lam):
        if v <= 0:
            raise ValueError(f"arrival_rates[{i}] must be > 0, got {v!r}")
    mu = _vector("service_rate", service_rate, length=lam.size)
    for i, v in enumerate(mu):
        if v <= 0:
            raise ValueError(f"service_rate[{i}] must be > 0, got {v!r}" if np.ndim(service_rate)
                             else f"service_rate must be > 0, got {service_rate!r}")
    rho = lam / mu
    total = float(rho.sum())
    if total >= 1.0:
        raise ValueError(f"utilisation sum(arrival_rates/service_rate) = {total:.6g} >= 1: "
                         "the priority queue has no steady state")
    sigma = np.cumsum(rho)                       # sigma_k = rho_1 + ... + rho_k
    sigma_prev = np.concatenate(([0.0], sigma[:-1]))
    second_moment_half = lam / mu**2             # lambda_i E[S_i^2] / 2 with E[S^2] = 2/mu^2
    return lam, mu, sigma, sigma_prev, second_moment_half


def mm1_priority_response_times(arrival_rates, service_rate, preemptive=False) -> list[float]:
    """Mean response time (wait + own service, seconds) per class of a single-server priority queue.

    Poisson arrivals per class (arrival_rates in requests/s, class 0 highest priority),
    exponential service (service_rate: one rate, or one per class), FCFS within a class.
    Non-preemptive: Cobham's formula W_k = W0 / ((1 - s_{k-1})(1 - s_k)) plus 1/mu_k, with
    W0 = sum_i lambda_i E[S_i^2]/2 and s_k the load of classes 0..k. Preemptive-resume:
    T_k = (1/mu_k)/(1 - s_{k-1}) + R_k / ((1 - s_{k-1})(1 - s_k)),
    R_k = sum_{i<=k} lambda_i E[S_i^2]/2
    (lower classes are invisible to class k).
    """
    lam, mu, sigma, sigma_prev, m2 = _priority_args(arrival_rates, service_rate)
    denom = (1.0 - sigma_prev) * (1.0 - sigma)
    if preemptive:
        t = (1.0 / mu) / (1.0 - sigma_prev) + np.cumsum(m2) / denom
    else:
        t = m2.sum() / denom + 1.0 / mu
    return [float(x) for x in t]


def mm1_priority_waits(arrival_rates, service_rate, preemptive=False) -> list[float]:
    """Mean wait per class (seconds) of a single-server priority queue, class 0 highest.

    Returns mean response minus the class's own mean service time 1/mu_k. Non-preemptive:
    Cobham's mean wait in queue. Preemptive-resume: the mean extra delay (waiting before service
    plus time spent preempted), T_k - 1/mu_k. See mm1_priority_response_times for the formulas.
    """
    t = mm1_priority_response_times(arrival_rates, service_rate, preemptive=preemptive)
    mu = _vector("service_rate", service_rate, length=len(t))
    return [float(x - 1.0 / m) for x, m in zip(t, mu)]


# --------------------------------------------------------------------------------------------
# Open Jackson networks
# --------------------------------------------------------------------------------------------

def _routing(routing, n: int) -> np.ndarray:
    try:
        p = np.asarray(routing, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"routing must be a square matrix of numbers, got {routing!r}") from None
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"routing must be a square matrix, got shape {p.shape}")
    if p.shape[0] != n:
        raise ValueError(f"routing is {p.shape[0]}x{p.shape[1]} but there are {n} nodes "
                         "(length of external_rates)")
    if not np.all(np.isfinite(p)):
        i, j = np.argwhere(~np.isfinite(p))[0]
        raise ValueError(f"routing[{i}][{j}] must be finite, got {p[i, j]!r}")
    if np.any(p < 0):
        i, j = np.argwhere(p < 0)[0]
        raise ValueError(f"routing[{i}][{j}] must be >= 0, got {p[i, j]!r}")
    rows = p.sum(axis=1)
    if np.any(rows > 1.0 + 1e-9):
        i = int(np.argmax(rows))
        raise ValueError(f"routing row {i} sums to {rows[i]:.6g} > 1 (routing probabilities "
                         "out of a node must sum to at most 1; the rest leaves the network)")
    radius = float(np.max(np.abs(np.linalg.eigvals(p)))) if n else 0.0
    if radius >= 1.0 - 1e-9:
        raise ValueError(f"routing has spectral radius {radius:.6g} >= 1: some requests can never "
                         "leave the network, so the traffic equations have no solution")
    return p


def jackson_traffic(external_rates, routing) -> np.ndarray:
    """Total arrival rate at each node of an open network (requests/s).

    Solves the traffic equations lambda = gamma + P^T lambda, i.e. (I - P^T) lambda = gamma, for
    external_rates gamma (>= 0, not all zero) and routing[i][j] = probability that a request
    leaving node i goes to node j (rows sum to at most 1; the rest leaves).
    """
    gamma = _vector("external_rates", external_rates)
    for i, v in enumerate(gamma):
        if v < 0:
            raise ValueError(f"external_rates[{i}] must be >= 0, got {v!r}")
    if gamma.sum() <= 0:
        raise ValueError(f"external_rates must not all be zero, got {list(gamma)!r}")
    p = _routing(routing, gamma.size)
    lam = np.linalg.solve(np.eye(gamma.size) - p.T, gamma)
    return np.clip(lam, 0.0, None)   # remove -0.0 / round-off below zero


def jackson_network(external_rates, service_rates, servers, routing, names=None) -> pd.DataFrame:
    """Per-node steady-state metrics of an open Jackson network of M/M/c nodes.

    external_rates (requests/s, >= 0), service_rates (per server, requests/s; one value or one
    per node), servers (one integer or one per node), routing (square matrix, see
    jackson_traffic), names (node names; default node1, node2, ..., as run_trials names the
    nodes of a plain ciw network). Returns a plain DataFrame indexed by ``service`` (the node
    name, so it joins with TrialResult.table()) with arrival_rate, visits (mean visits per
    external request), servers and the mmc_metrics columns per visit (utilisation, p_wait,
    mean_wait, mean_response (s), mean_queue_length, mean_in_system, p50/p95/p99_response).
    Network totals: jackson_totals. Raises ValueError naming the node whose utilisation is >= 1.
    """
    gamma_vec = _vector("external_rates", external_rates)
    n = gamma_vec.size
    lam = jackson_traffic(external_rates, routing)
    mu = _vector("service_rates", service_rates, length=n)
    for i, v in enumerate(mu):
        if v <= 0:
            raise ValueError(f"service_rates[{i}] must be > 0, got {v!r}")
    if np.ndim(servers) == 0:
        c = [checks.integer("servers", servers)] * n
    else:
        if isinstance(servers, (str, bytes)) or len(servers) != n:
            raise ValueError(f"servers must be one integer or {n} integers (one per node), "
                             f"got {servers!r}")
        c = [checks.integer(f"servers[{i}]", s) for i, s in enumerate(servers)]
    if names is None:
        names = [f"node{i + 1}" for i in range(n)]
    else:
        if isinstance(names, (str, bytes)):
            raise ValueError(f"names must be a sequence of {n} node names, got {names!r}")
        names = list(names)
        if len(names) != n:
            raise ValueError(f"names has length {len(names)}, expected {n} (one per node)")
        if len(set(names)) != n:
            raise ValueError(f"names must be unique, got {names!r}")
    rows = []
    for i in range(n):
        _check_load_size(lam[i] / mu[i])
        rho = lam[i] / (c[i] * mu[i])
        if rho >= 1.0:
            raise ValueError(f"utilisation of node {names[i]!r} = {rho:.6g} >= 1 "
                             f"(arrival_rate={lam[i]:.6g} from the traffic equations, "
                             f"service_rate={mu[i]:g}, servers={c[i]}): no steady state")
        rows.append(_mmc_dict(float(lam[i]), float(mu[i]), c[i]))
    df = pd.DataFrame(rows, index=pd.Index(names, name="service"))
    total_external = float(gamma_vec.sum())
    df.insert(0, "arrival_rate", lam)
    df.insert(1, "visits", lam / total_external)
    df.insert(2, "servers", c)
    return df


@dataclass(frozen=True)
class JacksonTotals:
    """End-to-end totals of an open Jackson network: mean_in_system (requests in the network),
    mean_response (s, end to end, by Little's law mean_in_system / throughput) and throughput
    (requests/s, the sum of the external rates). ``as_dict()`` for a table row."""
    mean_in_system: float
    mean_response: float
    throughput: float

    def as_dict(self) -> dict:
        return dict(mean_in_system=self.mean_in_system, mean_response=self.mean_response,
                    throughput=self.throughput)


def jackson_totals(external_rates, service_rates, servers, routing, names=None) -> JacksonTotals:
    """End-to-end totals of an open Jackson network (same arguments as jackson_network), as a
    JacksonTotals: mean_in_system, mean_response (s), throughput (requests/s)."""
    df = jackson_network(external_rates, service_rates, servers, routing, names)
    total_external = float(_vector("external_rates", external_rates).sum())
    total_l = float(df["mean_in_system"].sum())
    return JacksonTotals(mean_in_system=total_l, mean_response=total_l / total_external,
                         throughput=total_external)


# --------------------------------------------------------------------------------------------
# Little's law
# --------------------------------------------------------------------------------------------

def littles_law(*, mean_in_system=None, arrival_rate=None, mean_response=None) -> float:
    """Little's law mean_in_system = arrival_rate * mean_response: give exactly two (keywords)
    of mean_in_system (requests), arrival_rate (requests/s) and mean_response (seconds) and get
    the third."""
    given = {k: v for k, v in (("mean_in_system", mean_in_system), ("arrival_rate", arrival_rate),
                               ("mean_response", mean_response)) if v is not None}
    if len(given) != 2:
        raise ValueError("littles_law needs exactly two of mean_in_system, arrival_rate and "
                         f"mean_response, got {sorted(given) or 'none'}")
    if mean_in_system is None:
        return (checks.nonnegative("arrival_rate", arrival_rate)
                * checks.nonnegative("mean_response", mean_response))
    L = checks.nonnegative("mean_in_system", mean_in_system)
    if arrival_rate is None:
        return L / checks.positive("mean_response", mean_response)
    return L / checks.positive("arrival_rate", arrival_rate)


# --------------------------------------------------------------------------------------------
# Fan-out (fork-join) order statistics
# --------------------------------------------------------------------------------------------

def fanout_prob_slow(n, p) -> float:
    """P(a request fanned out to n independent leaves meets at least one slow leaf) = 1-(1-p)^n.

    n: leaves (integer >= 1); p: probability that one leaf is slow, in [0, 1].
    """
    n = checks.integer("n", n)
    p = checks.unit_interval("p", p)
    if p == 1.0:
        return 1.0
    return -math.expm1(n * math.log1p(-p))


def fanout_max_quantile(dist, n, q) -> float:
    """q-quantile of the max of n iid leaf latencies (seconds): F^-1(q^(1/n)).

    dist: one leaf's latency, an analysis.topology spec (Mixture, Lognormal, ...) or a frozen
    scipy.stats distribution; n >= 1; q in (0, 1). Evaluated
    through the upper tail (isf of 1 - q^(1/n), via expm1) so it stays accurate for large n.
    """
    dist = _dist("dist", dist)
    n = checks.integer("n", n)
    q = checks.open_unit("q", q)
    return float(dist.isf(-math.expm1(math.log(q) / n)))


def order_statistic_cdf(F, n, k):
    """CDF of the k-th smallest of n iid values:
    P(X_(k) <= x) = sum_{j=k}^{n} C(n,j) F^j (1-F)^(n-j).

    F: the single-value CDF F(x) at the point(s) of interest (float or array in [0, 1]);
    n >= 1; 1 <= k <= n (k = 1 fastest/min, k = n slowest/max). Evaluated as the regularised
    incomplete beta I_F(k, n-k+1), equal to the binomial sum.
    """
    n = checks.integer("n", n)
    k = checks.integer("k", k)
    if k > n:
        raise ValueError(f"k must be <= n (k={k}, n={n})")
    arr = np.asarray(F, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
        raise ValueError(f"F must be CDF values in [0, 1], got {F!r}")
    out = special.betainc(k, n - k + 1, arr)
    return float(out) if out.ndim == 0 else out


def fanout_max_mean_exponential(n, rate) -> float:
    """Mean of the max of n iid Exponential(rate) latencies: H_n / rate seconds (H_n harmonic)."""
    n = checks.integer("n", n)
    rate = checks.positive("rate", rate)
    if n <= 10_000:
        h = math.fsum(1.0 / i for i in range(1, n + 1))
    else:
        h = float(special.digamma(n + 1) + np.euler_gamma)
    return h / rate


def kth_fastest_quantile(dist, n, k, q) -> float:
    """q-quantile (seconds) of the k-th fastest of n iid leaf latencies (k = 1: the fastest,
    k = n: the slowest; a quorum of k out of n waits for the k-th fastest).

    dist: one leaf's latency (analysis.topology spec or frozen scipy.stats distribution);
    1 <= k <= n; q in (0, 1). Exact: inverts
    I_F(k, n-k+1) = q with the inverse incomplete beta function.
    """
    dist = _dist("dist", dist)
    n = checks.integer("n", n)
    k = checks.integer("k", k)
    if k > n:
        raise ValueError(f"k must be <= n (k={k}, n={n})")
    q = checks.open_unit("q", q)
    f = float(special.betaincinv(k, n - k + 1, q))
    if f <= 0.5:
        return float(dist.ppf(f))
    upper = float(special.betaincinv(n - k + 1, k, 1.0 - q))   # = 1 - f, accurate near f -> 1
    return float(dist.isf(upper))


# --------------------------------------------------------------------------------------------
# Supermarket model (power-of-d choices), mean-field limit
# --------------------------------------------------------------------------------------------

def _supermarket_args(arrival_rate_per_queue, service_rate, d) -> tuple[float, int, float]:
    lam = checks.positive("arrival_rate_per_queue", arrival_rate_per_queue)
    mu = checks.positive("service_rate", service_rate)
    d = checks.integer("d", d)
    rho = lam / mu
    if rho >= 1.0:
        raise ValueError(f"utilisation arrival_rate_per_queue/service_rate = {rho:.6g} >= 1: the "
                         "supermarket model has no steady state")
    return rho, d, mu


def _supermarket_exponent(d: int, k: int) -> float:
    """(d^k - 1)/(d - 1) (= k for d = 1) as a float, inf when it overflows."""
    if d == 1:
        return float(k)
    e = (d**k - 1) // (d - 1)
    try:
        return float(e)
    except OverflowError:
        return math.inf


def supermarket_tail(arrival_rate_per_queue, service_rate, d, k) -> float:
    """Fraction of queues holding at least k requests in the power-of-d supermarket model
    (n -> infinity limit, Poisson arrivals, exponential service).

    arrival_rate_per_queue: the total arrival rate divided by the number of queues (requests/s);
    service_rate: per queue (requests/s); d >= 1 queues sampled per arrival; k >= 0.
    rho^((d^k - 1)/(d - 1)) for d >= 2 and rho^k for d = 1 (M/M/1), rho = arrival_rate_per_queue
    / service_rate < 1 (Mitzenmacher 2001 uses service_rate = 1).
    """
    rho, d, _ = _supermarket_args(arrival_rate_per_queue, service_rate, d)
    k = checks.integer("k", k, minimum=0)
    e = _supermarket_exponent(d, k)
    return 0.0 if math.isinf(e) else rho**e


def supermarket_mean_response(arrival_rate_per_queue, service_rate, d) -> float:
    """Mean response time (seconds) in the power-of-d supermarket model (n -> infinity limit).

    arrival_rate_per_queue: total arrival rate / number of queues (requests/s); service_rate per
    queue (requests/s); d >= 1. T_d = (1/mu) sum_{i>=1} rho^((d^i - d)/(d - 1)) for d >= 2
    (Mitzenmacher 2001, Vvedenskaya et al. 1996), 1/(mu - lambda) for d = 1;
    rho = arrival_rate_per_queue / service_rate < 1.
    """
    rho, d, mu = _supermarket_args(arrival_rate_per_queue, service_rate, d)
    if d == 1:
        return 1.0 / (mu * (1.0 - rho))
    total = 0.0
    i = 1
    while True:
        e = _supermarket_exponent(d, i) - 1.0     # (d^i - d)/(d - 1)
        term = 0.0 if math.isinf(e) else rho**e
        total += term
        if term <= 1e-17 * total:
            break
        i += 1
    return total / mu


# --------------------------------------------------------------------------------------------
# Universal Scalability Law
# --------------------------------------------------------------------------------------------

def _usl(n, gamma: float, sigma: float, kappa: float):
    return gamma * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


def usl_throughput(n, gamma, sigma, kappa):
    """Universal Scalability Law throughput X(N) = gamma N / (1 + sigma (N-1) + kappa N (N-1)).

    n: concurrency (scalar or array, > 0); gamma: throughput at N = 1 (requests/s, > 0);
    sigma (contention) and kappa (coherency) >= 0. Returns requests/s (float or array).
    """
    gamma = checks.positive("gamma", gamma)
    sigma = checks.nonnegative("sigma", sigma)
    kappa = checks.nonnegative("kappa", kappa)
    arr = np.asarray(n, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"n (concurrency) must be > 0 and finite, got {n!r}")
    out = _usl(arr, gamma, sigma, kappa)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class USLFit:
    """Result of fit_usl (Gunther's notation).

    gamma: throughput at N = 1 (requests/s); sigma (contention) and kappa (coherency);
    the scalability limit: peak_concurrency N* = sqrt((1 - sigma)/kappa) (inf when kappa == 0)
    and peak_throughput X(N*) (requests/s; for kappa == 0 the ceiling gamma/sigma, inf if sigma
    == 0 too); contention_ceiling gamma/sigma (requests/s): the bound throughput approaches with
    contention alone (Amdahl), above every X(N); r_squared of the fit.
    """

    gamma: float
    sigma: float
    kappa: float
    peak_concurrency: float
    peak_throughput: float
    contention_ceiling: float
    r_squared: float

    def throughput(self, n):
        """Fitted throughput (requests/s) at concurrency n."""
        return usl_throughput(n, self.gamma, self.sigma, self.kappa)


def _usl_fit_result(gamma: float, sigma: float, kappa: float, n: np.ndarray,
                    x: np.ndarray) -> USLFit:
    if kappa > 0:
        peak_n = math.sqrt(max(1.0 - sigma, 0.0) / kappa)
        peak_x = float(_usl(peak_n, gamma, sigma, kappa)) if peak_n > 0 else 0.0
    else:
        peak_n = math.inf
        peak_x = gamma / sigma if sigma > 0 else math.inf
    resid = x - _usl(n, gamma, sigma, kappa)
    ss_res = float(np.sum(resid**2))
    ss_tot = float(np.sum((x - x.mean())**2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return USLFit(gamma=gamma, sigma=sigma, kappa=kappa, peak_concurrency=peak_n,
                  peak_throughput=peak_x,
                  contention_ceiling=gamma / sigma if sigma > 0 else math.inf, r_squared=r2)


def fit_usl(concurrency, throughput) -> USLFit:
    """Fit the Universal Scalability Law to measured (concurrency, throughput) pairs.

    Nonlinear least squares on throughput (scipy.optimize.least_squares, bounds gamma > 0,
    0 <= sigma <= 1, kappa >= 0), started from Gunther's linearised estimate and a few other
    points; the best fit is returned as a USLFit. Needs at least 3 pairs of positive values.
    """
    n = _vector("concurrency", concurrency)
    x = _vector("throughput", throughput)
    if n.size != x.size:
        raise ValueError(f"concurrency and throughput must have the same length "
                         f"({n.size} != {x.size})")
    if n.size < 3:
        raise ValueError(f"fit_usl needs at least 3 (concurrency, throughput) points, got {n.size}")
    for name, arr in (("concurrency", n), ("throughput", x)):
        bad = np.flatnonzero(arr <= 0)
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] must be > 0, got {arr[bad[0]]!r}")
    if np.unique(n).size < 3:
        raise ValueError("concurrency needs at least 3 distinct values to identify gamma, sigma "
                         "and kappa")

    # Starting point: gamma from the lowest concurrency, then
    # N/C(N) - 1 = sigma (N-1) + kappa N (N-1)
    # solved by non-negative least squares (Gunther 2007, sec. 5.2).
    i0 = int(np.argmin(n))
    starts = []
    for scale in (1.0, 1.25, 0.8, 2.0):
        lam0 = scale * x[i0] / n[i0]
        a = np.column_stack([n - 1.0, n * (n - 1.0)])
        y = n * lam0 / x - 1.0
        try:
            (s0, k0), _ = optimize.nnls(a, y)
        except (RuntimeError, ValueError):  # pragma: no cover - nnls fails only on degenerate input
            s0, k0 = 0.01, 1e-4
        starts.append((lam0, min(s0, 0.99), k0))
    starts.append((x[i0] / n[i0], 0.05, 1e-4))

    def residuals(p):
        return _usl(n, p[0], p[1], p[2]) - x

    def jac(p):
        lam, s, k = p
        den = 1.0 + s * (n - 1.0) + k * n * (n - 1.0)
        base = n / den
        return np.column_stack([base, -lam * base * (n - 1.0) / den,
                                -lam * base * n * (n - 1.0) / den])

    best = None
    lower, upper = [1e-300, 0.0, 0.0], [np.inf, 1.0, np.inf]
    for lam0, s0, k0 in starts:
        x0 = np.clip([lam0, s0, k0], [1e-300, 0.0, 0.0], [np.inf, 1.0, np.inf])
        res = optimize.least_squares(residuals, x0, jac=jac, bounds=(lower, upper),
                                     x_scale="jac", ftol=1e-15, xtol=1e-15, gtol=1e-15,
                                     max_nfev=2000)
        if best is None or res.cost < best.cost:
            best = res
    gamma, sigma, kappa = (float(v) for v in best.x)
    if kappa * float(n.max())**2 < 1e-12:
        kappa = 0.0   # at its bound: the coherency term is below round-off at every measured N
    return _usl_fit_result(gamma, sigma, kappa, n, x)
