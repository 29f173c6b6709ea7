"""Container orchestration: packing containers onto nodes, and scaling in steps during a ramp.

Packing is one-dimensional (the container's CPU request, in cores; a node holds ``capacity``
cores): first-fit decreasing (FFD), best-fit decreasing (BFD), and an exact branch-and-bound
optimum for small cases. FFD uses at most 11/9 OPT + 6/9 nodes (Dosa 2007).

Scaling: containers of ``container_rate`` requests/s each, ``containers_per_node`` per node, new
nodes ready ``node_startup_s`` seconds after they are asked for.
"""
from __future__ import annotations

import math

import numpy as np

from . import checks


def _items(sizes, capacity) -> tuple[np.ndarray, float]:
    cap = checks.positive("capacity", capacity)
    s = np.asarray(sizes, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"sizes must be one-dimensional, got shape {s.shape}")
    if s.size and (not np.all(np.isfinite(s)) or s.min() <= 0):
        raise ValueError(f"sizes must be finite and > 0, got min {s.min() if s.size else None!r}")
    if s.size and s.max() > cap * (1 + 1e-12):
        raise ValueError(f"an item of size {s.max():g} is larger than a node (capacity={cap:g})")
    return s, cap


def first_fit_decreasing(sizes, capacity) -> list[list[int]]:
    """Item indices per node, FFD: largest first, each into the first node where it fits."""
    s, cap = _items(sizes, capacity)
    bins, free = [], []
    for i in np.argsort(-s, kind="stable"):
        for b, f in enumerate(free):
            if s[i] <= f + 1e-12:
                bins[b].append(int(i))
                free[b] -= s[i]
                break
        else:
            bins.append([int(i)])
            free.append(cap - s[i])
    return bins


def best_fit_decreasing(sizes, capacity) -> list[list[int]]:
    """Item indices per node, BFD: largest first, each into the fullest node where it fits."""
    s, cap = _items(sizes, capacity)
    bins, free = [], []
    for i in np.argsort(-s, kind="stable"):
        fits = [b for b, f in enumerate(free) if s[i] <= f + 1e-12]
        if fits:
            b = min(fits, key=lambda b: free[b])
            bins[b].append(int(i))
            free[b] -= s[i]
        else:
            bins.append([int(i)])
            free.append(cap - s[i])
    return bins


def optimal_packing(sizes, capacity, max_items: int = 16) -> list[list[int]]:
    """Minimum number of nodes, exact branch-and-bound (small cases: at most ``max_items`` items)."""
    s, cap = _items(sizes, capacity)
    if s.size > max_items:
        raise ValueError(f"optimal_packing is exact and exponential: at most max_items={max_items} items, "
                         f"got {s.size}")
    order = np.argsort(-s, kind="stable")
    best = first_fit_decreasing(s, cap)
    lower = math.ceil(s.sum() / cap - 1e-9)
    if len(best) == lower:
        return best
    state = {"best": best}

    def go(k: int, bins: list, free: list) -> None:
        if len(bins) >= len(state["best"]):
            return
        if k == len(order):
            state["best"] = [list(b) for b in bins]
            return
        remaining = s[order[k:]].sum()
        if len(bins) + max(0, math.ceil((remaining - sum(free)) / cap - 1e-9)) >= len(state["best"]):
            return
        i = order[k]
        seen = set()
        for b in range(len(bins)):
            f = round(free[b], 9)
            if s[i] <= free[b] + 1e-12 and f not in seen:
                seen.add(f)
                bins[b].append(int(i))
                free[b] -= s[i]
                go(k + 1, bins, free)
                free[b] += s[i]
                bins[b].pop()
                if len(state["best"]) == lower:
                    return
        bins.append([int(i)])
        free.append(cap - s[i])
        go(k + 1, bins, free)
        bins.pop()
        free.pop()

    go(0, [], [])
    return state["best"]


def packing_stats(sizes, capacity, bins, probe: float | None = None) -> dict:
    """nodes, lower_bound (ceil of total / capacity), utilisation (packed / node capacity) and
    fragmentation: the fraction of free capacity in holes smaller than ``probe`` cores (default:
    the median item), i.e. free but unusable for a typical container."""
    s, cap = _items(sizes, capacity)
    placed = sorted(i for b in bins for i in b)
    if placed != list(range(s.size)):
        raise ValueError("bins must place every item exactly once")
    free = np.array([cap - s[b].sum() for b in bins])
    if np.any(free < -1e-9):
        raise ValueError("bins overflow a node")
    probe = float(np.median(s)) if probe is None else checks.positive("probe", probe)
    total_free = float(free.sum())
    return dict(nodes=len(bins), lower_bound=math.ceil(s.sum() / cap - 1e-9),
                utilisation=float(s.sum() / (cap * len(bins))) if bins else math.nan,
                fragmentation=float(free[free < probe].sum() / total_free) if total_free > 1e-12 else 0.0)


def ramp_provisioning(demand, step_s, container_rate, containers_per_node, node_startup_s, *,
                      anticipate: bool = True) -> dict:
    """Nodes during a demand ramp. demand: requests/s per step of ``step_s`` seconds.

    The scaler asks for the nodes that hold ceil(d / container_rate) containers, where d is the
    largest demand over the next node_startup_s seconds (anticipate=True: enough capacity is
    ready in time when the demand is known) or the current demand (anticipate=False: reactive);
    asked-for nodes are ready node_startup_s later and a lower target removes nodes at once, so the
    nodes ready at step t are the least target over the last ceil(node_startup_s / step_s) steps.
    Returns over_provisioning (mean ready capacity / demand - 1), shortfall (fraction of requests
    above ready capacity), node_steps and the ready capacity series (requests/s).
    """
    d = np.asarray(demand, dtype=float)
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)) or d.min() < 0:
        raise ValueError("demand must be a non-empty series of finite rates >= 0 (requests/s)")
    step = checks.positive("step_s", step_s)
    rate = checks.positive("container_rate", container_rate)
    per = checks.integer("containers_per_node", containers_per_node, 1)
    delay = checks.nonnegative("node_startup_s", node_startup_s)
    lag = int(math.ceil(delay / step - 1e-9))
    n = d.size
    look = np.array([d[t:min(n, t + lag + 1)].max() for t in range(n)]) if anticipate else d
    want = np.ceil(np.ceil(look / rate - 1e-9) / per - 1e-9).astype(int)
    # nodes asked for by t - lag are ready at t; any lower target since then removed nodes at once
    ready = np.array([want[max(0, t - lag):t + 1].min() for t in range(n)])
    cap = ready * per * rate
    served = np.minimum(cap, d)
    return dict(over_provisioning=float(cap.sum() / d.sum() - 1.0) if d.sum() > 0 else math.nan,
                shortfall=float((d - served).sum() / d.sum()) if d.sum() > 0 else 0.0,
                node_steps=float(ready.sum()), capacity=cap)
