"""Capacity planning: demand or forecast -> servers -> SLO attainment and cost; autoscaling.

Units: arrival rates in requests/s, times in seconds, capacity in servers, cost in server-hours and
in currency per server-hour (``price_per_server_hour``). Every server is an M/M/c server of rate
``service_rate`` (requests/s, i.e. mean service time 1/service_rate s); requests are served first
come, first served.

Contents
--------
Latency target
    ``SLO(kind, threshold_s, probability)``: ``kind="wait_exceeds"`` means P(wait > threshold_s) <=
    probability; ``kind="p99_response"`` means the (1 - probability) quantile of the response time
    (wait + service) is <= threshold_s (probability=0.01: the p99).
Sizing
    ``servers_needed`` (exact M/M/c / Erlang C, least c meeting the SLO, per interval),
    ``sqrt_staffing_servers`` (square-root staffing c = ceil(R + beta sqrt(R)) with the Halfin-Whitt
    beta of the target, for comparison), ``servers_from_forecast`` (size on a forecast quantile
    column such as ``hi95``), ``cost_summary``.
Policies (each returns the number of servers *in service* per step as a Series of ints)
    ``static_peak_policy``, ``scheduled_policy`` (hour of week), ``reactive_policy`` (target
    tracking on observed utilisation, at a finer step than the hour: see its docstring) and
    ``predictive_policy`` (forecast quantile issued ``lead_time_h`` earlier). ``forecasts_at_lead``
    / ``issued_forecasts`` build the forecast frame a predictive policy may legitimately use from
    ``analysis.forecasting.backtest``.
Evaluation
    ``evaluate_policy`` (analytic, Erlang C per piece of constant rate and servers) and
    ``simulate_policy`` (simulation of time-varying arrivals and server schedule: the exact FIFO
    recursion of analysis.recursions, or ciw with ``path="ciw"``; replications with 95% CIs)
    both return a ``PolicyResult``; ``policy_frontier`` tabulates cost against SLO attainment;
    ``savings_against`` / ``cheapest_at_equal_slo`` compare policies at equal or better attainment.

Overload. An interval containing a piece with utilisation rate/(servers x service_rate) >= 1 is
*overloaded*: it has no steady state, so it is flagged (``overloaded``), counted as an SLO
violation, and never passed to an Erlang C formula; its P(wait > t) is reported as 1 and its p99 as
infinity (the limits of an unstable queue).

Scale reduction (``simulate_policy``). A week of the e-commerce series is ~40 million requests:
hours of simulation. The simulation therefore uses *time compression* (``compressed_pieces``): every
piece of constant arrival rate and server count (an hour, or part of an hour when the schedule
changes within it) is replayed for a shorter simulated time at the SAME arrival rate, service rate
and number of servers, and each simulated request stands for (real duration / measured duration)
real requests. With service times of 0.1-0.5 s an M/M/c queue relaxes to its stationary regime in
seconds, so what a piece shows over its real hour is, up to a transient of a few seconds, its
stationary waiting-time distribution; compression keeps that distribution and gives up only sample
size, which replications restore. Rules: an hour is measured for long enough to estimate its
P(exceed) to a stated precision (``precision``: the relative 95% half-width at the target, 0.25 by
default; the replay length then follows from the rate and the relaxation time, see
simulate_policy), or for a fixed ``segment_s`` simulated seconds; a piece that follows a change
is preceded by an unmeasured settle of ``settle_factor`` relaxation times 1/(sqrt(c mu) -
sqrt(lambda))^2 (the real transient is negligible next to an hour, a compressed one would not be;
without it the estimates were 3-5% low);
estimates are pooled ratios over replications (the mean of per-replication ratios of a few hundred
requests is biased low). A cap on requests in the system (``max_in_system``) models load shedding:
arrivals to a full system are rejected and count as failures. Overloaded pieces are replayed
briefly, flagged and always count as violations; the capped backlog they leave, which a real hour
drains in max_in_system / (c mu - lambda) seconds, is drained during the next piece's settle.
Validated in tests/test_capacity.py: per hour, compressed vs uncompressed (3600 s per hour)
simulation and Erlang C agree within 99.9% confidence limits that would expose a 30% bias, also for
a schedule changing every 15 minutes. Limits: without load shedding an overload's backlog would
spill into later hours; neither evaluation models that (the analytic one treats every piece as
stationary). Very near-critical pieces whose settle would exceed ``max_settle_s`` are flagged
``relaxed=False``. Per-interval 95% intervals are t-intervals over replications: with a short
fixed replay they are too narrow for rare, bursty exceedances (Erlang C fell inside them for 81% of
the hours of the Black Friday week at segment_s=10 with 5 replications); with the replay length
from the precision rule, 90% at precision=0.8 and 93% at 0.4 (same week, exact sizing).

Simulation attainment. An hour's simulated P(wait > t) is an estimate: with ~1,000 requests per hour
and replication its standard error is large next to a target such as 5%, so per-replication "hour
met / missed" verdicts would call many exactly-sized hours failures. ``simulate_policy`` therefore
pools the replications per hour and reports ``attainment`` (share of hours whose pooled estimate
meets the target) with the band ``attainment_lo`` (hours whose 95% interval lies below the target)
.. ``attainment_hi`` (hours whose 95% interval does not lie above it), next to
``attainment_analytic`` (Erlang C on the same schedule).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import checks, theory
from analysis._lazy import lazy_module

optimize = lazy_module("scipy.optimize")    # imported on first use
special = lazy_module("scipy.special")    # imported on first use
stats = lazy_module("scipy.stats")    # imported on first use (about 3 s)

__all__ = [
    "SLO", "HOUR_S", "WEEK_S",
    "servers_needed", "sqrt_staffing_servers", "servers_from_forecast",
    "server_hours", "warmup_server_hours", "cost_summary",
    "static_peak_policy", "scheduled_policy", "reactive_policy", "predictive_policy",
    "forecasts_at_lead", "issued_forecasts",
    "PolicyResult", "evaluate_policy", "compressed_pieces", "simulate_policy",
    "policy_frontier", "savings_against", "cheapest_at_equal_slo",
]

HOUR_S = 3600.0
_REL_TOL = 1e-9  # float tolerance when comparing a computed SLO value with its target


# --------------------------------------------------------------------------------------- validation

def _step_seconds(index: pd.DatetimeIndex, name: str, default: float | None = None) -> float:
    """The constant step of a DatetimeIndex in seconds (ValueError naming it if irregular)."""
    if len(index) < 2:
        if index.freq is not None:
            return pd.Timedelta(index.freq).total_seconds()
        if default is not None:
            return default
        raise ValueError(f"{name}: need at least two timestamps (or an index with a freq) "
                         "to know the step")
    diffs = np.diff(index.asi8)
    if (diffs <= 0).any():
        i = int(np.flatnonzero(diffs <= 0)[0]) + 1
        raise ValueError(f"{name}: timestamps must be strictly increasing; "
                         f"row {i} ({index[i]}) is not")
    if (diffs != diffs[0]).any():
        i = int(np.flatnonzero(diffs != diffs[0])[0]) + 1
        raise ValueError(f"{name}: timestamps must be regularly spaced; "
                         f"the step changes at row {i} ({index[i]})")
    return pd.Timedelta(index[1] - index[0]).total_seconds()


def _rate_series(rates, name: str = "demand") -> pd.Series:
    """A float Series of arrival rates (requests/s) on a regular DatetimeIndex, finite and >= 0."""
    if not isinstance(rates, pd.Series):
        raise ValueError(f"{name}: expected a pandas Series of requests/s with a DatetimeIndex, "
                         f"got {type(rates).__name__}")
    if not isinstance(rates.index, pd.DatetimeIndex):
        raise ValueError(f"{name}: index must be a DatetimeIndex, got {type(rates.index).__name__}")
    if len(rates) == 0:
        raise ValueError(f"{name}: empty series")
    _check_unit(rates, name)
    try:
        values = rates.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: values must be numeric (requests/s)") from exc
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: row {i} ({rates.index[i]}) has rate {rates.iloc[i]!r}; "
                         "rates must be finite and >= 0 requests/s")
    _step_seconds(rates.index, name)
    return pd.Series(values, index=rates.index, name=rates.name)


def _check_unit(rates: pd.Series, name: str) -> None:
    """Refuse a series whose loader recorded a unit that is not a rate (``attrs["unit"]``, set by
    analysis.workloads.load_trace): a count per interval read as requests/s is off by the step
    in seconds (3600x for hourly counts). Without a recorded unit the values are taken as
    requests/s, as documented."""
    unit = (getattr(rates, "attrs", None) or {}).get("unit")
    if unit is None or unit == "":
        return
    text = str(unit).lower()
    if text == "requests/s" or ("/s" in text) or ("rate" in text and "latency" not in text):
        return
    raise ValueError(f"{name}: its recorded unit is {unit!r}, not a rate in requests/s (counts per "
                     "interval: divide by the step in seconds, or load the file with "
                     "workloads.load_trace(..., unit='count'), which converts them)")


def _as_index(index, name: str = "index") -> pd.DatetimeIndex:
    if isinstance(index, (pd.Series, pd.DataFrame)):
        index = index.index
    if not isinstance(index, pd.DatetimeIndex) or len(index) == 0:
        raise ValueError(f"{name}: expected a non-empty DatetimeIndex (or a Series with one)")
    _step_seconds(index, name)
    return index


# --------------------------------------------------------------------------------------- the target

_KINDS = ("wait_exceeds", "p99_response")


@dataclass(frozen=True)
class SLO:
    """A latency target per interval.

    kind="wait_exceeds": P(wait in queue > threshold_s) <= probability. kind="p99_response": the (1
    - probability) quantile of the response time (wait + service) <= threshold_s; probability=0.01
    is the p99.
    """

    kind: str
    threshold_s: float
    probability: float = 0.01

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        check = checks.nonnegative if self.kind == "wait_exceeds" else checks.positive
        object.__setattr__(self, "threshold_s", check("threshold_s", self.threshold_s))
        object.__setattr__(self, "probability", checks.open_unit("probability", self.probability))

    @classmethod
    def wait_exceeds(cls, threshold_s: float, probability: float) -> "SLO":
        """P(wait > threshold_s) <= probability."""
        return cls("wait_exceeds", threshold_s, probability)

    @classmethod
    def p99_response(cls, threshold_s: float, probability: float = 0.01) -> "SLO":
        """(1 - probability) quantile of the response time <= threshold_s."""
        return cls("p99_response", threshold_s, probability)

    @property
    def quantile(self) -> float:
        return 1.0 - self.probability

    @property
    def value_column(self) -> str:
        """Column of the per-interval SLO value in evaluation tables."""
        return "p_wait_exceeds" if self.kind == "wait_exceeds" else "response_quantile_s"

    @property
    def target_value(self) -> float:
        return self.probability if self.kind == "wait_exceeds" else self.threshold_s

    def label(self) -> str:
        if self.kind == "wait_exceeds":
            return f"P(wait > {self.threshold_s:g} s) <= {100 * self.probability:g}%"
        return f"p{100 * self.quantile:g} response <= {self.threshold_s:g} s"

    def check_feasible(self, service_rate: float) -> None:
        """ValueError when no fleet can meet the target (quantile below the service time's own)."""
        mu = checks.positive("service_rate", service_rate)
        if self.kind == "p99_response":
            floor_s = -math.log(self.probability) / mu
            if self.threshold_s <= floor_s * (1 + 1e-6):
                raise ValueError(
                    f"threshold_s={self.threshold_s:g} s is unreachable: the "
                    f"p{100 * self.quantile:g} of the service time alone is {floor_s:.4g} s "
                    f"at service_rate={mu:g}/s")


def _response_q(slo: SLO) -> float:
    """Quantile of the per-interval response-time column: the SLO's for a response target,
    else 0.99."""
    return slo.quantile if slo.kind == "p99_response" else 0.99


def _make_slo(slo, wait_target_s, wait_prob, p99_response_s) -> SLO:
    given = {k: v for k, v in dict(wait_target_s=wait_target_s, wait_prob=wait_prob,
                                   p99_response_s=p99_response_s).items() if v is not None}
    if slo is not None:
        if given:
            raise ValueError(f"slo: give either an SLO object or the keywords {sorted(given)}, "
                             "not both")
        if not isinstance(slo, SLO):
            raise ValueError(f"slo: expected an SLO, got {type(slo).__name__}")
        return slo
    if p99_response_s is not None:
        if wait_target_s is not None:
            raise ValueError("p99_response_s: give either p99_response_s or "
                             "wait_target_s/wait_prob, not both")
        return SLO("p99_response", p99_response_s, 0.01 if wait_prob is None else wait_prob)
    if wait_target_s is None or wait_prob is None:
        raise ValueError("wait_target_s and wait_prob (or p99_response_s, or slo=SLO(...)) "
                         "are required")
    return SLO("wait_exceeds", wait_target_s, wait_prob)


# ----------------------------------------------------------------------------- closed forms (local)

def _response_survival_vec(x: float, mu: float, theta: np.ndarray,
                           p_wait: np.ndarray) -> np.ndarray:
    """Vectorised M/M/c P(response > x): wait 0 w.p. 1-C else Exp(theta), plus Exp(mu) service.

    Same formula as theory.mmc_response_survival (tests check they agree); used for mixtures of many
    pieces where a Python loop over theory calls would be slow.
    """
    z = (theta - mu) * x
    y = np.abs(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(y == 0.0, 1.0, -np.expm1(-y) / np.where(y == 0.0, 1.0, y))  # in (0, 1]
    e = math.exp(-mu * x)
    # theta >= mu: e^{-mu x} g(z); theta < mu: the same quantity is e^{-theta x} g(|z|), which
    # does not overflow when theta -> 0 (see theory._response_survival)
    with np.errstate(over="ignore", invalid="ignore"):
        tail = np.where(z >= 0.0, e, np.exp(-np.asarray(theta, dtype=float) * x)) * g
    return e + p_wait * mu * x * tail


def _mixture_quantile(mu: float, theta: np.ndarray, p_wait: np.ndarray, weights: np.ndarray,
                      prob: float, upper: float) -> float:
    """x with sum_i w_i P_i(R > x) = prob (weights sum to 1), bracketed by [0, upper]."""
    def f(x):
        return float(np.dot(weights, _response_survival_vec(x, mu, theta, p_wait))) - prob
    hi = max(upper, 1e-12)
    while f(hi) > 0:
        hi *= 2.0
    return optimize.brentq(f, 0.0, hi, xtol=1e-12, rtol=1e-12, maxiter=500)


def _single_quantile(rate: float, mu: float, c: int, q: float) -> float:
    if rate == 0.0:
        return -math.log(1.0 - q) / mu
    return theory.mmc_response_quantile(rate, mu, c, q)


def _p_wait(rate: float, mu: float, c: int) -> float:
    return 0.0 if rate == 0.0 else theory.erlang_c(rate, mu, c)


# ------------------------------------------------------------------------------------------- sizing

def _servers_for_response(rate: float, mu: float, x: float, p: float) -> int:
    """Least c with P(response > x) <= p (SLO feasibility checked by the caller)."""
    a = rate / mu
    c = math.floor(a) + 1
    limit = c + 1000 + int(100 * math.sqrt(a))
    while theory.mmc_response_survival(rate, mu, c, x) > p:
        c += 1
        if c > limit:  # pragma: no cover - a target a hair above the service-time quantile
            raise ValueError(f"threshold_s={x:g} s: too close to the service time's own quantile; "
                             f"no c up to {limit} meets it at rate {rate:g}/s")
    return c


def _size_one(rate: float, mu: float, slo: SLO) -> int:
    if rate == 0.0:
        return 0
    if slo.kind == "wait_exceeds":
        return theory.servers_for_service_level(rate, mu, slo.threshold_s, 1.0 - slo.probability)
    return _servers_for_response(rate, mu, slo.threshold_s, slo.probability)


def _apply_sizing(rates, fn, name: str, min_servers: int, max_servers: int | None,
                  vector_fn=None):
    scalar = not isinstance(rates, pd.Series)
    if scalar:
        r = checks.nonnegative(name, rates)
        values, index = np.array([r]), None
    else:
        series = rates
        if not isinstance(series.index, pd.DatetimeIndex):
            values = np.asarray(series, dtype=float)
        else:
            values = _rate_series(series, name).to_numpy()
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: row {i} has rate {values[i]!r}; rates must be finite "
                             "and >= 0 requests/s")
        index = series.index
    if vector_fn is not None:          # one vectorised call over the distinct rates
        distinct, inverse = np.unique(values, return_inverse=True)
        out = np.asarray(vector_fn(distinct), dtype=np.int64)[inverse.reshape(-1)]
    else:
        cache: dict[float, int] = {}
        out = np.empty(len(values), dtype=np.int64)
        for i, r in enumerate(values):
            c = cache.get(r)
            if c is None:
                c = cache[r] = fn(float(r))
            out[i] = c
    out = np.maximum(out, min_servers)
    if max_servers is not None:
        out = np.minimum(out, max_servers)
    if scalar:
        return int(out[0])
    return pd.Series(out, index=index, name="servers")


def servers_needed(rates, service_rate, slo: SLO | None = None, *, wait_target_s=None,
                   wait_prob=None, p99_response_s=None, min_servers: int = 1,
                   max_servers: int | None = None):
    """Least number of M/M/c servers meeting the SLO at each arrival rate (exact Erlang C).

    rates: requests/s, a scalar (-> int) or a Series (-> Series of ints, same index). service_rate:
    requests/s per server. Target: ``slo=SLO(...)`` or the keywords (``wait_target_s`` +
    ``wait_prob``: P(W > t) <= p; ``p99_response_s``: p99 response <= that many seconds). Uses
    theory.servers_for_service_level (at least 1 - p of requests wait at most t) and, for
    response quantiles, the least c with theory.mmc_response_survival <= probability. Result
    clipped to [min_servers, max_servers] (a cap may break the SLO). A zero rate needs
    min_servers.
    """
    mu = checks.positive("service_rate", service_rate)
    target = _make_slo(slo, wait_target_s, wait_prob, p99_response_s)
    target.check_feasible(mu)
    lo = checks.integer("min_servers", min_servers, 0)
    hi = checks.optional_integer("max_servers", max_servers, max(lo, 1))
    return _apply_sizing(rates, lambda r: _size_one(r, mu, target), "rates", lo, hi)


def _qed_beta(a: float, mu: float, slo: SLO) -> float:
    """Halfin-Whitt (QED) beta meeting the SLO in the many-server approximation.

    P(wait) ~ alpha(beta) = [1 + beta Phi(beta)/phi(beta)]^-1 and, given a wait, W ~ Exp(beta
    sqrt(R) mu). wait_exceeds: alpha(beta) exp(-beta sqrt(R) mu t) = p; p99_response: the same wait
    law plus Exp(mu) service.
    """
    p = slo.probability
    if slo.kind == "wait_exceeds" and slo.threshold_s == 0.0:
        return theory.halfin_whitt_beta(p)
    s = math.sqrt(a) * mu
    x = slo.threshold_s
    if slo.kind == "wait_exceeds":
        def f(b):
            return math.log(theory.halfin_whitt_alpha(b)) - b * s * x - math.log(p)
    else:
        def f(b):
            alpha = theory.halfin_whitt_alpha(b)
            surv = _response_survival_vec(x, mu, np.array([b * s]), np.array([alpha]))[0]
            return math.log(surv) - math.log(p)
    lo = 1e-9
    if f(lo) <= 0:
        return lo
    hi = 1.0
    while f(hi) > 0:
        hi *= 2.0
        if hi > 1e6:  # pragma: no cover - infeasible targets are rejected earlier
            raise ValueError(f"no square-root staffing beta meets {slo.label()} at load {a:g}")
    return optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-12)


