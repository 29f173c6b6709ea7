"""Tail amplification of fan-out requests, quorum joins, hedged and redundant requests.

Times in seconds, rates in requests/s. A *leaf latency* is a distribution spec of
analysis.topology (``Exponential(0.01)``, ``Lognormal(0.01, scv=2)``, ``Mixture``,
``two_point``) or a frozen scipy.stats distribution; it must have a finite mean.

Closed forms (independent leaves, no queueing):

* ``fanout_quantiles``: p50/p99/p99.9 of the slowest of n leaves, F^-1(q^(1/n)), and of the
  q-th fastest (a quorum join), by the order-statistic CDF (analysis.theory);
* ``hedged_survival`` / ``hedged_quantile``: a request sent to one server, a backup sent after
  ``delay`` s if no reply yet, the first reply wins and the loser is cancelled:
  T = min(X1, delay + X2), P(T > t) = S(t) for t < delay and S(t) S(t - delay) after;
  ``hedge_work``: mean server-seconds per request (the extra load a hedge adds);
* ``redundancy_mean_response``: Gardner et al. (Operations Research 2017), Redundancy-d: k
  exponential servers, each request copied to d of them chosen at random, FCFS, the other copies
  cancelled when the first finishes:
  E[T] = sum_{i=d}^{k} 1 / (k mu C(k-1, d-1) / C(i-1, d-1) - lambda);
  ``redundancy_markov_mean_response`` solves the same system's Markov chain numerically (truncated),
  an independent check of the formula (tests/test_tails.py; the paper's own text and tables were not
  reachable from this kit's sources, so its published numbers are not compared).

With queueing, the hedge's extra work is fed back into the servers: ``simulate_replicas`` is an
exact event loop over k FCFS single-server queues with hedging after a delay or d copies at once,
*with* cancellation of the copies that lose (queued copies are removed, a copy in service is
stopped and the server starts its next request), or without it (``cancel=False``). ciw cannot
stop a copy in service, hence this loop.
"""
from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import checks, theory
from analysis._lazy import lazy_module

optimize = lazy_module("scipy.optimize")    # imported on first use
special = lazy_module("scipy.special")    # imported on first use

__all__ = [
    "leaf_latency", "fanout_quantiles", "sample_fanout", "hedged_survival", "hedged_quantile",
    "hedge_work", "sample_hedged", "redundancy_mean_response", "redundancy_markov_mean_response",
    "ReplicaRun", "simulate_replicas",
]


def leaf_latency(name: str, dist):
    """Check a leaf latency distribution: a spec or frozen scipy.stats distribution with
    cdf/sf/ppf/isf and a finite mean (s). ValueError naming ``name`` otherwise."""
    if not all(callable(getattr(dist, a, None)) for a in ("cdf", "sf", "ppf", "isf")):
        raise ValueError(f"{name} must be a distribution spec from analysis.topology (e.g. "
                         f"Lognormal(0.01, scv=2.0)) or a frozen scipy.stats distribution, "
                         f"got {dist!r}")
    mean = dist.mean if not callable(getattr(dist, "mean", None)) else dist.mean()
    if not (isinstance(mean, (int, float, np.floating)) and math.isfinite(float(mean))):
        raise ValueError(f"{name} has an infinite (or undefined) mean ({mean!r}): tail "
                         "amplification and load are not defined")
    return dist


def _mean(dist) -> float:
    return float(dist.mean() if callable(dist.mean) else dist.mean)


def _draw(dist, rng: np.random.Generator, size) -> np.ndarray:
    if hasattr(dist, "sample"):
        n = int(np.prod(size))
        return dist.sample(rng, n).reshape(size)
    return np.asarray(dist.rvs(size=size, random_state=rng), dtype=float)


# --------------------------------------------------------------------------------------------
# fan-out order statistics
# --------------------------------------------------------------------------------------------

