"""Slow shared dependencies, timeouts, circuit breakers and service-mesh overhead (seconds, requests/s).

Retries, backoff, retry budgets and metastability live in :mod:`analysis.retries`; canary power analysis in
:mod:`analysis.rollouts`.

* :func:`latency_episode`: the slowdown factor of a real latency episode in the Microsoft cloud-monitoring
  dependency-latency series (peak hourly latency / median of the week before), or of a synthetic stand-in
  named as such when the default lookup finds no copy.
* :func:`caller_latency`: end-to-end latency of a caller that makes ``calls`` sequential calls to a shared
  dependency (lognormal latency) slowed by a factor, with and without a timeout; in-flight requests by
  Little's law.
* :class:`CircuitBreaker` (closed / open / half-open) and :func:`simulate_breaker`: what a breaker costs and
  saves during a dependency outage.
* :data:`ISTIO_1_15` and :func:`mesh_chain`: per-hop sidecar latency and CPU from Istio's published
  performance summary, fed into a chain of M/M/c services: p99 and vCPU against call depth.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import checks

DEPENDENCY_DATASET = "dependency-latency-01"

#: Istio 1.15.3 performance summary (istio.io/v1.15/docs/ops/deployment/performance-and-scalability; the same
#: figures are published for 1.10.3 to 1.15.3): load test of 1000 services, 2000 sidecars, 70,000 mesh-wide
#: requests/s. "The Envoy proxy uses 0.35 vCPU and 40 MB memory per 1000 requests per second going through
#: the proxy" and "adds 2.65 ms to the 90th percentile latency" (a call through the client and the server
#: sidecar).
ISTIO_1_15 = {"version": "Istio 1.15.3", "p90_added_s": 0.00265, "vcpu_per_1000_rps_per_proxy": 0.35,
              "proxies_per_hop": 2,
              "source": "https://istio.io/v1.15/docs/ops/deployment/performance-and-scalability"}


# ================================================================================================ slow dependency
@dataclass(frozen=True)
class LatencyEpisode:
    """A dependency slowdown: ``factor`` = ``peak`` / ``baseline`` (same units, unitless ratio)."""

    factor: float
    peak: float
    baseline: float
    peak_time: pd.Timestamp
    hours_above_double: int
    series: pd.Series
    label: str
    files: list
    is_real: bool


def synthetic_latency_series(seed: int = 2018, hours: int = 720, baseline: float = 57.0,
                             factor: float = 14.0) -> pd.Series:
    """Synthetic stand-in for the hourly dependency latency (same length and calendar as outbound-01.csv):
    lognormal noise (sigma 0.08) around ``baseline`` with one 3-hour episode peaking at ``factor`` x baseline."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2018-06-17", periods=hours, freq="h", tz="UTC")
    values = baseline * np.exp(rng.normal(0.0, 0.08, size=hours))
    at = int(0.5 * hours)
    values[at - 1:at + 2] = baseline * np.array([1.5, factor, 0.5 * factor])
    return pd.Series(values, index=idx, name="value")


def calibrate_episode(series: pd.Series, anomalies=None, window_h: int = 168) -> dict:
    """Slowdown factor of the worst episode: the largest value among ``anomalies`` (all points if None or
    empty) divided by the median of the positive values in the ``window_h`` hours before it."""
    s = series.astype(float)
    if len(s) < 2:
        raise ValueError(f"series must hold at least 2 values, got {len(s)}")
    candidates = s.reindex(anomalies).dropna() if anomalies is not None and len(anomalies) else s
    peak_time = candidates.idxmax()
    before = s[(s.index < peak_time) & (s.index >= peak_time - pd.Timedelta(hours=window_h))]
    before = before[before > 0]
    if not len(before):
        raise ValueError(f"no positive value in the {window_h} h before the peak at {peak_time}")
    baseline = float(before.median())
    peak = float(s[peak_time])
    return {"factor": peak / baseline, "peak": peak, "baseline": baseline, "peak_time": peak_time,
            "hours_above_double": int(_run_length(s > 2 * baseline, s.index.get_loc(peak_time)))}


def _run_length(mask: pd.Series, at: int) -> int:
    m = mask.to_numpy()
    lo = at
    while lo > 0 and m[lo - 1]:
        lo -= 1
    hi = at
    while hi + 1 < len(m) and m[hi + 1]:
        hi += 1
    return hi - lo + 1


