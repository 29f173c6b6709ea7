"""Exact fast paths (analysis.recursions) against ciw: the same trajectory on given inputs, the
same distributions on random models, the automatic choice, and the engine limits (O(1) FIFO pick
in overload, refused absurd server counts).

Distribution checks: per-replication means compared with a two-sided 99.9% Welch t bound,
and a two-sample Kolmogorov-Smirnov test (p > 0.001) on responses thinned to every 25th request
of each replication (thinning weakens the serial correlation that the KS test does not model).
"""
from __future__ import annotations

import math

import ciw
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import recursions
from analysis.fanout import FanOut
from analysis.recursions import choose_path, fifo_station, why_not
from analysis.simulation import END_TO_END, run_trials
from analysis.topology import (
    Arrivals, CustomerClass, Exponential, Gamma, Lognormal, Pool, RateSchedule, Retry, Service,
    ServiceGraph, Uniform, _KitNode,
)

Z = 3.29   # two-sided 99.9%


# ----------------------------------------------------------------------------------------------
# one station: exactly ciw's trajectory on the same inter-arrival and service times
# ----------------------------------------------------------------------------------------------

class _ByRequest(ciw.dists.Distribution):
    """Service time of request i (ciw id i + 1) from a fixed list."""

    def __init__(self, values):
        self.values = list(values)

    def sample(self, t=None, ind=None):
        return self.values[ind.id_number - 1]


def ciw_starts(gaps, service, servers, cap=math.inf):
    """Start of service per request in ciw (NaN: rejected) for given gaps and service times."""
    if isinstance(servers, tuple):
        servers_arg = ciw.Schedule([c for c, _ in servers], [e for _, e in servers])
    else:
        servers_arg = servers
    net = ciw.create_network(arrival_distributions=[ciw.dists.Sequential(list(gaps) + [1e9])],
                             service_distributions=[_ByRequest(service)],
                             number_of_servers=[servers_arg], system_capacity=cap)
    ciw.seed(0)
    sim = ciw.Simulation(net)
    sim.simulate_until_max_time(float(np.sum(gaps)) + 1e6)
    out = np.full(len(gaps), np.nan)
    for r in sim.get_all_records():
        if r.record_type == "service":
            out[r.id_number - 1] = r.service_start_date
    return out


@pytest.mark.parametrize("servers, cap", [
    (1, math.inf), (3, math.inf), (math.inf, math.inf), (3, 6), (1, 3),
    (((2, 30.0), (0, 40.0), (4, 70.0), (1, 100.0)), math.inf),   # repeating schedule
    (((3, 25.0), (1, 60.0)), 5),                                   # schedule and admission cap
])
def test_station_recursion_reproduces_ciw_trajectory(servers, cap):
    rng = np.random.default_rng(7)
    n = 400
    gaps = rng.exponential(0.5, n)
    service = rng.gamma(0.5, 2.4, n)              # bursty: long queues, schedule changes mid-queue
    expected = ciw_starts(gaps, service, servers, cap)
    got = fifo_station(np.cumsum(gaps), service, servers, cap)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=0, atol=1e-9)
    if math.isfinite(cap):
        assert np.isnan(got).sum() > 0           # the cap did bite in this example


@pytest.mark.parametrize("args, match", [
    (([0.0, 1.0], [1.0], 1), "same length"),
    (([1.0, 0.5], [1.0, 1.0], 1), "increasing order"),
    (([0.0, 1.0], [1.0, -1.0], 1), "service must be"),
    (([0.0, 1.0], [1.0, 1.0], 0), "servers must be"),
    (([0.0, 1.0], [1.0, 1.0], 2.5), "servers must be"),
])
def test_station_bad_input_is_named(args, match):
    with pytest.raises(ValueError, match=match):
        fifo_station(*args)