def fanout_quantiles(leaf, fanouts, quantiles=(0.5, 0.99, 0.999), quorum_fraction=1.0,
                     slow_threshold=None) -> pd.DataFrame:
    """Closed-form end-to-end latency quantiles (s) of a request fanned out to n independent
    leaves, for each n in ``fanouts``.

    quorum_fraction: the request waits for ceil(fraction x n) replies (1.0: all of them, the
    slowest leaf). slow_threshold (s): also give ``p_slow_leaf``, the probability that at least
    one of the n leaves takes longer than it, 1 - F(threshold)^n. Columns: leaves, replies,
    one ``p50_response``-style column per quantile, and p_slow_leaf when asked.
    """
    leaf = leaf_latency("leaf", leaf)
    ns = [checks.integer("fan-out", n, 1) for n in np.atleast_1d(fanouts).tolist()]
    qs = [checks.open_unit("quantile", q) for q in np.atleast_1d(quantiles).tolist()]
    frac = checks.real("quorum_fraction", quorum_fraction)
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"quorum_fraction must be in (0, 1], got {quorum_fraction!r}")
    p_slow = None
    if slow_threshold is not None:
        p_slow = float(leaf.sf(checks.nonnegative("slow_threshold", slow_threshold)))
    n = np.asarray(ns, dtype=float)[:, None]
    k = np.maximum(1, np.ceil(frac * n - 1e-9))
    q = np.asarray(qs, dtype=float)[None, :]
    # upper-tail probability of the leaf quantile behind each (n, q): 1 - q^(1/n) for the max,
    # 1 - I^-1_q(k, n-k+1) for the k-th fastest (as theory.fanout_max_quantile and
    # theory.kth_fastest_quantile, evaluated for all points at once)
    upper = np.where(k == n, -np.expm1(np.log(q) / n),
                     special.betaincinv(n - k + 1, k, 1.0 - q))
    table = pd.DataFrame({"leaves": np.asarray(ns, dtype=int), "replies": k[:, 0].astype(int)})
    values = _isf(leaf, upper.ravel()).reshape(upper.shape)
    for j, qq in enumerate(qs):
        table[theory.quantile_name(qq)] = values[:, j]
    if p_slow is not None:
        table["p_slow_leaf"] = [theory.fanout_prob_slow(m, p_slow) for m in ns]
    return table


def _isf(dist, p: np.ndarray) -> np.ndarray:
    """Upper quantiles x with P(X > x) = p (s), vectorised: the spec's own isf for one-piece
    distributions, a 100-step bisection on sf (one vectorised call per step) for mixtures,
    whose isf solves one point at a time."""
    p = np.asarray(p, dtype=float)
    if not hasattr(dist, "components"):
        return np.asarray(dist.isf(p), dtype=float)
    lo = np.zeros_like(p)
    hi = np.full_like(p, max(_mean(dist), 1e-12))
    for _ in range(2000):                                       # bracket: sf(hi) <= p
        more = np.asarray(dist.sf(hi), dtype=float) > p
        if not more.any():
            break
        hi = np.where(more, hi * 2.0, hi)
    for _ in range(100):
        mid = (lo + hi) / 2
        above = np.asarray(dist.sf(mid), dtype=float) > p
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return hi