def sqrt_staffing_servers(rates, service_rate, slo: SLO, *, min_servers: int = 1,
                          max_servers: int | None = None):
    """Square-root staffing c = ceil(R + beta sqrt(R)), R = rate/service_rate, Halfin-Whitt beta.

    For comparison with ``servers_needed``: beta solves the many-server (QED) approximation of the
    target (theory.halfin_whitt_beta when the target is P(wait) itself, i.e. threshold_s = 0). Same
    input/output conventions as ``servers_needed``.
    """
    mu = checks.positive("service_rate", service_rate)
    target = _make_slo(slo, None, None, None)
    target.check_feasible(mu)
    lo = checks.integer("min_servers", min_servers, 0)
    hi = checks.optional_integer("max_servers", max_servers, max(lo, 1))

    def many(r: np.ndarray) -> np.ndarray:
        a = r / mu
        beta = _qed_beta_vec(np.where(a > 0, a, 1.0), mu, target)
        c = np.maximum(1, np.ceil(a + beta * np.sqrt(a) - 1e-9))   # theory.square_root_staffing
        return np.where(a > 0, c, 0).astype(np.int64)
    return _apply_sizing(rates, None, "rates", lo, hi, vector_fn=many)


def _log_hw_alpha(b: np.ndarray) -> np.ndarray:
    """log of the Halfin-Whitt alpha(b) = [1 + b Phi(b)/phi(b)]^-1, vectorised (b > 0)."""
    log_ratio = special.log_ndtr(b) + 0.5 * b * b + 0.5 * math.log(2.0 * math.pi)
    return -np.logaddexp(0.0, np.log(b) + log_ratio)


def _qed_beta_vec(a: np.ndarray, mu: float, slo: SLO) -> np.ndarray:
    """_qed_beta for an array of offered loads ``a`` (Erlangs, > 0) at once: the same equations,
    solved by bisection on every load together to 1e-13 (brentq's xtol is 1e-12)."""
    p = slo.probability
    if slo.kind == "wait_exceeds" and slo.threshold_s == 0.0:
        return np.full(a.shape, theory.halfin_whitt_beta(p))
    s = np.sqrt(a) * mu
    x = slo.threshold_s
    log_p = math.log(p)

    def f(b):
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            if slo.kind == "wait_exceeds":
                return _log_hw_alpha(b) - b * s * x - log_p
            surv = _response_survival_vec(x, mu, b * s, np.exp(_log_hw_alpha(b)))
            return np.log(surv) - log_p
    lo = np.full(a.shape, 1e-9)
    done = f(lo) <= 0
    hi = np.ones(a.shape)
    while True:
        up = ~done & (f(hi) > 0)
        if not up.any():
            break
        hi[up] *= 2.0
        if hi.max() > 1e6:  # pragma: no cover - infeasible targets are rejected earlier
            bad = float(a[up & (hi > 1e6)][0])
            raise ValueError(f"no square-root staffing beta meets {slo.label()} at load {bad:g}")
    for _ in range(200):
        if np.all((hi - lo) <= 1e-13 * np.maximum(1.0, hi)):
            break
        mid = 0.5 * (lo + hi)
        pos = f(mid) > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
    return np.where(done, 1e-9, 0.5 * (lo + hi))


