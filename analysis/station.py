"""A FIFO multi-server station fed by given arrival instants, with an optional admission
controller deciding each request at its arrival from the number in system (see
:mod:`analysis.admission`). Every request gets a row: admitted ones their response time, rejected
ones the reason (never silently dropped). Units: seconds, requests/s.

The station is the Kiefer-Wolfowitz recursion (a heap of the servers' next free instants) plus a
heap of the departures of the requests present, so the number in system at each arrival is exact.
"""
from __future__ import annotations

import heapq
import math

import numpy as np
import pandas as pd

from analysis import checks

ADMITTED = "admitted"


def piecewise_poisson(starts, rates, horizon: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival instants (s) in [0, horizon) of a Poisson process whose rate is ``rates[k]``
    (requests/s) from ``starts[k]`` (s) to the next start; ``starts[0]`` must be 0. Exact (inversion
    of the piecewise-linear cumulative rate)."""
    starts = np.asarray(starts, dtype=float)
    rates = np.asarray(rates, dtype=float)
    horizon = checks.positive("horizon", horizon)
    if starts.ndim != 1 or starts.shape != rates.shape or starts.size == 0 or starts[0] != 0:
        raise ValueError(f"starts must be a 1-d array beginning at 0 s, one per rate; got {starts.size} starts "
                         f"and {rates.size} rates")
    if np.any(np.diff(starts) <= 0) or starts[-1] >= horizon:
        raise ValueError("starts must increase and lie before the horizon")
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError(f"rates must be finite and >= 0 requests/s, got min {rates.min()!r}")
    edges = np.r_[starts, horizon]
    cum = np.r_[0.0, np.cumsum(rates * np.diff(edges))]
    total = cum[-1]
    n = rng.poisson(total)
    u = np.sort(rng.random(n)) * total
    k = np.searchsorted(cum, u, side="right") - 1
    k = np.clip(k, 0, rates.size - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = edges[k] + (u - cum[k]) / rates[k]
    return t[np.isfinite(t)]


def simulate_station(arrivals, service_times, servers: int, *, admission=None, classes=None) -> pd.DataFrame:
    """Serve ``arrivals`` (sorted instants, s) with ``service_times`` (s, one per request) on
    ``servers`` FIFO servers. ``admission``: an object with ``decide(t, in_system, customer_class)``
    returning "admitted" or a rejection reason (:mod:`analysis.admission`). ``classes``: one label
    per request (default "all").

    Returns one row per request: arrival, customer_class, outcome ("admitted" or the reason),
    response (s; NaN when rejected), in_system (requests present at the arrival, before it)."""
    t_arr = np.asarray(arrivals, dtype=float)
    s = np.asarray(service_times, dtype=float)
    c = checks.integer("servers", servers, 1)
    if t_arr.ndim != 1 or s.shape != t_arr.shape:
        raise ValueError(f"arrivals and service_times must be 1-d of equal length, got {t_arr.shape} and {s.shape}")
    if t_arr.size and (np.any(np.diff(t_arr) < 0) or not np.all(np.isfinite(t_arr))):
        raise ValueError("arrivals must be finite and sorted")
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ValueError("service_times must be finite and >= 0 seconds")
    cls = np.full(t_arr.size, "all", dtype=object) if classes is None else np.asarray(classes, dtype=object)
    if cls.shape != t_arr.shape:
        raise ValueError(f"classes must have one label per arrival ({t_arr.size}), got {cls.size}")
    # The loops run on Python floats and lists (numpy scalar indexing costs several times more); the
    # arithmetic is the same IEEE double arithmetic, so the results do not depend on it.
    ta, sl = t_arr.tolist(), s.tolist()
    free = [0.0] * c
    replace = heapq.heapreplace
    if admission is None:
        done = [0.0] * t_arr.size
        for j, t in enumerate(ta):
            f = free[0]
            done[j] = d = (f if f > t else t) + sl[j]
            replace(free, d)
        done = np.asarray(done, dtype=float)
        response = done - t_arr
        outcome = np.full(t_arr.size, ADMITTED, dtype=object)
        n_in = _present_before(t_arr, done)
    else:
        decide = admission.decide
        cl = cls.tolist()
        present: list[float] = []
        verdicts = [ADMITTED] * t_arr.size
        resp = [math.nan] * t_arr.size
        counts = [0] * t_arr.size
        pop, push = heapq.heappop, heapq.heappush
        for j, t in enumerate(ta):
            while present and present[0] <= t:
                pop(present)
            counts[j] = k = len(present)
            verdict = decide(t, k, cl[j])
            if verdict != ADMITTED:
                verdicts[j] = verdict
                continue
            f = free[0]
            d = (f if f > t else t) + sl[j]
            replace(free, d)
            push(present, d)
            resp[j] = d - t
        outcome = np.empty(t_arr.size, dtype=object)
        outcome[:] = verdicts
        response = np.asarray(resp, dtype=float)
        n_in = np.asarray(counts, dtype=np.int64)
    return pd.DataFrame({"arrival": t_arr, "customer_class": cls, "outcome": outcome, "response": response,
                         "in_system": n_in})


def _present_before(arrivals: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Requests present at each arrival, before it: #{i < j : done[i] > arrivals[j]}, for sorted
    ``arrivals`` and departures ``done[i] >= arrivals[i]`` (every request admitted)."""
    m = arrivals.size
    idx = np.arange(m)
    gone = np.searchsorted(np.sort(done), arrivals, side="right")    # all i with done[i] <= arrivals[j]
    # among those, the i >= j are requests arriving at the same instant and finished at once (zero service)
    zero = np.r_[0, np.cumsum(done <= arrivals)]
    same_end = np.searchsorted(arrivals, arrivals, side="right")
    return (idx - gone + zero[same_end] - zero[idx]).astype(np.int64)
