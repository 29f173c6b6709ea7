"""Priority queues: closed forms and an exact event simulation with c servers.

Closed forms (class 0 = highest priority, Poisson arrivals per class, FCFS within a class):

* :func:`mg1_priority_response_times`: M/G/1 with per-class general service. Non-preemptive: Cobham
  (1954), W_k = R / ((1 - s_{k-1})(1 - s_k)), R = sum_i lambda_i E[S_i^2] / 2, s_k = load of classes
  0..k; response T_k = W_k + E[S_k]. Preemptive-resume: T_k = E[S_k] / (1 - s_{k-1}) +
  R_k / ((1 - s_{k-1})(1 - s_k)) with R_k = sum_{i<=k} lambda_i E[S_i^2] / 2 (Kleinrock 1976, §3.6).
* :func:`mmc_priority_response_times`: M/M/c with one exponential service rate for all classes.
  Non-preemptive: W_k = C(c, a) / (c mu) / ((1 - s_{k-1})(1 - s_k)), C = Erlang C of the total load,
  s_k = (lambda_0 + ... + lambda_k) / (c mu) (Cobham's formula with the mean residual time until a
  server frees). Preemptive-resume: classes 0..k see an M/M/c queue of their own, so with L_k = lambda_0
  + ... + lambda_k and T(L) the M/M/c mean response at rate L, T_k = (L_k T(L_k) - L_{k-1} T(L_{k-1})) /
  lambda_k (exact, by conservation).

Simulation: :func:`simulate_priority` is an exact event loop (heaps) for c servers under "fifo"
(priorities ignored), "nonpreemptive" or "preemptive" (preemptive-resume: the preempted request keeps
the service it received and goes back to the head of its class). :func:`replicate` runs independent
replications (seeds from one SeedSequence) and :func:`summarise` gives per-class means and p99 with
t-intervals across replications. ciw does the same models (``priority_classes`` with ``"resume"``
pre-emption, wrapped by ``analysis.topology.ServiceGraph(preemptive=True)``); this loop is the fast path
the notebook uses, and tests/test_priority.py checks it against the closed forms and against ciw.

:func:`compliance_peak` is the notebook's year-end scenario: online requests and a batch reporting job
sharing c servers, under no protection (FIFO), non-preemptive and preemptive priority for online, and a
reserved share of servers for the batch job.

Units: rates in requests/s, times in seconds, loads in Erlangs.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from analysis import checks, theory

__all__ = ["DISCIPLINES", "mg1_priority_response_times", "mmc_priority_response_times", "simulate_priority",
           "replicate", "summarise", "reserved_servers", "compliance_peak", "CompliancePoint"]

DISCIPLINES = ("fifo", "nonpreemptive", "preemptive")


def _rates(arrival_rates) -> np.ndarray:
    lam = np.atleast_1d(np.asarray(arrival_rates, dtype=float))
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"arrival_rates must be a non-empty list of requests/s, got {arrival_rates!r}")
    for i, v in enumerate(lam):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"arrival_rates[{i}] must be > 0 requests/s, got {v!r}")
    return lam


def _dist(name: str, value):
    """A topology distribution spec; a plain number is the mean in seconds of an exponential."""
    from analysis.topology import Exponential, as_dist

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Exponential(checks.positive(name, value))
    return as_dist(name, value)


def _dists(services, n: int) -> list:
    if not isinstance(services, (list, tuple)):
        services = [services] * n
    if len(services) != n:
        raise ValueError(f"services has {len(services)} entries but there are {n} classes (arrival_rates)")
    return [_dist(f"services[{i}]", s) for i, s in enumerate(services)]


def _moments(services, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Means (s) and second moments (s^2) of per-class service specs."""
    dists = _dists(services, n)
    m = np.array([d.mean for d in dists], dtype=float)
    m2 = np.array([d.mean ** 2 * (1.0 + d.scv) for d in dists], dtype=float)
    return m, m2


def mg1_priority_response_times(arrival_rates, services, preemptive: bool = False) -> list[float]:
    """Mean response time (s) per class of an M/G/1 priority queue (class 0 highest).

    services: one spec per class (``analysis.topology`` distributions, or a mean in seconds meaning
    exponential), or one spec for all. Requires total load sum lambda_i E[S_i] < 1.
    """
    lam = _rates(arrival_rates)
    m, m2 = _moments(services, lam.size)
    rho = lam * m
    if rho.sum() >= 1.0:
        raise ValueError(f"total load sum(arrival_rates x mean service) = {rho.sum():.6g} >= 1: no steady state")
    s = np.cumsum(rho)
    s_prev = np.concatenate(([0.0], s[:-1]))
    half = lam * m2 / 2.0
    denom = (1.0 - s_prev) * (1.0 - s)
    if preemptive:
        t = m / (1.0 - s_prev) + np.cumsum(half) / denom
    else:
        t = half.sum() / denom + m
    return [float(x) for x in t]