def sample_fanout(leaf, leaves, requests, rng, replies=None) -> np.ndarray:
    """Monte Carlo end-to-end latencies (s) of ``requests`` requests fanned out to ``leaves``
    independent leaves, each waiting for ``replies`` replies (None: all, the slowest)."""
    leaf = leaf_latency("leaf", leaf)
    n = checks.integer("leaves", leaves, 1)
    m = checks.integer("requests", requests, 1)
    k = n if replies is None else checks.integer("replies", replies, 1)
    if k > n:
        raise ValueError(f"replies={k} is larger than the number of leaves ({n})")
    out = np.empty(m)
    chunk = max(1, 2_000_000 // n)
    for lo in range(0, m, chunk):
        x = _draw(leaf, rng, (min(chunk, m - lo), n))
        out[lo:lo + x.shape[0]] = (x.max(axis=1) if k == n else
                                   np.partition(x, k - 1, axis=1)[:, k - 1])
    return out


# --------------------------------------------------------------------------------------------
# hedging without queueing
# --------------------------------------------------------------------------------------------

def _delay(delay) -> float:
    d = checks.real("hedge delay", delay)
    if d < 0:
        raise ValueError(f"hedge delay must be >= 0 s, got {delay!r}")
    return d


def hedged_survival(leaf, delay, t):
    """P(T > t) for T = min(X1, delay + X2), X1, X2 iid leaf latencies (s): a backup copy sent
    ``delay`` s after the first if it has not answered (no queueing). t: float or array (s)."""
    leaf = leaf_latency("leaf", leaf)
    d = _delay(delay)
    t = np.asarray(t, dtype=float)
    s1 = np.asarray(leaf.sf(t), dtype=float)
    s2 = np.where(t >= d, np.asarray(leaf.sf(np.maximum(t - d, 0.0)), dtype=float), 1.0)
    out = s1 * s2
    return float(out) if out.ndim == 0 else out


def hedged_quantile(leaf, delay, q) -> float:
    """q-quantile (s) of the hedged latency min(X1, delay + X2) (root of hedged_survival)."""
    leaf = leaf_latency("leaf", leaf)
    d = _delay(delay)
    q = checks.open_unit("q", q)
    hi = float(leaf.isf(1.0 - q))                 # T <= X1, so its quantile is below X1's
    if hedged_survival(leaf, d, hi) >= 1.0 - q:
        return hi
    return float(optimize.brentq(lambda t: hedged_survival(leaf, d, t) - (1.0 - q), 0.0, hi,
                                 xtol=1e-12 * max(hi, 1e-300), rtol=1e-12))


def hedge_work(leaf, delay) -> dict:
    """Mean server-seconds per request with a hedge after ``delay`` s and cancellation (no
    queueing): the first copy is busy for T, the backup for (T - delay)^+.

    Returns mean_response (E[T], s), work (s of server time per request), extra_load (work /
    mean leaf latency - 1: the fraction of load the hedge adds) and p_backup (P(X1 > delay))."""
    leaf = leaf_latency("leaf", leaf)
    d = _delay(delay)
    # Gauss-Legendre on segments cut at the leaf's quantiles (and those shifted by the delay),
    # so the jumps of a distribution with atoms (two_point, Mixture of Deterministic) fall on
    # segment ends; vectorised: one sf evaluation for all nodes.
    knots = _knots(leaf)
    knots = np.unique(np.r_[0.0, knots, knots + d, d])
    first = _gauss(leaf, d, knots[knots <= d]) if d > 0 else 0.0
    tail = _gauss(leaf, d, knots[knots >= d])
    mean_t = first + tail
    work = mean_t + tail
    return {"mean_response": mean_t, "work": work, "extra_load": work / _mean(leaf) - 1.0,
            "p_backup": float(leaf.sf(d))}


def _atoms(dist) -> list[float]:
    """Point masses (s) of a spec: Deterministic components of (nested) mixtures."""
    if type(dist).__name__ == "Deterministic":
        return [float(dist.mean)]
    return [a for c in getattr(dist, "components", ()) for a in _atoms(c)]


def _knots(leaf) -> np.ndarray:
    """Segment ends for integrating a leaf's survival: quantiles of a fixed-seed sample (cheap
    for any spec), its atoms, and a geometric tail out to where P(X > t) < 1e-16."""
    x = _draw(leaf, np.random.default_rng(0), 20_000)
    knots = np.quantile(x, np.linspace(0.0, 1.0, 201))
    top = max(float(x.max()), 1e-12)
    tail = top * 1.25 ** np.arange(1, 400)
    sf = np.asarray(leaf.sf(tail), dtype=float)
    stop = int(np.argmax(sf < 1e-16)) if (sf < 1e-16).any() else tail.size - 1
    return np.r_[knots, _atoms(leaf), tail[:stop + 1]]


_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)


