"""Replication lag, quorum staleness (PBS) and overselling in a flash sale.

Times in seconds, rates in 1/s (writes/s, orders/s), probabilities in [0, 1].

- Replication lag as a queue: a replica applies writes (Poisson, ``write_rate``) one at a time at
  ``apply_rate`` (exponential apply times): M/M/1, lag = sojourn ~ Exponential(apply_rate - write_rate).
  :func:`lag_quantile`, :func:`simulate_lag` (vectorised Lindley recursion), :func:`query_rate_series`
  (the MongoDB request-rate series of the Microsoft cloud-monitoring data, or a deterministic synthetic
  stand-in).
- Quorum staleness (Dynamo N, R, W; the WARS model of Bailis et al., VLDB 2012): :class:`WARS` delay
  distributions, :func:`quorum_trials` (vectorised Monte Carlo), :func:`consistency_probability`,
  :func:`t_visibility`, :func:`consistency_closed_form`; the published production fits
  :data:`PBS_FITS` and published results :data:`PBS_PUBLISHED`.
- Overselling: ``stock`` units, Poisson orders per region, every region sees the others' sales
  ``lag_s`` late: :func:`oversell_closed_form` (exact mean and probability) and
  :func:`simulate_sale` (direct event-by-event simulation of the same sale). The lag may be a
  distribution (one draw per sale), e.g. section 1's :func:`replication_lag_distribution`: the
  numbers are then expectations over the lag (:func:`oversell_exponential_lag`: exact for an
  exponential lag).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from analysis._lazy import lazy_module

integrate = lazy_module("scipy.integrate")  # imported on first use
stats = lazy_module("scipy.stats")    # imported on first use (about 1 CPU-s)

from . import checks, workloads
from .topology import Deterministic, Dist, Exponential, Mixture, as_dist

__all__ = [
    "Pareto", "pareto_exponential", "WARS", "PBS_FITS", "PBS_PUBLISHED", "QuorumTrials",
    "check_quorum", "quorum_trials", "consistency_probability", "t_visibility", "consistency_closed_form",
    "lag_mean", "lag_quantile", "simulate_lag", "simulate_lag_schedule", "query_rate_series",
    "synthetic_query_rate", "oversell_closed_form", "oversell_probability", "oversell_expected",
    "simulate_sale", "mitigated_oversell", "oversell_exponential_lag",
    "replication_lag_distribution",
]


# ============================================================================================ distributions
@dataclass(frozen=True, init=False)
class Pareto(Dist):
    """Pareto (type I): ``Pareto(scale=x_m, shape=alpha)``, x_m in seconds (the minimum), P(X > x) =
    (x_m / x)^alpha. The mean (x_m alpha / (alpha - 1)) is infinite for alpha <= 1."""
    scale: float
    shape: float

    def __init__(self, *, scale, shape):
        object.__setattr__(self, "scale", checks.positive("Pareto scale", scale))
        object.__setattr__(self, "shape", checks.positive("Pareto shape", shape))

    @property
    def mean(self) -> float:
        return self.scale * self.shape / (self.shape - 1) if self.shape > 1 else math.inf

    @property
    def scv(self) -> float:
        a = self.shape
        return 1.0 / (a * (a - 2)) if a > 2 else math.inf

    def _sample(self, rng, size):
        # inverse transform: x_m / U^(1/alpha), U uniform on (0, 1]
        return self.scale / (1.0 - rng.random(size)) ** (1.0 / self.shape)

    def to_ciw(self):
        raise ValueError("Pareto is used by the vectorised Monte Carlo of analysis.consistency, not by ciw")

    def scipy(self):
        return stats.pareto(b=self.shape, scale=self.scale)


def pareto_exponential(p_pareto: float, scale_s: float, shape: float, exp_rate: float) -> Mixture:
    """With probability ``p_pareto`` a Pareto(scale_s s, shape), else Exponential(rate=exp_rate 1/s):
    the form PBS fitted to production latencies."""
    p = checks.unit_interval("p_pareto", p_pareto)
    return Mixture((Pareto(scale=scale_s, shape=shape), Exponential(rate=exp_rate)), (p, 1.0 - p))


@dataclass(frozen=True)
class WARS:
    """One-way delays of the WARS model (seconds), each replica drawn independently.

    write: coordinator -> replica (write applied on arrival); ack: replica -> coordinator;
    read: coordinator -> replica (read request); response: replica -> coordinator.
    wan_delay_s: extra one-way delay (s) to every replica but the operation's local one (picked
    uniformly per operation, independently for the write and the read), as PBS's WAN scenario.
    """
    write: Dist
    ack: Dist
    read: Dist
    response: Dist
    wan_delay_s: float = 0.0

    def __post_init__(self):
        for name in ("write", "ack", "read", "response"):
            as_dist(f"WARS {name}", getattr(self, name), allow_number=False)
        checks.nonnegative("wan_delay_s", self.wan_delay_s)

    @classmethod
    def symmetric(cls, write: Dist, other: Dist, wan_delay_s: float = 0.0) -> "WARS":
        """``write`` for W, ``other`` for A, R and S."""
        return cls(write, other, other, other, wan_delay_s)


_MS = 1e-3
#: PBS production fits (Bailis et al., VLDB 2012, Table 3), converted to seconds: the paper gives
#: Pareto x_m in ms and exponential lambda in 1/ms.
_LNKD_SSD = pareto_exponential(0.9122, 0.235 * _MS, 10.0, 1.66 / _MS)
_LNKD_DISK_W = pareto_exponential(0.38, 1.05 * _MS, 1.51, 0.183 / _MS)
_YMMR_W = pareto_exponential(0.939, 3.0 * _MS, 3.35, 0.0028 / _MS)
_YMMR_ARS = pareto_exponential(0.982, 1.5 * _MS, 3.8, 0.0217 / _MS)
PBS_FITS: dict[str, WARS] = {
    "LNKD-SSD": WARS.symmetric(_LNKD_SSD, _LNKD_SSD),
    "LNKD-DISK": WARS.symmetric(_LNKD_DISK_W, _LNKD_SSD),
    "YMMR": WARS.symmetric(_YMMR_W, _YMMR_ARS),
    "WAN": WARS.symmetric(_LNKD_DISK_W, _LNKD_SSD, wan_delay_s=75 * _MS),
}

#: Published PBS results (N = 3), seconds and probabilities. ``t_visibility``: (fit, R, W) -> t at which
#: P(consistent) reaches 99.9% (Table 4, from 50,000 reads); ``p_consistent``: (fit, R, W, t) ->
#: probability (Section 5.4, from 10,000 writes); ``latency_999``: (fit, R, W) -> (read, write) 99.9th
#: percentile latency (Table 4, 1M operations). Values as printed in the paper (its LaTeX source:
#: github.com/pbailis/pbs-vldb-historical-paper-material, writeup/ernst.tex), ms converted to s.
PBS_PUBLISHED = {
    "t_visibility": {
        ("LNKD-SSD", 1, 1): 1.85 * _MS, ("LNKD-SSD", 1, 2): 1.79 * _MS, ("LNKD-SSD", 2, 1): 0.0,
        ("LNKD-DISK", 1, 1): 45.5 * _MS, ("LNKD-DISK", 1, 2): 43.3 * _MS, ("LNKD-DISK", 2, 1): 13.6 * _MS,
        ("YMMR", 1, 1): 1364.0 * _MS, ("YMMR", 1, 2): 1352.0 * _MS, ("YMMR", 2, 1): 202.0 * _MS,
        ("WAN", 1, 1): 113.0 * _MS, ("WAN", 2, 1): 30.2 * _MS,
    },
    "t_visibility_reads": 50_000,
    "p_consistent": {
        ("YMMR", 1, 1, 0.0): 0.893, ("LNKD-SSD", 1, 1, 0.0): 0.975, ("LNKD-DISK", 1, 1, 0.0): 0.439,
        ("YMMR", 1, 1, 0.010): 0.939, ("LNKD-SSD", 1, 1, 0.010): 1.0, ("LNKD-DISK", 1, 1, 0.010): 0.925,
    },
    "p_consistent_writes": 10_000,
    "latency_999": {
        ("LNKD-SSD", 1, 1): (0.66 * _MS, 0.66 * _MS), ("LNKD-DISK", 1, 1): (0.66 * _MS, 10.99 * _MS),
        ("LNKD-DISK", 1, 2): (0.65 * _MS, 20.97 * _MS), ("YMMR", 1, 1): (5.58 * _MS, 10.83 * _MS),
        ("YMMR", 2, 1): (32.6 * _MS, 10.73 * _MS), ("YMMR", 1, 2): (5.61 * _MS, 427.12 * _MS),
    },
}


# ============================================================================================ quorum staleness
@dataclass(frozen=True)
class QuorumTrials:
    """Per-trial results of :func:`quorum_trials` (arrays of length ``trials``, seconds).

    visible_after: the least t >= 0 at which a read starting t after the write commits is consistent
    (0: consistent immediately); write_latency: commit time (W-th fastest write + ack);
    read_latency: R-th fastest read + response.
    """
    n: int
    r: int
    w: int
    visible_after: np.ndarray
    write_latency: np.ndarray
    read_latency: np.ndarray

    @property
    def trials(self) -> int:
        return int(self.visible_after.size)


def check_quorum(n, r, w) -> tuple[int, int, int]:
    """Check replicas ``n`` >= 1, read quorum 1 <= ``r`` <= n and write quorum 1 <= ``w`` <= n."""
    n = checks.integer("n", n, 1)
    r = checks.integer("r", r, 1)
    w = checks.integer("w", w, 1)
    if r > n:
        raise ValueError(f"r={r}: the read quorum cannot exceed the n={n} replicas")
    if w > n:
        raise ValueError(f"w={w}: the write quorum cannot exceed the n={n} replicas")
    return n, r, w


def quorum_trials(n: int, r: int, w: int, delays: WARS, trials: int = 1_000_000, seed: int = 0,
                  chunk: int = 250_000) -> QuorumTrials:
    """Vectorised Monte Carlo of the WARS model: one write to ``n`` replicas, commit after ``w`` acks,
    then a read sent to all ``n`` replicas that returns the newest of the first ``r`` responses.

    Replica i applies the write at W[i]; commit at c = w-th smallest W[i] + A[i]. A read starting at
    c + t reaches replica i at c + t + R[i]; it is consistent when one of the r replicas with the
    smallest R[i] + S[i] has W[i] <= c + t + R[i]. So each trial gives the whole curve at once:
    visible_after = min over those r replicas of max(0, W[i] - c - R[i]), and P(consistent at t) =
    P(visible_after <= t). Draws are independent of ``chunk`` (the memory bound) only for a fixed
    chunk; seed -> same numbers.
    """
    n, r, w = check_quorum(n, r, w)
    if not isinstance(delays, WARS):
        raise ValueError(f"delays must be a consistency.WARS, got {type(delays).__name__}")
    trials = checks.integer("trials", trials, 1)
    chunk = checks.integer("chunk", chunk, 1)
    seed = checks.integer("seed", seed, 0)
    rng = np.random.default_rng(seed)
    vis, wl, rl = [], [], []
    rows_idx = None
    for start in range(0, trials, chunk):
        m = min(chunk, trials - start)
        W = delays.write.sample(rng, m * n).reshape(m, n)
        A = delays.ack.sample(rng, m * n).reshape(m, n)
        R = delays.read.sample(rng, m * n).reshape(m, n)
        S = delays.response.sample(rng, m * n).reshape(m, n)
        if delays.wan_delay_s > 0 and n > 1:
            remote_w = np.arange(n) != rng.integers(0, n, m)[:, None]
            remote_r = np.arange(n) != rng.integers(0, n, m)[:, None]
            W = W + delays.wan_delay_s * remote_w
            A = A + delays.wan_delay_s * remote_w
            R = R + delays.wan_delay_s * remote_r
            S = S + delays.wan_delay_s * remote_r
        wa = W + A
        commit = np.partition(wa, w - 1, axis=1)[:, w - 1]
        rs = R + S
        first = np.argpartition(rs, r - 1, axis=1)[:, :r] if r < n else np.broadcast_to(np.arange(n), (m, n))
        rows_idx = np.arange(m)[:, None]
        gap = W[rows_idx, first] - commit[:, None] - R[rows_idx, first]
        vis.append(np.maximum(gap.min(axis=1), 0.0))
        wl.append(commit)
        rl.append(np.partition(rs, r - 1, axis=1)[:, r - 1])
    return QuorumTrials(n, r, w, np.concatenate(vis), np.concatenate(wl), np.concatenate(rl))


def consistency_probability(result: QuorumTrials, t) -> np.ndarray | float:
    """P(a read starting ``t`` s after commit is consistent) (float or array), with its Monte Carlo
    estimate from ``result``."""
    t_arr = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(t_arr)) or np.any(t_arr < 0):
        raise ValueError(f"t={checks.show(t)}: must be >= 0 seconds")
    srt = np.sort(result.visible_after)
    p = np.searchsorted(srt, t_arr, side="right") / srt.size
    return p[()] if p.ndim == 0 else p


def t_visibility(result: QuorumTrials, p: float = 0.999, confidence: float = 0.95) -> dict:
    """The least t (s) with P(consistent at t) >= ``p``: the ``p``-quantile of visible_after, with a
    distribution-free ``confidence`` interval from binomial order statistics."""
    p = checks.open_unit("p", p)
    confidence = checks.open_unit("confidence", confidence)
    x = np.sort(result.visible_after)
    k = x.size
    z = -_special().ndtri((1 - confidence) / 2)   # = stats.norm.isf, without importing scipy.stats (~1 CPU-s)
    half = z * math.sqrt(p * (1 - p) / k)
    idx = lambda q: min(max(int(math.ceil(q * k)) - 1, 0), k - 1)  # noqa: E731
    return {"t": float(x[idx(p)]), "ci_low": float(x[idx(p - half)]), "ci_high": float(x[idx(p + half)]),
            "p": p, "trials": k}


def consistency_closed_form(n: int, r: int, w: int, t: float = 0.0, write_rate: float | None = None) -> float:
    """P(consistent at t) when acks, read requests and responses are instantaneous (A = R = S = 0).

    At t = 0, for any write-delay distribution: 1 - C(n-w, r) / C(n, r) (the read set misses every
    replica that had the write at commit; the probabilistic-quorum formula). For t > 0 with
    exponential write delays (``write_rate`` 1/s) the n - w replicas still missing the write get it
    after independent Exponential(write_rate) residual times (memoryless), so
    P = 1 - C(n-w, r) / C(n, r) * exp(-r * write_rate * t). Strict quorums (r + w > n) give 1.
    """
    n, r, w = check_quorum(n, r, w)
    t = checks.nonnegative("t", t)
    miss = math.comb(n - w, r) / math.comb(n, r)
    if t > 0:
        if write_rate is None:
            raise ValueError("write_rate is needed for t > 0 (the closed form assumes exponential write delays)")
        miss *= math.exp(-r * checks.positive("write_rate", write_rate) * t)
    return 1.0 - miss


# ============================================================================================ replication lag
def _check_stable(write_rate, apply_rate) -> tuple[float, float]:
    lam = checks.positive("write_rate", write_rate)
    mu = checks.positive("apply_rate", apply_rate)
    if lam >= mu:
        raise ValueError(f"write_rate={lam!r}: must be below apply_rate={mu!r} writes/s for a stationary lag "
                         "(the backlog grows without bound otherwise)")
    return lam, mu


def lag_mean(write_rate: float, apply_rate: float) -> float:
    """Mean replication lag (s) of the M/M/1 apply queue: 1 / (apply_rate - write_rate)."""
    lam, mu = _check_stable(write_rate, apply_rate)
    return 1.0 / (mu - lam)


def lag_quantile(write_rate: float, apply_rate: float, q: float = 0.99) -> float:
    """``q``-quantile of the replication lag (s): -ln(1 - q) / (apply_rate - write_rate)."""
    lam, mu = _check_stable(write_rate, apply_rate)
    q = checks.open_unit("q", q)
    return -math.log1p(-q) / (mu - lam)


def _lindley(arrivals: np.ndarray, services: np.ndarray) -> np.ndarray:
    """Sojourn times (s) of a FIFO single server, vectorised: wait_k = X_k - min(0, min_{j<=k} X_j) with
    X the partial sums of service_{k-1} - interarrival_k."""
    inter = np.diff(arrivals, prepend=arrivals[0])
    steps = np.concatenate([[0.0], services[:-1] - inter[1:]])
    x = np.cumsum(steps)
    wait = x - np.minimum(np.minimum.accumulate(x), 0.0)
    return wait + services


def simulate_lag(write_rate: float, apply_rate: float, writes: int = 200_000, seed: int = 0,
                 warmup: float = 0.1) -> np.ndarray:
    """Replication lags (s) of ``writes`` Poisson writes through the M/M/1 apply queue (exact
    Lindley recursion), the first ``warmup`` fraction dropped."""
    lam, mu = _check_stable(write_rate, apply_rate)
    writes = checks.integer("writes", writes, 2)
    warmup = checks.unit_interval("warmup", warmup)
    rng = np.random.default_rng(checks.integer("seed", seed, 0))
    arrivals = np.cumsum(rng.exponential(1 / lam, writes))
    lag = _lindley(arrivals, rng.exponential(1 / mu, writes))
    return lag[int(warmup * writes):]


def simulate_lag_schedule(rates, interval_s: float, apply_rate: float, seed: int = 0) -> pd.DataFrame:
    """Lag through the apply queue under a piecewise-constant write rate (``rates`` in writes/s, one per
    ``interval_s`` seconds; an overloaded interval builds a backlog that later intervals drain).
    Returns one row per interval: write_rate, writes, mean_lag, p99_lag (s; NaN without writes)."""
    rates = np.asarray(rates, dtype=float)
    if rates.ndim != 1 or rates.size == 0 or not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError(f"rates={checks.show(rates)}: must be a non-empty 1-d array of rates >= 0 writes/s")
    interval_s = checks.positive("interval_s", interval_s)
    mu = checks.positive("apply_rate", apply_rate)
    rng = np.random.default_rng(checks.integer("seed", seed, 0))
    counts = rng.poisson(rates * interval_s)
    which = np.repeat(np.arange(rates.size), counts)
    arrivals = (which + rng.random(which.size)) * interval_s
    order = np.argsort(arrivals, kind="stable")
    arrivals, which = arrivals[order], which[order]
    if arrivals.size == 0:
        lag = np.empty(0)
    else:
        lag = _lindley(arrivals, rng.exponential(1 / mu, arrivals.size))
    frame = pd.DataFrame({"interval": which, "lag": lag})
    agg = frame.groupby("interval")["lag"].agg(mean_lag="mean", p99_lag=lambda s: s.quantile(0.99))
    out = pd.DataFrame({"write_rate": rates, "writes": counts}).join(agg)
    return out


# ============================================================================================ data
def synthetic_query_rate(seed: int = 2018, periods: int = 15840, base_rate: float = 6000.0) -> pd.Series:
    """Deterministic synthetic stand-in for the MongoDB query-rate series (requests/s, 1-min steps from
    2018-04-25 UTC): a daily cycle (+-25 %), a weekly dip, AR(1) log-noise; same seed -> same numbers."""
    seed = checks.integer("seed", seed, 0)
    periods = checks.integer("periods", periods, 2)
    base_rate = checks.positive("base_rate", base_rate)
    index = pd.date_range("2018-04-25", periods=periods, freq="min", tz="UTC", name="timestamp")
    hod = index.hour.to_numpy() + index.minute.to_numpy() / 60
    daily = 1 + 0.25 * np.cos(2 * np.pi * (hod - 17) / 24)
    weekly = np.where(index.day_of_week.to_numpy() >= 5, 0.85, 1.0)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal(periods) * 0.03
    noise = np.empty(periods)
    noise[0] = eps[0]
    for i in range(1, periods):
        noise[i] = 0.9 * noise[i - 1] + eps[i]
    return pd.Series(np.round(base_rate * daily * weekly * np.exp(noise), 4), index=index, name="value")


def query_rate_series(data_dir: str = "") -> tuple[pd.Series, str, list]:
    """The MongoDB application request-rate series (dataset ``mongodb-app-rps``, 1-min, taken as
    requests/s) via ``workloads.demand``: the verified real file, else the committed synthetic default
    ``data/synthetic/mongodb_query_rate.csv`` (written by ``python -m analysis synthetic`` from
    :func:`synthetic_query_rate`, seed 2018, checked against ``data/synthetic/SHA256SUMS``).

    Returns (series, data_source label, files read). A location the user named (``data_dir`` or
    ``KIT_DATA_DIR``) must hold the file: FileNotFoundError naming the expected path otherwise (the
    synthetic default serves only the default lookup).
    """
    work = workloads.demand("mongodb-app-rps", data_dir)
    return work.series.astype(float), work.label, list(work.files)


# ============================================================================================ overselling
def _check_rates(region_rates) -> np.ndarray:
    rates = np.atleast_1d(np.asarray(region_rates, dtype=float))
    if rates.ndim != 1 or rates.size == 0 or not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError(f"region_rates={checks.show(region_rates)}: must be one or more order rates > 0 "
                         "orders/s (one per region)")
    return rates


def _check_sale(region_rates, lag_s) -> tuple[np.ndarray, float]:
    return _check_rates(region_rates), checks.nonnegative("lag_s", lag_s)


def _lag_spec(lag_s) -> Dist | float:
    """A constant lag (number of seconds >= 0) or a lag distribution (a Dist of analysis.topology)."""
    if isinstance(lag_s, Dist):
        return lag_s
    if isinstance(lag_s, (int, float, np.integer, np.floating)) and not isinstance(lag_s, bool):
        return checks.nonnegative("lag_s", lag_s)
    raise ValueError(f"lag_s={checks.show(lag_s)}: must be a lag in seconds (>= 0) or a lag distribution "
                     "(e.g. Exponential(0.25), replication_lag_distribution(write_rate, apply_rate))")


def _over_lag(fn, region_rates, lag) -> float:
    """E[fn(region_rates, L)] over the lag distribution ``lag`` (quadrature over its quantiles)."""
    if isinstance(lag, Deterministic):
        return fn(region_rates, lag.mean)
    val, _ = integrate.quad(lambda u: fn(region_rates, float(lag.ppf(u))), 0.0, 1.0, limit=200,
                            epsabs=1e-10, epsrel=1e-8)
    return float(val)


def replication_lag_distribution(write_rate: float, apply_rate: float) -> Exponential:
    """The stationary replication lag of section 1's apply queue (M/M/1 sojourn time):
    Exponential with rate ``apply_rate - write_rate`` (1/s), mean :func:`lag_mean` (s)."""
    lam, mu = _check_stable(write_rate, apply_rate)
    return Exponential(rate=mu - lam)


def oversell_probability(region_rates, lag_s) -> float:
    """P(a sale oversells at all) when every region sees the other regions' sales ``lag_s`` s late
    (Poisson orders, ``region_rates`` orders/s); exact for stock large against one lag window's orders.
    ``lag_s`` may be a lag distribution (a Dist): the sale's lag L is one draw from it (the replication
    lag when the stock runs out, constant over the lag window that matters) and the result is
    E[P(oversell | L)], by quadrature (see :func:`oversell_exponential_lag` for the exact exponential case).

    Nothing is oversold iff no region sells after the stock-out order (at tau, from region k0): a region
    k != k0 sells any order in (tau, tau + lag) (the stock-out order is unseen), region k0 any order
    before the youngest unseen other-region order (age A ~ Exponential(L - l_k0) backward) expires:
    P(none) = sum_k0 (l/L) e^{-u lag} (e^{-u lag} + u (e^{-l lag} - e^{-u lag}) / (u - l)),
    with l = l_k0, u = L - l_k0.
    """
    lag = _lag_spec(lag_s)
    if isinstance(lag, Dist):
        return _over_lag(oversell_probability, _check_rates(region_rates), lag)
    rates, d = _check_sale(region_rates, lag)
    if d == 0 or rates.size == 1:
        return 0.0
    total = rates.sum()
    p_none = 0.0
    for lk in rates:
        u = total - lk
        if abs(u - lk) < 1e-12 * total:
            inner = math.exp(-u * d) * (1 + u * d)
        else:
            inner = math.exp(-u * d) + u * (math.exp(-lk * d) - math.exp(-u * d)) / (u - lk)
        p_none += (lk / total) * math.exp(-u * d) * inner
    return float(1.0 - p_none)


def _special():
    import scipy.special
    return scipy.special


def _skellam_cdf_minus1_and_0(mu1: float, mu2: float) -> tuple[float, float]:
    """``stats.skellam.cdf(-1, mu1, mu2)`` and ``stats.skellam.cdf(0, mu1, mu2)``, the same values from
    the same scipy.special functions scipy.stats uses (importing scipy.stats costs about 1 CPU-s)."""
    if not (mu1 > 0 and mu2 > 0):
        return math.nan, math.nan              # outside scipy.stats.skellam's parameter range
    import scipy.special._ufuncs as scu
    sp = _special()
    with np.errstate(over="ignore"):
        below = float(np.clip(sp.chndtr(2 * mu2, 2.0, 2 * mu1), 0.0, 1.0))
        at_zero = float(np.clip(scu._ncx2_sf(2 * mu1, 2.0, 2 * mu2), 0.0, 1.0))
    return below, at_zero


def oversell_expected(region_rates, lag_s) -> float:
    """Expected oversold units (same model as :func:`oversell_probability`; ``lag_s`` a number of
    seconds or a lag distribution, then E over the lag = mean lag x the value at a 1 s lag, since the
    value is linear in the lag).

    Until the true total reaches the stock at tau nothing is oversold (a view never exceeds the truth);
    after tau + lag every view holds the full stock; in between region k accepts its j-th order at
    tau + s iff j < M_k(s), the other regions' orders in (tau + s - lag, tau] (the stock-out order
    included when it was not k's). Backward from tau orders are Poisson, so with N ~ Poisson(l_k s),
    M ~ Poisson((L - l_k)(lag - s)): E = sum_k l_k int_0^lag P(N < M + [k0 != k]) ds (Skellam).
    Numerically this equals lag * sum_k l_k (1 - l_k / L) (tests/test_consistency.py).
    """
    lag = _lag_spec(lag_s)
    if isinstance(lag, Dist):   # linear in the lag (see above): E over the lag = E[L] x the value at 1 s
        return lag.mean * oversell_expected(_check_rates(region_rates), 1.0)
    rates, d = _check_sale(region_rates, lag)
    if d == 0 or rates.size == 1:
        return 0.0
    total = rates.sum()
    expected = 0.0
    for lk in rates:
        other = total - lk

        def integrand(s, lk=lk, other=other):
            a, b = lk * s, other * (d - s)
            if b <= 0:                    # M = 0: only the other-region stock-out order can be unseen
                own_last, other_last = 0.0, math.exp(-a)
            else:
                own_last, other_last = _skellam_cdf_minus1_and_0(a, b)
            return (lk / total) * own_last + (other / total) * other_last
        val, _ = integrate.quad(integrand, 0.0, d, limit=200)
        expected += lk * val
    return float(expected)


def oversell_closed_form(region_rates, lag_s) -> dict:
    """``{"expected_oversold": oversell_expected(...), "p_oversell": oversell_probability(...)}``;
    ``lag_s`` a constant lag (s) or a lag distribution (E over one lag draw per sale)."""
    return {"expected_oversold": oversell_expected(region_rates, lag_s),
            "p_oversell": oversell_probability(region_rates, lag_s)}


def oversell_exponential_lag(region_rates, mean_lag_s: float) -> dict:
    """Exact oversell numbers when the sale's lag is Exponential with mean ``mean_lag_s`` (s), e.g. the
    M/M/1 apply-queue lag of :func:`replication_lag_distribution`. P(no oversell | d) is a sum of
    exponentials in d, so E over L ~ Exponential(theta) is its Laplace transform, E[e^{-cL}] =
    theta / (theta + c) and E[L e^{-cL}] = theta / (theta + c)^2; the mean oversold is linear in the
    lag: E[L] * sum_k l_k (1 - l_k / L_total). Returns expected_oversold and p_oversell."""
    rates = _check_rates(region_rates)
    mean = checks.positive("mean_lag_s", mean_lag_s)
    if rates.size == 1:
        return {"expected_oversold": 0.0, "p_oversell": 0.0}
    theta, total = 1.0 / mean, rates.sum()
    def lt(c):
        return theta / (theta + c)
    p_none = 0.0
    for lk in rates:
        u = total - lk
        if abs(u - lk) < 1e-12 * total:       # e^{-2ud} (1 + u d)
            inner = lt(2 * u) + u * theta / (theta + 2 * u) ** 2
        else:                                 # e^{-2ud} + u (e^{-(u+l)d} - e^{-2ud}) / (u - l)
            inner = lt(2 * u) + u * (lt(u + lk) - lt(2 * u)) / (u - lk)
        p_none += (lk / total) * inner
    return {"expected_oversold": float(mean * np.sum(rates * (1 - rates / total))),
            "p_oversell": float(1.0 - p_none)}


def simulate_sale(stock: int, region_rates, lag_s, trials: int = 2000, seed: int = 0) -> np.ndarray:
    """Direct simulation: oversold units in each of ``trials`` independent sales (an int array).

    Orders arrive per region as Poisson streams (``region_rates`` orders/s) from time 0. Region k
    accepts an order at t iff its own sales up to t plus the other regions' sales up to t - ``lag_s``
    are below ``stock``; the sale is over once every view holds the stock. Oversold = sold - stock.
    ``lag_s``: a constant lag (s) or a lag distribution, one lag drawn per sale (its own seeded stream,
    so the orders are the same as with a constant lag).
    """
    stock = checks.integer("stock", stock, 1)
    lag = _lag_spec(lag_s)
    rates = _check_rates(region_rates)
    trials = checks.integer("trials", trials, 1)
    seed = checks.integer("seed", seed, 0)
    rng = np.random.default_rng(seed)
    lags = (lag.sample(np.random.default_rng([seed, 1]), trials) if isinstance(lag, Dist)
            else np.full(trials, lag))
    total, k = rates.sum(), rates.size
    p = rates / total
    out = np.empty(trials, dtype=np.int64)
    for trial in range(trials):
        d = float(lags[trial])
        batch = int(stock + 4 * total * d + 10 * math.sqrt(stock + total * d) + 20)
        times = np.cumsum(rng.exponential(1 / total, batch))
        regions = rng.choice(k, size=batch, p=p)
        sold_times: list[float] = []          # all accepted sales, in time order
        sold_times_by: list[list[float]] = [[] for _ in range(k)]
        own = [0] * k
        stockout = math.inf
        i = 0
        while True:
            if i == times.size:               # extend the order stream (rare)
                more = times[-1] + np.cumsum(rng.exponential(1 / total, batch))
                times = np.concatenate([times, more])
                regions = np.concatenate([regions, rng.choice(k, size=batch, p=p)])
            t, reg = float(times[i]), int(regions[i])
            i += 1
            if t > stockout + d:
                break
            seen_others = bisect.bisect_right(sold_times, t - d) - bisect.bisect_right(sold_times_by[reg], t - d)
            if own[reg] + seen_others < stock:
                own[reg] += 1
                sold_times.append(t)
                sold_times_by[reg].append(t)
                if len(sold_times) == stock:
                    stockout = t
        out[trial] = len(sold_times) - stock
    return out


def mitigated_oversell(oversold: np.ndarray, reserve_units: int) -> dict:
    """Strong consistency for the last ``reserve_units``: regions sell locally until their view shows
    ``reserve_units`` left, then every order goes through a synchronous cross-region check. The local
    phase overshoots its threshold by the same O as an unmitigated sale, so oversold = max(O - m, 0).
    ``oversold``: samples of O (from :func:`simulate_sale`). Returns p_oversell and expected_oversold."""
    m = checks.integer("reserve_units", reserve_units, 0)
    o = np.asarray(oversold)
    if o.ndim != 1 or o.size == 0 or np.any(o < 0):
        raise ValueError(f"oversold={checks.show(oversold)}: must be a non-empty 1-d array of counts >= 0")
    excess = np.maximum(o - m, 0)
    return {"p_oversell": float(np.mean(excess > 0)), "expected_oversold": float(excess.mean())}
