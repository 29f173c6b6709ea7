"""Simulation engine: validation against closed forms, executors, seeds, warm-up, bad input.

Statistical checks: each closed-form value must lie inside a 99% t-interval built from the
per-replication values (seeded, so the outcome is reproducible), and the interval must be
narrow enough for the check to be able to fail: half-width <= ``max_rel`` x the theory value
(20% for means and quantiles of waits and responses, which converge slowly near saturation;
3-10% for rates, utilisations and probabilities). 99% rather than 95% because the file makes a
few dozen such checks.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
import time

import ciw
import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from analysis import theory
from analysis.simulation import END_TO_END, replication_seeds, run_trials
from analysis.topology import (
    Arrivals, CustomerClass, Exponential, Pool, RateSchedule, Retry, Service,
    ServiceGraph, two_point,
)


def interval(result, service, metric, cls="all", level=0.99):
    row = result.estimate(service, metric, cls, confidence=level)
    return float(row["estimate"]), float(row["half_width"])


def assert_matches(result, service, metric, expected, cls="all", max_rel=0.2):
    est, half = interval(result, service, metric, cls)
    assert half <= max_rel * abs(expected), (
        f"{service}/{metric}: interval too wide to test anything (+-{half:.4g} around {est:.4g})")
    assert abs(est - expected) <= half, (
        f"{service}/{metric} [{cls}]: simulated {est:.5g} +- {half:.3g} (99%), "
        f"theory {expected:.5g}")


def mm1(lam=0.75, mu=1.0, **kw):
    return ServiceGraph([Service("web", 1, Exponential(rate=mu), **kw)], {"web": lam})


def jackson():
    return ServiceGraph(
        [Service("front", 2, Exponential(rate=5.0)), Service("app", 1, Exponential(rate=8.0)),
         Service("db", 1, Exponential(rate=10.0))], {"front": 4.0},
        routing={"front": {"app": 0.9}, "app": {"db": 0.5, "front": 0.2}, "db": {"app": 0.3}})


# ----------------------------------------------------------------------------------------------
# validation against closed forms
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_mm1_against_theory(path):
    lam, mu = 0.75, 1.0
    r = run_trials(mm1(lam, mu), replications=10, horizon=10000, warmup=500, seed=1, progress=False,
                   path=path)
    assert r.path == path
    m = theory.mmc_metrics(lam, mu, 1)
    assert_matches(r, "web", "mean_wait", m["mean_wait"])
    assert_matches(r, "web", "mean_response", m["mean_response"])
    assert_matches(r, END_TO_END, "mean_response", m["mean_response"])
    assert_matches(r, "web", "p95_response", theory.mmc_response_quantile(lam, mu, 1, 0.95))
    assert_matches(r, "web", "utilisation", m["utilisation"], max_rel=0.03)
    assert_matches(r, "web", "throughput", lam, max_rel=0.03)
    # the reported interval is the t-interval on the per-replication values, at any level
    pt = r.per_trial
    x = pt[(pt.service == "web") & (pt.metric == "mean_wait")
           & (pt.customer_class == "all")].value.to_numpy()      # columns read as attributes
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert r.confidence == 0.95
    for level, row in [(0.95, r.estimate("web", "mean_wait")),
                       (0.99, r.estimate("web", "mean_wait", confidence=0.99)),
                       (0.8, r.summarise(0.8).set_index(["service", "metric"])
                        .loc[("web", "mean_wait")])]:
        assert row["estimate"] == pytest.approx(x.mean())
        assert row["half_width"] == pytest.approx(stats.t.ppf(0.5 + level / 2, 9) * se)


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_mmc_wait_and_erlang_c(path):
    lam, mu, c = 4.0, 1.0, 5
    g = ServiceGraph([Service("pool", c, Exponential(rate=mu))], {"pool": lam})
    # 5000 s: at 2500 s the 99% half-width of the mean wait is ~20% of it, the limit of the check
    r = run_trials(g, replications=8, horizon=5000, warmup=200, seed=2, progress=False, path=path)
    m = theory.mmc_metrics(lam, mu, c)
    assert_matches(r, "pool", "mean_wait", m["mean_wait"])
    assert_matches(r, "pool", "utilisation", m["utilisation"], max_rel=0.03)
    # P(wait > 0) per replication from the records vs Erlang C
    waited = r.records.assign(waited=r.records["wait"] > 1e-12)
    p_wait = waited.groupby("trial")["waited"].mean().to_numpy()
    half = stats.t.ppf(0.995, 7) * p_wait.std(ddof=1) / math.sqrt(8)
    assert abs(p_wait.mean() - theory.erlang_c(lam, mu, c)) <= half
    # ... which the summary now reports as p_wait, beside the time-average occupancy
    assert r.estimate("pool", "p_wait")["estimate"] == pytest.approx(p_wait.mean(), abs=1e-3)
    assert_matches(r, "pool", "p_wait", m["p_wait"])
    assert_matches(r, "pool", "mean_in_system", m["mean_in_system"])
    assert_matches(r, "pool", "mean_queue_length", m["mean_queue_length"])


def test_mixture_service_matches_pollaczek_khinchine():
    """M/G/1 with a two-point service time (90% fast, 10% slow): the mean wait is the
    Pollaczek-Khinchine value for the mixture's mean and SCV."""
    service = two_point(0.2, 3.0, p_high=0.1)           # mean 0.48 s, SCV about 2.6
    lam = 1.25                                          # rho = 0.6
    g = ServiceGraph([Service("api", 1, service)], {"api": lam})
    r = run_trials(g, replications=8, horizon=6000, warmup=300, seed=21, progress=False,
                   keep_records=False)
    w = theory.mg1_mean_wait(lam, 1 / service.mean, service_scv=service.scv)
    assert_matches(r, "api", "mean_wait", w)
    assert_matches(r, "api", "p_wait", lam * service.mean)      # PASTA: P(wait) = rho


