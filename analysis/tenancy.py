"""Noisy neighbours: tenants sharing one pool, the isolation mechanisms (none, priority classes,
per-tenant quotas, reserved capacity) and Jain's fairness index. Units: requests/s, seconds.
"""
from __future__ import annotations

import heapq
import math

import numpy as np
import pandas as pd

from analysis import checks
from analysis.station import ADMITTED

ISOLATION = ("none", "priority", "quota", "reserved")


def jain_index(values) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2) of non-negative ``values``: 1 when all are equal,
    1/n when one tenant gets everything (Jain, Chiu & Hawe 1984)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"values must be a non-empty list of finite numbers >= 0, got {values!r}")
    if not np.any(x > 0):
        raise ValueError("values must not all be 0 (Jain's index is undefined)")
    return float(x.sum() ** 2 / (x.size * (x ** 2).sum()))


class PerClass:
    """An admission controller per customer class (e.g. a :class:`~analysis.admission.TokenBucket`
    quota per tenant); a class without one is admitted."""

    def __init__(self, controllers: dict):
        for k, v in dict(controllers).items():
            if not hasattr(v, "decide"):
                raise ValueError(f"controllers[{k!r}] must have a decide(t, in_system, customer_class) method, got {v!r}")
        self.controllers = dict(controllers)

    def decide(self, t: float, in_system: int, customer_class) -> str:
        ctl = self.controllers.get(customer_class)
        return ADMITTED if ctl is None else ctl.decide(t, in_system, customer_class)


def simulate_priority_station(arrivals, service_times, servers: int, classes, priorities: dict) -> pd.DataFrame:
    """Non-preemptive priority on ``servers`` servers: a freed server takes the waiting request of the
    lowest ``priorities[class]`` value (FIFO within a class). Same rows as
    :func:`analysis.station.simulate_station` (every request admitted)."""
    t_arr = np.asarray(arrivals, dtype=float)
    s = np.asarray(service_times, dtype=float)
    c = checks.integer("servers", servers, 1)
    cls = np.asarray(classes, dtype=object)
    if t_arr.ndim != 1 or s.shape != t_arr.shape or cls.shape != t_arr.shape:
        raise ValueError("arrivals, service_times and classes must be 1-d of equal length")
    if t_arr.size and np.any(np.diff(t_arr) < 0):
        raise ValueError("arrivals must be sorted")
    missing = sorted(set(cls) - set(priorities))
    if missing:
        raise ValueError(f"priorities has no entry for class(es) {missing}")
    prio = [priorities[k] for k in cls.tolist()]
    ta, sl = t_arr.tolist(), s.tolist()     # Python floats: several times faster to index than numpy's
    resp = [math.nan] * t_arr.size
    counts = [0] * t_arr.size
    waiting: list = []          # (priority, arrival index)
    busy: list = []             # departure instants of requests in service
    pop, push = heapq.heappop, heapq.heappush
    present = 0
    j, n = 0, t_arr.size
    while j < n or busy:
        if j < n and (not busy or ta[j] < busy[0]):     # next event: an arrival
            t = ta[j]
            counts[j] = present
            present += 1
            if len(busy) < c:
                push(busy, t + sl[j])
                resp[j] = sl[j]
            else:
                push(waiting, (prio[j], j))
            j += 1
        else:                                             # a departure frees a server
            t = pop(busy)
            present -= 1
            if waiting:
                _, k = pop(waiting)
                push(busy, t + sl[k])
                resp[k] = t + sl[k] - ta[k]
    response = np.asarray(resp, dtype=float)
    n_in = np.asarray(counts, dtype=np.int64)
    return pd.DataFrame({"arrival": t_arr, "customer_class": cls, "outcome": ADMITTED, "response": response,
                         "in_system": n_in})
