"""Exact fast paths: FIFO queueing models simulated by recursions instead of ciw's event loop.

For a first-come-first-served station the start of service of request n depends only on its
arrival time, the service times and the start times of the requests before it:

* one server (Lindley): ``start[n] = max(arrival[n], end[n-1])``, vectorised as
  ``end = C + cummax(arrival - C_prev)`` with ``C`` the running sum of service times;
* c servers (Kiefer-Wolfowitz): the sorted vector of the c servers' free times; request n starts
  at ``max(arrival[n], earliest free time)`` and that server becomes free at start + service
  (a heap of c times, one loop step per request);
* a server schedule (ciw semantics: at every shift change all servers go off duty, a busy one
  finishes its request first, and the new shift's servers start idle) and an admission cap on
  requests in the system (an arrival that finds ``cap`` requests is rejected): the same loop,
  epoch by epoch, with a heap of departure dates for the cap;
* infinite servers: start = arrival.

A feed-forward graph (acyclic probabilistic routing) is processed station by station in
topological order: every request's path is drawn first (routing does not depend on the state),
then each station's arrival times are its visitors' exits from the previous station. A fork-join
(:class:`~analysis.fanout.FanOut`) feeds the same arrival instants to every leaf; leaves are
independent stations. Arrival streams are generated up front: Poisson (exponential gaps), renewal
(gaps from the spec) and :class:`~analysis.topology.RateSchedule` (inversion of the integrated
rate, exact for a piecewise-constant rate).

Random and capacity-weighted pools are probabilistic routing, and classes of equal priority
share one FIFO queue (each with its own service times): both have the recursion. Everything that
needs the state of other queues or of time-outs stays on ciw (``why_not`` says which feature):
JSQ, power-of-d and round-robin pools, classes with different priorities, time-outs, retries,
finite queues, an admission cap on a graph of more than one service, cyclic routing, ciw
networks given directly.

Randomness: one numpy Generator per purpose (each stream's arrivals, each station's service
times, each station's routing) from ``SeedSequence(replication seed, spawn_key=(purpose, i))``,
so a replication gives the same numbers serially, in processes or on Dask. Each request's
service times and routing draws are fixed by its index (drawn in request order and only ever
extended), so when later arrivals are added -- a request that arrived after the horizon can
overtake a tagged one on a shorter path -- the earlier requests keep their draws: the run is the
ciw model's trajectory law exactly, not an approximation. Outputs are the raw per-visit arrays
that ``analysis.simulation`` builds from ciw's records (same fields, same codes), reduced by the
same code. Units: seconds, requests/s.
"""
from __future__ import annotations

import heapq
import math
from types import SimpleNamespace

import numpy as np

from analysis.fanout import BACKGROUND_CLASS, FanOut, _FanoutPlan
from analysis.topology import (
    CompiledModel, RateSchedule, ServiceGraph, _PoolState, _system_capacity,
)

__all__ = ["PATHS", "why_not", "choose_path", "replicate", "fifo_station"]

PATHS = ("auto", "recursion", "ciw")
_STATELESS_POLICIES = ("random", "capacity_weighted")
_EXIT = -1
_ARRIVALS, _SERVICE, _ROUTING, _BACKGROUND, _ENTRY = 0, 1, 2, 3, 4


# ----------------------------------------------------------------------------------------------
# which path
# ----------------------------------------------------------------------------------------------