def mmc_priority_response_times(arrival_rates, service_rate, servers, preemptive: bool = False) -> list[float]:
    """Mean response time (s) per class of an M/M/c priority queue, one service rate (requests/s per server)
    for all classes, class 0 highest. Requires sum(arrival_rates) < servers x service_rate."""
    lam = _rates(arrival_rates)
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers, 1)
    total = float(lam.sum())
    if total >= c * mu:
        raise ValueError(f"total arrival rate {total:.6g} requests/s >= servers x service_rate = {c * mu:.6g}: "
                         "no steady state")
    if preemptive:
        cum = np.cumsum(lam)
        work = [0.0] + [L * theory.mmc_metrics(L, mu, c)["mean_response"] for L in cum]
        return [float((work[k + 1] - work[k]) / lam[k]) for k in range(lam.size)]
    w0 = theory.erlang_c(total, mu, c) / (c * mu)
    s = np.cumsum(lam) / (c * mu)
    s_prev = np.concatenate(([0.0], s[:-1]))
    return [float(x) for x in w0 / ((1.0 - s_prev) * (1.0 - s)) + 1.0 / mu]


# ------------------------------------------------------------------------------------ simulation
def _event_loop(t_arr, prio, svc, c: int, preemptive: bool) -> np.ndarray:
    """Responses (s) of requests arriving at sorted t_arr with priorities prio (lower first) and service
    svc on c servers; preemptive-resume if ``preemptive``. Every request is served to completion."""
    if not preemptive:
        return _event_loop_nonpreemptive(t_arr, prio, svc, c)
    n = t_arr.size
    resp = np.full(n, math.nan)
    remaining = svc.astype(float).copy()
    waiting: list = []           # (priority, index): FIFO within a class by arrival index
    completions: list = []       # (finish time, index); stale once the request was preempted
    running: dict = {}           # index -> (start, finish)
    t_list, p_list = t_arr.tolist(), prio.tolist()
    heappush, heappop = heapq.heappush, heapq.heappop
    j = 0
    inf = math.inf
    while j < n or running:
        while completions:
            fin, k = completions[0]
            r = running.get(k)
            if r is not None and r[1] == fin:
                break
            heappop(completions)
        next_dep = completions[0][0] if completions else inf
        if j < n and t_list[j] < next_dep:
            t, p = t_list[j], p_list[j]
            if len(running) < c:
                fin = t + remaining[j]
                running[j] = (t, fin)
                heappush(completions, (fin, j))
            elif preemptive:
                victim = max(running, key=lambda k: (p_list[k], running[k][0]))
                if p_list[victim] > p:
                    _, vfin = running.pop(victim)
                    remaining[victim] = vfin - t
                    heappush(waiting, (p_list[victim], victim))
                    fin = t + remaining[j]
                    running[j] = (t, fin)
                    heappush(completions, (fin, j))
                else:
                    heappush(waiting, (p, j))
            else:
                heappush(waiting, (p, j))
            j += 1
        else:
            fin, k = heappop(completions)
            del running[k]
            resp[k] = fin - t_list[k]
            if waiting:
                _, m = heappop(waiting)
                f2 = fin + remaining[m]
                running[m] = (fin, f2)
                heappush(completions, (f2, m))
    return resp


def _event_loop_nonpreemptive(t_arr, prio, svc, c: int) -> np.ndarray:
    """Non-preemptive (or FIFO, with equal priorities) case of :func:`_event_loop`: no preemption, so the
    heap of completions never holds a stale entry."""
    n = t_arr.size
    resp = [math.nan] * n
    waiting: list = []
    busy: list = []              # (finish time, index)
    t_list, p_list, s_list = t_arr.tolist(), prio.tolist(), svc.tolist()
    heappush, heappop = heapq.heappush, heapq.heappop
    j = 0
    while j < n or busy:
        if j < n and (not busy or t_list[j] < busy[0][0]):
            t = t_list[j]
            if len(busy) < c:
                heappush(busy, (t + s_list[j], j))
            else:
                heappush(waiting, (p_list[j], j))
            j += 1
        else:
            fin, k = heappop(busy)
            resp[k] = fin - t_list[k]
            if waiting:
                _, m = heappop(waiting)
                heappush(busy, (fin + s_list[m], m))
    return np.array(resp, dtype=float)