def test_loss_system_blocking_matches_erlang_b():
    """M/M/3/3 (no waiting room): rejected fraction = Erlang B. Also the internal path: a
    request routed to a full service is rejected there (input to 'back' is Poisson because
    'front' is an M/M/inf node)."""
    lam, mu = 2.0, 1.0
    g = ServiceGraph([Service("front", math.inf, Exponential(rate=50.0)),
                      Service("back", 3, Exponential(rate=mu), queue_capacity=0),
                      Service("edge", 3, Exponential(rate=mu), queue_capacity=0)],
                     {"front": lam, "edge": lam}, routing={"front": "back"})
    r = run_trials(g, replications=8, horizon=2500, warmup=100, seed=3, progress=False)
    b = theory.erlang_b_from_load(lam / mu, 3)
    assert_matches(r, "edge", "blocked_fraction", b, max_rel=0.1)
    assert_matches(r, "back", "blocked_fraction", b, max_rel=0.1)
    blocked = r.records[r.records["outcome"] == "rejected"]
    assert set(blocked["service"]) == {"back", "edge"}
    # a request rejected at 'back' was served by 'front' first and ends as 'rejected'
    rej = r.requests[(r.requests["outcome"] == "rejected")]
    assert (rej["visits"] >= 1).all()
    assert (r.records.loc[r.records["outcome"] == "rejected", "response"] == 0).all()