def _gauss(leaf, d: float, edges: np.ndarray) -> float:
    """Integral of the hedged survival over [edges[0], edges[-1]] (s), 16 Gauss nodes a segment."""
    if edges.size < 2:
        return 0.0
    a, b = edges[:-1, None], edges[1:, None]
    t = (a + b) / 2 + (b - a) / 2 * _GL_X
    f = hedged_survival(leaf, d, t.ravel()).reshape(t.shape)
    return float(np.sum((b - a)[:, 0] / 2 * (f @ _GL_W)))


def sample_hedged(leaf, delay, requests, rng) -> np.ndarray:
    """Monte Carlo hedged latencies min(X1, delay + X2) (s), no queueing."""
    leaf = leaf_latency("leaf", leaf)
    d = _delay(delay)
    m = checks.integer("requests", requests, 1)
    x = _draw(leaf, rng, (m, 2))
    return np.minimum(x[:, 0], d + x[:, 1])


# --------------------------------------------------------------------------------------------
# Redundancy-d (Gardner et al. 2017)
# --------------------------------------------------------------------------------------------

def _redundancy_arguments(arrival_rate, service_rate, servers, copies) -> tuple[float, float, int, int]:
    """Checked (lambda, mu, k, d) of a Redundancy-d system (one-line ValueError naming the argument)."""
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    k = checks.integer("servers", servers, 1)
    d = checks.integer("copies", copies, 1)
    if d > k:
        raise ValueError(f"copies={d} is larger than the number of servers ({k})")
    return lam, mu, k, d


def redundancy_mean_response(arrival_rate, service_rate, servers, copies) -> float:
    """Exact mean response time (s) of Redundancy-d (Gardner, Harchol-Balter, Scheller-Wolf,
    Velednitsky, Zbarsky, Operations Research 65(4), 2017): ``servers`` = k FCFS servers with
    independent Exponential(service_rate) service per copy, Poisson ``arrival_rate`` (total),
    each request copied to ``copies`` = d distinct servers chosen uniformly, the other copies
    cancelled when the first completes:
    E[T] = sum_{i=d}^{k} 1 / (k mu C(k-1, d-1) / C(i-1, d-1) - lambda). Stable iff lambda < k mu.
    d = 1 gives random routing, k / (k mu - lambda); d = k one fast server, 1 / (k mu - lambda).
    """
    lam, mu, k, d = _redundancy_arguments(arrival_rate, service_rate, servers, copies)
    if lam >= k * mu:
        raise ValueError(f"arrival_rate={lam:g} requests/s is not below the capacity "
                         f"servers x service_rate = {k * mu:g} requests/s (unstable)")
    top = special.comb(k - 1, d - 1, exact=True)
    return math.fsum(1.0 / (k * mu * top / special.comb(i - 1, d - 1, exact=True) - lam)
                     for i in range(d, k + 1))