def simulate_priority(arrival_rates, services, servers: int, horizon: float, *, discipline: str = "nonpreemptive",
                      warmup: float | None = None, rng: np.random.Generator | int = 0) -> dict:
    """One replication: Poisson arrivals of each class over [0, horizon) s, c = ``servers`` servers.

    services: per-class ``analysis.topology`` distribution specs (or mean seconds = exponential).
    discipline: "fifo", "nonpreemptive" or "preemptive" (preemptive-resume), class 0 highest.
    warmup: requests arriving before it are dropped from the output (default 10% of the horizon).
    Returns dict of arrays over the kept requests: customer_class (int), arrival (s), response (s); and
    horizon, warmup, busy_fraction (offered work / capacity over the measured window).
    """
    lam = _rates(arrival_rates)
    dists = _dists(services, lam.size)
    c = checks.integer("servers", servers, 1)
    h = checks.positive("horizon", horizon)
    if discipline not in DISCIPLINES:
        raise ValueError(f"discipline must be one of {DISCIPLINES}, got {discipline!r}")
    w = 0.1 * h if warmup is None else checks.nonnegative("warmup", warmup)
    if w >= h:
        raise ValueError(f"warmup must be < horizon ({h:g} s), got {w!r}")
    load = float(sum(l * d.mean for l, d in zip(lam, dists)))
    if load >= c:
        raise ValueError(f"offered load {load:.6g} Erlangs >= servers = {c}: no steady state")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    times, classes, work = [], [], []
    for k, (l, d) in enumerate(zip(lam, dists)):
        m = int(gen.poisson(l * h))
        times.append(np.sort(gen.uniform(0.0, h, m)))
        classes.append(np.full(m, k, dtype=np.int64))
        work.append(np.asarray(d.sample(gen, m), dtype=float))
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    t, cls, svc = t[order], np.concatenate(classes)[order], np.concatenate(work)[order]
    prio = np.zeros_like(cls) if discipline == "fifo" else cls
    resp = _event_loop(t, prio, svc, c, discipline == "preemptive")
    keep = t >= w
    return dict(customer_class=cls[keep], arrival=t[keep], response=resp[keep], horizon=h, warmup=w,
                busy_fraction=float(svc[keep].sum() / (c * (h - w))))


def replicate(arrival_rates, services, servers: int, horizon: float, *, discipline: str = "nonpreemptive",
              replications: int = 5, seed: int = 0, warmup: float | None = None, quantile: float = 0.99):
    """Independent replications of :func:`simulate_priority` (seeds spawned from ``seed``).

    Returns a DataFrame, one row per (replication, customer_class): n, mean_response (s), and the
    ``quantile`` of the response (column ``p99_response`` for 0.99, named by ``theory.quantile_name``).
    """
    import pandas as pd

    reps = checks.integer("replications", replications, 1)
    q = checks.open_unit("quantile", quantile)
    col = theory.quantile_name(q)
    rows = []
    for r, ss in enumerate(np.random.SeedSequence(checks.integer("seed", seed, 0)).spawn(reps)):
        out = simulate_priority(arrival_rates, services, servers, horizon, discipline=discipline, warmup=warmup,
                                rng=np.random.default_rng(ss))
        for k in range(len(np.atleast_1d(arrival_rates))):
            x = out["response"][out["customer_class"] == k]
            rows.append({"replication": r, "customer_class": k, "n": int(x.size),
                         "mean_response": float(x.mean()) if x.size else math.nan,
                         col: float(np.quantile(x, q)) if x.size else math.nan})
    return pd.DataFrame(rows)


def summarise(per_replication, confidence: float = 0.95):
    """Per class: the mean over replications of every metric column, with a t-interval (``<metric>_lo``,
    ``<metric>_hi``); the input is :func:`replicate`'s DataFrame. Needs >= 2 replications for an interval
    (with one, lo = hi = the estimate)."""
    import pandas as pd
    from scipy.special import stdtrit    # the t quantile (= scipy.stats.t.ppf) without importing scipy.stats

    lvl = checks.open_unit("confidence", confidence)
    metrics = [c for c in per_replication.columns if c not in ("replication", "customer_class", "n")]
    rows = {}
    for k, g in per_replication.groupby("customer_class"):
        row = {"n": int(g["n"].sum()), "replications": len(g)}
        for mcol in metrics:
            x = g[mcol].to_numpy(dtype=float)
            mean = float(x.mean())
            half = (float(stdtrit(x.size - 1, 0.5 + lvl / 2) * x.std(ddof=1) / math.sqrt(x.size))
                    if x.size > 1 else 0.0)
            row.update({mcol: mean, f"{mcol}_lo": mean - half, f"{mcol}_hi": mean + half})
        rows[k] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("customer_class")