def servers_from_forecast(forecast: pd.DataFrame, service_rate, slo: SLO, *, column: str = "hi95",
                          headroom: float = 0.0, min_servers: int = 1,
                          max_servers: int | None = None) -> pd.Series:
    """Servers per interval sized on one forecast column (requests/s), e.g. the 95% bound ``hi95``.

    forecast: a DataFrame as returned by analysis.forecasting models (``mean``, ``loNN``/``hiNN``);
    negative forecast values are treated as 0. headroom: extra fraction of rate (0.1 = +10%).
    """
    if not isinstance(forecast, pd.DataFrame):
        raise ValueError("forecast: expected a DataFrame of forecast columns, "
                         f"got {type(forecast).__name__}")
    if column not in forecast.columns:
        raise ValueError(f"column={column!r}: not in the forecast "
                         f"(columns: {list(forecast.columns)})")
    h = checks.nonnegative("headroom", headroom)
    values = forecast[column].astype(float)
    if not np.isfinite(values.to_numpy()).all():
        i = int(np.flatnonzero(~np.isfinite(values.to_numpy()))[0])
        raise ValueError(f"forecast[{column!r}]: row {i} ({forecast.index[i]}) "
                         f"is {values.iloc[i]!r}")
    rates = values.clip(lower=0.0) * (1.0 + h)
    return servers_needed(rates, service_rate, slo, min_servers=min_servers,
                          max_servers=max_servers)


# --------------------------------------------------------------------------------------------- cost

def _schedule_series(servers, name: str = "servers") -> tuple[pd.Series, float]:
    if not isinstance(servers, pd.Series) or not isinstance(servers.index, pd.DatetimeIndex):
        raise ValueError(f"{name}: expected a Series of server counts with a DatetimeIndex")
    if len(servers) == 0:
        raise ValueError(f"{name}: empty schedule")
    values = servers.to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: row {i} ({servers.index[i]}) is {servers.iloc[i]!r}; "
                         "server counts must be integers >= 0")
    step = _step_seconds(servers.index, name)
    return pd.Series(values.astype(np.int64), index=servers.index, name=name), step


def server_hours(servers: pd.Series) -> float:
    """Serving server-hours of a schedule: sum of servers x step length (hours)."""
    s, step = _schedule_series(servers)
    return float(s.sum() * step / HOUR_S)


def _instance_warmup(servers, warmup_s) -> float:
    """The instance warm-up (s) billed per scale-out: stated by the caller, never read from the
    schedule (results are not kept in ``DataFrame.attrs``; issue 9)."""
    return checks.nonnegative("warmup_s", warmup_s)


def warmup_server_hours(servers: pd.Series, warmup_s: float = 0.0) -> float:
    """Billed, not serving server-hours: each scale-out of k servers was launched warmup_s earlier.

    The initial fleet (first value) is not counted: it is already warm when the window starts.
    warmup_s: the warm-up given to the policy (reactive_policy / predictive_policy), s.
    """
    w = _instance_warmup(servers, warmup_s)
    s, _ = _schedule_series(servers)
    increments = np.diff(s.to_numpy())
    return float(increments[increments > 0].sum() * w / HOUR_S)


def cost_summary(demand: pd.Series, servers, service_rate, *, price_per_server_hour: float = 1.0,
                 warmup_s: float = 0.0) -> pd.Series:
    """Cost of a schedule: server-hours (serving + warm-up), idle server-hours, currency.

    idle = billed server-hours - busy server-hours, busy = offered load min(rate/service_rate,
    servers) per piece.
    """
    pieces = _align(demand, servers)
    mu = checks.positive("service_rate", service_rate)
    price = checks.nonnegative("price_per_server_hour", price_per_server_hour)
    warm_h = _warmup_hours(pieces, _instance_warmup(servers, warmup_s))
    return _cost_from_pieces(pieces, mu, price, warm_h)


def _warmup_hours(pieces: pd.DataFrame, warmup_s: float) -> float:
    """warmup_server_hours of the schedule inside the window (pieces in time order)."""
    inc = np.diff(pieces["servers"].to_numpy())
    return float(inc[inc > 0].sum() * warmup_s / HOUR_S)


def _cost_from_pieces(pieces: pd.DataFrame, mu: float, price: float, warm_h: float) -> pd.Series:
    d = pieces["duration_s"].to_numpy()
    c = pieces["servers"].to_numpy()
    busy = np.minimum(pieces["rate"].to_numpy() / mu, c)
    serving = float((c * d).sum() / HOUR_S)
    busy_h = float((busy * d).sum() / HOUR_S)
    total = serving + warm_h
    return pd.Series({"serving_server_hours": serving, "warmup_server_hours": warm_h,
                      "server_hours": total, "busy_server_hours": busy_h,
                      "idle_server_hours": total - busy_h, "cost": total * price})


# ------------------------------------------------------------------------ aligning demand & servers

def _servers_on_grid(demand: pd.Series, servers) -> pd.Series:
    """The schedule as a Series (a scalar becomes a constant schedule on the demand's index)."""
    if isinstance(servers, pd.Series):
        return servers
    c = checks.integer("servers", servers, 0)
    return pd.Series(c, index=demand.index, name="servers")


def _align(demand, servers) -> pd.DataFrame:
    """Pieces of constant (rate, servers) within each demand interval.

    Columns: interval (position in demand), start (Timestamp), duration_s, rate, servers. The
    schedule's step must divide the demand's; it must cover the demand window (extra steps outside
    it are ignored).
    """
    dem = _rate_series(demand, "demand")
    d_step = _step_seconds(dem.index, "demand")
    sched, s_step = _schedule_series(_servers_on_grid(dem, servers))
    if s_step > d_step or (d_step / s_step) != round(d_step / s_step):
        raise ValueError(f"servers: step {s_step:g} s must divide the demand step {d_step:g} s")
    if (sched.index.tz is None) != (dem.index.tz is None):
        raise ValueError(f"servers: index time zone {sched.index.tz} does not match "
                         f"the demand's {dem.index.tz}")
    ratio = int(round(d_step / s_step))
    start = dem.index[0]
    end = dem.index[-1] + pd.Timedelta(seconds=d_step)
    window = sched[(sched.index >= start) & (sched.index < end)]
    expected = len(dem) * ratio
    if len(window) != expected or window.index[0] != start:
        raise ValueError(f"servers: the schedule must cover the demand window {start} .. {end} "
                         f"with a value every {s_step:g} s ({expected} values); "
                         f"it has {len(window)} there")
    rates = np.repeat(dem.to_numpy(), ratio)
    counts = window.to_numpy()
    interval = np.repeat(np.arange(len(dem)), ratio)
    change = np.ones(expected, dtype=bool)
    change[1:] = ((interval[1:] != interval[:-1]) | (counts[1:] != counts[:-1])
                  | (rates[1:] != rates[:-1]))
    first = np.flatnonzero(change)
    lengths = np.diff(np.append(first, expected))
    return pd.DataFrame({
        "interval": interval[first],
        "start": window.index[first],
        "duration_s": lengths * s_step,
        "rate": rates[first],
        "servers": counts[first],
    })


# ----------------------------------------------------------------------------------------- policies

def static_peak_policy(train: pd.Series, index, service_rate, slo: SLO, *, headroom: float = 0.0,
                       min_servers: int = 1, max_servers: int | None = None) -> pd.Series:
    """A constant fleet sized for the peak rate of the training window times (1 + headroom).

    train: past demand (requests/s); index: the evaluation window (a DatetimeIndex or a Series with
    one).
    """
    tr = _rate_series(train, "train")
    idx = _as_index(index)
    h = checks.nonnegative("headroom", headroom)
    c = servers_needed(float(tr.max()) * (1.0 + h), service_rate, slo, min_servers=min_servers,
                       max_servers=max_servers)
    return pd.Series(np.full(len(idx), c, dtype=np.int64), index=idx, name="servers")


WEEK_S = 7 * 86400.0
_MONDAY = pd.Timestamp("1970-01-05")        # a Monday 00:00: slot 0 of a weekly period


def _slot_of(index: pd.DatetimeIndex, period_s: float, slot_s: float) -> np.ndarray:
    """Slot of each timestamp within a repeating period (local wall-clock time; slot 0 starts on
    a Monday 00:00 for weekly and daily periods): floor((t mod period_s) / slot_s)."""
    wall = index.tz_localize(None) if index.tz is not None else index
    ns = (wall - _MONDAY).to_numpy().astype("timedelta64[ns]").astype(np.int64)
    period_ns, slot_ns = int(round(period_s * 1e9)), int(round(slot_s * 1e9))
    return np.mod(ns, period_ns) // slot_ns


def scheduled_policy(train: pd.Series, index, service_rate, slo: SLO, *, quantile: float = 0.95,
                     headroom: float = 0.0, period_s: float = WEEK_S, slot_s: float | None = None,
                     min_servers: int = 1, max_servers: int | None = None) -> pd.Series:
    """Servers by time slot of a repeating period: each slot sized on a ``quantile`` of the
    training periods (hourly data and the defaults: the 168 hours of the week).

    period_s: the period that repeats (default a week; 86400 for a daily schedule); slot_s: the
    length of a slot (default the training series' step), a whole number of which makes the
    period. Slots are in wall-clock time, slot 0 starting Monday 00:00. quantile in (0, 1]: 1 is
    the slot's maximum. train must contain every slot (at least one full period); the evaluation
    index's step must divide slot_s; every index timestamp gets its slot's servers.
    """
    tr = _rate_series(train, "train")
    tr_step = _step_seconds(tr.index, "train")
    idx = _as_index(index)
    period = checks.positive("period_s", period_s)
    slot = tr_step if slot_s is None else checks.positive("slot_s", slot_s)
    n_slots = period / slot
    if abs(n_slots - round(n_slots)) > 1e-9:
        raise ValueError(f"slot_s={slot:g}: must divide period_s={period:g} s")
    if slot < tr_step:
        raise ValueError(f"slot_s={slot:g}: shorter than the training series' step ({tr_step:g} s)")
    n_slots = int(round(n_slots))
    idx_step = _step_seconds(idx, "index", default=slot)
    if abs(slot / idx_step - round(slot / idx_step)) > 1e-9:
        raise ValueError(f"index: its step ({idx_step:g} s) must divide slot_s={slot:g} s")
    q = checks.real("quantile", quantile)
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    h = checks.nonnegative("headroom", headroom)
    by_slot = pd.Series(tr.to_numpy(), index=_slot_of(tr.index, period, slot))
    missing = sorted(set(range(n_slots)) - set(by_slot.index))
    if missing:
        raise ValueError(f"train: no data for {len(missing)} of the {n_slots} slots of "
                         f"{slot:g} s in the period_s={period:g} s (e.g. slot {missing[0]}, 0 = "
                         f"Monday 00:00); give at least one full period, or a shorter period_s "
                         f"(86400 for a daily schedule)")
    slot_rate = by_slot.groupby(level=0).quantile(q) * (1.0 + h)
    slot_servers = servers_needed(pd.Series(slot_rate.to_numpy(), index=pd.RangeIndex(n_slots)),
                                  service_rate, slo, min_servers=min_servers,
                                  max_servers=max_servers)
    values = slot_servers.to_numpy()[_slot_of(idx, period, slot)]
    return pd.Series(values.astype(np.int64), index=idx, name="servers")