def why_not(model, overloaded: bool = False) -> str | None:
    """None when ``model`` has an exact recursion, else the reason it needs ciw (one phrase)."""
    if isinstance(model, FanOut):
        if math.isfinite(_system_capacity(model.max_in_system, overloaded)):
            return ("an admission cap on requests in the system (max_in_system or an overloaded "
                    "run) couples the leaves")
        return None
    if not isinstance(model, ServiceGraph):
        return "a ciw.Network given directly (only ServiceGraph and FanOut are translated)"
    for pool in model.pools:
        if pool.policy not in _STATELESS_POLICIES:
            return (f"pool {pool.name!r} with policy {pool.policy!r} (it routes by queue state or "
                    "in turn; random and capacity_weighted pools have a recursion)")
    if len({c.priority for c in model.classes}) > 1:
        return "customer classes with different priorities"
    for s in model.services:
        if s.timeout is not None:
            return f"a timeout at service {s.name!r} (reneging)"
        if s.retry is not None:
            return f"retries at service {s.name!r}"
        if s.queue_capacity is not None:
            return f"a finite queue at service {s.name!r} (blocking)"
    if _topological_order(model) is None:
        return "cyclic routing (a request can return to a service)"
    cap = _system_capacity(model.max_in_system, overloaded or model.has_retries)
    if math.isfinite(cap) and (len(model.services) > 1 or model.routing):
        return ("an admission cap on requests in the system (max_in_system or an overloaded "
                "run) on a graph of more than one service")
    return None


def choose_path(model, path: str, overloaded: bool = False) -> str:
    """Resolve ``path`` ("auto", "recursion" or "ciw") for ``model``: "recursion" when an exact
    recursion exists (auto) or was asked for; ValueError naming the obstacle when asked for a
    recursion that does not exist."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if path == "ciw":
        return "ciw"
    reason = why_not(model, overloaded)
    if reason is None:
        return "recursion"
    if path == "recursion":
        raise ValueError(f"path='recursion': this model has no exact recursion because of "
                         f"{reason}; use path='auto' or 'ciw'")
    return "ciw"


def _split(graph: ServiceGraph, dest: str) -> dict[str, float]:
    """Probability that a request sent to ``dest`` (a service or a random / capacity-weighted
    pool) lands on each service, as the ciw balancer draws it (topology._PoolState)."""
    if dest in graph.names:
        return {dest: 1.0}
    pool = graph._pool(dest)
    if pool.policy == "random":
        return {m: 1.0 / len(pool.members) for m in pool.members}
    weights = [graph.service(m)._capacity_weight() for m in pool.members]
    state = _PoolState(pool.policy, pool.members, pool.d, weights)
    return dict(zip(pool.members, state.probs))


def _rows(graph: ServiceGraph) -> list[dict[int, float]]:
    """Per service: {next service index: probability}, pools expanded (the rest exits)."""
    index = {n: i for i, n in enumerate(graph.names)}
    rows = []
    for n in graph.names:
        row: dict[int, float] = {}
        for dest, p in graph.routing.get(n, {}).items():
            for member, share in _split(graph, dest).items():
                if share > 0:
                    row[index[member]] = row.get(index[member], 0.0) + float(p) * share
        rows.append(row)
    return rows


def _topological_order(graph: ServiceGraph) -> list[int] | None:
    names = graph.names
    succ = [list(row) for row in _rows(graph)]
    indeg = [0] * len(names)
    for row in succ:
        for j in row:
            indeg[j] += 1
    ready = [i for i, d in enumerate(indeg) if d == 0]
    order = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
    return order if len(order) == len(names) else None


# ----------------------------------------------------------------------------------------------
# random draws
# ----------------------------------------------------------------------------------------------

def _draw(dist, rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` draws (seconds) of a distribution spec (analysis.topology.Dist.sample)."""
    return np.asarray(dist.sample(rng, size), dtype=float)


def _rng(seed: int, purpose: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(purpose, index)))


class _Draws:
    """Draws of one law for items 0, 1, 2, ... in order; ``take(n)`` returns the first n,
    extending (never redrawing) when n grows."""

    def __init__(self, fn, rng):
        self.fn, self.rng = fn, rng
        self.values = np.empty(0)

    def take(self, n: int) -> np.ndarray:
        have = self.values.size
        if n > have:
            self.values = np.concatenate([self.values, self.fn(self.rng, n - have)])
        return self.values[:n]