def test_lindley_vector_form_equals_the_loop():
    rng = np.random.default_rng(1)
    a = np.cumsum(rng.exponential(1.0, 5000))
    s = rng.exponential(0.95, 5000)
    vec = fifo_station(a, s, 1)
    loop = np.array(recursions._heap_loop(a.tolist(), s.tolist(), 1))
    np.testing.assert_allclose(vec, loop, rtol=0, atol=1e-9)
    assert (vec >= a).all() and (np.diff(vec) >= 0).all()


# ----------------------------------------------------------------------------------------------
# the automatic choice
# ----------------------------------------------------------------------------------------------

def mmc(c=2, lam=1.5, mu=1.0, **kw):
    return ServiceGraph([Service("api", c, Exponential(rate=mu), **kw)], {"api": lam})


@pytest.mark.parametrize("model, reason", [
    (mmc(), None),
    (ServiceGraph([Service("a", 1, Exponential(rate=2.0)), Service("b", math.inf, Exponential(rate=1.0))],
                  {"a": 1.0}, routing={"a": {"b": 0.5}}), None),
    (FanOut([Service(f"l{i}", 1, Exponential(rate=2.0)) for i in range(3)], rate=1.0), None),
    (ServiceGraph([Service("a", 1, Exponential(rate=2.0)), Service("b", 1, Exponential(rate=2.0))],
                  [Arrivals("p", rate=1.0)], pools=[Pool("p", ["a", "b"], "random")]), None),
    (ServiceGraph([Service("a", 1, Exponential(rate=2.0)), Service("b", 1, Exponential(rate=2.0))],
                  [Arrivals("p", rate=1.0)], pools=[Pool("p", ["a", "b"], "jsq")]), "pool 'p'"),
    (ServiceGraph([Service("a", 1, Exponential(rate=2.0)), Service("b", 1, Exponential(rate=2.0))],
                  [Arrivals("p", rate=1.0)], pools=[Pool("p", ["a", "b"], "round_robin")]),
     "round_robin"),
    (mmc(timeout=1.0), "timeout"),
    (mmc(retry=Retry(1)), "retries"),
    (mmc(queue_capacity=3), "finite queue"),
    (ServiceGraph([Service("a", 1, Exponential(rate=5.0))],
                  [Arrivals("a", rate=1.0, customer_class="x"),
                   Arrivals("a", rate=1.0, customer_class="y")],
                  classes=[CustomerClass("x", 0), CustomerClass("y", 1)]), "priorities"),
    (ServiceGraph([Service("a", 1, {"x": Exponential(rate=5.0), "y": Exponential(rate=3.0)})],
                  [Arrivals("a", rate=1.0, customer_class="x"),
                   Arrivals("a", rate=1.0, customer_class="y")]), None),
    (ServiceGraph([Service("a", 1, Exponential(rate=5.0)), Service("b", 1, Exponential(rate=5.0))],
                  {"a": 1.0}, routing={"a": {"b": 0.5}, "b": {"a": 0.5}}), "cyclic"),
    (ServiceGraph([Service("a", 1, Exponential(rate=5.0)), Service("b", 1, Exponential(rate=5.0))],
                  {"a": 1.0}, routing={"a": "b"}, max_in_system=50), "admission cap"),
])
def test_auto_path_and_the_reason_for_ciw(model, reason):
    got = why_not(model)
    if reason is None:
        assert got is None
        assert choose_path(model, "auto") == "recursion"
    else:
        assert reason in got
        assert choose_path(model, "auto") == "ciw"
        with pytest.raises(ValueError, match=f"path='recursion'.*{reason}"):
            choose_path(model, "recursion")
    assert choose_path(model, "ciw") == "ciw"


def test_result_says_which_path_ran_and_bad_path_is_refused():
    r = run_trials(mmc(), 2, horizon=50.0, seed=1, executor="serial", progress=False)
    assert r.path == "recursion" and r.params["path"] == "recursion"
    r = run_trials(mmc(timeout=2.0), 2, horizon=50.0, seed=1, executor="serial", progress=False)
    assert r.path == "ciw"
    with pytest.raises(ValueError, match="path must be one of"):
        run_trials(mmc(), 2, horizon=50.0, path="fast")
    with pytest.raises(ValueError, match="timeout"):
        run_trials(mmc(timeout=2.0), 2, horizon=50.0, path="recursion")
    net = ciw.create_network(arrival_distributions=[ciw.dists.Exponential(1.0)],
                             service_distributions=[ciw.dists.Exponential(2.0)],
                             number_of_servers=[1])
    assert run_trials(net, 1, horizon=20.0, progress=False).path == "ciw"