def reactive_policy(demand: pd.Series, service_rate, *, target_utilisation: float = 0.7,
                    reaction_delay_s: float = 300.0, warmup_s: float = 300.0,
                    cooldown_s: float = 900.0, step_s: float = 60.0,
                    max_step_up: int | None = None, max_step_down: int | None = None,
                    min_servers: int = 1, max_servers: int | None = None,
                    initial_servers: int | None = None) -> pd.Series:
    """Target-tracking autoscaler on observed utilisation, run on a ``step_s`` grid (1 minute).

    Model (deterministic, on the piecewise-constant demand): at each step k the fleet's utilisation
    is u_k = min(rate_k / (serving_k x service_rate), 1) (a saturated fleet shows 100%, not the
    excess). The decision at step k sees the measurement of step k - reaction_delay_s/step_s (metric
    lag + alarm evaluation) and wants desired = ceil(busy / target_utilisation), busy = u x serving
    at that step, clipped to [min_servers, max_servers].
    - Scale-out when desired > serving + warming: launch min(desired - (serving + warming),
      max_step_up) instances; they serve from step k + warmup_s/step_s (billed from launch: see
      warmup_server_hours).
    - Scale-in when desired < serving, nothing is warming and no scaling action happened in the last
      cooldown_s: remove min(serving - desired, max_step_down) at once.
    A step change of demand at time T is therefore first answered by capacity serving at exactly T +
    reaction_delay_s + warmup_s. Delays must be multiples of step_s; step_s must divide the demand's
    step.
    Returns the serving servers per step (a Series on a ``step_s`` grid covering the demand window).
    """
    dem = _rate_series(demand, "demand")
    mu = checks.positive("service_rate", service_rate)
    target = checks.open_unit("target_utilisation", target_utilisation)
    step = checks.positive("step_s", step_s)
    d_step = _step_seconds(dem.index, "demand")
    if d_step / step != round(d_step / step):
        raise ValueError(f"step_s={step_s!r} must divide the demand step ({d_step:g} s)")

    def steps(name, value):
        v = checks.nonnegative(name, value)
        n = v / step
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"{name}={value!r} must be a multiple of step_s={step:g}")
        return int(round(n))
    delay = steps("reaction_delay_s", reaction_delay_s)
    warm = steps("warmup_s", warmup_s)
    cool = steps("cooldown_s", cooldown_s)
    up = checks.optional_integer("max_step_up", max_step_up, 1)
    down = checks.optional_integer("max_step_down", max_step_down, 1)
    lo = checks.integer("min_servers", min_servers, 1)
    hi = checks.optional_integer("max_servers", max_servers, lo)
    ratio = int(round(d_step / step))
    rates = np.repeat(dem.to_numpy(), ratio)
    n = len(rates)

    def clip(c):
        c = max(c, lo)
        return c if hi is None else min(c, hi)
    if initial_servers is None:
        start = clip(math.ceil(rates[0] / (mu * target) - 1e-9))
    else:
        start = clip(checks.integer("initial_servers", initial_servers, 0))

    serving = np.empty(n, dtype=np.int64)
    busy = np.empty(n, dtype=float)
    arrivals = np.zeros(n + warm + 1, dtype=np.int64)  # instances becoming ready at each step
    current, warming, last_action = start, 0, -10**12
    for k in range(n):
        ready = arrivals[k]
        current += ready
        warming -= ready
        busy[k] = min(rates[k] / mu, float(current))  # on the fleet serving as the step starts
        j = k - delay
        if j >= 0:
            desired = clip(math.ceil(busy[j] / target - 1e-9))
            if desired > current + warming:
                add = desired - current - warming
                if up is not None:
                    add = min(add, up)
                if warm == 0:
                    current += add
                else:
                    arrivals[k + warm] += add
                    warming += add
                last_action = k
            elif desired < current and warming == 0 and k - last_action >= cool:
                remove = current - desired
                if down is not None:
                    remove = min(remove, down)
                current -= remove
                last_action = k
        serving[k] = current
    index = pd.date_range(dem.index[0], periods=n, freq=pd.Timedelta(seconds=step),
                          name=dem.index.name)
    return pd.Series(serving, index=index, name="servers")


def predictive_policy(forecast: pd.DataFrame, service_rate, slo: SLO, *, column: str = "hi95",
                      headroom: float = 0.0, warmup_s: float = 0.0,
                      lead_time_h: float | None = None, min_servers: int = 1,
                      max_servers: int | None = None) -> pd.Series:
    """Servers per interval sized on a forecast quantile issued ``lead_time_h`` h before it starts.

    forecast: DataFrame indexed by target interval (any regular step) with ``column`` (e.g. from
    ``forecasts_at_lead``); when it has a ``lead_h`` column (hours between issue and the target
    interval's start) every row must have lead_h >= lead_time_h (if given) and lead_h x 3600 >=
    warmup_s, so scale-outs, launched warmup_s before the interval (billed: see
    warmup_server_hours), are serving when it starts.
    """
    w = checks.nonnegative("warmup_s", warmup_s)
    if not isinstance(forecast, pd.DataFrame):
        raise ValueError("forecast: expected a DataFrame of forecast columns, "
                         f"got {type(forecast).__name__}")
    if lead_time_h is not None:
        lead = checks.nonnegative("lead_time_h", lead_time_h)
        if lead * HOUR_S < w:
            raise ValueError(f"lead_time_h={lead_time_h!r}: shorter than warmup_s={warmup_s!r}; "
                             "new capacity would not be warm when the hour starts")
    if "lead_h" in forecast.columns:
        leads = forecast["lead_h"].to_numpy(dtype=float)
        need = max(w / HOUR_S, 0.0 if lead_time_h is None else float(lead_time_h))
        bad = leads < need - 1e-9
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"forecast: row {i} ({forecast.index[i]}) was issued {leads[i]:g} h "
                             f"ahead; lead_time_h/warmup_s require >= {need:g} h")
    _as_index(forecast.index, "forecast")
    out = servers_from_forecast(forecast, service_rate, slo, column=column, headroom=headroom,
                                min_servers=min_servers, max_servers=max_servers)
    return out


def forecasts_at_lead(backtest_df: pd.DataFrame, model: str, lead_time_h: float) -> pd.DataFrame:
    """Per target interval, the latest forecast issued at least ``lead_time_h`` h before it starts.

    backtest_df: the result of analysis.forecasting.backtest, at any step. A forecast from origin T
    (the last observed interval, data complete at T + step) for the interval starting at T + h x
    step is issued (h - 1) x step before it starts; ``lead_h`` is that time in hours (the step is
    read from the timestamps: (timestamp - origin) / h). Returns the forecast columns (mean, loNN,
    hiNN), ``actual``, ``origin``, ``h`` and ``lead_h``, indexed by target timestamp; target
    intervals with no eligible forecast are dropped.
    """
    needed = {"model", "h", "timestamp", "origin"}
    if not isinstance(backtest_df, pd.DataFrame) or not needed <= set(backtest_df.columns):
        raise ValueError("backtest_df: expected the DataFrame returned by "
                         "analysis.forecasting.backtest")
    lead = checks.nonnegative("lead_time_h", lead_time_h)
    g = backtest_df[backtest_df["model"] == model]
    if g.empty:
        raise ValueError(f"model={model!r}: not in backtest_df "
                         f"(models: {sorted(backtest_df['model'].unique())})")
    h = g["h"].to_numpy(dtype=float)
    ahead_h = ((pd.DatetimeIndex(g["timestamp"]) - pd.DatetimeIndex(g["origin"]))
               / pd.Timedelta(hours=1)).to_numpy(dtype=float)
    g = g.assign(lead_h=ahead_h * (h - 1.0) / h)          # (h - 1) steps, in hours
    g = g[g["lead_h"] >= lead - 1e-9]
    if g.empty:
        raise ValueError(f"lead_time_h={lead_time_h!r}: longer than every forecast in the backtest "
                         f"(max h = {int(backtest_df['h'].max())} steps)")
    g = g.sort_values(["timestamp", "origin"]).groupby("timestamp", sort=True).tail(1)
    keep = [c for c in g.columns if c in ("mean", "actual", "origin", "h", "lead_h")
            or (c[:2] in ("lo", "hi") and c[2:].replace(".", "").isdigit())]
    out = g.set_index("timestamp")[keep]
    out.index.name = "timestamp"
    return out