class _Stream:
    """Arrival times of one external stream, generated up front and extendable in time."""

    def __init__(self, source, rng):
        self.rng = rng
        self.times = np.empty(0)
        self.level = 0.0                     # integrated rate (schedule) or time of last arrival
        rate, inter = source.rate, source.interarrival
        self.schedule = rate if isinstance(rate, RateSchedule) else None
        if self.schedule is not None:
            sch = self.schedule
            self.starts = np.asarray(sch.starts, dtype=float)
            self.rates = np.asarray(sch.rates, dtype=float)
            ends = np.r_[self.starts[1:], sch.period if sch.period is not None else np.inf]
            widths = ends - self.starts
            finite = np.where(np.isfinite(widths), widths, 0.0)   # an open last piece adds no area
            self.cum = np.r_[0.0, np.cumsum(self.rates * finite)[:-1]]
            self.per_cycle = float(np.sum(self.rates * widths)) if sch.period else math.inf
        elif rate is not None:
            self.gap = lambda g, n, r=float(rate): g.exponential(1.0 / r, n)
            self.mean_rate = float(rate)
        else:
            self.gap = lambda g, n, d=inter: _draw(d, g, n)
            self.mean_rate = 1.0 / inter.mean

    def _invert(self, u: np.ndarray) -> np.ndarray:
        """Times t with Lambda(t) = u (u increasing), Lambda the integrated rate."""
        sch = self.schedule
        base = np.zeros_like(u)
        if sch.period is not None:
            cycles = np.floor(u / self.per_cycle)
            u = u - cycles * self.per_cycle
            base = cycles * sch.period
        i = np.searchsorted(self.cum, u, side="right") - 1
        r = self.rates[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(r > 0, self.starts[i] + (u - self.cum[i]) / r, np.inf)
        return base + t

    def until(self, horizon: float) -> np.ndarray:
        """Arrival times (s) in [0, horizon)."""
        while self.times.size == 0 or self.times[-1] < horizon:
            if self.times.size and not math.isfinite(self.times[-1]):
                break
            last = self.times[-1] if self.times.size else 0.0
            if self.schedule is not None:
                expect = max(self.schedule._cumulative(horizon) - self.level, 0.0)
            else:
                expect = self.mean_rate * (horizon - last)
            n = int(expect + 5.0 * math.sqrt(expect) + 64)
            if self.schedule is not None:
                u = self.level + np.cumsum(self.rng.standard_exponential(n))
                self.level = float(u[-1])
                new = self._invert(u)
            else:
                new = self.level + np.cumsum(self.gap(self.rng, n))
                self.level = float(new[-1])
            self.times = np.concatenate([self.times, new])
        return self.times[:np.searchsorted(self.times, horizon, side="left")]


# ----------------------------------------------------------------------------------------------
# one FIFO station
# ----------------------------------------------------------------------------------------------

def fifo_station(arrival: np.ndarray, service: np.ndarray, servers,
                 cap: float = math.inf) -> np.ndarray:
    """Start-of-service times (s) of a FIFO station; NaN for an arrival rejected by ``cap``.

    arrival: sorted arrival times (s); service: service time (s) of each arrival, same order;
    servers: an int >= 1, math.inf, or a schedule ((servers, end_time_s), ...) repeating with
    period = the last end time (ciw's semantics); cap: requests allowed in the station (an
    arrival finding ``cap`` requests is rejected).
    """
    arrival = np.asarray(arrival, dtype=float)
    service = np.asarray(service, dtype=float)
    n = arrival.size
    if arrival.ndim != 1 or service.shape != arrival.shape:
        raise ValueError(f"arrival and service must be 1-d arrays of the same length, got shapes "
                         f"{arrival.shape} and {service.shape}")
    if n and (not np.isfinite(arrival).all() or (np.diff(arrival) < 0).any()):
        raise ValueError("arrival must be finite times (s) in increasing order")
    if n and (not np.isfinite(service).all() or (service < 0).any()):
        raise ValueError("service must be finite times >= 0 s")
    if not isinstance(servers, tuple) and not (servers == math.inf or (
            isinstance(servers, (int, np.integer)) and servers >= 1)):
        raise ValueError(f"servers must be an integer >= 1, math.inf or a schedule "
                         f"((servers, end_time_s), ...), got {servers!r}")
    if n == 0:
        return np.empty(0)
    if isinstance(servers, tuple):
        counts = [int(c) for c, _ in servers]
        ends = [float(e) for _, e in servers]
        return np.array(_loop(arrival.tolist(), service.tolist(), counts, ends, ends[-1], cap))
    if servers == math.inf:
        start = arrival.copy()
    elif servers == 1:
        csum = np.cumsum(service)
        end = csum + np.maximum.accumulate(arrival - np.r_[0.0, csum[:-1]])
        start = np.maximum(arrival, np.r_[-np.inf, end[:-1]])
    else:
        start = np.array(_heap_loop(arrival.tolist(), service.tolist(), int(servers)))
    if math.isfinite(cap):
        dep = np.sort(start + service)
        in_system = np.arange(n) - np.searchsorted(dep, arrival, side="right")
        if in_system.max() >= cap:       # the cap bites: replay with rejections
            counts = [servers if servers != math.inf else n + 1]
            return np.array(_loop(arrival.tolist(), service.tolist(), counts, [math.inf],
                                  math.inf, cap))
    return start


def _heap_loop(arrival: list, service: list, c: int) -> list:
    """Kiefer-Wolfowitz: c servers, FIFO; a heap of the servers' free times."""
    free = [0.0] * c
    start = [0.0] * len(arrival)
    replace = heapq.heapreplace
    for i, a in enumerate(arrival):
        f = free[0]
        if a > f:
            f = a
        start[i] = f
        replace(free, f + service[i])
    return start


def _loop(arrival: list, service: list, counts: list, ends: list, period: float,
          cap: float) -> list:
    """FIFO with a server schedule and an admission cap (rejected: NaN). At each shift change
    every server goes off duty (a busy one finishes its request and leaves) and counts[k] idle
    servers start; shifts end at base + ends[k], base advancing by ``period`` each cycle."""
    nan = math.nan
    start = [nan] * len(arrival)
    pop, push, replace = heapq.heappop, heapq.heappush, heapq.heapreplace
    k, base, n_shift = 0, 0.0, len(counts)
    ep_end, c = base + ends[0], counts[0]
    free = [0.0] * c
    deps: list = []
    capped = math.isfinite(cap)
    for i, t in enumerate(arrival):
        if capped:
            while deps and deps[0] <= t:
                pop(deps)
            if len(deps) >= cap:
                continue
        s = t
        while True:
            while s >= ep_end:              # next shift: fresh servers, idle from its start
                ep_start = ep_end
                k += 1
                if k == n_shift:
                    k, base = 0, base + period
                ep_end, c = base + ends[k], counts[k]
                free = [ep_start] * c
            if c:
                f = free[0]
                if f > s:
                    s = f
                if s < ep_end:
                    break
            s = ep_end                       # no server frees up in this shift: wait for the next
        replace(free, s + service[i])
        start[i] = s
        if capped:
            push(deps, s + service[i])
    return start


# ----------------------------------------------------------------------------------------------
# one replication
# ----------------------------------------------------------------------------------------------

def replicate(task) -> tuple[CompiledModel, dict, float]:
    """Simulate one replication of ``task.model`` (a run_trials task: model, seed, horizon,
    drain, overloaded); returns the compiled description (names, classes, servers), the raw
    visit arrays in analysis.simulation's format and the end time (s)."""
    if isinstance(task.model, FanOut):
        return _fanout(task.model, task)
    return _graph(task.model, task)


def _visit_arrays(rid, cls, node, arrival, start, service, stop, kind_rejected=None) -> dict:
    """Per-visit arrays in the ciw extraction format; visits still open at ``stop`` become
    incomplete (kind 3), rejected ones kind 2; visits arriving after ``stop`` are dropped."""
    keep = arrival <= stop
    rid, cls, node, arrival, start, service = (x[keep] for x in (rid, cls, node, arrival, start,
                                                                 service))
    rejected = np.isnan(start) if kind_rejected is None else kind_rejected[keep]
    end = start + service
    done = ~rejected & (end <= stop)
    in_service = ~rejected & ~done & (start < stop)
    kind = np.where(rejected, 2, np.where(done, 0, 3)).astype(np.int8)
    nan = np.nan
    started = done | in_service
    return dict(
        id=rid.astype(np.int64), cls=cls.astype(np.int16), node=node.astype(np.int64),
        arrival=arrival,
        wait=np.where(started, start - arrival, nan),
        start=np.where(started, start, nan),
        service_time=np.where(done, service, nan),
        end=np.where(done, end, nan),
        exit=np.where(done, end, np.where(rejected, arrival, nan)),
        kind=kind,
    )


def _graph(graph: ServiceGraph, task) -> tuple[CompiledModel, dict, float]:
    horizon, stop = task.horizon, task.horizon + task.drain
    seed = task.seed
    names = graph.names
    n_s = len(names)
    order = _topological_order(graph)
    index = {n: i for i, n in enumerate(names)}
    cap = _system_capacity(graph.max_in_system, task.overloaded)
    servers = [s.server_spec for s in graph.services]
    class_names = [c.name for c in graph.classes]
    n_c = len(class_names)
    streams = []
    for i, a in enumerate(graph.arrivals):
        split = _split(graph, a.target)
        members = np.array([index[m] for m in split], dtype=np.int64)
        cum = np.cumsum(list(split.values()))[:-1]
        pick = _Draws(lambda g, n: g.random(n), _rng(seed, _ENTRY, i))
        streams.append((_Stream(a, _rng(seed, _ARRIVALS, i)), members, cum, pick,
                        class_names.index(a.customer_class)))
    svc = [[_Draws(lambda g, n, d=s.service_dist(c): _draw(d, g, n),
                   _rng(seed, _SERVICE, j * n_c + k)) for k, c in enumerate(class_names)]
           for j, s in enumerate(graph.services)]
    route = [_Draws(lambda g, n: g.random(n), _rng(seed, _ROUTING, j)) for j in range(n_s)]
    rows = []
    for row in _rows(graph):
        dests = np.array(list(row) + [_EXIT], dtype=np.int64)
        rows.append((dests, np.cumsum(list(row.values()))))
    limit = horizon
    while True:
        parts = []
        for st, members, cum, pick, code in streams:
            t = st.until(limit)
            target = members[np.searchsorted(cum, pick.take(t.size), side="right")]
            parts.append((t, target, np.full(t.size, code, dtype=np.int16)))
        t_sys = np.concatenate([p[0] for p in parts])
        entry = np.concatenate([p[1] for p in parts])
        req_cls = np.concatenate([p[2] for p in parts])
        by_time = np.argsort(t_sys, kind="stable")
        t_sys, entry, req_cls = t_sys[by_time], entry[by_time], req_cls[by_time]
        n = t_sys.size
        n_tagged = int(np.searchsorted(t_sys, horizon, side="left"))
        # paths: visitors of each station in request order, then where each goes next
        visitors = [[] for _ in range(n_s)]
        for j in range(n_s):
            visitors[j].append(np.flatnonzero(entry == j))
        for j in order:
            idx = np.sort(np.concatenate(visitors[j])) if len(visitors[j]) > 1 else visitors[j][0]
            visitors[j] = idx
            dests, cum = rows[j]
            if cum.size:
                u = route[j].take(idx.size)
                pick = dests[np.minimum(np.searchsorted(cum, u, side="right"), cum.size)]
            else:
                pick = np.full(idx.size, _EXIT, dtype=np.int64)
            for d in np.unique(pick):
                if d != _EXIT:
                    visitors[d].append(idx[pick == d])
        # times, station by station
        now = t_sys.copy()
        visits = []
        latest_tagged = -math.inf
        for j in order:
            idx = visitors[j]
            arr = now[idx]
            if n_c == 1:
                s = svc[j][0].take(idx.size)
            else:                      # each class's draws in its own request order
                s = np.empty(idx.size)
                cls_here = req_cls[idx]
                for k in range(n_c):
                    mine = cls_here == k
                    s[mine] = svc[j][k].take(int(mine.sum()))
            o = np.lexsort((idx, arr))
            idx_o, arr_o, s_o = idx[o], arr[o], s[o]
            start = fifo_station(arr_o, s_o, servers[j], cap)
            end = start + s_o
            now[idx_o] = np.where(np.isnan(start), np.nan, end)
            tagged = idx_o < n_tagged
            if tagged.any():
                latest_tagged = max(latest_tagged, float(arr_o[tagged].max()))
            visits.append((idx_o, j, arr_o, start, s_o))
        # a request generated after `limit` could reach a station before a tagged one did:
        # extend the arrivals past the latest tagged arrival at any station and redo
        if latest_tagged < limit or limit >= stop or n_s == 1:
            break
        limit = min(stop, latest_tagged + 0.25 * (latest_tagged - horizon) + 1e-9)
    rid = np.concatenate([v[0] for v in visits])
    node = np.concatenate([np.full(v[0].size, v[1] + 1, dtype=np.int64) for v in visits])
    arrival = np.concatenate([v[2] for v in visits])
    start = np.concatenate([v[3] for v in visits])
    service = np.concatenate([v[4] for v in visits])
    tag = rid < n_tagged
    rid, node, arrival, start, service = (x[tag] for x in (rid, node, arrival, start, service))
    cls = req_cls[rid]
    rank = np.empty(n_s, dtype=np.int64)
    rank[order] = np.arange(n_s)
    srt = np.lexsort((rank[node - 1], arrival, rid))
    rid, node, arrival, start, service, cls = (x[srt] for x in (rid, node, arrival, start,
                                                                 service, cls))
    exits = start + service
    finished = np.where(np.isnan(exits), arrival, exits)
    end_time = max(horizon, min(stop, float(np.nanmax(finished)))) if finished.size else horizon
    v = _visit_arrays(rid + 1, cls, node, arrival, start, service, end_time)
    compiled = CompiledModel(network=None, node_names=list(names), class_names=class_names,
                             servers=servers)
    return compiled, v, end_time


def _fanout(fan: FanOut, task) -> tuple[CompiledModel, dict, float]:
    horizon, stop = task.horizon, task.horizon + task.drain
    seed = task.seed
    t = _Stream(fan, _rng(seed, _ARRIVALS, 0)).until(horizon)
    n = t.size
    classes = [fan.name] + ([BACKGROUND_CLASS] if fan.background else [])
    parts = []
    next_id = 1
    for j, leaf in enumerate(fan.leaves):
        arr, cls = t, np.zeros(n, dtype=np.int16)
        bg_rate = fan.background.get(leaf.name)
        if bg_rate is not None:
            source = SimpleNamespace(rate=float(bg_rate), interarrival=None)
            bg = _Stream(source, _rng(seed, _BACKGROUND, j)).until(horizon)
            arr = np.r_[t, bg]
            cls = np.r_[cls, np.ones(bg.size, dtype=np.int16)]
            o = np.argsort(arr, kind="stable")
            arr, cls = arr[o], cls[o]
        s = _draw(leaf.service_time, _rng(seed, _SERVICE, j), arr.size)
        start = fifo_station(arr, s, leaf.server_spec)
        ids = np.arange(next_id, next_id + arr.size, dtype=np.int64)
        next_id += arr.size
        parts.append((ids, cls, np.full(arr.size, j + 1, dtype=np.int64), arr, start, s))
    cat = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    exits = cat[4] + cat[5]
    end_time = max(horizon, min(stop, float(exits.max()))) if exits.size else horizon
    v = _visit_arrays(*cat, end_time)
    plan = _FanoutPlan(leaf_nodes=list(range(1, fan.k + 1)), request_class=fan.name,
                       quorum=fan.replies_needed)
    compiled = CompiledModel(network=None, node_names=fan.names, class_names=classes,
                             servers=[leaf.server_spec for leaf in fan.leaves], fanout=plan)
    return compiled, v, end_time