def test_auto_executor_runs_small_recursion_runs_serially():
    small = run_trials(mmc(), 3, horizon=100.0, seed=1, progress=False)
    assert small.path == "recursion" and small.params["executor"] == "serial"
    one = run_trials(mmc(timeout=2.0), 1, horizon=50.0, seed=1, progress=False)
    assert one.path == "ciw" and one.params["executor"] == "serial"
    small_ciw = run_trials(mmc(timeout=2.0), 2, horizon=50.0, seed=1, progress=False)
    assert small_ciw.path == "ciw" and small_ciw.params["executor"] == "serial"
    if len(__import__("os").sched_getaffinity(0)) > 1:
        from analysis import simulation

        traffic = small_ciw.traffic           # expected visits = arrival rates x span x replications
        rate = float(traffic["arrival_rate"].sum())
        big_ciw = simulation._SERIAL_CIW_VISITS / rate * 1.01
        assert simulation._auto_executor("ciw", 2, traffic, big_ciw / 2) == "processes"
        assert simulation._auto_executor("ciw", 2, traffic, big_ciw / 2 * 0.98) == "serial"
        big_rec = simulation._SERIAL_VISITS / rate * 1.01
        assert simulation._auto_executor("recursion", 2, traffic, big_rec / 2) == "processes"
        many = run_trials(mmc(timeout=2.0), 2, horizon=50.0, seed=1, progress=False, executor="processes")
        pd.testing.assert_frame_equal(many.summary, small_ciw.summary)


def test_recursion_results_identical_across_executors_and_replication_counts():
    g = ServiceGraph([Service("a", 2, Lognormal(0.4, scv=2.0)), Service("b", 1, Exponential(rate=3.0))],
                     {"a": 3.0}, routing={"a": {"b": 0.6}})
    kw = dict(horizon=300.0, warmup=20.0, seed=4, progress=False)
    serial = run_trials(g, 3, executor="serial", **kw)
    procs = run_trials(g, 3, executor="processes", **kw)
    assert serial.path == procs.path == "recursion"
    pd.testing.assert_frame_equal(serial.summary, procs.summary)
    pd.testing.assert_frame_equal(serial.records, procs.records)
    two = run_trials(g, 2, executor="serial", **kw).per_trial
    three = serial.per_trial
    pd.testing.assert_frame_equal(two, three[three["trial"] < 2].reset_index(drop=True))


# ----------------------------------------------------------------------------------------------
# same distributions both ways
# ----------------------------------------------------------------------------------------------

def both_ways(model, replications, horizon, warmup=0.0, seed=3, **kw):
    out = {}
    for path in ("recursion", "ciw"):
        out[path] = run_trials(model, replications, horizon=horizon, warmup=warmup, seed=seed,
                               path=path, progress=False, **kw)
        assert out[path].path == path
    return out["recursion"], out["ciw"]


def per_trial(result, service, metric):
    pt = result.per_trial
    return pt[(pt["service"] == service) & (pt["metric"] == metric)
              & (pt["customer_class"] == "all")]["value"].to_numpy()


def assert_same_mean(a, b, service, metric):
    """Welch: the two paths' per-replication means differ by less than the 99.9% bound."""
    x, y = per_trial(a, service, metric), per_trial(b, service, metric)
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1)) if se > 0 else 1.0
    bound = stats.t.ppf(0.9995, df) * se
    assert abs(x.mean() - y.mean()) <= bound + 1e-12, (service, metric, x.mean(), y.mean(), se)
    return bound