def test_open_jackson_network_with_feedback():
    g = jackson()
    r = run_trials(g, replications=6, horizon=1500, warmup=100, seed=4, progress=False)
    ref = theory.jackson_network([4.0, 0.0, 0.0], [5.0, 8.0, 10.0], [2, 1, 1], g.routing_matrix(),
                                 names=g.names)
    for name in g.names:
        assert_matches(r, name, "mean_response", ref.loc[name, "mean_response"])
        assert_matches(r, name, "utilisation", ref.loc[name, "utilisation"], max_rel=0.05)
        assert_matches(r, name, "arrival_rate", ref.loc[name, "arrival_rate"], max_rel=0.05)
    totals = theory.jackson_totals([4.0, 0.0, 0.0], [5.0, 8.0, 10.0], [2, 1, 1],
                                   g.routing_matrix(), names=g.names)
    assert_matches(r, END_TO_END, "mean_response", totals.mean_response)
    assert_matches(r, END_TO_END, "throughput", totals.throughput, max_rel=0.05)
    assert_matches(r, END_TO_END, "mean_in_system", totals.mean_in_system)
    # the theory table joins the simulation table on service name and metric columns
    both = ref[["p_wait", "mean_in_system"]].join(
        r.table()[["p_wait", "mean_in_system"]].add_suffix("_sim"))
    assert list(both.index) == g.names and not both.isna().any().any()
    for name in g.names:
        assert_matches(r, name, "p_wait", ref.loc[name, "p_wait"])
        assert_matches(r, name, "mean_in_system", ref.loc[name, "mean_in_system"])


def test_nonpreemptive_priorities_match_cobham():
    rates = [0.2, 0.25, 0.25]
    g = ServiceGraph([Service("cpu", 1, Exponential(rate=1.0))],
                     [Arrivals("cpu", rate=r, customer_class=c) for r, c in zip(rates, "abc")],
                     classes=[CustomerClass("a", 0), CustomerClass("b", 1), CustomerClass("c", 2)])
    r = run_trials(g, replications=8, horizon=8000, warmup=500, seed=5, progress=False)
    waits = theory.mm1_priority_waits(rates, 1.0)
    for cls, w in zip("abc", waits):
        assert_matches(r, "cpu", "mean_wait", w, cls=cls)
    assert_matches(r, "cpu", "mean_wait", float(np.dot(rates, waits) / sum(rates)))


def test_preemptive_priorities_match_preemptive_resume():
    rates = [0.3, 0.35]
    g = ServiceGraph([Service("cpu", 1, Exponential(rate=1.0))],
                     [Arrivals("cpu", rate=r, customer_class=c)
                      for r, c in zip(rates, ("hi", "lo"))],
                     classes={"hi": 0, "lo": 1}, preemptive=True)
    r = run_trials(g, replications=8, horizon=6000, warmup=500, seed=6, progress=False)
    resp = theory.mm1_priority_response_times(rates, 1.0, preemptive=True)
    assert_matches(r, END_TO_END, "mean_response", resp[0], cls="hi")
    assert_matches(r, END_TO_END, "mean_response", resp[1], cls="lo")


def erlang_a_abandonment(lam, mu, theta, nmax=500):
    """M/M/1+M (Erlang-A with one server; Garnett, Mandelbaum & Reiman 2002): birth-death chain
    with death rate mu + (n-1) theta; P(abandon) = theta E[queue] / lam."""
    p = np.ones(nmax)
    for n in range(1, nmax):
        p[n] = p[n - 1] * lam / (mu + (n - 1) * theta)
    p /= p.sum()
    queue = np.arange(nmax) - 1.0
    queue[0] = 0.0
    return theta * float(p @ queue) / lam


def test_timeouts_match_erlang_a():
    lam, mu, theta = 1.0, 1.1, 0.5
    g = ServiceGraph([Service("api", 1, Exponential(rate=mu), timeout=Exponential(rate=theta))],
                     {"api": lam})
    r = run_trials(g, replications=8, horizon=3000, warmup=200, seed=7, progress=False)
    p = erlang_a_abandonment(lam, mu, theta)
    assert_matches(r, "api", "timed_out_fraction", p, max_rel=0.1)
    assert_matches(r, END_TO_END, "throughput", lam * (1 - p), max_rel=0.05)
    timed_out = r.records[r.records["outcome"] == "timed_out"]
    assert timed_out["service_time"].isna().all() and (timed_out["wait"] > 0).all()