def latency_episode(data_dir: str = "", seed: int = 2018) -> LatencyEpisode:
    """The calibrated episode of the real ``dependency-latency-01`` series (outbound-01.csv: all dependencies
    of a middle-tier service), or of :func:`synthetic_latency_series` when the default lookup finds no copy.
    A named ``data_dir`` (or KIT_DATA_DIR) without the file is a FileNotFoundError naming the path."""
    from analysis import datasets

    path = datasets.locate(DEPENDENCY_DATASET, data_dir)   # verified against the registry's sha256
    if path is not None:
        # read directly (the file is the pinned upstream one; analysis.workloads' loader would import
        # scipy.signal, ~1.5 CPU-s, for checks this sha-verified file passes anyway)
        frame = pd.read_csv(path)
        index = pd.DatetimeIndex(pd.to_datetime(frame["TimeStamp"], utc=True))
        series = pd.Series(frame["Value"].to_numpy(float), index=index, name="value")
        if not index.is_monotonic_increasing or index.has_duplicates:
            raise ValueError(f"{path}: timestamps must be increasing and unique")
        anomalies = index[frame["Label"].to_numpy() == 1]
        ds = datasets.get(DEPENDENCY_DATASET)
        label = f"real: {ds.title} ({ds.filename}, {ds.license.split(' ', 1)[0]})"
        files, real = [path], True
    else:
        series = synthetic_latency_series(seed)
        anomalies, files, real = None, [], False
        label = (f"synthetic stand-in for {DEPENDENCY_DATASET} (analysis.resilience.synthetic_latency_series, "
                 f"seed {seed}; no real data found)")
    cal = calibrate_episode(series, anomalies)
    return LatencyEpisode(cal["factor"], cal["peak"], cal["baseline"], cal["peak_time"], cal["hours_above_double"],
                          series, label, files, real)


def caller_latency(calls: int, factor: float, *, dependency_median: float = 0.05, dependency_sigma: float = 0.5,
                   own_time: float = 0.02, timeout: float = math.inf, arrival_rate: float = 100.0,
                   samples: int = 20000, seed: int = 0) -> dict:
    """End-to-end latency of a caller making ``calls`` sequential calls to a dependency whose latency is
    lognormal (median ``dependency_median`` s, log-sd ``dependency_sigma``) multiplied by ``factor``.

    A call slower than ``timeout`` s is cut at the timeout and fails the request. Returns ``p50``, ``p99``,
    ``mean`` (s), ``failed`` (fraction) and ``in_flight`` (Little's law: ``arrival_rate`` x mean latency,
    the threads or connections the caller holds).
    """
    k = checks.integer("calls", calls, minimum=0)
    f = checks.positive("factor", factor)
    med = checks.positive("dependency_median", dependency_median)
    sig = checks.nonnegative("dependency_sigma", dependency_sigma)
    own = checks.nonnegative("own_time", own_time)
    from analysis.retries import check_timeout
    T = check_timeout(timeout)
    lam = checks.positive("arrival_rate", arrival_rate)
    n = checks.integer("samples", samples, minimum=100)
    rng = np.random.default_rng(seed)
    lat = f * med * np.exp(sig * rng.standard_normal((n, k)))
    failed = (lat > T).any(axis=1) if k else np.zeros(n, dtype=bool)
    total = own + np.minimum(lat, T).sum(axis=1)
    if np.isfinite(T) and k:
        # a request stops at its first timed-out call
        cut = np.minimum(lat, T)
        first = np.argmax(lat > T, axis=1)
        csum = np.cumsum(cut, axis=1)
        total = np.where(failed, own + csum[np.arange(n), first], total)
    mean = float(total.mean())
    return {"calls": k, "factor": f, "timeout": T, "p50": float(np.quantile(total, 0.5)),
            "p99": float(np.quantile(total, 0.99)), "mean": mean, "failed": float(failed.mean()),
            "in_flight": lam * mean}


def lognormal_quantile(median: float, sigma: float, q: float) -> float:
    """Quantile ``q`` of a lognormal with the given median (s) and log-sd."""
    from statistics import NormalDist
    return float(median * math.exp(sigma * NormalDist().inv_cdf(q)))