def _model_history(model_factory) -> tuple[int, int]:
    """(training points the model needs, its season in steps), asked of a fresh model.

    ``min_length`` is the model's own minimum (analysis.forecasting models have one); the season
    is its ``season`` attribute, else half its minimum (two seasons of history), at least 1.
    """
    if not callable(model_factory):
        raise ValueError(f"model_factory: expected a callable returning a model, "
                         f"got {type(model_factory).__name__}")
    probe = model_factory()
    need = int(getattr(probe, "min_length", 1) or 1)
    season = getattr(probe, "season", None)
    season = int(season) if season is not None else max(1, need // 2)
    return max(need, 2 * season, 1), season


def issued_forecasts(series: pd.Series, model_factory, start, end, *, lead_time_h: float = 1,
                     refit_every_h: float = 24, max_train: int | None = None,
                     levels: Sequence[float] = (0.8, 0.95)) -> pd.DataFrame:
    """Forecasts for the intervals [start, end) as a predictive autoscaler would have had them.

    series: demand (requests/s) on a regular DatetimeIndex of any step (1 min, 1 h, ...). The
    model (a factory returning an analysis.forecasting model) is refitted every ``refit_every_h``
    hours (a whole number of steps) on the data before each origin (at most ``max_train`` points)
    and each target interval gets the most recent forecast issued at least ``lead_time_h`` hours
    before it starts (see ``forecasts_at_lead``). History needed before start - lead_time_h: what
    the model itself needs (its ``min_length``, and two of its seasons), not a fixed two weeks;
    less gives a ValueError that says how much.
    """
    from analysis import forecasting

    y = _rate_series(series, "series")
    step_s = _step_seconds(y.index, "series")
    lead_s = checks.nonnegative("lead_time_h", lead_time_h) * HOUR_S
    every_s = checks.positive("refit_every_h", refit_every_h) * HOUR_S
    lead = int(math.ceil(lead_s / step_s - 1e-9))        # steps between issue and target start
    every = every_s / step_s
    if abs(every - round(every)) > 1e-9 or round(every) < 1:
        raise ValueError(f"refit_every_h={refit_every_h!r}: must be a whole number of series steps "
                         f"({step_s:g} s)")
    every = int(round(every))
    need, season = _model_history(model_factory)
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    if t0.tzinfo is None and y.index.tz is not None:
        t0, t1 = t0.tz_localize(y.index.tz), t1.tz_localize(y.index.tz)
    pos0 = int(y.index.searchsorted(t0))
    pos1 = int(y.index.searchsorted(t1))
    if pos0 >= pos1 or pos1 > len(y):
        raise ValueError(f"start={start!r}, end={end!r}: not a non-empty window inside the series")
    first_origin = pos0 - lead  # forecasts from this origin reach step pos0 with h = lead + 1
    horizon = lead + every
    if first_origin < need:
        raise ValueError(
            f"start={start!r}: the model needs {need} points of history before start - "
            f"lead_time_h (its minimum training length and two seasons of {season} steps); "
            f"the series has {max(first_origin, 0)} there")
    if max_train is not None and max_train < need:
        raise ValueError(f"max_train={max_train!r}: the model needs at least {need} points")
    last = min(len(y), pos1 + horizon)
    bt = forecasting.backtest(y.iloc[:last], {"model": model_factory}, initial=first_origin,
                              horizon=horizon, step=every, levels=levels, max_train=max_train,
                              season=season)
    out = forecasts_at_lead(bt, "model", lead * step_s / HOUR_S)
    stop = y.index[pos1 - 1] + pd.Timedelta(seconds=step_s)
    return out[(out.index >= y.index[pos0]) & (out.index < stop)]


# ------------------------------------------------------------------------------ analytic evaluation

@dataclass(frozen=True)
class PolicyResult:
    """An evaluated policy.

    intervals: one row per demand interval (rate, servers, utilisation, overloaded, the SLO value,
    meets_slo, server_hours, idle_server_hours, ...); summary: the window's totals (see
    evaluate_policy / simulate_policy); replications: one row per replication (simulation only).
    """

    name: str
    method: str
    slo: SLO
    intervals: pd.DataFrame
    summary: pd.Series
    replications: pd.DataFrame | None = field(default=None)


def _utilisation(rate: np.ndarray, c: np.ndarray, mu: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(rate == 0.0, 0.0, rate / (c * mu))
    return np.where((rate > 0) & (c == 0), np.inf, u)


def evaluate_policy(demand: pd.Series, servers, service_rate, slo: SLO, *, name: str = "policy",
                    price_per_server_hour: float = 1.0,
                    warmup_s: float = 0.0) -> PolicyResult:
    """Analytic evaluation: Erlang C (steady-state M/M/c) in every piece of constant rate, servers.

    demand: requests/s per interval (any regular step); servers: a schedule (Series on the
    demand's grid or a finer grid dividing it, e.g. reactive_policy's) or a constant. Per
    interval: P(wait > t) (time-weighted over pieces), the p99 (or SLO quantile) response time of the interval's requests
    (mixture over pieces), mean wait, utilisation (the worst piece), ``overloaded`` (a piece with
    utilisation >= 1: a violation, not evaluated: P = 1, quantile = inf), meets_slo, serving and
    idle server-hours. summary: intervals, attainment (fraction of intervals meeting the SLO),
    overloaded_intervals, p99_response_s (of all requests in the window; inf when overloaded
    requests exceed 1%), worst_interval / worst_value, and the cost_summary fields. warmup_s:
    instance warm-up billed per scale-out, s (give the policy's own warmup_s; default 0).
    """
    if not isinstance(slo, SLO):
        raise ValueError(f"slo: expected an SLO, got {type(slo).__name__}")
    mu = checks.positive("service_rate", service_rate)
    slo.check_feasible(mu)
    price = checks.nonnegative("price_per_server_hour", price_per_server_hour)
    w = _instance_warmup(servers, warmup_s)
    pieces = _align(demand, servers)
    dem = _rate_series(demand, "demand")
    return _evaluate_pieces(dem, pieces, mu, slo, name, price, _warmup_hours(pieces, w))


def _piece_table(pieces: pd.DataFrame, mu: float, slo: SLO) -> pd.DataFrame:
    """Per piece: utilisation, overloaded, p_wait, P(W > t), mean wait, theta = c mu - rate.

    Overloaded pieces never reach a formula: theta and p_wait are NaN, P(W > t) = 1, mean wait inf.
    """
    rate = pieces["rate"].to_numpy()
    c = pieces["servers"].to_numpy()
    util = _utilisation(rate, c, mu)
    over = util >= 1.0
    p_wait = np.full(len(rate), np.nan)
    cache: dict[tuple[float, int], float] = {}
    for i in np.flatnonzero(~over):
        key = (float(rate[i]), int(c[i]))
        if key not in cache:
            cache[key] = _p_wait(key[0], mu, key[1])
        p_wait[i] = cache[key]
    theta = np.where(over, np.nan, c * mu - rate)
    out = pieces.copy()
    out["utilisation"] = util
    out["overloaded"] = over
    out["p_wait"] = p_wait
    out["theta"] = theta
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean_wait_s"] = np.where(over, np.inf, p_wait / theta)
    if slo.kind == "wait_exceeds":
        decay = np.exp(-np.nan_to_num(theta) * slo.threshold_s)
        out["p_wait_exceeds"] = np.where(over, 1.0, p_wait * decay)
    return out


def _evaluate_pieces(dem: pd.Series, pieces: pd.DataFrame, mu: float, slo: SLO, name: str,
                     price: float, warm_h: float) -> PolicyResult:
    tab = _piece_table(pieces, mu, slo)
    q = _response_q(slo)
    rows = []
    for _, g in tab.groupby("interval", sort=True):
        d = g["duration_s"].to_numpy()
        wgt = d / d.sum()
        over = bool(g["overloaded"].any())
        rate = float(g["rate"].iloc[0])
        c = g["servers"].to_numpy()
        row = {
            "rate": rate,
            "servers": float(np.dot(wgt, c)),
            "servers_min": int(c.min()),
            "servers_max": int(c.max()),
            "pieces": len(g),
            "utilisation": float(g["utilisation"].max()),
            "overloaded": over,
        }
        if over:
            row["mean_wait_s"] = math.inf
            rq = math.inf
        else:
            row["mean_wait_s"] = float(np.dot(wgt, g["mean_wait_s"].to_numpy()))
            if len(g) == 1:
                rq = _single_quantile(rate, mu, int(c[0]), q)
            else:
                pw = g["p_wait"].to_numpy()
                th = g["theta"].to_numpy()
                upper = max(_single_quantile(rate, mu, int(ci), q) for ci in c)
                rq = _mixture_quantile(mu, th, pw, wgt, 1.0 - q, upper)
        row["response_quantile_s"] = rq
        if slo.kind == "wait_exceeds":
            row["p_wait_exceeds"] = (1.0 if over
                                     else float(np.dot(wgt, g["p_wait_exceeds"].to_numpy())))
        row["server_hours"] = float((c * d).sum() / HOUR_S)
        row["idle_server_hours"] = float(((c - np.minimum(rate / mu, c)) * d).sum() / HOUR_S)
        rows.append(row)
    iv = pd.DataFrame(rows, index=dem.index)
    value = iv[slo.value_column].to_numpy()
    iv["meets_slo"] = (~iv["overloaded"].to_numpy()) & (value <= slo.target_value * (1 + _REL_TOL))
    cost = _cost_from_pieces(pieces, mu, price, warm_h)
    summary = {
        "intervals": len(iv),
        "attainment": float(iv["meets_slo"].mean()),
        "overloaded_intervals": int(iv["overloaded"].sum()),
        "p99_response_s": _pooled_quantile(tab, mu, 0.99),
        "mean_wait_s": _pooled_mean_wait(tab),
    }
    worst = _worst(iv, slo)
    summary.update(worst)
    summary.update(cost.to_dict())
    return PolicyResult(name=name, method="analytic", slo=slo, intervals=iv,
                        summary=pd.Series(summary))


def _worst(iv: pd.DataFrame, slo: SLO) -> dict:
    """The worst interval: overloaded first (highest utilisation), else the highest SLO value."""
    key = np.where(iv["overloaded"].to_numpy(), np.inf, iv[slo.value_column].to_numpy())
    util = iv["utilisation"].to_numpy()
    order = np.lexsort((-util, -key))  # sort by key desc, then utilisation desc
    i = int(order[0])
    return {"worst_interval": iv.index[i], "worst_value": float(iv[slo.value_column].iloc[i]),
            "worst_utilisation": float(util[i])}


def _pooled_quantile(tab: pd.DataFrame, mu: float, q: float) -> float:
    """q-quantile of the response time of all requests in the window (request-weighted mixture)."""
    req = (tab["rate"] * tab["duration_s"]).to_numpy()
    total = req.sum()
    if total == 0:
        return -math.log(1.0 - q) / mu
    over = tab["overloaded"].to_numpy()
    over_share = req[over].sum() / total
    if over_share >= 1.0 - q:
        return math.inf
    ok = ~over & (req > 0)
    wgt = req[ok] / total
    th = tab["theta"].to_numpy()[ok]
    pw = tab["p_wait"].to_numpy()[ok]
    target = (1.0 - q) - over_share
    upper = -math.log(max(target, 1e-300)) / min(mu, float(th.min()))
    return _mixture_quantile(mu, th, pw, wgt, target, upper)


def _pooled_mean_wait(tab: pd.DataFrame) -> float:
    req = (tab["rate"] * tab["duration_s"]).to_numpy()
    if req.sum() == 0:
        return 0.0
    if tab["overloaded"].to_numpy()[req > 0].any():
        return math.inf
    return float(np.dot(req, np.nan_to_num(tab["mean_wait_s"].to_numpy())) / req.sum())


# -------------------------------------------------------------------------- simulation: compression

def _relaxation_s(rate: np.ndarray, c: np.ndarray, mu: float) -> np.ndarray:
    """Relaxation time of M/M/c (s): max(1/(sqrt(c mu) - sqrt(lambda))^2, 1/mu); inf if overloaded.

    1/(sqrt(mu) - sqrt(lambda))^2 is the exact spectral-gap time of M/M/1; the many-server form is
    its heavy-traffic analogue, 1/mu the time for busy servers to turn over.
    """
    cap = c * mu
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (np.sqrt(cap) - np.sqrt(rate)) ** 2
        tau = np.where(rate < cap, np.maximum(1.0 / gap, 1.0 / mu), np.inf)
    return np.where(rate == 0.0, 1.0 / mu, tau)


def _default_cap(c_max: int, mu: float) -> int:
    """Default max_in_system: the largest fleet plus 2 s of its full-speed work (at least 50)."""
    c_max = max(int(c_max), 1)
    return c_max + max(50, math.ceil(2.0 * c_max * mu))


def _measure_for_requests(rate: np.ndarray, tau: np.ndarray, share: np.ndarray,
                          n_eff: float) -> np.ndarray:
    """Simulated seconds holding ``n_eff`` effective requests per interval, split over its pieces
    by their share of the interval: n_eff x (1/rate + 2 tau) x share (see _effective_requests)."""
    with np.errstate(divide="ignore"):
        return n_eff * (1.0 / rate + 2.0 * tau) * share


def _effective_requests(rate: np.ndarray, tau: np.ndarray, measure: np.ndarray) -> np.ndarray:
    """Effective number of independent requests in ``measure`` s of a piece: rate x measure /
    (1 + 2 rate tau), the variance inflation of a series whose correlation time is the
    relaxation time tau (a heuristic: consecutive waits are strongly correlated within tau)."""
    return rate * measure / (1.0 + 2.0 * rate * tau)


def compressed_pieces(demand: pd.Series, servers, service_rate, *, segment_s: float | None = 20.0,
                      requests_per_interval: float | None = None,
                      max_requests: float | None = None,
                      min_piece_s: float = 5.0, settle_factor: float = 3.0,
                      max_settle_s: float = 60.0, max_in_system: int | None = None) -> pd.DataFrame:
    """The time-compressed replay plan of simulate_policy: a row per piece of constant load.

    How long each piece of real duration D (s) is measured (simulated seconds S, at its real rate
    and servers; each measured request stands for D/S real ones, column ``weight``), by one of:
    - ``segment_s``: S = min(D, max(D x segment_s / interval_s, min_piece_s)), the same
      compression for every interval whatever its rate;
    - ``requests_per_interval`` (give segment_s=None): S holds that many *effective* requests per
      interval, n x (1/rate + 2 tau) seconds split over the interval's pieces by duration (tau:
      the relaxation time, see _relaxation_s and _effective_requests), at least min_piece_s and
      at most D. Fewer requests per hour are replayed at high rates, more near saturation.
      ``max_requests`` (per replication, settle included): when the plan would exceed it, every
      measured length is scaled down by one factor (never below min_piece_s); the caller warns.
    A compressed piece that follows a change of rate or servers is preceded by settle_s simulated
    seconds that are simulated but not measured: settle_factor x tau, or longer if a backlog left
    by an overloaded piece (fluid estimate, at most max_in_system) needs longer to drain; at most
    max_settle_s and D - S. In the real system such transients last seconds out of an hour; in a
    short replay they would not be negligible. ``sim_s`` = settle_s + S, ``measure_s`` = S,
    ``effective_requests`` (see above). ``relaxed`` is False where max_settle_s cut the settle
    short (very near-critical pieces, long backlogs). Overloaded pieces (utilisation >= 1) are
    replayed for only min(D, min_piece_s): they count as violations whatever is simulated; pieces
    at rate 0 likewise (nothing to measure). segment_s = interval_s (3600 for hourly demand)
    reproduces the uncompressed system (no settling). Column ``max_in_system``: the cap on
    requests in the system (the same on every row).
    """
    mu = checks.positive("service_rate", service_rate)
    if (segment_s is None) == (requests_per_interval is None):
        raise ValueError("segment_s, requests_per_interval: give exactly one (segment_s=None "
                         "with requests_per_interval)")
    mn = checks.positive("min_piece_s", min_piece_s)
    sf = checks.nonnegative("settle_factor", settle_factor)
    ms = checks.nonnegative("max_settle_s", max_settle_s)
    pieces = _align(demand, servers)
    d_step = _step_seconds(_rate_series(demand).index, "demand")
    d = pieces["duration_s"].to_numpy()
    rate = pieces["rate"].to_numpy()
    c = pieces["servers"].to_numpy()
    c_max = max(int(c.max()), 1)
    if max_in_system is None:
        cap = _default_cap(c_max, mu)
    else:
        cap = checks.integer("max_in_system", max_in_system, c_max)
    over = _utilisation(rate, c, mu) >= 1.0
    tau = _relaxation_s(rate, c, mu)
    idle = over | (rate == 0.0)
    if segment_s is not None:
        seg = checks.positive("segment_s", segment_s)
        if seg > d_step:
            raise ValueError(f"segment_s={segment_s!r}: longer than the demand interval "
                             f"({d_step:g} s)")
        measure = np.minimum(np.where(over, mn, np.maximum(d * seg / d_step, mn)), d)
        compressed = seg < d_step
        if not compressed:
            measure = d.astype(float)
    else:
        n_eff = checks.positive("requests_per_interval", requests_per_interval)
        with np.errstate(invalid="ignore", divide="ignore"):
            want = _measure_for_requests(rate, tau, d / d_step, n_eff)
        measure = np.minimum(np.where(idle, mn, np.maximum(want, mn)), d)
        compressed = True
    changed = np.zeros(len(d), dtype=bool)
    changed[1:] = (rate[1:] != rate[:-1]) | (c[1:] != c[:-1])

    def settle_plan(measure):
        need = np.zeros(len(d))
        settle = np.zeros(len(d))
        backlog = 0.0                                 # fluid queue beyond the servers, requests
        for i in range(len(d)):
            net = rate[i] - c[i] * mu                 # growth of the backlog, requests/s
            if over[i]:
                backlog = min(float(cap), backlog + net * measure[i])
                continue
            if compressed and measure[i] < d[i]:
                drain = backlog / -net if net < 0 else (math.inf if backlog > 0 else 0.0)
                need[i] = max(sf * tau[i] if changed[i] else 0.0, drain)
                settle[i] = min(need[i], ms, d[i] - measure[i])
            backlog = max(0.0, backlog + net * (settle[i] + measure[i]))
        return need, settle

    need, settle = settle_plan(measure)
    if requests_per_interval is not None and max_requests is not None:
        limit = checks.positive("max_requests", max_requests)
        total = float((rate * (settle + measure)).sum())
        if total > limit:
            free = ~idle & (measure > mn)
            fixed = float((rate * settle).sum() + (rate * measure)[~free].sum())
            room = float((rate * measure)[free].sum())
            factor = max(limit - fixed, 0.0) / room if room > 0 else 0.0
            measure = np.where(free, np.minimum(np.maximum(measure * factor, mn), d), measure)
            need, settle = settle_plan(measure)
    out = pieces.copy()
    out["settle_s"] = settle
    out["measure_s"] = measure
    out["sim_s"] = settle + measure
    out["weight"] = d / measure
    out["relaxation_s"] = tau
    out["effective_requests"] = np.where(idle, 0.0, _effective_requests(rate, tau, measure))
    out["relaxed"] = ~over & (settle >= need * (1 - 1e-12))
    out["overloaded"] = over
    out["max_in_system"] = cap
    return out


# --------------------------------------------------------------------------- simulation: the engine

def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if len(values) == 0:
        return math.nan
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    i = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order][min(i, len(values) - 1)])


