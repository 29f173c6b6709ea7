"""Fan-out (fork-join) requests on ciw: k leaves, one arrival instant, join on the q-th reply.

ciw has no fork-join, so a fan-out is modelled as follows. One stream of request arrival times
is generated (Poisson at a constant rate, a :class:`~analysis.topology.RateSchedule`, or a
renewal process) and *the same* sequence of inter-arrival times is fed to every leaf service:
each leaf's ciw arrival distribution is a reader on one shared stream, so every leaf sees request
i at exactly the same instant (the same floats are added in the same order). Each leaf queues
and serves its copy independently (its own servers and service-time distribution). The join is
by request index: at every leaf the i-th arrival (in arrival order) is request i; the engine
checks that the arrival times agree across leaves before joining. A request completes when its
``quorum``-th fastest leaf completes (quorum = k, the default: the slowest leaf; quorum = 1: the
fastest, a hedged request; 1 < quorum < k: a read/write quorum). Its response time is that
completion minus the common arrival time. Copies are never cancelled: every leaf serves every
copy, so each leaf carries the full request rate (a hedged request here is the "send both at
once" variant, not "send a second copy after a delay"). Optional ``background`` traffic (an
independent Poisson stream per leaf) shares the leaves' queues but is not part of any fan-out
request. Visits of fan-out requests carry the request index in ``records["request"]``;
background visits carry -1.

Independent leaves versus this model
------------------------------------
The order-statistics closed forms (analysis.theory.fanout_max_quantile, kth_fastest_quantile,
fanout_max_mean_exponential) assume the k leaf latencies of one request are independent and
identically distributed. That holds here when leaves do not queue (e.g. infinite servers, or
very light load): each leaf latency is then just its own service time, drawn independently.
Once leaves queue, the shared arrival instants couple them: a burst of requests lengthens every
leaf's queue at the same time, so the leaf response times of one request are positively
correlated (associated). For associated variables P(max <= t) >= prod_j P(R_j <= t), so the
slowest-leaf latency is stochastically *smaller* than the independent-leaves prediction built
from the same marginals (and the fastest-of-k is larger): the independent formula is a
conservative (pessimistic) bound for the max, and it gets looser with load and with k. Each
leaf's marginal response-time distribution is unaffected (for M/M/1 leaves it is still
Exponential(mu - lambda)); only the joint law changes. In practice the gap shows in the mean and
the body of the distribution (8 M/M/1 leaves at load 0.7: mean of the max about 15-20% below
H_8/(mu - lambda)), while the far tail (p95-p99 of the max) moves little, because it is set by
one leaf's extreme queue. tests/test_fanout.py shows these effects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import ciw
import numpy as np
import pandas as pd

from analysis import checks
from analysis.topology import (
    CompiledModel, Dist, Service, _ArrivalStream, _check_load, _GraphRouter, _system_capacity,
    _traffic_row,
)

__all__ = ["FanOut", "BACKGROUND_CLASS"]

BACKGROUND_CLASS = "background"


@dataclass(frozen=True, eq=False)
class FanOut(_ArrivalStream):
    """A fork-join request pattern over named leaf :class:`Service` objects (module docstring).

    ``rate``: fan-out requests/s (a number, a RateSchedule or a pandas Series of rates), or
    ``interarrival`` (a distribution spec) for a renewal stream. ``quorum``: replies needed
    (1..k; None = k, wait for all). ``background``: {leaf name: requests/s} of independent extra
    traffic. ``name``: the class name of fan-out requests in the results.
    Leaves may have schedules; they may not have timeouts, retries, finite queues or per-class
    service times (every leaf must answer every request for the join to be defined).
    """
    leaves: Sequence[Service]
    rate: object = None
    interarrival: Dist | None = None
    quorum: int | None = None
    background: Mapping = field(default_factory=dict)
    name: str = "fanout"
    max_in_system: int | None = None

    def __post_init__(self):
        name = checks.nonempty_string("FanOut name", self.name)
        if name == BACKGROUND_CLASS:
            raise ValueError(f"FanOut name must not be {BACKGROUND_CLASS!r} (reserved)")
        leaves = (self.leaves,) if isinstance(self.leaves, Service) else tuple(self.leaves)
        if not leaves:
            raise ValueError("FanOut needs at least one leaf service")
        for leaf in leaves:
            if not isinstance(leaf, Service):
                raise ValueError(f"FanOut leaves must be Service(...) objects, got {leaf!r}")
            where = f"fan-out leaf {leaf.name!r}"
            if leaf.timeout is not None:
                raise ValueError(f"{where}: timeouts are not supported in a fan-out (every leaf "
                                 "must answer every request)")
            if leaf.retry is not None:
                raise ValueError(f"{where}: retries are not supported in a fan-out")
            if leaf.queue_capacity is not None:
                raise ValueError(f"{where}: a finite queue_capacity is not supported in a fan-out")
            if not isinstance(leaf.service_time, Dist):
                raise ValueError(f"{where}: per-class service times are not supported in a fan-out")
        names = [leaf.name for leaf in leaves]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate fan-out leaf name(s): {dup}")
        object.__setattr__(self, "leaves", leaves)
        self._check_stream("FanOut", "FanOut ")
        k = len(leaves)
        if self.quorum is not None:
            q = checks.integer("FanOut quorum", self.quorum, 1)
            if q > k:
                raise ValueError(f"FanOut quorum={q} is larger than the number of leaves ({k})")
        if not isinstance(self.background, Mapping):
            raise ValueError(f"FanOut background must map leaf name -> requests/s, "
                             f"got {self.background!r}")
        bg = {}
        for leaf, r in self.background.items():
            if leaf not in names:
                raise ValueError(f"FanOut background: unknown leaf {leaf!r} (leaves: {names})")
            bg[leaf] = checks.positive(f"FanOut background rate at {leaf!r}", r)
        object.__setattr__(self, "background", bg)
        if self.max_in_system is not None:
            checks.integer("max_in_system", self.max_in_system, 1)

    @property
    def k(self) -> int:
        """Number of leaves."""
        return len(self.leaves)

    @property
    def replies_needed(self) -> int:
        """The quorum (k when None)."""
        return self.quorum if self.quorum is not None else self.k

    @property
    def names(self) -> list[str]:
        return [leaf.name for leaf in self.leaves]

    def traffic(self, horizon: float | None = None) -> pd.DataFrame:
        """Per-leaf arrival_rate (fan-out + background, requests/s), mean_service (s), servers,
        capacity (requests/s) and utilisation."""
        lam = self.mean_rate(horizon)
        rows = []
        for leaf in self.leaves:
            arrival = lam + self.background.get(leaf.name, 0.0)
            m = leaf.service_time.mean
            rows.append(_traffic_row(leaf, arrival, m, arrival * m))
        return pd.DataFrame(rows).set_index("service")

    def check(self, horizon: float | None = None, allow_overload: bool = False) -> pd.DataFrame:
        """Raise ValueError naming the first leaf with utilisation >= 1 (unless allow_overload)."""
        return _check_load(self.traffic(horizon), allow_overload)

    def compile(self, *, overloaded: bool = False) -> CompiledModel:
        """Build the ciw network: one node per leaf, all fed by one shared arrival stream."""
        k = self.k
        classes = [self.name] + ([BACKGROUND_CLASS] if self.background else [])
        stream = _SharedStream(self._arrival_dist())
        arrival = {self.name: [_StreamReader(stream) for _ in range(k)]}
        if self.background:
            arrival[BACKGROUND_CLASS] = [
                ciw.dists.Exponential(self.background[n]) if n in self.background else None
                for n in self.names]
        service = {c: [leaf.service_time.to_ciw() for leaf in self.leaves] for c in classes}
        servers = [leaf._ciw_servers() for leaf in self.leaves]
        router = _GraphRouter([None] * k, {}, {}, {}, None)
        network = ciw.create_network(
            arrival_distributions=arrival,
            service_distributions=service,
            number_of_servers=servers,
            routing={c: router for c in classes},
            system_capacity=_system_capacity(self.max_in_system, overloaded),
        )
        plan = _FanoutPlan(leaf_nodes=list(range(1, k + 1)), request_class=self.name,
                           quorum=self.replies_needed)
        return CompiledModel(network=network, node_names=self.names, class_names=classes,
                             servers=[leaf.server_spec for leaf in self.leaves],
                             fanout=plan)


@dataclass
class _FanoutPlan:
    leaf_nodes: list
    request_class: str
    quorum: int


class _SharedStream:
    """Inter-arrival times drawn once (lazily, with ciw's seeded random state) and shared."""

    def __init__(self, dist):
        self.dist = dist
        self.deltas = []

    def get(self, i: int, t):
        deltas = self.deltas
        if i == len(deltas):
            deltas.append(self.dist.sample(t=t))
        return deltas[i]


class _StreamReader(ciw.dists.Distribution):
    """One leaf's view of the shared stream. ciw deep-copies arrival distributions per node;
    the copy keeps the *same* stream and starts at its beginning."""

    def __init__(self, stream: _SharedStream):
        self.stream = stream
        self.position = 0

    def __deepcopy__(self, memo):
        return _StreamReader(self.stream)

    def __repr__(self):
        return "SharedArrivalStream"

    def sample(self, t=None, ind=None):
        x = self.stream.get(self.position, t)
        self.position += 1
        return x


def join_requests(visits: dict, plan: _FanoutPlan, horizon: float, class_code: int,
                  node_names: list) -> dict:
    """Join per-leaf visits into fan-out requests (internal; called by analysis.simulation).

    ``visits``: arrays node, cls, arrival, exit, kind (0 served, 1 timed out, 2 rejected,
    3 incomplete, 4 interrupted service: ignored). Returns dict of request arrays plus
    ``visit_request`` (request index of every visit, -1 for background/after-horizon visits).
    Raises RuntimeError if the leaves did not see identical arrival times (join invariant).
    """
    node, cls, arrival, exit_, kind = (visits["node"], visits["cls"], visits["arrival"],
                                       visits["exit"], visits["kind"])
    k = len(plan.leaf_nodes)
    visit_request = np.full(node.size, -1, dtype=np.int64)
    arrivals, done, rejected = [], [], []
    n = None
    for nd in plan.leaf_nodes:
        idx = np.flatnonzero((node == nd) & (cls == class_code) & (arrival < horizon) & (kind != 4))
        idx = idx[np.argsort(arrival[idx], kind="stable")]
        if n is None:
            n = idx.size
        elif idx.size != n:
            raise RuntimeError(f"fan-out join failed: leaf {node_names[nd - 1]!r} saw {idx.size} "
                               f"requests before the horizon, leaf {node_names[0]!r} saw {n}")
        visit_request[idx] = np.arange(n)
        arrivals.append(arrival[idx])
        done.append(np.where(kind[idx] == 0, exit_[idx], np.inf))
        rejected.append(kind[idx] == 2)
    arr = np.vstack(arrivals)
    for j in range(1, k):
        if not np.array_equal(arr[j], arr[0]):
            bad = int(np.flatnonzero(arr[j] != arr[0])[0])
            raise RuntimeError(f"fan-out join failed: request {bad} arrived at "
                               f"{float(arr[0][bad])!r} s at leaf {node_names[0]!r} but at "
                               f"{float(arr[j][bad])!r} s at leaf "
                               f"{node_names[plan.leaf_nodes[j] - 1]!r}")
    done = np.vstack(done)
    order = np.argsort(done, axis=0, kind="stable")           # leaves by completion, per request
    q = plan.quorum
    finish = np.take_along_axis(done, order[q - 1:q], axis=0)[0]
    completed = np.isfinite(finish)
    any_rejected = np.vstack(rejected).any(axis=0)
    # outcome codes as in analysis.simulation: 0 completed, 2 rejected, 3 incomplete
    outcome = np.where(completed, 0, np.where(any_rejected, 2, 3)).astype(np.int8)
    leaf_ids = np.asarray(plan.leaf_nodes, dtype=np.int64)
    return dict(
        request=np.arange(n, dtype=np.int64),
        arrival=arr[0].copy(),
        exit=np.where(completed, finish, np.nan),
        outcome=outcome,
        critical=np.where(completed, leaf_ids[order[q - 1]], -1),
        visit_request=visit_request,
    )