def thinned(result, service=None, column="response", every=25):
    frame = result.records if service is not None else result.requests
    if service is not None:
        frame = frame[frame["service"] == service]
    frame = frame[frame["outcome"] == ("served" if service is not None else "completed")]
    return np.concatenate([g[column].to_numpy()[::every] for _, g in frame.groupby("trial")])


def assert_same_distribution(a, b, service=None, column="response"):
    x, y = thinned(a, service, column), thinned(b, service, column)
    assert min(x.size, y.size) > 300
    p = stats.ks_2samp(x, y).pvalue
    assert p > 0.001, (service, column, p, x.mean(), y.mean())


def test_gg2_station_agrees_with_ciw():
    g = ServiceGraph([Service("api", 2, Lognormal(mean=0.6, scv=2.0))],
                     [Arrivals("api", interarrival=Gamma(mean=0.5, scv=0.5))])
    a, b = both_ways(g, 12, horizon=2500.0, warmup=100.0)
    for metric in ("mean_wait", "mean_response", "p95_response", "utilisation", "throughput"):
        bound = assert_same_mean(a, b, "api", metric)
        if metric == "mean_wait":
            assert bound < 0.35 * per_trial(b, "api", "mean_wait").mean()  # the check has power
    assert_same_distribution(a, b, "api", "response")
    assert_same_distribution(a, b, "api", "wait")


def test_feed_forward_graph_with_branches_merges_and_a_schedule_agrees_with_ciw():
    """Branching, a merge reached by paths of different lengths (a later request can overtake),
    a delay node and a server schedule."""
    g = ServiceGraph(
        [Service("edge", 2, Exponential(rate=2.5)), Service("cache", math.inf, Uniform(low=0.1, high=0.5)),
         Service("app", 1, Gamma(mean=0.4, scv=0.5), schedule=[(1, 40.0), (2, 60.0)]),
         Service("db", 3, Exponential(rate=1.2))],
        {"edge": 3.0, "app": 0.3},
        routing={"edge": {"cache": 0.5, "app": 0.4}, "cache": {"db": 0.6}, "app": {"db": 0.5}})
    a, b = both_ways(g, 8, horizon=1500.0, warmup=100.0)
    for service in ("edge", "cache", "app", "db", END_TO_END):
        for metric in ("mean_response", "throughput"):
            assert_same_mean(a, b, service, metric)
    assert_same_mean(a, b, "app", "utilisation")
    assert_same_distribution(a, b, None, "response")
    assert_same_distribution(a, b, "db", "response")
    assert_same_distribution(a, b, "app", "wait")


def test_random_and_capacity_weighted_pools_and_equal_priority_classes_agree_with_ciw():
    web = [Service("web-0", 1, Exponential(rate=3.0)), Service("web-1", 2, Exponential(rate=3.0)),
           Service("web-2", math.inf, Exponential(rate=3.0))]
    api = [Service(f"api-{i}", 2, {"read": Exponential(rate=4.0), "write": Lognormal(0.5, scv=1.5)})
           for i in range(2)]
    g = ServiceGraph(web + api,
                     [Arrivals("web", rate=3.0, customer_class="read"),
                      Arrivals("api-0", rate=0.8, customer_class="write")],
                     pools=[Pool("web", [s.name for s in web], "capacity_weighted"),
                            Pool("api", [s.name for s in api], "random")],
                     routing={s.name: {"api": 0.5} for s in web})
    a, b = both_ways(g, 10, horizon=1500.0, warmup=50.0)
    for service in ("web-0", "web-1", "api-0", "api-1", END_TO_END):
        for metric in ("arrival_rate", "mean_response"):
            assert_same_mean(a, b, service, metric)
    for cls in ("read", "write"):
        x = a.requests[a.requests["customer_class"] == cls]["response"].mean()
        y = b.requests[b.requests["customer_class"] == cls]["response"].mean()
        assert x == pytest.approx(y, rel=0.1), cls
    assert_same_distribution(a, b, "api-0", "response")
    assert_same_distribution(a, b, None, "response")