def test_retries_backoff_and_conservation():
    backoff, mult, max_retries = 0.25, 2.0, 3
    g = ServiceGraph([Service("api", 1, Exponential(rate=1.0), queue_capacity=2, timeout=1.5,
                              retry=Retry(max_retries, backoff=backoff, multiplier=mult))],
                     {"api": 0.9})
    r = run_trials(g, replications=3, horizon=1500, warmup=100, seed=8, progress=False,
                   executor="serial")
    req = r.requests
    assert req["retries"].max() == max_retries and req["retries"].min() == 0
    # n retries wait backoff * (1 + m + ... + m^(n-1)) seconds in total (deterministic back-off)
    expected = backoff * (mult ** req["retries"] - 1) / (mult - 1)
    np.testing.assert_allclose(req["backoff_time"], expected, rtol=1e-12)
    # dropped requests used every retry; requests with retries left were not dropped
    dropped = req["outcome"].isin(["timed_out", "rejected"])
    assert dropped.any() and (req.loc[dropped, "retries"] == max_retries).all()
    assert (req.loc[req["retries"] < max_retries, "outcome"] == "completed").all()
    # back-off time is part of the end-to-end response
    done = req[req["outcome"] == "completed"]
    served = (r.records[r.records["outcome"] == "served"]
              .groupby(["trial", "request"])["response"].sum())
    own = served.reindex(pd.MultiIndex.from_frame(done[["trial", "request"]])).to_numpy()
    assert (done["response"].to_numpy() >= own + done["backoff_time"].to_numpy() - 1e-9).all()
    # conservation per replication: arrivals = completed + timed out + blocked + incomplete
    pt = r.per_trial[(r.per_trial.service == END_TO_END) & (r.per_trial.customer_class == "all")]
    wide = pt.pivot(index="trial", columns="metric", values="value")
    np.testing.assert_array_equal(wide["arrivals"], wide["completed"] + wide["timed_out"]
                                  + wide["blocked"] + wide["incomplete"])
    # retries cost capacity: more visits than requests at the service
    visits = r.estimate("api", "arrivals")["estimate"]
    assert visits > r.estimate(END_TO_END, "arrivals")["estimate"]


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_time_varying_arrivals_reproduce_the_schedule(path):
    schedule = RateSchedule((0.0, 100.0, 200.0), (2.0, 8.0, 4.0), period=300.0)
    g = ServiceGraph([Service("edge", math.inf, Exponential(rate=5.0))],
                     [Arrivals("edge", rate=schedule)])
    horizon = 3000.0
    r = run_trials(g, replications=4, horizon=horizon, warmup=0.0, seed=9, progress=False,
                   path=path)
    assert_matches(r, END_TO_END, "arrival_rate", schedule.mean_rate(0.0, horizon), max_rel=0.03)
    # per phase of the schedule: counts pooled over replications within 4 sigma of Poisson
    phase = r.requests["arrival"].to_numpy() % 300.0
    for lo, rate in ((0.0, 2.0), (100.0, 8.0), (200.0, 4.0)):
        n = np.count_nonzero((phase >= lo) & (phase < lo + 100.0))
        expected = rate * 100.0 * (horizon / 300.0) * 4
        assert abs(n - expected) <= 4 * math.sqrt(expected)


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_server_schedule_utilisation_uses_available_capacity(path):
    s = Service("api", 1, Exponential(rate=1.0), schedule=[(1, 100.0), (3, 200.0)])
    g = ServiceGraph([s], {"api": 0.6})
    r = run_trials(g, replications=6, horizon=4000, warmup=200, seed=10, progress=False,
                   path=path)
    assert_matches(r, "api", "utilisation", 0.6 / s.mean_servers, max_rel=0.05)
    # waits are longer in the one-server phase than in the three-server phase
    rec = r.records
    phase = rec["arrival"] % 200.0
    busy_phase = rec.loc[phase < 90, "wait"].mean()
    assert busy_phase > 3 * rec.loc[(phase > 110) & (phase < 190), "wait"].mean()