# ------------------------------------------------------------------------------------ compliance peak
def reserved_servers(batch_load: float, servers: int, max_utilisation: float = 0.9) -> int:
    """Least number of servers to reserve for a batch stream of ``batch_load`` Erlangs so that their
    utilisation is at most ``max_utilisation``; at most servers - 1 (online keeps one)."""
    a = checks.positive("batch_load", batch_load)
    c = checks.integer("servers", servers, 2)
    u = checks.open_unit("max_utilisation", max_utilisation)
    return int(min(c - 1, max(1, math.ceil(a / u - 1e-12))))


@dataclass(frozen=True)
class CompliancePoint:
    """One policy at one batch load: online mean and p99 response (s) with CI, batch completion (h)."""
    policy: str
    batch_load: float
    batch_completion_h: float
    online_mean_s: float
    online_p99_s: float
    online_p99_lo: float
    online_p99_hi: float
    batch_mean_s: float
    reserved: int
    method: str


def compliance_peak(*, servers: int, online_rate: float, online_service, batch_service, batch_loads,
                    batch_work_server_h: float, horizon: float, replications: int, seed: int,
                    reserve_utilisation: float = 0.9) -> list[CompliancePoint]:
    """Year-end reporting job sharing ``servers`` servers with online traffic.

    Online: Poisson at ``online_rate`` requests/s, service ``online_service`` (a Dist or mean seconds).
    Batch: a Poisson stream of tasks (service ``batch_service``) at the rate giving ``batch_load`` Erlangs,
    for each value of ``batch_loads``; the job's ``batch_work_server_h`` server-hours then complete after
    batch_work_server_h / batch_load hours (the batch queue is stable, so it completes at its submission
    rate; the tasks' own response time is negligible against hours and reported as batch_mean_s).
    Policies: "no protection" (FIFO), "non-preemptive priority", "preemptive priority" (online first;
    simulated), "reserved share": batch confined to :func:`reserved_servers` servers, online on the rest
    (online is then an exact M/M/c when its service is exponential, else simulated FIFO).
    Points with an unstable queue are skipped (their policy cannot run that batch load).
    """
    c = checks.integer("servers", servers, 2)
    lam_o = checks.positive("online_rate", online_rate)
    d_o, d_b = _dist("online_service", online_service), _dist("batch_service", batch_service)
    work = checks.positive("batch_work_server_h", batch_work_server_h)
    out: list[CompliancePoint] = []
    for i, a_b in enumerate(batch_loads):
        a_b = checks.positive("batch_loads[]", a_b)
        lam_b = a_b / d_b.mean
        completion_h = work / a_b
        shared_ok = lam_o * d_o.mean + a_b < c
        for j, (policy, disc) in enumerate((("no protection", "fifo"), ("non-preemptive priority", "nonpreemptive"),
                                            ("preemptive priority", "preemptive"))):
            if not shared_ok:
                continue
            per = replicate([lam_o, lam_b], [d_o, d_b], c, horizon, discipline=disc, replications=replications,
                            seed=seed + 1000 * i + j)
            s = summarise(per)
            out.append(CompliancePoint(policy, a_b, completion_h, float(s.loc[0, "mean_response"]),
                                       float(s.loc[0, "p99_response"]), float(s.loc[0, "p99_response_lo"]),
                                       float(s.loc[0, "p99_response_hi"]), float(s.loc[1, "mean_response"]), 0,
                                       f"simulation ({replications} replications)"))
        r = reserved_servers(a_b, c, reserve_utilisation)
        if a_b >= r or lam_o * d_o.mean >= c - r:
            continue
        batch_mean = theory.mmc_metrics(lam_b, 1.0 / d_b.mean, r)["mean_response"] if d_b.scv == 1 else math.nan
        if d_o.scv == 1:
            m = theory.mmc_metrics(lam_o, 1.0 / d_o.mean, c - r)
            p99 = theory.mmc_response_quantile(lam_o, 1.0 / d_o.mean, c - r, 0.99)
            out.append(CompliancePoint("reserved share", a_b, completion_h, m["mean_response"], p99, p99, p99,
                                       batch_mean, r, f"M/M/{c - r} closed form"))
        else:
            s = summarise(replicate([lam_o], [d_o], c - r, horizon, discipline="fifo", replications=replications,
                                    seed=seed + 1000 * i + 7))
            out.append(CompliancePoint("reserved share", a_b, completion_h, float(s.loc[0, "mean_response"]),
                                       float(s.loc[0, "p99_response"]), float(s.loc[0, "p99_response_lo"]),
                                       float(s.loc[0, "p99_response_hi"]), batch_mean, r,
                                       f"simulation ({replications} replications)"))
    return out
