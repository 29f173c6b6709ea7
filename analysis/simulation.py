"""Replicated ciw simulations of service graphs: seeds, warm-up, executors, tidy results, CIs.

``run_trials(model, replications, horizon, warmup, seed, executor)`` runs independent
replications of a :class:`~analysis.topology.ServiceGraph`, a :class:`~analysis.fanout.FanOut`
or a plain ``ciw.Network`` and returns a :class:`TrialResult`.

How one replication runs (times in seconds)
-------------------------------------------
1. ``ciw.seed(s_i)`` with ``s_i = replication_seeds(seed, n)[i]`` (numpy SeedSequence(seed)
   spawned children: replication i gets the same seed whatever n, the executor or the number of
   workers). The ciw network is built *after* seeding, inside the worker.
2. ciw simulates [0, horizon). Requests arriving in that interval are "tagged".
3. Drain: the simulation continues (arrivals keep coming, so the load stays stationary) until
   every tagged request has left, or until ``horizon + drain`` (default drain = horizon);
   requests still inside then are counted as ``incomplete``. So no response time is censored
   by the end of the run, and nothing runs without bound.
4. The worker reduces ciw's records to numpy arrays and per-replication statistics and ships
   only those back (never ciw objects). Warm-up is removed by arrival date: only requests whose
   (first) arrival is in [warmup, horizon) count, together with all their visits. Utilisation
   is busy server-time inside [warmup, horizon] over available server-time (schedules included).
5. The parent puts the replications side by side; every summary row is the mean across
   replications with a confidence interval (level ``confidence``, default 0.95) from the
   t-distribution (n - 1 degrees of freedom) on the per-replication values, so percentiles are
   "mean of per-replication p99".

Metric names are those of analysis.theory (mean_wait, p_wait, mean_response, mean_in_system,
mean_queue_length, utilisation, p50/p95/p99_response; see METRICS), so a closed form and a
simulation join on them (TrialResult.compare).

Warm-up: steady-state summaries need one. ``warmup=None`` (the default) discards the first
DEFAULT_WARMUP_FRACTION (10%) of the horizon and records the value in ``params["warmup"]``;
pass ``warmup=0`` explicitly for a transient study that starts empty.

Engines (``path``): "auto" (the default) runs the exact recursions of analysis.recursions when
the model has one (FIFO stations, feed-forward graphs, random pools, fork-join, schedules: tens of
times faster than ciw's event loop) and ciw otherwise; both produce the same raw per-visit
records, reduced by the same code below; ``TrialResult.path`` says which ran.

Executors: "auto" (the default: processes, or serial when the run is too small to repay starting
them), "serial", "processes" (a local ProcessPoolExecutor), any
``concurrent.futures.Executor`` except thread pools, or a dask ``distributed.Client`` whose
workers have one thread each. ciw draws from Python's global ``random`` state, so replications
run in processes, never in threads. Results are identical to the byte across executors.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import math
import multiprocessing
import numbers
import os
import pickle
import random
import threading
from dataclasses import dataclass, field

import ciw
import numpy as np
import pandas as pd

from analysis import checks
from analysis.fanout import FanOut, join_requests
from analysis.topology import END_TO_END, CompiledModel, ServiceGraph
from analysis._lazy import lazy_module

special = lazy_module("scipy.special")    # imported on first use

__all__ = ["run_trials", "replication_seeds", "TrialResult", "END_TO_END", "time_average_in_system",
           "VISIT_OUTCOMES", "REQUEST_OUTCOMES", "METRICS", "DEFAULT_WARMUP_FRACTION",
           "DEFAULT_CONFIDENCE"]

VISIT_OUTCOMES = ["served", "timed_out", "rejected", "incomplete"]
REQUEST_OUTCOMES = ["completed", "timed_out", "rejected", "incomplete"]
ALL_CLASSES = "all"
DEFAULT_WARMUP_FRACTION = 0.1      # warmup=None discards this fraction of the horizon
DEFAULT_CONFIDENCE = 0.95
METRICS = {
    "arrivals": "visits (requests for end-to-end) arriving in the window, per replication",
    "arrival_rate": "arrivals / window length (requests/s)",
    "completed": "served visits (completed requests for end-to-end)",
    "throughput": "completed / window length (requests/s)",
    "p_wait": "fraction of served visits that waited in queue (wait > 0)",
    "mean_wait": "mean wait in queue before service (s)",
    "mean_response": "mean response (s): wait + service per visit; end-to-end: arrival to "
                     "completion",
    "p50_response": "median response (s)",
    "p95_response": "95th percentile response (s)",
    "p99_response": "99th percentile response (s)",
    "mean_in_system": "time-average number of requests at the service (queue + service; "
                      "end-to-end: in the graph) over the window, from every request present",
    "mean_queue_length": "time-average number of requests waiting in queue over the window",
    "utilisation": "busy server-time / available server-time in the window",
    "timed_out": "visits (requests) that timed out",
    "blocked": "visits (requests) rejected by a full service or the admission cap",
    "timed_out_fraction": "timed_out / arrivals",
    "blocked_fraction": "blocked / arrivals",
    "incomplete": "requests still in the system when the drain ended",
    "mean_retries": "mean retries per request",
}
_KIND = {"service": 0, "renege": 1, "rejection": 2, "incomplete": 3, "interrupted service": 4}


def replication_seeds(seed: int, replications: int) -> list[int]:
    """Seeds of replications 0..n-1: numpy SeedSequence(seed).spawn(n), one 63-bit int each.
    Replication i's seed does not depend on n."""
    seed = checks.integer("seed", seed, 0)
    replications = checks.integer("replications", replications, 1)
    children = np.random.SeedSequence(seed).spawn(replications)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------