def gi_m1_erlang_wait(per_server_rate, mu, k):
    """GI/M/1 with Erlang-k inter-arrivals (what each member sees under round-robin over k
    members of a Poisson stream): sigma = A*(mu (1 - sigma)), W = sigma / (mu (1 - sigma))."""
    a = lambda s: (k * per_server_rate / (k * per_server_rate + s)) ** k     # noqa: E731
    sigma = optimize.brentq(lambda x: a(mu * (1 - x)) - x, 1e-12, 1 - 1e-12)
    return sigma / (mu * (1 - sigma))


def test_round_robin_pool_matches_gi_m1():
    k, lam = 3, 2.1
    members = [f"web-{i}" for i in range(k)]
    g = ServiceGraph([Service(m, 1, Exponential(rate=1.0)) for m in members],
                     [Arrivals("web", rate=lam)], pools=[Pool("web", members, "round_robin")])
    r = run_trials(g, replications=6, horizon=3000, warmup=200, seed=11, progress=False)
    w = gi_m1_erlang_wait(lam / k, 1.0, k)
    assert_matches(r, END_TO_END, "mean_response", w + 1.0)
    # exactly one third of the requests at each member, in turn
    counts = r.records.groupby(["trial", "service"], observed=True).size().unstack()
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1


def test_capacity_weighted_and_jsq_pools():
    fast = Service("fast", 1, Exponential(rate=2.0))
    slow = Service("slow", 1, Exponential(rate=1.0))
    lam = 2.1
    cw = ServiceGraph([fast, slow], [Arrivals("lb", rate=lam)],
                      pools=[Pool("lb", ["fast", "slow"], "capacity_weighted")])
    r = run_trials(cw, replications=6, horizon=3000, warmup=200, seed=12, progress=False)
    # Poisson splitting: fast gets 2/3 (M/M/1 with lam 1.4, mu 2), slow 1/3 (lam 0.7, mu 1)
    expected = (2 / 3) / (2.0 - 1.4) + (1 / 3) / (1.0 - 0.7)
    assert_matches(r, END_TO_END, "mean_response", expected)
    assert_matches(r, "fast", "arrival_rate", lam * 2 / 3, max_rel=0.05)
    members = [Service(f"w{i}", 1, Exponential(rate=1.0)) for i in range(4)]
    jsq = ServiceGraph(members, [Arrivals("lb", rate=3.6)],
                       pools=[Pool("lb", [m.name for m in members], "jsq")])
    rj = run_trials(jsq, replications=4, horizon=2000, warmup=200, seed=13, progress=False)
    est, half = interval(rj, END_TO_END, "mean_response")
    random_split = 1.0 / (1.0 - 0.9)                      # M/M/1 at 0.9 for random dispatch
    pooled = theory.mmc_metrics(3.6, 1.0, 4)["mean_response"]   # one shared queue: a lower bound
    assert est + half > pooled and est + half < 0.5 * random_split


@pytest.mark.slow
def test_power_of_two_choices_matches_supermarket_limit():
    n, lam = 50, 0.8
    members = [f"s{i:02d}" for i in range(n)]
    g = ServiceGraph([Service(m, 1, Exponential(rate=1.0)) for m in members],
                     [Arrivals("farm", rate=lam * n)],
                     pools=[Pool("farm", members, "power_of_d", d=2)])
    r = run_trials(g, replications=8, horizon=400, warmup=50, seed=14, progress=False,
                   keep_records=False)
    limit = theory.supermarket_mean_response(lam, 1.0, 2)      # lam = total rate / n queues
    # finite n = 50 sits within O(1/n) (about 1.5% here) of the mean-field limit, inside the
    # interval; random dispatch would give an M/M/1 at 0.8 in every queue: 5 s
    assert_matches(r, END_TO_END, "mean_response", limit, max_rel=0.08)
    assert r.estimate(END_TO_END, "mean_response")["ci_high"] < 0.5 / (1 - lam)


# ----------------------------------------------------------------------------------------------
# executors, seeds, records
# ----------------------------------------------------------------------------------------------