# ================================================================================================ circuit breaker
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass
class CircuitBreaker:
    """A circuit breaker that opens on the error rate of the last ``window`` calls.

    closed -> open: at least ``min_calls`` outcomes in the window and a failure fraction >= ``failure_rate``.
    open -> half-open: ``open_s`` s after opening (checked when a call asks :meth:`allow`).
    half-open: lets ``probes`` calls through; one failure -> open again; ``probes`` successes -> closed.
    While open (and beyond the probes when half-open) calls are refused at once.
    """

    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    open_s: float = 5.0
    probes: int = 3
    state: str = CLOSED
    transitions: list = field(default_factory=list)

    def __post_init__(self):
        if checks.unit_interval("failure_rate", self.failure_rate) == 0:
            raise ValueError(f"failure_rate must be in (0, 1], got {self.failure_rate}")
        self.window = checks.integer("window", self.window)
        self.min_calls = checks.integer("min_calls", self.min_calls)
        if self.min_calls > self.window:
            raise ValueError(f"min_calls must be <= window ({self.window}), got {self.min_calls}")
        self.open_s = checks.nonnegative("open_s", self.open_s)
        self.probes = checks.integer("probes", self.probes)
        self._outcomes = deque(maxlen=self.window)
        self._opened_at = -math.inf
        self._issued = 0
        self._ok = 0

    def _move(self, t: float, new: str) -> None:
        self.transitions.append((t, self.state, new))
        self.state = new
        if new == OPEN:
            self._opened_at = t
            self._outcomes.clear()
        elif new == HALF_OPEN:
            self._issued = self._ok = 0
        else:
            self._outcomes.clear()

    def allow(self, t: float) -> bool:
        """Whether a call at time ``t`` (s) may go to the dependency."""
        if self.state == OPEN:
            if t - self._opened_at < self.open_s:
                return False
            self._move(t, HALF_OPEN)
        if self.state == HALF_OPEN:
            if self._issued >= self.probes:
                return False
            self._issued += 1
        return True

    def record(self, t: float, success: bool) -> None:
        """The outcome, known at time ``t``, of a call the breaker let through."""
        if self.state == CLOSED:
            self._outcomes.append(not success)
            n = len(self._outcomes)
            if n >= self.min_calls and sum(self._outcomes) / n >= self.failure_rate:
                self._move(t, OPEN)
        elif self.state == HALF_OPEN:
            if not success:
                self._move(t, OPEN)
            else:
                self._ok += 1
                if self._ok >= self.probes:
                    self._move(t, CLOSED)
        # OPEN: a late outcome of a call issued before opening changes nothing


def simulate_breaker(arrival_rate: float, *, outage_start: float, outage_end: float, horizon: float,
                     timeout: float, latency: float = 0.05, breaker: CircuitBreaker | None = None,
                     seed: int = 0) -> dict:
    """Calls (Poisson, ``arrival_rate``/s) to a dependency that is down in [outage_start, outage_end): a call
    sent then hangs until the caller's ``timeout`` (s) and fails; otherwise it succeeds after an exponential
    ``latency`` (mean, s). With a ``breaker`` refused calls fail at once.

    Returns counts (``calls``, ``sent``, ``refused``, ``refused_after_recovery`` (the breaker's cost: calls
    refused while the dependency was healthy again), ``timed_out``), ``caller_busy_s`` (caller-seconds spent
    waiting on the dependency), ``sent_during_outage`` (load sent to the failing dependency), ``failed``
    (refused + timed out) and ``closed_at`` (when the breaker last closed after the outage; NaN otherwise).
    """
    lam = checks.positive("arrival_rate", arrival_rate)
    from analysis.retries import check_timeout
    T = check_timeout(timeout)
    if not math.isfinite(T):
        raise ValueError("timeout must be finite for a dependency that hangs, got inf")
    lat = checks.positive("latency", latency)
    t0, t1, H = (checks.nonnegative(n, v) for n, v in
                 (("outage_start", outage_start), ("outage_end", outage_end), ("horizon", horizon)))
    if not t0 <= t1 <= H:
        raise ValueError(f"need outage_start <= outage_end <= horizon, got {t0}, {t1}, {H}")
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0.0, H, size=rng.poisson(lam * H)))
    lats = rng.exponential(lat, size=len(times))
    pending: list = []
    refused = refused_after = timed_out = sent = sent_outage = 0
    busy = 0.0
    for t, x in zip(times.tolist(), lats.tolist()):
        if breaker is not None:
            while pending and pending[0][0] <= t:
                done, ok = heapq.heappop(pending)
                breaker.record(done, ok)
            if not breaker.allow(t):
                refused += 1
                refused_after += t >= t1
                continue
        sent += 1
        if t0 <= t < t1:
            sent_outage += 1
            timed_out += 1
            busy += T
            outcome = (t + T, False)
        elif x > T:
            timed_out += 1
            busy += T
            outcome = (t + T, False)
        else:
            busy += x
            outcome = (t + x, True)
        if breaker is not None:
            heapq.heappush(pending, outcome)
    closed_at = math.nan
    if breaker is not None:
        closes = [t for t, _, new in breaker.transitions if new == CLOSED and t >= t1]
        closed_at = closes[0] if closes else math.nan
    return {"calls": len(times), "sent": sent, "refused": refused, "refused_after_recovery": refused_after,
            "timed_out": timed_out, "failed": refused + timed_out, "caller_busy_s": busy,
            "sent_during_outage": sent_outage, "closed_at": closed_at}