@dataclass
class TrialResult:
    """Results of :func:`run_trials`.

    ``summary``: one row per (service, customer_class, metric) with estimate (mean across
    replications), ci_low, ci_high, half_width (t-interval at level ``confidence``), std (across
    replications) and replications (number of replications with a finite value); service
    ``"end-to-end"`` holds the request totals; customer_class ``"all"`` aggregates every class.
    ``summarise(confidence)`` recomputes it at another level. ``per_trial``: the
    per-replication values behind it. ``records``: one row per visit (trial, request,
    customer_class, service, arrival, wait, service_time, exit, response, outcome);
    ``requests``: one row per request arriving in [warmup, horizon) (trial, request,
    customer_class, arrival, exit, response, outcome, visits, retries, backoff_time; fan-out:
    critical_service); ``carried_over``: (trial, request, arrival, exit) of the requests that
    arrived before the warm-up cut and were still in the system at it (for
    time_average_in_system). These three are None with ``keep_records=False``. ``traffic``: the
    model's predicted per-service traffic (arrival rate, capacity, utilisation), when
    available. ``params``: the run's settings, including the warm-up actually used.
    With preemptive priorities a visit's ``wait`` is ciw's (last service start - arrival), so it
    includes service received before a preemption; use response times for preemptive classes.
    """
    summary: pd.DataFrame
    per_trial: pd.DataFrame
    records: pd.DataFrame | None
    requests: pd.DataFrame | None
    traffic: pd.DataFrame | None
    params: dict = field(default_factory=dict)
    confidence: float = DEFAULT_CONFIDENCE
    carried_over: pd.DataFrame | None = None

    @property
    def path(self) -> str:
        """Which engine ran: "recursion" (exact FIFO recursions) or "ciw"."""
        return self.params.get("path", "ciw")

    def summarise(self, confidence: float | None = None) -> pd.DataFrame:
        """The summary at another confidence level (in (0, 1)); None: this result's level."""
        if confidence is None:
            return self.summary
        return _summarise(self.per_trial, checks.open_unit("confidence", confidence))

    def estimate(self, service: str, metric: str, customer_class: str = ALL_CLASSES,
                 confidence: float | None = None) -> pd.Series:
        """The summary row for one service (or "end-to-end"), metric and class."""
        s = self.summarise(confidence)
        row = s[(s["service"] == service) & (s["metric"] == metric)
                & (s["customer_class"] == customer_class)]
        if row.empty:
            raise ValueError(f"no summary row for service={service!r}, metric={metric!r}, "
                             f"customer_class={customer_class!r} (services: "
                             f"{list(s['service'].unique())}, metrics: "
                             f"{list(s['metric'].unique())})")
        return row.iloc[0]

    def table(self, value: str = "estimate", customer_class: str = ALL_CLASSES,
              confidence: float | None = None) -> pd.DataFrame:
        """Wide view: services x metrics of one summary column (estimate, ci_low, ...)."""
        s = self.summarise(confidence)
        s = s[s["customer_class"] == customer_class]
        out = s.pivot(index="service", columns="metric", values=value)
        order = [x for x in dict.fromkeys(s["service"])]
        cols = [m for m in METRICS if m in out.columns]
        return out.loc[order, cols]

    def compare(self, expected, service: str | None = None,
                customer_class: str = ALL_CLASSES,
                confidence: float | None = None) -> pd.DataFrame:
        """Theory beside simulation: one row per metric in ``expected`` (a mapping metric ->
        value such as theory.mmc_metrics(...), or a DataFrame indexed by service with metric
        columns such as theory.jackson_network(...)) that the summary has, with columns
        service, metric, theory, estimate, ci_low, ci_high, inside (theory within the interval).
        ``service``: required with a mapping."""
        if isinstance(expected, pd.DataFrame):
            items = [(svc, m, v) for svc, row in expected.iterrows() for m, v in row.items()]
        else:
            if service is None:
                raise ValueError("service: give the service (or 'end-to-end') the expected "
                                 "values are for")
            items = [(service, m, v) for m, v in dict(expected).items()]
        s = self.summarise(confidence)
        s = s[s["customer_class"] == customer_class].set_index(["service", "metric"])
        rows = []
        for svc, m, v in items:
            if (svc, m) not in s.index:
                continue
            r = s.loc[(svc, m)]
            rows.append(dict(service=svc, metric=m, theory=float(v), estimate=r["estimate"],
                             ci_low=r["ci_low"], ci_high=r["ci_high"],
                             inside=bool(r["ci_low"] <= float(v) <= r["ci_high"])))
        if not rows:
            raise ValueError(f"compare: no metric of {sorted({m for _, m, _ in items})} for "
                             f"services {sorted({str(x) for x, _, _ in items})} is in the "
                             "summary")
        return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