def _plan_graph(plan: pd.DataFrame, mu: float, warm: float, cap: int):
    """The compressed plan as a one-service analysis.topology.ServiceGraph (simulated seconds).

    A warm-up piece of ``warm`` seconds at the first piece's rate and servers comes first; after the
    last piece its rate and servers hold (the engine's drain keeps the load stationary until tagged
    requests left).
    """
    from analysis.topology import Arrivals, Exponential, RateSchedule, Service, ServiceGraph

    sim_s = plan["sim_s"].to_numpy(dtype=float)
    rates = plan["rate"].to_numpy(dtype=float)
    counts = plan["servers"].to_numpy(dtype=np.int64)
    ends = warm + np.cumsum(sim_s)
    if warm == 0:
        starts = np.concatenate([[0.0], ends[:-1]])
    else:
        starts = np.concatenate([[0.0, warm], ends[:-1]])
    all_rates = rates if warm == 0 else np.concatenate([[rates[0]], rates])
    all_counts = counts if warm == 0 else np.concatenate([[counts[0]], counts])
    all_ends = ends if warm == 0 else np.concatenate([[warm], ends])
    horizon = float(all_ends[-1])
    # one shift per change of the count: ciw replaces the whole fleet at every shift change (busy
    # servers finish their request while the new fleet starts), so equal counts must not be split
    schedule: list[tuple[int, float]] = []
    for c, e in zip(all_counts, all_ends):
        if schedule and schedule[-1][0] == int(c):
            schedule[-1] = (int(c), float(e))
        else:
            schedule.append((int(c), float(e)))
    schedule[-1] = (schedule[-1][0], 10.0 * horizon + 1.0)  # the last fleet holds through the drain
    service = Service("capacity", servers=max(1, int(counts.max())),
                      service_time=Exponential(rate=mu), schedule=schedule)
    arrivals = Arrivals("capacity", rate=RateSchedule(tuple(starts), tuple(all_rates)))
    return ServiceGraph(services=[service], arrivals=[arrivals], max_in_system=int(cap)), horizon


def _reduce_trial(rec: pd.DataFrame, plan_arrays: dict, warm: float, threshold: float,
                  q: float) -> dict:
    """One replication's records -> weighted sums per interval (weight: the request's piece's).

    Rejected and incomplete requests count as failures: wait = response = infinity.
    """
    sim_s, weights = plan_arrays["sim_s"], plan_arrays["weights"]
    interval, n_int = plan_arrays["interval"], plan_arrays["n_intervals"]
    arr = rec["arrival"].to_numpy(dtype=float)
    served = (rec["outcome"] == "served").to_numpy()
    wait = np.where(served, rec["wait"].to_numpy(dtype=float), np.inf)
    serv = np.where(served, rec["service_time"].to_numpy(dtype=float), 0.0)
    piece_ends = warm + np.cumsum(sim_s)
    piece = np.minimum(np.searchsorted(piece_ends, arr, side="right"), len(sim_s) - 1)
    measured = arr >= piece_ends[piece] - sim_s[piece] + plan_arrays["settle_s"][piece]
    arr, wait, serv = arr[measured], wait[measured], serv[measured]
    served, piece = served[measured], piece[measured]
    w = weights[piece]
    iv = interval[piece]
    resp = wait + serv
    order = np.lexsort((resp, iv))
    iv_s, resp_s, w_s = iv[order], resp[order], w[order]
    bounds = np.searchsorted(iv_s, np.arange(n_int + 1), side="left")
    return {
        "n": np.bincount(iv, weights=w, minlength=n_int),
        "exceed": np.bincount(iv, weights=w * (wait > threshold), minlength=n_int),
        "failed": np.bincount(iv, weights=w * ~served, minlength=n_int),
        "wait_sum": np.bincount(iv[served], weights=(w * wait)[served], minlength=n_int),
        "served": np.bincount(iv[served], weights=w[served], minlength=n_int),
        "busy_server_hours": float((w * serv).sum() / HOUR_S),
        "quantile": np.array([_sorted_weighted_quantile(resp_s[bounds[k]:bounds[k + 1]],
                                                        w_s[bounds[k]:bounds[k + 1]], q)
                              for k in range(n_int)]),
        "p99": _weighted_quantile(resp, w, 0.99),
        "sorted": (resp_s, w_s, bounds),
        "simulated_requests": int(len(arr)),
    }


def _sorted_weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """q-quantile of sorted values with weights (inverted CDF); NaN when empty."""
    if len(values) == 0:
        return math.nan
    cum = np.cumsum(weights)
    i = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[min(i, len(values) - 1)])