def _bytes(result):
    return (result.summary.to_csv().encode(), result.per_trial.to_csv().encode())


def test_identical_results_across_executors():
    from distributed import Client, LocalCluster

    g = jackson()
    kw = dict(replications=4, horizon=300, warmup=30, seed=21, progress=False)
    serial = run_trials(g, executor="serial", **kw)
    procs = run_trials(g, executor="processes", **kw)
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        custom = run_trials(g, executor=pool, **kw)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        dask = run_trials(g, executor=client, **kw)
    for other in (procs, custom, dask):
        assert _bytes(other) == _bytes(serial)
        pd.testing.assert_frame_equal(other.records, serial.records)
        pd.testing.assert_frame_equal(other.requests, serial.requests)


def test_threads_are_refused():
    from distributed import Client, LocalCluster

    with cf.ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="ThreadPoolExecutor"):
        run_trials(mm1(), 2, 10.0, executor=pool)
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=2, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        with pytest.raises(ValueError, match="threads_per_worker=1"):
            run_trials(mm1(), 2, 10.0, executor=client)


def test_seeds_do_not_depend_on_replication_count():
    assert replication_seeds(7, 5)[:3] == replication_seeds(7, 3)
    assert len(set(replication_seeds(7, 50))) == 50
    kw = dict(horizon=200, seed=3, executor="serial", progress=False)
    three = run_trials(jackson(), 3, **kw).per_trial
    two = run_trials(jackson(), 2, **kw).per_trial
    pd.testing.assert_frame_equal(three[three["trial"] < 2].reset_index(drop=True), two)
    other = run_trials(jackson(), 2, **{**kw, "seed": 4}).per_trial
    assert not other["value"].equals(two["value"])


def test_summary_only_mode_and_warmup_removal():
    kw = dict(replications=2, horizon=400, warmup=100, seed=5, executor="serial", progress=False)
    full = run_trials(jackson(), **kw)
    lean = run_trials(jackson(), keep_records=False, **kw)
    assert lean.records is None and lean.requests is None
    assert _bytes(lean) == _bytes(full)
    req = full.requests
    assert req["arrival"].min() >= 100 and req["arrival"].max() < 400
    assert full.records["arrival"].min() >= 100          # every visit of a counted request
    assert (full.records.groupby(["trial", "request"]).size().sum() == req["visits"].sum())
    assert list(full.records["service"].cat.categories) == ["front", "app", "db"]
    assert set(full.summary["service"]) == {"front", "app", "db", END_TO_END}


def test_engine_follows_a_hand_written_ciw_model_exactly():
    """Same seed, same model: identical ciw trajectories (arrival and exit of every visit)."""
    g = jackson()
    seed = replication_seeds(31, 1)[0]
    ciw.seed(seed)
    net = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(4.0), None, None],
        service_distributions=[ciw.dists.Exponential(5.0), ciw.dists.Exponential(8.0),
                               ciw.dists.Exponential(10.0)],
        number_of_servers=[2, 1, 1],
        routing=[[0.0, 0.9, 0.0], [0.2, 0.0, 0.5], [0.0, 0.3, 0.0]])
    sim = ciw.Simulation(net)
    sim.simulate_until_max_time(200.0)
    hand = sorted((rec.id_number, rec.node, rec.arrival_date, rec.exit_date)
                  for rec in sim.get_all_records())
    r = run_trials(g, 1, horizon=200.0, seed=31, executor="serial", progress=False)
    names = {"front": 1, "app": 2, "db": 3}
    rec = r.records[r.records["exit"] < 200.0]
    nodes = rec["service"].map(names).astype(int)
    ours = sorted(zip(rec["request"], nodes, rec["arrival"], rec["exit"]))
    hand = [h for h in hand if h[0] in set(rec["request"])]
    assert ours == hand and len(ours) > 500