def test_fanout_with_background_and_quorum_agrees_with_ciw():
    leaves = [Service(f"shard-{i}", 2 if i % 2 else 1, Exponential(rate=2.0)) for i in range(6)]
    f = FanOut(leaves, rate=RateSchedule((0.0, 60.0), (0.6, 1.2), period=120.0), quorum=5,
               background={"shard-0": 0.5})
    a, b = both_ways(f, 16, horizon=1000.0, warmup=50.0)
    for service in ("shard-0", "shard-3", END_TO_END):
        for metric in ("mean_response", "p95_response", "throughput"):
            assert_same_mean(a, b, service, metric)
    assert_same_distribution(a, b, None, "response")
    crit_a = a.requests["critical_service"].value_counts(normalize=True).sort_index()
    crit_b = b.requests["critical_service"].value_counts(normalize=True).sort_index()
    assert np.abs(crit_a - crit_b).max() < 0.05


def test_overloaded_time_varying_station_with_admission_cap_agrees_with_ciw():
    """The simulate_policy shape: one station, a server schedule, a rate schedule, a cap."""
    rates = RateSchedule((0.0, 30.0, 50.0), (3.0, 9.0, 2.0), period=80.0)
    s = Service("capacity", 4, Exponential(rate=1.5), schedule=[(2, 20.0), (5, 55.0), (3, 80.0)])
    g = ServiceGraph([s], [Arrivals("capacity", rate=rates)], max_in_system=25)
    a, b = both_ways(g, 8, horizon=1200.0, warmup=80.0, allow_overload=True)
    for metric in ("blocked_fraction", "mean_wait", "mean_response", "utilisation", "throughput"):
        assert_same_mean(a, b, "capacity", metric)
    assert per_trial(a, "capacity", "blocked_fraction").mean() > 0.02   # the cap bites
    assert_same_distribution(a, b, "capacity", "wait")


def test_requests_still_inside_after_the_drain_are_incomplete_both_ways():
    g = ServiceGraph([Service("a", 2, Exponential(rate=1.0)), Service("b", 1, Exponential(rate=2.5))],
                     {"a": 1.6}, routing={"a": "b"})
    a, b = both_ways(g, 16, horizon=400.0, warmup=20.0, drain=1.0)
    for service, metric in ((END_TO_END, "incomplete"), (END_TO_END, "completed"),
                            ("a", "utilisation"), ("b", "utilisation"), ("b", "mean_wait")):
        assert_same_mean(a, b, service, metric)
    assert per_trial(a, END_TO_END, "incomplete").mean() > 1
    open_visits = a.records[a.records["outcome"] == "incomplete"]
    assert open_visits["exit"].isna().all() and open_visits["service_time"].isna().all()
    ends = np.array(a.params["end_times"])
    assert (ends <= 401.0).all() and (ends == 401.0).sum() >= 8      # most runs hit the drain
    last = a.requests.groupby("trial")["exit"].max()
    assert (last <= 401.0).all()


def test_time_varying_arrivals_are_a_poisson_process_with_the_scheduled_rate():
    sched = RateSchedule((0.0, 10.0, 25.0), (5.0, 0.0, 20.0), period=40.0)
    stream = recursions._Stream(Arrivals("x", rate=sched), np.random.default_rng(3))
    t = stream.until(40.0 * 500)
    phase = t % 40.0
    assert not ((phase >= 10.0) & (phase < 25.0)).any()            # the zero-rate segment
    counts = np.histogram(t, bins=np.arange(0.0, 40.0 * 500 + 1, 40.0))[0]
    assert abs(counts.mean() - sched.integral(0.0, 40.0)) < Z * math.sqrt(350 / 500)
    assert abs(counts.var(ddof=1) / counts.mean() - 1.0) < 0.25     # Poisson: variance = mean
    late = t[phase >= 25.0] % 40.0
    assert stats.kstest((late - 25.0) / 15.0, "uniform").pvalue > 0.001