def redundancy_markov_mean_response(arrival_rate, service_rate, servers, copies, max_jobs) -> dict:
    """Mean response time (s) of Redundancy-d from its Markov chain, solved numerically: an independent
    check of :func:`redundancy_mean_response` that uses neither the formula nor the event loop.

    State: the classes (the d-server subsets) of the jobs present in arrival order; a server works on
    the oldest job that has a copy there (FCFS), so job j leaves at rate ``service_rate`` x the number
    of servers whose oldest job it is; arrivals of each class at ``arrival_rate`` / C(k, d). The chain
    is truncated at ``max_jobs`` jobs (arrivals beyond are lost) and solved for its stationary law
    (sparse BiCGSTAB); mean response = E[jobs] / accepted rate (Little). Returns mean_response (s),
    p_full (the stationary probability of a full system: the truncation error shrinks with it) and
    states. C(k, d)^max_jobs states: keep k, d and max_jobs small (e.g. k = 4, d = 2, max_jobs = 7).
    """
    from itertools import combinations

    from scipy import sparse
    from scipy.sparse import linalg as sla

    lam, mu, k, d = _redundancy_arguments(arrival_rate, service_rate, servers, copies)
    n_max = checks.integer("max_jobs", max_jobs, 1)
    classes = [frozenset(c) for c in combinations(range(k), d)]
    if len(classes) ** n_max > 2_000_000:
        raise ValueError(f"max_jobs={n_max}: C({k}, {d})^{n_max} states is too many (at most 2,000,000)")
    lam_c = lam / len(classes)
    index, states = {(): 0}, [()]
    rows, cols, vals = [], [], []
    i = 0
    while i < len(states):
        s = states[i]
        if len(s) < n_max:
            for c in range(len(classes)):
                t = s + (c,)
                j = index.get(t)
                if j is None:
                    j = index[t] = len(states)
                    states.append(t)
                rows.append(i), cols.append(j), vals.append(lam_c)
        rate = {}
        for server in range(k):
            for pos, c in enumerate(s):
                if server in classes[c]:
                    rate[pos] = rate.get(pos, 0.0) + mu
                    break
        for pos, r in rate.items():
            rows.append(i), cols.append(index[s[:pos] + s[pos + 1:]]), vals.append(r)
        i += 1
    n = len(states)
    q = sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))
    q = (q - sparse.diags(np.asarray(q.sum(axis=1)).ravel())).T.tocsc()
    x, info = sla.bicgstab(q[1:, 1:], -q[1:, 0].toarray().ravel(), rtol=1e-13, atol=0.0, maxiter=50_000)
    if info != 0:   # pragma: no cover - numerical failure
        raise RuntimeError(f"the Redundancy-d chain did not converge (BiCGSTAB info {info})")
    pi = np.concatenate([[1.0], x])
    pi /= pi.sum()
    jobs = np.fromiter((len(s) for s in states), dtype=float, count=n)
    p_full = float(pi[jobs == n_max].sum())
    return {"mean_response": float(pi @ jobs) / (lam * (1.0 - p_full)), "p_full": p_full, "states": n}


# --------------------------------------------------------------------------------------------
# event loop: k FCFS servers, hedges or d copies, with or without cancellation
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReplicaRun:
    """Result of simulate_replicas. response: response times (s) of the measured requests (after
    the warm-up ones), in arrival order; utilisation: busy fraction of the servers over the run;
    copies_per_request: mean copies started in service or queued per request; cancelled: copies
    removed or stopped; arrival_rate, servers: as given."""
    response: np.ndarray
    utilisation: float
    copies_per_request: float
    cancelled: int
    arrival_rate: float
    servers: int

    def quantile(self, q) -> float:
        """q-quantile of the response time (s)."""
        return float(np.quantile(self.response, checks.open_unit("q", q)))


_ARRIVE, _HEDGE, _DONE = 0, 1, 2