def test_plain_ciw_network_input():
    net = ciw.create_network(arrival_distributions=[ciw.dists.Exponential(0.5)],
                             service_distributions=[ciw.dists.Exponential(1.0)],
                             number_of_servers=[1])
    r = run_trials(net, 2, horizon=500, seed=1, executor="serial", progress=False,
                   service_names=["web"])
    assert set(r.summary["service"]) == {"web", END_TO_END}
    with pytest.raises(ValueError, match="service_names must be 1 distinct"):
        run_trials(net, 2, horizon=500, service_names=["a", "b"])
    bad = ciw.create_network(
        arrival_distributions=[ciw.dists.PoissonIntervals([1.0], [10.0], 100.0)],
        service_distributions=[ciw.dists.Exponential(1.0)], number_of_servers=[1])
    with pytest.raises(ValueError, match="PoissonIntervals"):
        run_trials(bad, 2, horizon=50)


# ----------------------------------------------------------------------------------------------
# bad input and bounded overload
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(horizon=-5.0), "horizon must be > 0"),
    (dict(horizon=0.0), "horizon must be > 0"),
    (dict(horizon=float("inf")), "horizon must be a finite number"),
    (dict(horizon="100"), "horizon must be a finite number"),
    (dict(horizon=100.0, warmup=100.0), r"warmup \(100 s\) must be shorter than horizon \(100 s\)"),
    (dict(horizon=100.0, warmup=-1.0), "warmup must be >= 0"),
    (dict(replications=0), "replications must be an integer >= 1"),
    (dict(replications=2.5), "replications must be an integer >= 1"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(seed=1.5), "seed must be an integer >= 0"),
    (dict(executor="threads"), "executor must be 'serial', 'processes'"),
    (dict(executor=object()), "executor must be 'serial', 'processes'"),
    (dict(drain=-1.0), "drain must be >= 0"),
    (dict(max_workers=0), "max_workers must be an integer >= 1"),
    (dict(service_names=["x"]), "service_names is only for a ciw.Network"),
    (dict(confidence=1.0), "confidence must be strictly between 0 and 1"),
    (dict(confidence=95), "confidence must be strictly between 0 and 1"),
])
def test_bad_run_inputs(kwargs, match):
    base = dict(replications=2, horizon=100.0)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run_trials(mm1(), **base)


def test_bad_model_and_unstable_graph_fail_before_simulating():
    with pytest.raises(ValueError, match="model must be a ServiceGraph, a FanOut or a ciw.Network"):
        run_trials({"web": 1.0}, 2, 100.0)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"service 'web': utilisation 1.5 >= 1 \(arrival 1.5 "
                                         r"req/s, capacity 1 req/s\); pass allow_overload=True"):
        run_trials(mm1(1.5, 1.0), 2, 1e9)
    assert time.perf_counter() - t0 < 1.0


def test_overloaded_opt_in_run_is_bounded():
    g = ServiceGraph([Service("web", 1, Exponential(rate=1.0))], {"web": 3.0}, max_in_system=60)
    t0 = time.perf_counter()
    r = run_trials(g, 2, horizon=400.0, seed=2, allow_overload=True, executor="serial",
                   progress=False)
    assert time.perf_counter() - t0 < 30
    assert r.params["overloaded"]
    # the admission cap turns the excess away; the rest drains or is reported incomplete
    assert r.estimate("web", "blocked_fraction")["estimate"] > 0.5
    assert r.estimate(END_TO_END, "incomplete")["estimate"] <= 60
    assert max(r.params["end_times"]) <= 800.0
    # default cap without max_in_system: still bounded
    r2 = run_trials(mm1(2.0, 1.0), 1, horizon=300.0, seed=2, allow_overload=True,
                    executor="serial", drain=10.0, progress=False)
    assert r2.estimate(END_TO_END, "incomplete")["estimate"] > 0
    assert r2.params["end_times"][0] <= 310.0