def test_later_arrivals_are_generated_until_no_tagged_request_can_be_overtaken(monkeypatch):
    """Requests arriving after the horizon can overtake a tagged request on a shorter path; the
    run extends its arrivals until that cannot happen. Check: identical tagged visits when every
    stream is generated to the end of the drain (each request keeps its own draws)."""
    g = ServiceGraph([Service("a", 2, Exponential(rate=1.2)), Service("slow", math.inf, Exponential(rate=0.1)),
                      Service("b", 1, Exponential(rate=2.5))],
                     {"a": 2.0}, routing={"a": {"slow": 0.3, "b": 0.7}, "slow": "b"})
    kw = dict(horizon=200.0, warmup=0.0, seed=8, executor="serial", progress=False)
    smart = run_trials(g, 2, **kw)
    until = recursions._Stream.until
    monkeypatch.setattr(recursions._Stream, "until",
                        lambda self, horizon: until(self, 400.0))     # horizon + drain
    full = run_trials(g, 2, **kw)
    pd.testing.assert_frame_equal(smart.records, full.records)
    pd.testing.assert_frame_equal(smart.summary, full.summary)
    # and without the extension the downstream merge would differ
    monkeypatch.setattr(recursions._Stream, "until", lambda self, horizon: until(self, 200.0))
    short = run_trials(g, 2, **kw)
    assert not short.records["wait"].equals(full.records["wait"])


# ----------------------------------------------------------------------------------------------
# engine limits (issue 8.5): overload stays O(1) per pick; absurd server counts are refused
# ----------------------------------------------------------------------------------------------

class _Counted:
    looked = 0

    def __init__(self, server):
        self._server = server

    @property
    def server(self):
        _Counted.looked += 1
        return self._server


def test_fifo_pick_looks_only_past_the_requests_in_service():
    """ciw scans every waiting request to pick the first (20-40x slower per request at 10,000
    queued); the kit's node stops at the first one without a server."""
    class FakeNode:
        service_discipline = staticmethod(ciw.disciplines.FIFO)
        now = 0.0

    node = FakeNode()
    queue = [_Counted(object()) for _ in range(4)] + [_Counted(False) for _ in range(10_000)]
    node.individuals = [queue]
    _Counted.looked = 0
    assert _KitNode.choose_next_customer(node) is queue[4]
    assert _Counted.looked <= 5
    node.individuals = [[_Counted(object())], []]
    assert _KitNode.choose_next_customer(node) is None


def test_overloaded_ciw_run_is_unchanged_by_the_fast_pick():
    """Same trajectory as ciw's own pick: compare with a node class using ciw's method."""
    g = ServiceGraph([Service("api", 2, Exponential(rate=1.0))], {"api": 3.0})
    r = run_trials(g, 1, horizon=300.0, seed=5, allow_overload=True, executor="serial",
                   progress=False, path="ciw")
    import analysis.topology as topology
    fast = topology._KitNode.choose_next_customer
    try:
        topology._KitNode.choose_next_customer = ciw.Node.choose_next_customer
        slow = run_trials(g, 1, horizon=300.0, seed=5, allow_overload=True, executor="serial",
                          progress=False, path="ciw")
    finally:
        topology._KitNode.choose_next_customer = fast
    pd.testing.assert_frame_equal(r.records, slow.records)


@pytest.mark.parametrize("make", [
    lambda: Service("huge", 10**8, Exponential(rate=1.0)),
    lambda: Service("huge", 1, Exponential(rate=1.0), schedule=[(1, 10.0), (10**8, 20.0)]),
])
def test_absurd_server_counts_are_refused_with_the_limit(make):
    with pytest.raises(ValueError, match=r"at most 100000.*math.inf"):
        make()


def test_importing_the_engine_does_not_load_scipy_stats():
    """scipy.stats costs about 3 s of import time; theory, capacity and the engine load it on
    first use only."""
    import subprocess
    import sys
    code = ("import sys, analysis.theory, analysis.capacity, analysis.simulation, "
            "analysis.recursions; print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from analysis import theory
    assert theory.halfin_whitt_alpha(1.0) == pytest.approx(1 / (1 + stats.norm.cdf(1.0)
                                                                / stats.norm.pdf(1.0)))