def simulate_replicas(arrival_rate, service, servers, requests, seed, *, copies=1,
                      hedge_delay=None, cancel=True, copy_service="independent",
                      warmup_fraction=0.1) -> ReplicaRun:
    """Exact event-driven simulation of ``servers`` FCFS single-server queues fed by Poisson
    ``arrival_rate`` requests/s (total), ``requests`` requests, seeded by ``seed``.

    copies: each request is sent at once to that many distinct servers chosen uniformly
    (Redundancy-d); hedge_delay (s): with copies=1, a backup copy goes to another server chosen
    uniformly ``hedge_delay`` s after arrival if the request has not finished. copy_service:
    "independent" (every copy draws its own service time from ``service``, a spec in s: the
    slowness belongs to the server, Gardner et al.'s model) or "same" (all copies of a request
    take the same time: the slowness belongs to the request, e.g. a big query). cancel=True: when the first copy
    finishes, the others are removed from their queues or stopped in service; cancel=False: they
    run to completion (the request still finishes with its first copy). The first
    ``warmup_fraction`` of requests is not measured.
    """
    lam = checks.positive("arrival_rate", arrival_rate)
    service = leaf_latency("service", service)
    k = checks.integer("servers", servers, 1)
    n = checks.integer("requests", requests, 1)
    seed = checks.integer("seed", seed, 0)
    d = checks.integer("copies", copies, 1)
    if d > k:
        raise ValueError(f"copies={d} is larger than the number of servers ({k})")
    delay = None if hedge_delay is None else _delay(hedge_delay)
    if delay is not None and (d != 1 or k < 2):
        raise ValueError(f"hedge_delay needs copies=1 and servers >= 2 (got copies={d}, "
                         f"servers={k})")
    if not isinstance(cancel, bool):
        raise ValueError(f"cancel must be True or False, got {cancel!r}")
    if copy_service not in ("independent", "same"):
        raise ValueError(f"copy_service must be 'independent' or 'same', got {copy_service!r}")
    w = checks.real("warmup_fraction", warmup_fraction)
    if not 0.0 <= w < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction!r}")

    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / lam, n)).tolist()
    per_request = d if delay is None else 2
    if copy_service == "same":
        work = np.repeat(_draw(service, rng, (n, 1)), per_request, axis=1).tolist()
    else:
        work = _draw(service, rng, (n, per_request)).tolist()
    pick = random.Random(seed)

    queues = [deque() for _ in range(k)]        # (request, service time)
    busy = [None] * k                           # (request, start, token) in service
    token = [0] * k
    holders = [[] for _ in range(n)]            # servers holding a copy of each request
    done = [False] * n
    finish = [math.nan] * n
    busy_time = 0.0
    sent = 0
    cancelled = 0
    events = [(arrivals[0], 0, _ARRIVE, 0, 0)] if n else []
    seq = 1

    def start(s, now):
        nonlocal seq, cancelled
        q = queues[s]
        while q:
            r, x = q.popleft()
            if cancel and done[r]:
                cancelled += 1
                continue
            token[s] += 1
            busy[s] = (r, now, token[s])
            heapq.heappush(events, (now + x, seq, _DONE, s, token[s]))
            seq += 1
            return
        busy[s] = None

    def send(r, s, x, now):
        nonlocal sent
        sent += 1
        holders[r].append(s)
        queues[s].append((r, x))
        if busy[s] is None:
            start(s, now)

    now = 0.0
    while events:
        now, _, kind, a, b = heapq.heappop(events)
        if kind == _ARRIVE:
            r = a
            if r + 1 < n:
                heapq.heappush(events, (arrivals[r + 1], seq, _ARRIVE, r + 1, 0))
                seq += 1
            chosen = pick.sample(range(k), d) if d > 1 else [pick.randrange(k)]
            for j, s in enumerate(chosen):
                send(r, s, work[r][j], now)
            if delay is not None:
                heapq.heappush(events, (now + delay, seq, _HEDGE, r, 0))
                seq += 1
        elif kind == _HEDGE:
            r = a
            if not done[r]:
                s = pick.randrange(k - 1)
                if s >= holders[r][0]:
                    s += 1
                send(r, s, work[r][1], now)
        else:
            s = a
            if busy[s] is None or busy[s][2] != b:
                continue                                     # a stopped copy's old event
            r, began, _ = busy[s]
            busy_time += now - began
            if not done[r]:
                done[r] = True
                finish[r] = now
                if cancel:
                    for other in holders[r]:
                        if other != s and busy[other] is not None and busy[other][0] == r:
                            busy_time += now - busy[other][1]
                            cancelled += 1
                            start(other, now)               # stop it, serve the next
            start(s, now)
    end = now                                                # the last server went idle
    first = int(w * n)
    resp = np.asarray(finish[first:]) - np.asarray(arrivals[first:])
    return ReplicaRun(response=resp, utilisation=busy_time / (k * end) if end > 0 else 0.0,
                      copies_per_request=sent / n, cancelled=cancelled, arrival_rate=lam,
                      servers=k)