def _check_time(what, value, allow_zero):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
    value = float(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{what} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return value


def _network_names(network, service_names):
    n = network.number_of_nodes
    if service_names is None:
        return [f"node{i + 1}" for i in range(n)]
    names = list(service_names)
    if len(names) != n or len(set(names)) != n or not all(isinstance(x, str) and x for x in names):
        raise ValueError(f"service_names must be {n} distinct non-empty strings (one per ciw "
                         f"node), got {service_names!r}")
    return names


def _check_network(network):
    for cname, cls in network.customer_classes.items():
        for i, d in enumerate(cls.arrival_distributions):
            if isinstance(d, ciw.dists.PoissonIntervals):
                raise ValueError(
                    f"ciw network class {cname!r} node {i + 1}: PoissonIntervals draws its arrival "
                    "dates when it is created, so every replication would replay the same dates; "
                    "use a ServiceGraph with analysis.topology.RateSchedule instead")


def _servers_spec(c):
    if isinstance(c, ciw.Schedule):
        if getattr(c, "offset", 0.0):
            return ((0, float(c.offset)),) + tuple(
                (n, float(c.offset) + e) for n, e in zip(c.numbers_of_servers, c.shift_end_dates))
        return tuple(zip(c.numbers_of_servers, c.shift_end_dates))
    return c


# ----------------------------------------------------------------------------------------------
# one replication (runs in the worker)
# ----------------------------------------------------------------------------------------------

@dataclass
class _Task:
    model: object
    trial: int
    seed: int
    horizon: float
    warmup: float
    drain: float
    keep_records: bool
    overloaded: bool
    service_names: list | None
    path: str = "ciw"              # "ciw" or "recursion" (analysis.recursions)


def _compile(task: _Task) -> tuple[CompiledModel, bool]:
    model = task.model
    if isinstance(model, (ServiceGraph, FanOut)):
        return model.compile(overloaded=task.overloaded), False
    names = _network_names(model, task.service_names)
    servers = [_servers_spec(sc.number_of_servers) for sc in model.service_centres]
    return CompiledModel(network=model, node_names=names,
                         class_names=list(model.customer_class_names), servers=servers), True


def _advance(sim, horizon: float, stop: float) -> float:
    """Simulate to ``horizon``, then until every request that arrived before it has left (or
    ``stop``). Returns the time the simulation ended."""
    sim.simulate_until_max_time(horizon)
    tagged = sim.nodes[0].number_of_individuals          # ids 1..tagged arrived before horizon
    nodes = sim.transitive_nodes

    def pending() -> bool:
        for nd in nodes:
            for ind in nd.all_individuals:
                if ind.id_number <= tagged:
                    return True
        return False

    nxt = sim.find_next_active_node()
    sim.current_time = nxt.next_event_date
    steps = 0
    while sim.current_time < stop:
        if steps % 64 == 0 and not pending():
            break
        nxt = sim.event_and_return_nextnode(nxt)
        sim.statetracker.timestamp()
        sim.current_time = nxt.next_event_date
        steps += 1
    end = min(sim.current_time, stop)
    sim.current_time = end
    return end


def _clean_incomplete(rec):
    """ciw's incomplete records can carry False or strings ('resume') in time fields."""
    def num(x):
        return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None
    return rec._replace(waiting_time=num(rec.waiting_time),
                        service_start_date=num(rec.service_start_date),
                        service_time=num(rec.service_time),
                        service_end_date=num(rec.service_end_date))


def _extract(sim, class_names) -> dict:
    recs = sim.get_all_records(only=["service", "renege", "rejection", "interrupted service"],
                               include_incomplete=True)
    recs = [r if r.record_type != "incomplete" else _clean_incomplete(r) for r in recs]
    if not recs:
        empty_f, empty_i = np.empty(0), np.empty(0, dtype=np.int64)
        return dict(id=empty_i, cls=empty_i.astype(np.int16), node=empty_i, arrival=empty_f,
                    wait=empty_f, start=empty_f, service_time=empty_f, end=empty_f, exit=empty_f,
                    kind=empty_i.astype(np.int8))
    cols = list(zip(*recs))
    code = {c: i for i, c in enumerate(class_names)}

    def floats(col):       # ciw writes None for fields an incomplete record does not have
        return np.array(col, dtype=float)

    return dict(
        id=np.array(cols[0], dtype=np.int64),
        cls=np.array([code[c] for c in cols[1]], dtype=np.int16),
        node=np.array(cols[3], dtype=np.int64),
        arrival=np.array(cols[4], dtype=float),
        wait=floats(cols[5]),
        start=floats(cols[6]),
        service_time=floats(cols[7]),
        end=floats(cols[8]),
        exit=floats(cols[10]),
        kind=np.array([_KIND[t] for t in cols[15]], dtype=np.int8),
    )


def _servers_integral(spec, t0: float, t1: float) -> float:
    """Available server-seconds in [t0, t1] (nan for infinite servers)."""
    if isinstance(spec, tuple):
        period = spec[-1][1]

        def cumulative(t):
            cycles, r = divmod(t, period)
            total, start = 0.0, 0.0
            per_cycle = 0.0
            for c, end in spec:
                per_cycle += c * (end - start)
                if r > start:
                    total += c * (min(r, end) - start)
                start = end
            return cycles * per_cycle + total

        return cumulative(t1) - cumulative(t0)
    if spec == math.inf:
        return math.nan
    return float(spec) * (t1 - t0)


def _quantiles(x: np.ndarray) -> tuple[float, float, float]:
    if x.size == 0:
        return (math.nan,) * 3
    q = np.quantile(x, [0.5, 0.95, 0.99])
    return float(q[0]), float(q[1]), float(q[2])


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def _occupancy(arrival, leave, t0: float, t1: float) -> float:
    """Time-average number of intervals [arrival, leave) covering [t0, t1] (leave may be nan:
    still there at the end of the run)."""
    if arrival.size == 0:
        return 0.0
    leave = np.where(np.isnan(leave), np.inf, leave)
    overlap = np.clip(np.minimum(leave, t1) - np.maximum(arrival, t0), 0.0, None)
    return float(overlap.sum()) / (t1 - t0)


def _visit_stats(rows, service, cname, kind, wait, response, window, occupancy=None):
    """Per-service metrics of the visits of requests that arrived in the window; ``occupancy``
    = (mean_in_system, mean_queue_length) time averages over the window."""
    n = int(kind.size)
    served = kind == 0
    w = wait[served]
    r = response[served]
    p50, p95, p99 = _quantiles(r)
    timed_out = int(np.count_nonzero(kind == 1))
    blocked = int(np.count_nonzero(kind == 2))
    in_system, in_queue = occupancy if occupancy is not None else (math.nan, math.nan)
    for metric, value in (
        ("arrivals", n), ("arrival_rate", n / window), ("completed", int(served.sum())),
        ("throughput", served.sum() / window),
        ("p_wait", float(np.count_nonzero(w > 0)) / w.size if w.size else math.nan),
        ("mean_wait", _mean(w)),
        ("mean_response", _mean(r)), ("mean_in_system", in_system),
        ("mean_queue_length", in_queue), ("p50_response", p50), ("p95_response", p95),
        ("p99_response", p99), ("timed_out", timed_out), ("blocked", blocked),
        ("timed_out_fraction", timed_out / n if n else math.nan),
        ("blocked_fraction", blocked / n if n else math.nan),
    ):
        rows.append((service, cname, metric, float(value)))


def _request_stats(rows, cname, outcome, response, retries, window, in_system=math.nan):
    """End-to-end metrics of the requests that arrived in the window; ``in_system``: the
    time-average number of requests in the graph over the window."""
    n = int(outcome.size)
    done = outcome == 0
    r = response[done]
    p50, p95, p99 = _quantiles(r)
    timed_out = int(np.count_nonzero(outcome == 1))
    blocked = int(np.count_nonzero(outcome == 2))
    for metric, value in (
        ("arrivals", n), ("arrival_rate", n / window), ("completed", int(done.sum())),
        ("throughput", done.sum() / window), ("mean_response", _mean(r)),
        ("mean_in_system", in_system), ("p50_response", p50), ("p95_response", p95),
        ("p99_response", p99),
        ("timed_out", timed_out), ("blocked", blocked),
        ("timed_out_fraction", timed_out / n if n else math.nan),
        ("blocked_fraction", blocked / n if n else math.nan),
        ("incomplete", int(np.count_nonzero(outcome == 3))),
        ("mean_retries", _mean(retries.astype(float)) if retries is not None else math.nan),
    ):
        rows.append((END_TO_END, cname, metric, float(value)))


_DIST_FUNCTIONS = ("expovariate", "uniform", "triangular", "gammavariate", "lognormvariate",
                   "weibullvariate")


@contextlib.contextmanager
def _private_random(seed: int):
    """Give ciw (and this package's samplers) a private random.Random(seed) for one replication.

    ciw samples through Python's *global* random state (module-level functions). In a dask
    worker the event-loop thread also draws from that state (tornado's jittered periodic
    callbacks) while a task runs, which would make results depend on timing. A private
    Random(seed) yields exactly the stream of ciw.seed(seed), untouched by other threads.
    Written for ciw 3.2.x: the module-level names patched here are checked to exist.
    """
    import ciw.arrival_node
    import ciw.auxiliary
    import ciw.dists.distributions as cdist
    import ciw.node

    from analysis import topology

    ciw.seed(seed)                    # numpy generator (ciw.rng) and the global state
    rng = random.Random(seed)
    patches = [(ciw.auxiliary, "random", rng), (ciw.node, "random", rng.random),
               (ciw.arrival_node, "random", rng.random), (cdist, "random", rng),
               (topology, "random", rng)]
    patches += [(cdist, name, getattr(rng, name)) for name in _DIST_FUNCTIONS]
    saved = []
    try:
        for module, name, value in patches:
            saved.append((module, name, getattr(module, name)))   # AttributeError if ciw changed
            setattr(module, name, value)
        yield rng
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while ciw runs and its records are reduced: ciw keeps
    every request object alive until the end of the run, so the collector would only rescan
    live objects (about 20% of the run time on long runs). Reference counting still frees
    everything else, and _teardown breaks the simulation's reference cycles afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _replicate(task: _Task) -> dict:
    if task.path == "recursion":          # exact FIFO recursions: same raw records, same reduction
        from analysis import recursions
        compiled, visits, end_time = recursions.replicate(task)
        return _reduce(task, compiled, visits, end_time)
    with _gc_paused():
        with _private_random(task.seed):
            compiled, native = _compile(task)
            sim = ciw.Simulation(compiled.network) if native else compiled.simulation()
            end_time = _advance(sim, task.horizon, task.horizon + task.drain)
        out = _reduce(task, compiled, sim, end_time)
        _teardown(sim)
    return out


def _teardown(sim) -> None:
    """Break the reference cycles of a finished ciw simulation (simulation <-> nodes <->
    servers <-> requests) so reference counting frees it at once, without a full garbage
    collection over every request object."""
    for node in sim.nodes:
        for server in node.__dict__.get("servers") or ():
            server.__dict__.clear()
        node.__dict__.clear()
    sim.__dict__.clear()


def _reduce(task: _Task, compiled: CompiledModel, sim, end_time: float) -> dict:
    horizon, warmup = task.horizon, task.warmup
    v = sim if isinstance(sim, dict) else _extract(sim, compiled.class_names)
    names = compiled.node_names
    n_nodes = len(names)
    named = np.array([nm is not None for nm in names] + [False])   # index node-1; exit -> False
    node_idx = np.where(v["node"] > 0, v["node"] - 1, n_nodes)
    is_named = named[node_idx]
    window = horizon - warmup
    fan = compiled.fanout
    rows: list = []
    class_names = compiled.class_names
    multi = len(class_names) > 1

    # ---- requests ---------------------------------------------------------------------------
    if fan is None:
        ids = v["id"]
        if ids.size:
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        else:
            starts = np.empty(0, dtype=np.int64)
        sizes = np.diff(np.r_[starts, ids.size])
        last = starts + sizes - 1
        req_arrival = v["arrival"][starts]
        final_kind = v["kind"][last]
        outcome = np.where(final_kind <= 2, final_kind, 3).astype(np.int8)   # 4 cannot be last
        req_exit = np.where(outcome < 3, v["exit"][last], np.nan)
        backoff = (v["node"] == compiled.backoff_node if compiled.backoff_node
                   else np.zeros(ids.size, dtype=bool))
        counted = is_named & (v["kind"] != 4)
        if starts.size:
            retries = np.add.reduceat(backoff.astype(np.int64), starts)
            backoff_time = np.add.reduceat(
                np.where(backoff, np.nan_to_num(v["service_time"]), 0.0), starts)
            n_visits = np.add.reduceat(counted.astype(np.int64), starts)
        else:
            retries = backoff_time = n_visits = np.empty(0)
        req = dict(request=ids[starts], cls=v["cls"][starts], arrival=req_arrival, exit=req_exit,
                   outcome=outcome, visits=n_visits, retries=retries, backoff_time=backoff_time)
        visit_req_arrival = np.repeat(req_arrival, sizes)
        visit_request = ids
    else:
        class_code = class_names.index(fan.request_class)
        j = join_requests(v, fan, horizon, class_code, names)
        req = dict(request=j["request"], cls=np.full(j["request"].size, class_code, np.int16),
                   arrival=j["arrival"], exit=j["exit"], outcome=j["outcome"],
                   critical=j["critical"])
        visit_req_arrival = v["arrival"]
        visit_request = j["visit_request"]
    req_in = (req["arrival"] >= warmup) & (req["arrival"] < horizon)
    req_response = req["exit"] - req["arrival"]

    # ---- per-service statistics -------------------------------------------------------------
    in_window = (visit_req_arrival >= warmup) & (visit_req_arrival < horizon)
    keep = is_named & (v["kind"] != 4) & in_window
    response = v["exit"] - v["arrival"]
    busy_start = v["start"]
    busy_end = np.where(v["kind"] == 4, v["exit"], v["end"])
    busy_end = np.where(np.isnan(busy_end) & ~np.isnan(busy_start), end_time, busy_end)
    overlap = np.clip(np.minimum(busy_end, horizon) - np.maximum(busy_start, warmup), 0.0, None)
    overlap = np.nan_to_num(overlap)
    # occupancy from every visit present in the window (also those of requests that arrived
    # before the warm-up cut): in system from arrival to exit, in queue until service starts
    # (or until exit for a timed-out or rejected visit); unfinished visits stay to the end
    present = v["kind"] != 4
    queue_end = np.where(np.isnan(v["start"]), v["exit"], v["start"])

    def occupancy(mask):
        return (_occupancy(v["arrival"][mask], v["exit"][mask], warmup, horizon),
                _occupancy(v["arrival"][mask], queue_end[mask], warmup, horizon))

    for i, name in enumerate(names):
        if name is None:
            continue
        at_node = present & (v["node"] == i + 1)
        at = keep & (v["node"] == i + 1)
        _visit_stats(rows, name, ALL_CLASSES, v["kind"][at], v["wait"][at], response[at], window,
                     occupancy(at_node))
        capacity = _servers_integral(compiled.servers[i], warmup, horizon)
        busy = float(overlap[v["node"] == i + 1].sum())
        rows.append((name, ALL_CLASSES, "utilisation",
                     busy / capacity if capacity and not math.isnan(capacity) else math.nan))
        if multi:
            for c, cname in enumerate(class_names):
                atc = at & (v["cls"] == c)
                _visit_stats(rows, name, cname, v["kind"][atc], v["wait"][atc], response[atc],
                             window, occupancy(at_node & (v["cls"] == c)))
    r_retries = req.get("retries")
    _request_stats(rows, ALL_CLASSES, req["outcome"][req_in], req_response[req_in],
                   r_retries[req_in] if r_retries is not None else None, window,
                   _occupancy(req["arrival"], req["exit"], warmup, horizon))
    if multi and fan is None:
        for c, cname in enumerate(class_names):
            m = req_in & (req["cls"] == c)
            mc = req["cls"] == c
            _request_stats(rows, cname, req["outcome"][m], req_response[m],
                           r_retries[m] if r_retries is not None else None, window,
                           _occupancy(req["arrival"][mc], req["exit"][mc], warmup, horizon))
    out = {"trial": task.trial, "stats": rows, "class_names": class_names,
           "node_names": names, "end_time": end_time}
    if task.keep_records:
        out["visits"] = dict(request=visit_request[keep], cls=v["cls"][keep], node=v["node"][keep],
                             arrival=v["arrival"][keep], wait=v["wait"][keep],
                             service_time=v["service_time"][keep], exit=v["exit"][keep],
                             response=response[keep], kind=v["kind"][keep])
        out["requests"] = {k: a[req_in] for k, a in req.items()}
        out["requests"]["response"] = req_response[req_in]
        carried = (req["arrival"] < warmup) & ~(req["exit"] <= warmup)   # nan exit: still in
        out["carried_over"] = dict(request=req["request"][carried],
                                   arrival=req["arrival"][carried], exit=req["exit"][carried])
    return out


# ----------------------------------------------------------------------------------------------
# executors
# ----------------------------------------------------------------------------------------------

def _is_dask_client(executor) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed" and hasattr(executor, "gather")


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")    # cheap start, safe with a single thread
    if "forkserver" in methods:                       # other threads alive: never fork them
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["analysis.simulation"])
        return ctx
    return multiprocessing.get_context("spawn")