def _ratio_estimate(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled ratio sum(num)/sum(den) over replications (rows) per interval (column); half-width.

    The ratio (not the mean of per-replication ratios, which is biased when each replication holds
    only a few hundred requests of an interval) with the delta-method standard error across
    replications.
    """
    r = num.shape[0]
    tot_n, tot_d = num.sum(axis=0), den.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = np.where(tot_d > 0, tot_n / tot_d, np.nan)
    if r < 2:
        return est, np.full(num.shape[1], np.nan)
    resid = num - np.nan_to_num(est) * den
    mean_d = tot_d / r
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt((resid ** 2).sum(axis=0) / (r - 1) / r) / mean_d
    return est, np.where(tot_d > 0, special.stdtrit(r - 1, 0.975) * se, np.nan)


def _t_half_width(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    if len(v) < 2 or len(v) < len(values):
        return math.nan if len(v) < len(values) else 0.0
    return float(special.stdtrit(len(v) - 1, 0.975) * v.std(ddof=1) / math.sqrt(len(v)))


def simulate_policy(demand: pd.Series, servers, service_rate, slo: SLO, *, name: str = "policy",
                    replications: int = 5, seed: int = 0, segment_s: float | None = None,
                    precision: float = 0.25, max_requests: float = 2e6,
                    min_piece_s: float = 5.0, settle_factor: float = 3.0,
                    max_settle_s: float = 60.0, sim_warmup_s: float | None = None,
                    max_in_system: int | None = None, price_per_server_hour: float = 1.0,
                    warmup_s: float = 0.0, executor="auto",
                    max_workers: int | None = None, path: str = "auto") -> PolicyResult:
    """Simulation (analysis.simulation.run_trials) of a schedule against time-varying demand.

    Replay length. By default (segment_s=None) it follows from a precision target: every interval
    is replayed for long enough that the 95% half-width of its P(exceed) estimate at the SLO's
    target probability p0 (P(wait > t) <= p0, or the tail 1 - quantile of a response SLO),
    pooled over the replications, is ``precision`` x p0 (0.25: p0 = 5% is estimated +-1.25%).
    For a binomial proportion that takes n = 1.96^2 (1 - p0) / (p0 precision^2) independent
    requests (1,168 at 5% and 0.25), i.e. n / replications per replication; consecutive waits
    are correlated over the relaxation time tau, so an interval at rate lambda is measured for
    n / replications x (1/lambda + 2 tau) simulated seconds (at most its real length, at least
    min_piece_s): about 5 minutes per hour at 1.5 requests/s, and since tau >= 1/service_rate
    at least 2 n / (replications x service_rate) s whatever the rate (94 s per hour with 0.2 s
    services and 5 replications: ~72,000 requests per hour at 770 requests/s, more near
    saturation). When the whole plan would exceed ``max_requests``
    simulated requests per replication, every length is scaled down by one factor and a warning
    states the precision actually expected. Reported: summary ``engine`` (the path that ran),
    ``replay`` ("precision" or "segment_s"), ``precision_target``,
    ``replay_precision_median`` / ``replay_precision_max`` (expected relative half-widths over
    the intervals with demand and no overload), ``replay_capped``, ``replay_measure_s_mean``
    (simulated seconds measured per interval); per interval ``replay_measure_s`` and
    ``replay_precision``. ``segment_s`` (seconds per interval, the same for all) replaces the
    rule by a fixed compression (segment_s = the interval: no compression).

    The schedule is replayed time-compressed (see compressed_pieces and the module docstring) as a
    one-service analysis.topology.ServiceGraph: Exponential(rate=service_rate) service,
    piecewise-constant Poisson arrival rates and a server schedule. Per interval (pooled over
    replications, 95% half-widths from the spread across them): P(wait > t) (wait SLO), the
    response-time quantile of the SLO (or p99), mean wait, rejected fraction, and the verdicts
    ``meets_slo`` / ``confirmed`` / ``violated``; the analytic value of the same schedule is in
    ``<value>_analytic``. Overloaded intervals take the analytic flags (violations). Rejected or
    unfinished requests count as failures (wait = response = infinity). Per replication
    (``replications`` table): p99 response of all requests, mean wait, billed server-hours, idle
    server-hours (billed - simulated busy), rejected fraction, worst interval. summary: attainment
    with its band and the analytic attainment, ``analytic_in_ci`` (share of the intervals with an
    analytic value >= target/10 where it lies in the simulation's 95% interval: a consistency
    check of the replay against Erlang C), the per-replication metrics as means
    with 95% t-intervals (``*_lo``/``*_hi``), overloaded and unrelaxed intervals, the worst
    interval, cost.

    Seeds: analysis.simulation.replication_seeds(seed, replications), so results do not depend on
    the executor ("auto", "processes", "serial", a concurrent.futures.Executor or a dask Client).
    path: "auto" (the exact FIFO recursion of analysis.recursions: one station with a server
    schedule and an admission cap has one), "recursion" or "ciw" (see run_trials).
    max_in_system: cap on requests in the system (default: the largest fleet plus 2 s of its
    full-speed work, at least 50). sim_warmup_s: discarded lead-in at the first piece's rate and
    servers (default: that piece's replay, and at least its settle). warmup_s: instance warm-up,
    for the billed server-hours only, s (give the policy's own warmup_s; default 0).
    """
    if not isinstance(slo, SLO):
        raise ValueError(f"slo: expected an SLO, got {type(slo).__name__}")
    mu = checks.positive("service_rate", service_rate)
    slo.check_feasible(mu)
    reps = checks.integer("replications", replications, 1)
    seed = checks.integer("seed", seed, 0)
    price = checks.nonnegative("price_per_server_hour", price_per_server_hour)
    w_inst = _instance_warmup(servers, warmup_s)
    replay = _replay_rule(slo, reps, segment_s, precision, max_requests)
    plan = compressed_pieces(demand, servers, mu, segment_s=segment_s,
                             requests_per_interval=replay["requests_per_interval"],
                             max_requests=replay["max_requests"], min_piece_s=min_piece_s,
                             settle_factor=settle_factor, max_settle_s=max_settle_s,
                             max_in_system=max_in_system)
    dem = _rate_series(demand, "demand")
    cap = int(plan["max_in_system"].iloc[0])
    if sim_warmup_s is None:  # the first piece starts from an empty system: give it its settle too
        tau0 = float(plan["relaxation_s"].iloc[0])
        warm = float(plan["sim_s"].iloc[0])
        if math.isfinite(tau0):
            warm = max(warm, min(settle_factor * tau0, max_settle_s))
    else:
        warm = checks.nonnegative("sim_warmup_s", sim_warmup_s)
    expected = float((plan["rate"] * plan["sim_s"]).sum() + plan["rate"].iloc[0] * warm)
    if expected > 5e7:
        raise ValueError(f"segment_s={segment_s!r}, precision={precision!r}: the plan would "
                         f"simulate ~{expected:.3g} "
                         "requests per replication; compress more or shorten the window")
    if float(plan["rate"].max()) <= 0:
        raise ValueError("demand: every rate is zero; nothing to simulate")
    if int(plan["servers"].max()) == 0:
        raise ValueError("servers: the schedule never has a server on duty")
    from analysis.simulation import run_trials

    graph, horizon = _plan_graph(plan, mu, warm, cap)
    trials = run_trials(graph, replications=reps, horizon=horizon, warmup=warm, seed=seed,
                        executor=executor, max_workers=max_workers, allow_overload=True,
                        keep_records=True, progress=False, path=path)
    arrays = {"sim_s": plan["sim_s"].to_numpy(dtype=float),
              "weights": plan["weight"].to_numpy(dtype=float),
              "settle_s": plan["settle_s"].to_numpy(dtype=float),
              "interval": plan["interval"].to_numpy(dtype=np.int64), "n_intervals": len(dem)}
    threshold = slo.threshold_s if slo.kind == "wait_exceeds" else math.inf
    records = trials.records
    outs = [_reduce_trial(records[records["trial"] == r], arrays, warm, threshold, _response_q(slo))
            for r in range(reps)]
    pieces = plan[["interval", "start", "duration_s", "rate", "servers"]]
    exact = _evaluate_pieces(dem, pieces, mu, slo, name, price, _warmup_hours(plan, w_inst))
    relaxed = plan.groupby("interval")["relaxed"].all().to_numpy()
    replay.update(_replay_report(plan, replay, len(dem)))
    replay["engine"] = trials.path
    if replay["capped"]:
        warnings.warn(
            f"simulate_policy({name!r}): the replay for precision={precision:g} (95% half-width "
            f"of P(exceed) at the target {slo.probability:g}, relative) needs "
            f"~{replay['wanted_requests']:.3g} requests per replication; capped at "
            f"max_requests={replay['max_requests']:.3g}, so the expected relative half-width is "
            f"{replay['precision_median']:.2g} (median interval), {replay['precision_max']:.2g} "
            f"(worst). Raise max_requests or replications for the target.", stacklevel=2)
    return _simulation_result(dem, slo, name, outs, trials.params["seeds"], exact, relaxed,
                              replay)


_Z95 = 1.959963984540054   # standard normal 0.975 quantile


def _replay_rule(slo: SLO, reps: int, segment_s, precision, max_requests) -> dict:
    """How simulate_policy chooses the replay length (see its docstring)."""
    if segment_s is not None:
        checks.positive("segment_s", segment_s)
        return {"replay": "segment_s", "segment_s": float(segment_s), "precision_target": math.nan,
                "requests_per_interval": None, "max_requests": None, "p0": slo.probability,
                "replications": reps}
    prec = checks.positive("precision", precision)
    cap_n = checks.positive("max_requests", max_requests)
    p0 = slo.probability
    # a binomial proportion p0 from n independent requests: half-width z sqrt(p0 (1-p0) / n);
    # relative to p0: z sqrt((1 - p0) / (p0 n)) = precision, over all replications together
    n_total = _Z95 ** 2 * (1.0 - p0) / (p0 * prec ** 2)
    return {"replay": "precision", "segment_s": math.nan, "precision_target": prec,
            "requests_per_interval": n_total / reps, "max_requests": cap_n,
            "p0": slo.probability, "replications": reps}


def _replay_report(plan: pd.DataFrame, replay: dict, n_int: int) -> dict:
    """What the replay plan delivers: measured seconds and expected relative half-width per
    interval (over the intervals with a rate > 0 that are not overloaded)."""
    by = plan.groupby("interval", sort=True)
    n_eff = by["effective_requests"].sum().reindex(range(n_int), fill_value=0.0).to_numpy()
    measure = by["measure_s"].sum().reindex(range(n_int), fill_value=0.0).to_numpy()
    live = ((plan["rate"] > 0) & ~plan["overloaded"]).groupby(plan["interval"]).all()
    live = live.reindex(range(n_int), fill_value=False).to_numpy()
    reps = replay.get("replications", 1)
    p0 = replay["p0"]
    with np.errstate(divide="ignore"):
        prec = np.where(live, _Z95 * np.sqrt((1.0 - p0) / (p0 * reps * n_eff)), np.nan)
    wanted = replay["requests_per_interval"]
    capped = False
    wanted_requests = math.nan
    if wanted is not None:
        want_s = _measure_for_requests(plan["rate"].to_numpy(), plan["relaxation_s"].to_numpy(),
                                       plan["duration_s"].to_numpy() / plan["duration_s"]
                                       .groupby(plan["interval"]).transform("sum").to_numpy(),
                                       wanted)
        want_s = np.minimum(np.where(plan["rate"].to_numpy() > 0, want_s, 0.0),
                            plan["duration_s"].to_numpy())
        want_s = np.where(plan["overloaded"].to_numpy(), 0.0, want_s)
        wanted_requests = float((plan["rate"].to_numpy() * (want_s + plan["settle_s"])).sum())
        capped = bool((plan["measure_s"].to_numpy() < want_s * (1 - 1e-9) - 1e-12).any())
    ok = prec[np.isfinite(prec)] if live.any() else np.array([])
    return {"measure_s": measure, "interval_precision": prec, "capped": capped,
            "wanted_requests": wanted_requests,
            "measure_s_mean": float(measure.mean()),
            "precision_median": float(np.median(ok)) if ok.size else math.nan,
            "precision_max": float(ok.max()) if ok.size else math.nan}


def _pooled_quantiles(outs: list[dict], n_int: int, q: float) -> np.ndarray:
    """Per interval, the q-quantile of the response times of all replications together."""
    out = np.full(n_int, np.nan)
    for k in range(n_int):
        vals, wts = [], []
        for o in outs:
            resp, w, bounds = o["sorted"]
            vals.append(resp[bounds[k]:bounds[k + 1]])
            wts.append(w[bounds[k]:bounds[k + 1]])
        v = np.concatenate(vals)
        if len(v):
            order = np.argsort(v, kind="stable")
            out[k] = _sorted_weighted_quantile(v[order], np.concatenate(wts)[order], q)
    return out


def _simulation_result(dem: pd.Series, slo: SLO, name: str, outs: list[dict], seeds: list,
                       exact: PolicyResult, relaxed: np.ndarray, replay: dict) -> PolicyResult:
    """Pool the replications per interval, judge each interval, summarise (see simulate_policy)."""
    reps, n_int = len(outs), len(dem)
    col, tol = slo.value_column, slo.target_value * (1 + _REL_TOL)
    ex = exact.intervals
    over = ex["overloaded"].to_numpy()
    util = ex["utilisation"].to_numpy()
    exact_val = ex[col].to_numpy()
    billed = float(exact.summary["server_hours"])

    def stack(key):
        return np.vstack([o[key] for o in outs])
    p_exc, p_exc_half = _ratio_estimate(stack("exceed"), stack("n"))
    mean_wait, mean_wait_half = _ratio_estimate(stack("wait_sum"), stack("served"))
    rejected, _ = _ratio_estimate(stack("failed"), stack("n"))
    pooled_q = _pooled_quantiles(outs, n_int, _response_q(slo))
    per_rep_q = stack("quantile")
    q_half = np.full(n_int, np.nan)
    if reps >= 2:  # sectioning: spread of the per-replication quantiles
        finite = np.isfinite(per_rep_q).all(axis=0)
        sd = np.full(n_int, np.inf)
        sd[finite] = per_rep_q[:, finite].std(axis=0, ddof=1)
        q_half = special.stdtrit(reps - 1, 0.975) * sd / math.sqrt(reps)
    if slo.kind == "wait_exceeds":
        value, half = np.nan_to_num(p_exc), p_exc_half
    else:  # an interval without a simulated request has nothing to miss
        value, half = np.where(np.isnan(pooled_q), 0.0, pooled_q), q_half
    meets = ~over & (value <= tol)
    if reps >= 2:
        wide = np.nan_to_num(half, nan=np.inf)
        with np.errstate(invalid="ignore"):   # inf - inf (an unbounded interval): not confirmed
            confirmed = ~over & (value + wide <= tol)
            violated = over | (value - wide > tol)
    else:
        confirmed, violated = meets, ~meets

    rows = []
    for r, o in enumerate(outs):
        if slo.kind == "wait_exceeds":
            rep_val = o["exceed"] / np.where(o["n"] > 0, o["n"], 1.0)
        else:
            rep_val = np.nan_to_num(o["quantile"])
        worst = int(np.lexsort((-util, -np.where(over, np.inf, rep_val)))[0])
        total, served = float(o["n"].sum()), float(o["served"].sum())
        rows.append({
            "replication": r, "seed": seeds[r], "p99_response_s": o["p99"],
            "mean_wait_s": float(o["wait_sum"].sum() / served) if served else 0.0,
            "server_hours": billed, "idle_server_hours": billed - o["busy_server_hours"],
            "rejected_fraction": float(o["failed"].sum() / total) if total else 0.0,
            "worst_interval": dem.index[worst], "worst_value": float(rep_val[worst]),
            "simulated_requests": o["simulated_requests"],
        })
    reps_df = pd.DataFrame(rows)

    shown = np.where(over, exact_val, value)
    with np.errstate(invalid="ignore"):      # overloaded hours: value/half are not finite, exact shown
        lo, hi = value - half, value + half
    iv = pd.DataFrame({
        "rate": dem.to_numpy(), "servers": ex["servers"].to_numpy(), "utilisation": util,
        "overloaded": over, "relaxed": relaxed, col: shown,
        f"{col}_lo": np.where(over, exact_val, lo),
        f"{col}_hi": np.where(over, exact_val, hi),
        f"{col}_analytic": exact_val,
    }, index=dem.index)
    if slo.kind == "wait_exceeds":
        iv["response_quantile_s"] = pooled_q
    iv["mean_wait_s"] = mean_wait
    iv["mean_wait_s_lo"] = mean_wait - mean_wait_half
    iv["mean_wait_s_hi"] = mean_wait + mean_wait_half
    iv["rejected_fraction"] = rejected
    iv["replay_measure_s"] = replay["measure_s"]
    iv["replay_precision"] = replay["interval_precision"]
    iv["meets_slo"] = meets
    iv["confirmed"] = confirmed
    iv["violated"] = violated

    worst = int(np.lexsort((-util, -np.where(over, np.inf, value)))[0])
    # agreement with Erlang C where the verdict is in question (analytic value >= target / 10):
    # far below the target exceedances are rare bursts and a t-interval from 5 replications is
    # often [0, 0]
    check = ~over & np.isfinite(half) & (exact_val >= 0.1 * slo.target_value)
    in_ci = np.abs(exact_val[check] - value[check]) <= half[check] * (1 + 1e-9) + 1e-12
    summary = {"intervals": n_int, "replications": reps,
               "attainment": float(meets.mean()),
               "attainment_lo": float(confirmed.mean()) if reps >= 2 else math.nan,
               "attainment_hi": float(1.0 - violated.mean()) if reps >= 2 else math.nan,
               "attainment_analytic": float(exact.summary["attainment"]),
               "analytic_in_ci": float(in_ci.mean()) if check.any() else math.nan}
    for m in ("p99_response_s", "mean_wait_s", "idle_server_hours", "rejected_fraction"):
        v = reps_df[m].to_numpy(dtype=float)
        mean, hw = float(v.mean()), _t_half_width(v)
        summary[m] = mean
        summary[f"{m}_lo"] = mean - hw if math.isfinite(hw) else math.nan
        summary[f"{m}_hi"] = mean + hw if math.isfinite(hw) else math.nan
    summary.update({
        "overloaded_intervals": int(over.sum()),
        "unrelaxed_intervals": int((~relaxed & ~over).sum()),
        "worst_interval": dem.index[worst], "worst_value": float(shown[worst]),
        "worst_utilisation": float(util[worst]),
        "simulated_requests": int(reps_df["simulated_requests"].sum()),
        "engine": replay["engine"], "replay": replay["replay"], "segment_s": replay["segment_s"],
        "precision_target": replay["precision_target"],
        "replay_precision_median": replay["precision_median"],
        "replay_precision_max": replay["precision_max"],
        "replay_capped": replay["capped"], "replay_measure_s_mean": replay["measure_s_mean"],
    })
    for k in ("serving_server_hours", "warmup_server_hours", "server_hours", "cost"):
        summary[k] = float(exact.summary[k])
    return PolicyResult(name=name, method="simulation", slo=slo, intervals=iv,
                        summary=pd.Series(summary), replications=reps_df)


# --------------------------------------------------------------------------------------- comparison

def policy_frontier(results) -> pd.DataFrame:
    """One row per policy: cost, SLO attainment with its 95% band, p99, idle hours, the worst hour.

    results: PolicyResults (a sequence or a name -> result mapping) evaluated with the same SLO.
    Columns: method, server_hours (billed, incl. warm-up), cost (currency), idle_server_hours,
    attainment / attainment_lo / attainment_hi, attainment_analytic, p99_response_s (_lo, _hi),
    overloaded_intervals, worst_interval, worst_value, replications. Simulated results carry the
    attainment band and t-intervals from their replications and the analytic attainment of the
    same schedule; analytic results are exact (band = value). Sorted by cost.
    """
    if isinstance(results, Mapping):
        items = list(results.items())
    elif isinstance(results, PolicyResult):
        items = [(results.name, results)]
    else:
        items = [(getattr(r, "name", None), r) for r in results]
    if not items:
        raise ValueError("results: no PolicyResult given")
    rows = []
    slos = set()
    for key, r in items:
        if not isinstance(r, PolicyResult):
            raise ValueError(f"results[{key!r}]: expected a PolicyResult, got {type(r).__name__}")
        slos.add(r.slo)
        s = r.summary
        row = {"policy": key if key is not None else r.name, "method": r.method,
               "server_hours": s["server_hours"], "cost": s["cost"],
               "idle_server_hours": s["idle_server_hours"]}
        for m in ("attainment", "p99_response_s"):
            row[m] = s[m]
            row[f"{m}_lo"] = s.get(f"{m}_lo", s[m])
            row[f"{m}_hi"] = s.get(f"{m}_hi", s[m])
        row["attainment_analytic"] = s.get("attainment_analytic", s["attainment"])
        row.update({"overloaded_intervals": s["overloaded_intervals"],
                    "worst_interval": s["worst_interval"], "worst_value": s["worst_value"],
                    "replications": int(s.get("replications", 0))})
        rows.append(row)
    if len(slos) > 1:
        raise ValueError(f"results: evaluated against different SLOs ({[x.label() for x in slos]})")
    out = pd.DataFrame(rows)
    dup = out["policy"][out["policy"].duplicated()]
    if len(dup):
        raise ValueError(f"results: duplicated policy name {dup.iloc[0]!r}")
    return out.sort_values(["cost", "policy"]).set_index("policy")


def _check_frontier(frontier) -> pd.DataFrame:
    need = {"cost", "attainment", "attainment_lo", "attainment_hi", "server_hours"}
    if not isinstance(frontier, pd.DataFrame) or not need <= set(frontier.columns):
        raise ValueError("frontier: expected the DataFrame returned by policy_frontier")
    return frontier


def savings_against(frontier: pd.DataFrame, baseline: str, *, by: str = "attainment",
                    attainment_tolerance: float = 0.0) -> pd.DataFrame:
    """Every policy's saving against ``baseline``: cost and server-hours saved (and %), attainment.

    equal_or_better: the policy's ``by`` column (attainment, or e.g. attainment_analytic) is >= the
    baseline's minus attainment_tolerance; significantly_worse: the policy's attainment band lies
    wholly below the baseline's.
    """
    f = _check_frontier(frontier)
    if baseline not in f.index:
        raise ValueError(f"baseline={baseline!r}: not in the frontier (policies: {list(f.index)})")
    if by not in f.columns:
        raise ValueError(f"by={by!r}: not a frontier column (e.g. attainment, attainment_analytic)")
    tol = checks.nonnegative("attainment_tolerance", attainment_tolerance)
    b = f.loc[baseline]
    out = pd.DataFrame({
        "cost": f["cost"],
        "saving": b["cost"] - f["cost"],
        "saving_pct": 100.0 * (b["cost"] - f["cost"]) / b["cost"] if b["cost"] > 0 else np.nan,
        "server_hours_saved": b["server_hours"] - f["server_hours"],
        "attainment": f[by],
        "baseline_attainment": b[by],
        "equal_or_better": f[by] >= b[by] - tol - 1e-12,
        "significantly_worse": f["attainment_hi"] < b["attainment_lo"],
    }, index=f.index)
    return out.drop(index=baseline)


def cheapest_at_equal_slo(frontier: pd.DataFrame, baseline: str, *,
                          candidates: Sequence[str] | None = None, by: str = "attainment",
                          attainment_tolerance: float = 0.0) -> pd.Series:
    """The cheapest policy (of ``candidates``, default all) at equal SLO: attainment >= the baseline's
    (within ``attainment_tolerance``) and not significantly worse (see :func:`cheapest_policy_meeting_slo`).

    Returns a Series (policy, baseline, cost, saving, saving_pct, attainment, baseline_attainment,
    ...); ValueError when none qualifies.
    """
    s = savings_against(frontier, baseline, by=by, attainment_tolerance=attainment_tolerance)
    if candidates is not None:
        unknown = [c for c in candidates if c not in frontier.index]
        if unknown:
            raise ValueError(f"candidates: {unknown} not in the frontier "
                             f"(policies: {list(frontier.index)})")
        s = s[s.index.isin(list(candidates))]
    ok = s[s["equal_or_better"] & ~s["significantly_worse"]]
    if ok.empty:
        raise ValueError(f"no policy reaches the {by} of baseline={baseline!r} "
                         f"({frontier.loc[baseline, by]:.3f})")
    best = ok.sort_values(["cost", "saving"]).iloc[0]
    return pd.concat([pd.Series({"policy": best.name, "baseline": baseline}), best])


# ------------------------------------------------------------------------------------ conclusion rule
@dataclass(frozen=True)
class PolicyChoice:
    """What a savings table allows one to conclude about "the cheapest policy at equal SLO".

    policy: the chosen policy, or None when no policy qualifies; saving_pct: its saving against the
    baseline (% of the baseline's cost), None without a choice; reason: one sentence saying why;
    excluded: policy -> why it does not count as "equal SLO" (or is not cheaper).
    """

    policy: str | None
    saving_pct: float | None
    reason: str
    excluded: dict[str, str]


def cheapest_policy_meeting_slo(table: pd.DataFrame, baseline: str = "the baseline") -> PolicyChoice:
    """The cheapest policy whose SLO attainment is equal to the baseline's, by a rule the table can check.

    table: the DataFrame of :func:`savings_against` (one row per policy, baseline excluded). A policy is at
    equal SLO when both hold: ``equal_or_better`` (attainment within the tolerance of the baseline's) and
    not ``significantly_worse`` (its attainment band does not lie wholly below the baseline's band). Of
    those, the one with the lowest cost is chosen if it is cheaper than the baseline (saving_pct > 0).
    baseline: the baseline's name, for the sentences.
    """
    need = {"cost", "saving_pct", "attainment", "baseline_attainment", "equal_or_better", "significantly_worse"}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        missing = sorted(need - set(getattr(table, "columns", [])))
        raise ValueError(f"table: expected the DataFrame returned by savings_against (missing columns {missing})")
    excluded: dict[str, str] = {}
    qualifying = []
    for name, row in table.iterrows():
        att, base = 100 * float(row["attainment"]), 100 * float(row["baseline_attainment"])
        if bool(row["significantly_worse"]):
            excluded[name] = (f"its attainment ({att:.1f}% of hours) is significantly worse than {baseline}'s "
                              f"({base:.1f}%): its 95% band lies wholly below")
        elif not bool(row["equal_or_better"]):
            excluded[name] = (f"its attainment ({att:.1f}% of hours) is below {baseline}'s ({base:.1f}%) by more "
                              "than the tolerance")
        elif not float(row["saving_pct"]) > 0:
            excluded[name] = f"it is not cheaper than {baseline} ({float(row['saving_pct']):+.1f}% saving)"
        else:
            qualifying.append(name)
    if not qualifying:
        why = "; ".join(f"{k}: {v}" for k, v in excluded.items()) or "the table lists no other policy"
        return PolicyChoice(None, None, f"no policy is cheaper than {baseline} at equal SLO ({why})", excluded)
    best = min(qualifying, key=lambda k: (float(table.loc[k, "cost"]), str(k)))
    row = table.loc[best]
    reason = (f"{best} is the cheapest policy whose attainment ({100 * float(row['attainment']):.1f}% of hours) "
              f"is within the tolerance of {baseline}'s ({100 * float(row['baseline_attainment']):.1f}%) and not "
              f"significantly worse, saving {float(row['saving_pct']):.1f}% of {baseline}'s cost")
    return PolicyChoice(str(best), float(row["saving_pct"]), reason, excluded)
