"""Scale-per-request (serverless) platform: cold starts, keep-alive, instance counts and cost.

An exact event simulation (numpy + heapq) of one function on a platform that scales per request:
each request goes to an idle warm instance if one exists (``policy``: "mru" the most recently
used idle instance, as production platforms do; "lru" the least recently used; "random"),
otherwise a new instance starts and serves it with the cold service time; an instance idle for
``keep_alive`` seconds is removed. Concurrency one request per instance, no queueing.

Closed forms used to check it:
* one instance, negligible service, Poisson arrivals: P(cold) = P(gap > keep_alive) =
  exp(-arrival_rate * keep_alive) (:func:`p_cold_single_instance`);
* MRU dispatch is a stack: the instance at level k (k-th in busy-then-most-recent order) is alive
  iff at least k requests were in service at some time in the last ``keep_alive`` seconds. So
  alive(t) = max of busy(s) over [t - keep_alive, t], and an arrival is cold iff the busy count it
  finds equals that maximum. With equal warm and cold exponential service, busy(t) is the
  M/M/inf birth-death process, reversible, so P(cold) and E[alive] follow exactly from its
  transient law (:func:`mminf_keepalive_exact`);
* Little's law twice: busy = arrival_rate x mean service; alive = creation rate x mean lifetime.

Units: rates in requests/s, times in seconds, memory-time in instance-seconds.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from . import checks
from .topology import Dist, as_dist

POLICIES = ("mru", "lru", "random")

# Published fixed keep-alive periods (Shahrad et al., USENIX ATC 2020, section 4.1): AWS Lambda
# about 10 minutes, Azure Functions 20 minutes after the last execution.
KEEP_ALIVE_AWS_S = 600.0
KEEP_ALIVE_AZURE_S = 1200.0


def _service(name: str, value) -> Dist:
    return as_dist(name, value, allow_number=True)


def check_platform(warm_service, cold_service, keep_alive, policy="mru") -> tuple[Dist, Dist, float, str]:
    """Check the platform parameters; ValueError naming the culprit. Returns them normalised."""
    warm = _service("warm_service", warm_service)
    cold = _service("cold_service", cold_service)
    if cold.mean < warm.mean:
        raise ValueError(f"cold_service mean ({cold.mean:g} s) must be >= warm_service mean "
                         f"({warm.mean:g} s): a cold start adds start-up time")
    keep_alive = checks.nonnegative("keep_alive", keep_alive)
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    return warm, cold, keep_alive, policy


@dataclass(frozen=True)
class PlatformRun:
    """One simulated run. Per-request arrays cover every arrival; statistics cover [warmup, horizon]."""
    arrivals: np.ndarray       # arrival times (s)
    completions: np.ndarray    # completion times (s)
    cold: np.ndarray           # bool: the request started a new instance
    instance: np.ndarray       # id of the instance that served it
    stats: dict                # p_cold, mean_busy, mean_idle, mean_alive, rates, costs (see simulate_platform)


def simulate_platform(arrival_times, warm_service, cold_service, keep_alive, *, policy: str = "mru",
                      seed=0, horizon: float | None = None, warmup: float = 0.0,
                      service_times=None) -> PlatformRun:
    """Exact event simulation of one function on a scale-per-request platform.

    arrival_times: sorted request arrival times (s). warm_service / cold_service: distribution
    specs (or seconds, Deterministic) of the service time on a warm / a new instance (cold mean
    >= warm mean). keep_alive: seconds an idle instance is kept (>= 0). policy: "mru", "lru" or
    "random" choice among idle instances. seed: numpy seed or Generator. horizon: end of the
    measured window (default: the last arrival); warmup: start of it (s). service_times: optional
    (warm, cold) arrays of pre-drawn times, one per request (for common random numbers).

    stats: requests, p_cold, mean_busy / mean_idle / mean_alive (time-average instances, busy
    serving, idle warm, both), busy_s and idle_s (instance-seconds in the window: billed time and
    idle memory-time), instances_created, creation_rate (1/s), mean_lifetime (s, of instances
    created and removed in the window), arrival_rate and mean_service (s) of the window's requests.
    """
    warm, cold, keep_alive, policy = check_platform(warm_service, cold_service, keep_alive, policy)
    t_arr = np.asarray(arrival_times, dtype=float)
    if t_arr.ndim != 1:
        raise ValueError(f"arrival_times must be one-dimensional, got shape {t_arr.shape}")
    if t_arr.size and (not np.all(np.isfinite(t_arr)) or np.any(np.diff(t_arr) < 0) or t_arr[0] < 0):
        raise ValueError("arrival_times must be finite, >= 0 and sorted")
    n = t_arr.size
    if horizon is None:
        horizon = float(t_arr[-1]) if n else 0.0
    horizon = checks.nonnegative("horizon", horizon)
    warmup = checks.nonnegative("warmup", warmup)
    if warmup > horizon or (n and horizon <= warmup):
        raise ValueError(f"warmup must be < horizon, got warmup={warmup:g}, horizon={horizon:g}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if service_times is None:
        s_warm = np.asarray(warm.sample(rng, n), dtype=float)
        s_cold = np.asarray(cold.sample(rng, n), dtype=float)
    else:
        s_warm, s_cold = (np.asarray(a, dtype=float) for a in service_times)
        if s_warm.shape != (n,) or s_cold.shape != (n,):
            raise ValueError(f"service_times must be two arrays of {n} times, got shapes "
                             f"{s_warm.shape} and {s_cold.shape}")
    pick = rng.random(n) if policy == "random" else None

    lo, hi = warmup, horizon

    def clip(a: float, b: float) -> float:
        return max(0.0, min(b, hi) - max(a, lo))

    busy_s = idle_s = 0.0
    busy = []                          # heap of (finish time, instance id)
    idle: deque = deque()              # (idle since, instance id), oldest first
    born: list[float] = []             # creation time per instance id
    lifetimes: list[float] = []        # of instances removed, created in the window
    cold_flag = np.zeros(n, dtype=bool)
    inst = np.empty(n, dtype=np.int64)
    done = np.empty(n, dtype=float)

    def expire_until(t: float) -> None:
        nonlocal idle_s
        while idle and idle[0][0] + keep_alive < t:
            since, i = idle.popleft()
            end = since + keep_alive
            idle_s += clip(since, end)
            if lo <= born[i] and end <= hi:
                lifetimes.append(end - born[i])

    for j in range(n):
        t = t_arr[j]
        while busy and busy[0][0] <= t:
            f, i = heapq.heappop(busy)
            expire_until(f)
            idle.append((f, i))
        expire_until(t)
        if idle:
            if policy == "mru":
                since, i = idle.pop()
            elif policy == "lru":
                since, i = idle.popleft()
            else:
                k = int(pick[j] * len(idle))
                since, i = idle[k]
                del idle[k]
            idle_s += clip(since, t)
            s = s_warm[j]
        else:
            i = len(born)
            born.append(t)
            cold_flag[j] = True
            s = s_cold[j]
        inst[j] = i
        done[j] = t + s
        busy_s += clip(t, t + s)
        heapq.heappush(busy, (t + s, i))
    # after the last arrival: everything finishes, idles and expires
    while busy:
        f, i = heapq.heappop(busy)
        expire_until(f)
        idle.append((f, i))
    expire_until(math.inf)

    window = (t_arr >= lo) & (t_arr < hi)
    length = hi - lo
    m = int(window.sum())
    created = int(cold_flag[window].sum())
    s_used = done - t_arr
    stats = dict(
        requests=m,
        p_cold=created / m if m else math.nan,
        mean_busy=busy_s / length if length > 0 else math.nan,
        mean_idle=idle_s / length if length > 0 else math.nan,
        mean_alive=(busy_s + idle_s) / length if length > 0 else math.nan,
        busy_s=busy_s, idle_s=idle_s,
        instances_created=created,
        creation_rate=created / length if length > 0 else math.nan,
        mean_lifetime=float(np.mean(lifetimes)) if lifetimes else math.nan,
        arrival_rate=m / length if length > 0 else math.nan,
        mean_service=float(s_used[window].mean()) if m else math.nan,
    )
    return PlatformRun(t_arr, done, cold_flag, inst, stats)


def poisson_arrivals(arrival_rate, horizon, seed=0) -> np.ndarray:
    """Sorted Poisson arrival times (s) in [0, horizon) at ``arrival_rate`` requests/s."""
    lam = checks.positive("arrival_rate", arrival_rate)
    horizon = checks.positive("horizon", horizon)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = rng.poisson(lam * horizon)
    return np.sort(rng.uniform(0.0, horizon, n))


def run_platform(arrival_rate, warm_service, cold_service, keep_alive, *, horizon, warmup=None,
                 replications: int = 5, seed: int = 0, policy: str = "mru",
                 confidence: float = 0.95) -> dict:
    """Replicated Poisson runs of :func:`simulate_platform`; each statistic as mean with a
    t-interval: {name: (mean, low, high)}. warmup defaults to 10% of horizon (s)."""
    from scipy.special import stdtrit    # the t quantile without importing scipy.stats (~3 s)
    check_platform(warm_service, cold_service, keep_alive, policy)
    horizon = checks.positive("horizon", horizon)
    warmup = 0.1 * horizon if warmup is None else checks.nonnegative("warmup", warmup)
    reps = checks.integer("replications", replications, 2)
    seeds = np.random.SeedSequence(checks.integer("seed", seed, 0)).spawn(reps)
    rows = []
    for ss in seeds:
        rng = np.random.default_rng(ss)
        t = poisson_arrivals(arrival_rate, horizon, rng)
        rows.append(simulate_platform(t, warm_service, cold_service, keep_alive, policy=policy, seed=rng,
                                      horizon=horizon, warmup=warmup).stats)
    q = float(stdtrit(reps - 1, 0.5 + checks.open_unit("confidence", confidence) / 2))
    out = {}
    for k in rows[0]:
        v = np.array([r[k] for r in rows], dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            out[k] = (math.nan, math.nan, math.nan)
            continue
        mean = float(v.mean())
        half = float(q * v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
        out[k] = (mean, mean - half, mean + half)
    return out


# ----------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------

def p_cold_single_instance(arrival_rate, keep_alive) -> float:
    """P(cold) with negligible service and Poisson arrivals: P(gap > keep_alive) =
    exp(-arrival_rate * keep_alive)."""
    lam = checks.positive("arrival_rate", arrival_rate)
    ka = checks.nonnegative("keep_alive", keep_alive)
    return math.exp(-lam * ka)


def mminf_keepalive_exact(arrival_rate, service_rate, keep_alive, *, tol: float = 1e-12) -> dict:
    """Exact P(cold), mean busy, idle and alive instances under MRU dispatch when warm and cold
    service are the same exponential (service_rate per instance, 1/s), Poisson arrivals.

    busy(t) is the M/M/inf process; alive(t) = max busy over [t - keep_alive, t] (MRU stack), so
    by reversibility P(alive <= m) = sum_{n<=m} pi_n P_n(busy stays <= m for keep_alive s), and an
    arrival (PASTA) is cold iff busy has not exceeded its current value n over keep_alive s.
    """
    from scipy.linalg import eigh_tridiagonal
    from scipy.special import gammaln
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    ka = checks.nonnegative("keep_alive", keep_alive)
    rho = lam / mu

    p_cold = 0.0
    cdf_alive = []
    m = 0
    while True:
        # The generator Q of busy in 0..m (killed above m) is reversible: S = D^1/2 Q D^-1/2 with
        # D = diag(pi) is symmetric tridiagonal, so with w = sqrt(pi), S = V diag(e) V^T:
        #   sum_n pi_n P_n(stay <= m)  = w^T V exp(e ka) V^T w        (alive <= m)
        #   pi_m P_m(stay <= m)        = w_m (V exp(e ka) V^T w)_m     (an arrival at busy m is cold)
        k = np.arange(m + 1, dtype=float)
        w = np.exp(0.5 * (k * math.log(rho) - rho - gammaln(k + 1.0)))
        if m == 0:
            e, v = np.array([-lam]), np.ones((1, 1))
        else:
            e, v = eigh_tridiagonal(-(lam + mu * k), np.sqrt(lam * mu * k[1:]))
        x = v @ (np.exp(e * ka) * (v.T @ w))
        cdf_alive.append(float(w @ x))
        p_cold += float(w[m] * x[m])
        if m > rho and 1.0 - cdf_alive[-1] < tol:
            break
        m += 1
    cdf_alive = np.array(cdf_alive)
    mean_alive = float(np.sum(1.0 - cdf_alive))
    return dict(p_cold=float(p_cold), mean_busy=rho, mean_alive=mean_alive, mean_idle=mean_alive - rho)


# ----------------------------------------------------------------------------------------------
# a chain of functions
# ----------------------------------------------------------------------------------------------

def simulate_chain(arrival_times, stages, keep_alive, *, policy: str = "mru", seed=0,
                   horizon: float | None = None, warmup: float = 0.0) -> dict:
    """A request calls functions 1..k in sequence; each function is its own platform and function
    i+1 is invoked when i completes. stages: list of (warm_service, cold_service). Returns
    p_cold per stage, p_any_cold (a request met at least one cold start), p_any_cold_independent
    (1 - prod(1 - p_i), what independence would give), mean_response (s)."""
    if not stages:
        raise ValueError("stages must name at least one (warm_service, cold_service) pair")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    t0 = np.asarray(arrival_times, dtype=float)
    t = t0
    any_cold = np.zeros(t.size, dtype=bool)
    p = []
    end = float(t0[-1]) if horizon is None and t0.size else horizon
    window = (t0 >= warmup) & (t0 < end) if t0.size else np.zeros(0, bool)
    for k, (w, c) in enumerate(stages):
        order = np.argsort(t, kind="stable")
        run = simulate_platform(t[order], w, c, keep_alive, policy=policy, seed=rng)
        cold = np.empty(t.size, dtype=bool)
        cold[order] = run.cold
        done = np.empty(t.size)
        done[order] = run.completions
        p.append(float(cold[window].mean()))
        any_cold |= cold
        t = done
    return dict(p_cold=p, p_any_cold=float(any_cold[window].mean()),
                p_any_cold_independent=float(1 - np.prod(1 - np.array(p))),
                mean_response=float((t - t0)[window].mean()))