def _progress(total, enabled):
    from tqdm import tqdm

    class _Bar(tqdm):
        monitor_interval = 0      # no monitor thread (it would make forking unsafe)

    return _Bar(total=total, desc="replications", unit="rep",
                disable=(None if enabled is None else not enabled), leave=False)


def map_tasks(fn, tasks, executor, bar, max_workers: int | None = None, serial_fn=None) -> list:
    """``fn(task)`` for every task, results in task order, on ``executor``: "serial" (``serial_fn`` if
    given, else ``fn``, in this process), "processes", a concurrent.futures.Executor or a dask Client
    (checked by :func:`_check_executor`). ``bar`` (a tqdm bar) advances as tasks finish."""
    results = [None] * len(tasks)
    if executor == "serial":
        for i, t in enumerate(tasks):
            results[i] = (serial_fn or fn)(t)
            bar.update(1)
    elif executor == "processes":
        workers = min(max_workers or _default_workers(), len(tasks))
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as pool:
            futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
            for f in cf.as_completed(futures):
                results[futures[f]] = f.result()
                bar.update(1)
    elif _is_dask_client(executor):
        from distributed import as_completed
        futures = executor.map(fn, tasks, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for f in as_completed(futures):
            results[index[f.key]] = f.result()
            bar.update(1)
    else:
        futures = {executor.submit(fn, t): i for i, t in enumerate(tasks)}
        for f in cf.as_completed(futures):
            results[futures[f]] = f.result()
            bar.update(1)
    return results


def _replicate_isolated(task):
    """A serial replication with the isolation of a process: the worker gets its own copy of the model."""
    return _replicate(pickle.loads(pickle.dumps(task)))


def _run_tasks(tasks, executor, max_workers, progress) -> list:
    bar = _progress(len(tasks), progress)
    try:
        return map_tasks(_replicate, tasks, executor, bar, max_workers, serial_fn=_replicate_isolated)
    finally:
        bar.close()


_SERIAL_VISITS = 2e6       # below this many visits a recursion run is faster than starting workers
#: Below this many visits a ciw run is cheaper serially: ciw simulates about 30,000 visits per CPU-s, and
#: starting worker processes inside a Jupyter kernel (a forkserver that imports the kit, since a kernel runs
#: several threads and must not fork) costs about 1.5 CPU-s.
_SERIAL_CIW_VISITS = 5e4


def _auto_executor(path: str, replications: int, traffic, span: float) -> str:
    """executor="auto": "serial" for one replication or a small run (fewer expected service visits,
    arrival rates x span x replications, than starting workers is worth), else "processes" (results are
    identical either way)."""
    if replications == 1 or _default_workers() == 1:
        return "serial"
    if traffic is not None:
        visits = float(traffic["arrival_rate"].sum()) * span * replications
        if visits < (_SERIAL_VISITS if path == "recursion" else _SERIAL_CIW_VISITS):
            return "serial"
    return "processes"


def _check_executor(executor, max_workers):
    if max_workers is not None:
        checks.integer("max_workers", max_workers, 1)
    if isinstance(executor, str):
        if executor not in ("auto", "serial", "processes"):
            raise ValueError(f"executor must be 'serial', 'processes', 'auto', a concurrent.futures."
                             f"Executor or a dask distributed.Client, got {executor!r}")
        return
    if isinstance(executor, cf.ThreadPoolExecutor):
        raise ValueError("executor: a ThreadPoolExecutor cannot run ciw replications (ciw uses "
                         "Python's global random state); use 'processes' or a ProcessPoolExecutor")
    if _is_dask_client(executor):
        threads = executor.nthreads()
        if not threads:
            raise ValueError("executor: the dask client has no workers")
        many = {w: n for w, n in threads.items() if n > 1}
        if many:
            raise ValueError(f"executor: dask workers must run one thread each (ciw uses Python's "
                             f"global random state); worker(s) {sorted(many)} have "
                             f"{sorted(set(many.values()))} threads: start the cluster with "
                             "threads_per_worker=1, processes=True")
        return
    if not isinstance(executor, cf.Executor):
        raise ValueError(f"executor must be 'serial', 'processes', a concurrent.futures.Executor "
                         f"or a dask distributed.Client, got {executor!r}")


# ----------------------------------------------------------------------------------------------
# the public entry point
# ----------------------------------------------------------------------------------------------

def run_trials(model, replications: int = 10, horizon: float = 1000.0,
               warmup: float | None = None, seed: int = 0, executor="auto", *,
               max_workers: int | None = None, allow_overload: bool = False,
               drain: float | None = None, keep_records: bool = True,
               progress: bool | None = None, service_names=None,
               confidence: float = DEFAULT_CONFIDENCE, path: str = "auto") -> TrialResult:
    """Run ``replications`` independent replications of ``model`` and summarise them.

    model: ServiceGraph, FanOut or ciw.Network (give ``service_names`` for a ciw network).
    horizon: arrivals counted in [0, horizon) seconds; warmup: requests arriving before it are
    dropped (0 <= warmup < horizon); None (default): DEFAULT_WARMUP_FRACTION x horizon (10%),
    recorded in ``params["warmup"]``; 0 only for a transient study that starts empty. drain:
    extra seconds allowed for tagged requests to finish (default: horizon). seed: base seed
    (see replication_seeds). executor: "auto" (processes unless the work is small enough that
    starting them costs more: one replication, or a recursion run of under ~2 million visits),
    "serial", "processes", a concurrent.futures.Executor or a dask distributed.Client. path:
    "auto" (the exact FIFO recursions of analysis.recursions when the model has one, else ciw),
    "recursion" (an error naming the obstacle if the model has none) or "ciw"; the path taken is
    ``result.path``. confidence: level of the summary intervals. allow_overload:
    run even if some service has utilisation >= 1 (the run stays bounded: horizon + drain, and
    an admission cap on requests in the system). keep_records=False ships only per-replication
    statistics back (for very long runs). progress: tqdm bar (None: only on a terminal).
    confidence: level of the summary's intervals (in (0, 1); TrialResult.summarise(level) gives
    others).

    All inputs are checked (ValueError naming the culprit) before any simulation starts.
    """
    if not isinstance(model, (ServiceGraph, FanOut, ciw.Network)):
        raise ValueError(f"model must be a ServiceGraph, a FanOut or a ciw.Network, "
                         f"got {type(model).__name__}")
    replications = checks.integer("replications", replications, 1)
    horizon = _check_time("horizon", horizon, allow_zero=False)
    warmup = (DEFAULT_WARMUP_FRACTION * horizon if warmup is None
              else _check_time("warmup", warmup, allow_zero=True))
    confidence = checks.open_unit("confidence", confidence)
    if warmup >= horizon:
        raise ValueError(f"warmup ({warmup:g} s) must be shorter than horizon ({horizon:g} s)")
    drain = horizon if drain is None else _check_time("drain", drain, allow_zero=True)
    seeds = replication_seeds(seed, replications)
    if not isinstance(allow_overload, bool):
        raise ValueError(f"allow_overload must be True or False, got {allow_overload!r}")
    if not isinstance(keep_records, bool):
        raise ValueError(f"keep_records must be True or False, got {keep_records!r}")
    _check_executor(executor, max_workers)
    from analysis import recursions
    if path not in recursions.PATHS:
        raise ValueError(f"path must be one of {recursions.PATHS}, got {path!r}")
    traffic = None
    overloaded = False
    if isinstance(model, ciw.Network):
        _network_names(model, service_names)
        _check_network(model)
    else:
        if service_names is not None:
            raise ValueError("service_names is only for a ciw.Network (graphs name their services)")
        traffic = model.check(horizon, allow_overload)
        overloaded = bool((traffic["utilisation"] >= 1.0).any())
    path = recursions.choose_path(model, path, overloaded)
    if executor == "auto":
        executor = _auto_executor(path, replications, traffic, horizon + drain)
    tasks = [_Task(model, i, s, horizon, warmup, drain, keep_records, overloaded, service_names,
                   path) for i, s in enumerate(seeds)]
    outputs = _run_tasks(tasks, executor, max_workers, progress)
    per_trial = _per_trial_frame(outputs)
    summary = _summarise(per_trial, confidence)
    records = requests = carried = None
    if keep_records:
        records, requests, carried = _record_frames(outputs)
    params = dict(replications=replications, horizon=horizon, warmup=warmup, seed=seed,
                  drain=drain, seeds=seeds, allow_overload=allow_overload, path=path,
                  executor=executor if isinstance(executor, str) else type(executor).__name__,
                  overloaded=overloaded, end_times=[o["end_time"] for o in outputs])
    return TrialResult(summary=summary, per_trial=per_trial, records=records, requests=requests,
                       traffic=traffic, params=params, confidence=confidence,
                       carried_over=carried)


def _per_trial_frame(outputs) -> pd.DataFrame:
    trial, service, cls, metric, value = [], [], [], [], []
    for o in outputs:
        for s, c, m, x in o["stats"]:
            trial.append(o["trial"])
            service.append(s)
            cls.append(c)
            metric.append(m)
            value.append(x)
    return pd.DataFrame({"trial": np.array(trial, dtype=np.int64), "service": service,
                         "customer_class": cls, "metric": metric,
                         "value": np.array(value, dtype=float)})


def _summarise(per_trial: pd.DataFrame, confidence: float = DEFAULT_CONFIDENCE) -> pd.DataFrame:
    """Mean across replications of every (service, customer_class, metric) with a t-interval
    at level ``confidence``.

    Vectorised: group sums by bincount and one t quantile per distinct replication count (a
    groupby loop with a t.ppf per group dominated short runs); tests/test_simulation.py keeps that loop as the reference.
    """
    keys = ["service", "customer_class", "metric"]
    columns = keys + ["estimate", "ci_low", "ci_high", "half_width", "std", "replications"]
    if per_trial.empty:
        return pd.DataFrame(columns=columns)
    gid = per_trial.groupby(keys, sort=False).ngroup().to_numpy()   # order of first appearance
    grouped = gid >= 0                                               # NaN keys are dropped
    groups, first = np.unique(gid[grouped], return_index=True)
    first = np.flatnonzero(grouped)[first]
    n_groups = int(groups[-1]) + 1 if len(groups) else 0
    x = per_trial["value"].to_numpy(dtype=float)
    keep = grouped & np.isfinite(x)
    g, xk = gid[keep], x[keep]
    n = np.bincount(g, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = np.bincount(g, weights=xk, minlength=n_groups) / n
        ss = np.bincount(g, weights=(xk - est[g]) ** 2, minlength=n_groups)
        std = np.where(n >= 2, np.sqrt(ss / (n - 1)), np.nan)
    t_level = 0.5 + 0.5 * confidence
    t_mult = np.full(n_groups, np.nan)
    for k in np.unique(n[n >= 2]):
        t_mult[n == k] = float(special.stdtrit(int(k) - 1, t_level))   # = stats.t.ppf, without scipy.stats
    with np.errstate(invalid="ignore"):
        half = t_mult * std / np.sqrt(n)
    head = per_trial.iloc[first]
    return pd.DataFrame({
        "service": head["service"].to_numpy(), "customer_class": head["customer_class"].to_numpy(),
        "metric": head["metric"].to_numpy(), "estimate": est, "ci_low": est - half,
        "ci_high": est + half, "half_width": half, "std": std, "replications": n.astype(np.int64),
    }, columns=columns)


def _record_frames(outputs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    class_names = outputs[0]["class_names"]
    node_names = [n for n in outputs[0]["node_names"]]
    services = [n for n in node_names if n is not None]
    lut = np.array([services.index(n) if n is not None else -1 for n in node_names] + [-1],
                   dtype=np.int64)                      # ciw node id - 1 -> service code
    vparts, rparts, cparts = [], [], []
    for o in outputs:
        vis, req = o["visits"], o["requests"]
        nv = vis["node"].size
        vparts.append(pd.DataFrame({
            "trial": np.full(nv, o["trial"], dtype=np.int32),
            "request": vis["request"],
            "customer_class": pd.Categorical.from_codes(vis["cls"].astype(np.int64),
                                                        class_names),
            "service": pd.Categorical.from_codes(lut[vis["node"] - 1], services),
            "arrival": vis["arrival"], "wait": vis["wait"], "service_time": vis["service_time"],
            "exit": vis["exit"], "response": vis["response"],
            "outcome": pd.Categorical.from_codes(vis["kind"].astype(np.int64), VISIT_OUTCOMES),
        }))
        nr = req["request"].size
        frame = {
            "trial": np.full(nr, o["trial"], dtype=np.int32),
            "request": req["request"],
            "customer_class": pd.Categorical.from_codes(req["cls"].astype(np.int64),
                                                        class_names),
            "arrival": req["arrival"], "exit": req["exit"], "response": req["response"],
            "outcome": pd.Categorical.from_codes(req["outcome"].astype(np.int64), REQUEST_OUTCOMES),
        }
        if "critical" in req:
            crit = req["critical"]
            codes = np.where(crit > 0, lut[np.maximum(crit, 1) - 1], -1)
            frame["critical_service"] = pd.Categorical.from_codes(codes, services)
        else:
            frame["visits"] = req["visits"].astype(np.int64)
            frame["retries"] = req["retries"].astype(np.int64)
            frame["backoff_time"] = req["backoff_time"].astype(float)
        rparts.append(pd.DataFrame(frame))
        co = o["carried_over"]
        cparts.append(pd.DataFrame({"trial": np.full(co["request"].size, o["trial"], np.int32),
                                    "request": co["request"], "arrival": co["arrival"],
                                    "exit": co["exit"]}))
    return (pd.concat(vparts, ignore_index=True), pd.concat(rparts, ignore_index=True),
            pd.concat(cparts, ignore_index=True))


def time_average_in_system(result: TrialResult, start: float, end: float) -> pd.Series:
    """Time-average number of requests in the system over [start, end) seconds, per trial.

    result: a TrialResult from run_trials(..., keep_records=True). Integrates the request count
    N(t) exactly from each request's arrival and exit times: L = (1 / (end - start)) * sum of the
    overlap of [arrival, exit) with [start, end), over the requests that arrived in the window
    (``result.requests``) *and* those already in the system at the warm-up cut
    (``result.carried_over``), so nothing present is left out. An independent measurement of L
    for checking Little's law L = lambda * W. Needs warmup <= start < end <= horizon (outside
    it some requests are not recorded: ValueError naming the limit). Requests with no exit
    (incomplete) count until ``end``. Returns a Series indexed by trial (requests).
    """
    if isinstance(result, pd.DataFrame):
        raise ValueError("time_average_in_system needs the TrialResult (it also holds the "
                         "requests already in the system at the warm-up cut), not "
                         "result.requests")
    if not isinstance(result, TrialResult):
        raise ValueError(f"result must be a TrialResult from run_trials, got "
                         f"{type(result).__name__}")
    if result.requests is None or result.carried_over is None:
        raise ValueError("result has no request records: run run_trials(..., keep_records=True)")
    start = _check_time("start", start, allow_zero=True)
    end = _check_time("end", end, allow_zero=False)
    if not start < end:
        raise ValueError(f"start ({start:g} s) must be before end ({end:g} s)")
    warmup, horizon = result.params["warmup"], result.params["horizon"]
    if start < warmup:
        raise ValueError(f"start ({start:g} s) is before the warm-up cut ({warmup:g} s): requests "
                         "that arrived and left before it are not recorded")
    if end > horizon:
        raise ValueError(f"end ({end:g} s) is after the horizon ({horizon:g} s): requests "
                         "arriving after it are not recorded")
    frames = [result.requests[["trial", "arrival", "exit"]],
              result.carried_over[["trial", "arrival", "exit"]]]
    requests = pd.concat(frames, ignore_index=True)
    arrival = requests["arrival"].to_numpy(dtype=float)
    exit_ = np.nan_to_num(requests["exit"].to_numpy(dtype=float), nan=end)
    overlap = np.clip(np.minimum(exit_, end) - np.maximum(arrival, start), 0.0, None)
    trials = requests["trial"].to_numpy()
    out = pd.Series(overlap, index=trials).groupby(level=0).sum() / (end - start)
    out = out.reindex(range(result.params["replications"]), fill_value=0.0)
    out.index.name = "trial"
    return out.rename("mean_in_system")