def test_default_warmup_is_stated_and_nonzero():
    r = run_trials(mm1(), 2, horizon=500.0, seed=1, executor="serial", progress=False)
    assert r.params["warmup"] == pytest.approx(50.0)          # 10% of the horizon by default
    assert r.requests["arrival"].min() >= 50.0
    assert (r.records["arrival"] >= 0).all()
    r0 = run_trials(mm1(), 1, horizon=500.0, warmup=0.0, seed=1, executor="serial",
                    progress=False)                            # a transient study says so
    assert r0.params["warmup"] == 0.0 and r0.requests["arrival"].min() < 50.0


def test_summary_and_records_use_customer_class_and_no_attrs():
    r = run_trials(mm1(), 2, horizon=200.0, warmup=20.0, seed=1, executor="serial",
                   progress=False)
    for frame in (r.summary, r.per_trial, r.records, r.requests):
        assert "customer_class" in frame.columns and "class" not in frame.columns
        assert frame.attrs == {}
    assert set(r.summary.customer_class) == {"all"}
    with pytest.raises(ValueError, match="service"):
        r.compare({"mean_wait": 1.0})
    with pytest.raises(ValueError, match="no metric"):
        r.compare({"nonsense": 1.0}, service="web")


def _summarise_loop(per_trial: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """The straightforward groupby version of _summarise (reference for its test)."""
    rows = []
    t_level = 0.5 + 0.5 * confidence
    for (service, cls, metric), g in per_trial.groupby(["service", "customer_class", "metric"],
                                                       sort=False):
        x = g["value"].to_numpy()
        x = x[np.isfinite(x)]
        n = int(x.size)
        est = float(x.mean()) if n else math.nan
        if n >= 2:
            std = float(x.std(ddof=1))
            half = float(stats.t.ppf(t_level, n - 1)) * std / math.sqrt(n)
        else:
            std = half = math.nan
        rows.append((service, cls, metric, est, est - half, est + half, half, std, n))
    return pd.DataFrame(rows, columns=["service", "customer_class", "metric", "estimate",
                                       "ci_low", "ci_high", "half_width", "std",
                                       "replications"])


def test_vectorised_summary_equals_the_groupby_loop():
    # Issue 10/C: _summarise is vectorised (one t.ppf per distinct replication count); it must give
    # the numbers of the per-group loop to 1e-12, also with non-finite values, a group with one
    # finite value, a group with none and unequal replication counts.
    from analysis import simulation as sim
    graph = ServiceGraph(
        [Service("a", 2, Exponential(0.1)), Service("b", 1, Exponential(0.05))],
        [Arrivals("a", rate=6.0, customer_class="x"), Arrivals("a", rate=4.0, customer_class="y")],
        routing={"a": {"b": 0.8}}, classes=[CustomerClass("x", 0), CustomerClass("y", 0)])
    res = run_trials(graph, replications=7, horizon=60.0, seed=3, progress=False)
    per_trial = res.per_trial.copy()
    rng = np.random.default_rng(0)
    v = per_trial["value"].to_numpy().copy()
    v[rng.random(len(v)) < 0.15] = np.inf
    v[rng.random(len(v)) < 0.1] = np.nan
    per_trial["value"] = v
    odd = per_trial.iloc[:3].assign(metric="one_finite", value=[1.5, np.nan, np.inf])
    none = per_trial.iloc[:2].assign(metric="no_finite", value=[np.nan, -np.inf])
    per_trial = pd.concat([per_trial, odd, none], ignore_index=True)
    for level in (0.95, 0.99):
        fast = sim._summarise(per_trial, level)
        slow = _summarise_loop(per_trial, level)
        assert list(fast.columns) == list(slow.columns)
        assert len(fast) == len(slow) > 20
        assert len(set(slow["replications"])) >= 3
        for col in ("service", "customer_class", "metric", "replications"):
            assert fast[col].tolist() == slow[col].tolist()
        for col in ("estimate", "ci_low", "ci_high", "half_width", "std"):
            np.testing.assert_allclose(fast[col].to_numpy(float), slow[col].to_numpy(float),
                                       rtol=1e-12, atol=1e-12, equal_nan=True)
    assert sim._summarise(per_trial.iloc[:0]).empty