# ================================================================================================ service mesh
def sidecar_mean_from_p90(p90_added_s: float) -> float:
    """Mean (s) of an exponential added delay whose 90th percentile is ``p90_added_s``: p90 / ln 10."""
    return checks.positive("p90_added_s", p90_added_s) / math.log(10.0)


def _mmc_response_samples(lam: float, mu: float, c: int, rng: np.random.Generator, size) -> np.ndarray:
    """M/M/c FIFO response times: wait (0 w.p. 1 - C, else Exp(c mu - lam)) + Exp(mu) service."""
    from analysis import theory
    pw = theory.erlang_c(lam, mu, c)
    wait = np.where(rng.random(size) < pw, rng.exponential(1.0 / (c * mu - lam), size=size), 0.0)
    return wait + rng.exponential(1.0 / mu, size=size)


def mesh_chain(depth: int, arrival_rate: float, service_rate: float, servers: int, *, mesh: bool = True,
               p90_added_s: float = ISTIO_1_15["p90_added_s"],
               vcpu_per_1000_rps_per_proxy: float = ISTIO_1_15["vcpu_per_1000_rps_per_proxy"],
               proxies_per_hop: int = ISTIO_1_15["proxies_per_hop"], target_utilisation: float = 0.6,
               samples: int = 20000, seed: int = 0) -> dict:
    """A request through ``depth`` services in sequence, each an M/M/c station (``arrival_rate`` requests/s,
    ``service_rate`` per server, ``servers``), plus with ``mesh`` a sidecar delay per hop (exponential with
    the published p90). Sojourn times at the hops are sampled independently (exact for ./M/1 tandems by
    Reich's theorem, an approximation for c > 1).

    Returns ``mean`` and ``p99`` (s) of the end-to-end latency and ``vcpu``: cores needed to serve the
    chain at ``target_utilisation`` (application CPU 1/service_rate s per request per hop, plus the proxies'
    CPU: vcpu_per_1000_rps_per_proxy / 1000 s per request per proxy).
    """
    d = checks.integer("depth", depth)
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers)
    if lam >= c * mu:
        raise ValueError(f"arrival_rate must be < servers * service_rate = {c * mu}, got {lam}")
    u = checks.open_unit("target_utilisation", target_utilisation)
    n = checks.integer("samples", samples, minimum=100)
    rng = np.random.default_rng(seed)
    total = _mmc_response_samples(lam, mu, c, rng, (n, d)).sum(axis=1)
    side_cpu = 0.0
    if mesh:
        mean_side = sidecar_mean_from_p90(p90_added_s)
        total = total + rng.exponential(mean_side, size=(n, d)).sum(axis=1)
        side_cpu = checks.nonnegative("vcpu_per_1000_rps_per_proxy", vcpu_per_1000_rps_per_proxy) / 1000.0 \
            * checks.integer("proxies_per_hop", proxies_per_hop)
    vcpu = lam * d * (1.0 / mu + side_cpu) / u
    return {"depth": d, "mesh": mesh, "mean": float(total.mean()), "p99": float(np.quantile(total, 0.99)),
            "vcpu": vcpu, "sidecar_cpu_s_per_hop": side_cpu}


def mesh_chain_mean(depth: int, arrival_rate: float, service_rate: float, servers: int, *, mesh: bool = True,
                    p90_added_s: float = ISTIO_1_15["p90_added_s"]) -> float:
    """Closed form of :func:`mesh_chain`'s mean: depth x (M/M/c mean response + sidecar mean)."""
    from analysis import theory
    per_hop = theory.mmc_metrics(arrival_rate, service_rate, servers)["mean_response"]
    return depth * (per_hop + (sidecar_mean_from_p90(p90_added_s) if mesh else 0.0))
