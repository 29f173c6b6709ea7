"""Fan-out (fork-join): the join, order statistics for independent leaves, and the effect of
the shared arrival instants (dependence) on loaded leaves. Intervals: 99% t across replications
(see tests/test_simulation.py)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import theory
from analysis.fanout import FanOut, join_requests
from analysis.fanout import _FanoutPlan
from analysis.simulation import END_TO_END, run_trials
from analysis.topology import Exponential, Mixture, RateSchedule, Retry, Service


def interval(result, service, metric, cls="all", level=0.99):
    pt = result.per_trial
    x = pt[(pt.service == service) & (pt.metric == metric) & (pt.customer_class == cls)]["value"]
    x = x.to_numpy()
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def assert_matches(result, service, metric, expected, max_rel=0.1):
    est, half = interval(result, service, metric)
    assert half <= max_rel * abs(expected), f"{service}/{metric}: interval too wide (+-{half:.3g})"
    assert abs(est - expected) <= half, (
        f"{service}/{metric}: simulated {est:.5g} +- {half:.3g} (99%), theory {expected:.5g}")


def leaves(k, rate=1.0, servers=1):
    return [Service(f"shard-{i}", servers, Exponential(rate=rate)) for i in range(k)]


def test_join_by_request_index_is_exact():
    k = 3
    r = run_trials(FanOut(leaves(k), rate=0.5), 2, horizon=600, warmup=50, seed=1,
                   executor="serial", progress=False)
    rec, req = r.records, r.requests
    assert (rec["request"] >= 0).all()
    by_req = rec.groupby(["trial", "request"])
    # every leaf saw every counted request once, at the request's own arrival instant
    assert (by_req.size() == k).all() and len(by_req) == len(req)
    merged = rec.merge(req[["trial", "request", "arrival", "exit", "critical_service"]],
                       on=["trial", "request"], suffixes=("", "_req"))
    assert (merged["arrival"] == merged["arrival_req"]).all()
    # the request completes with its slowest leaf, which is the reported critical service
    slowest = by_req["exit"].max()
    np.testing.assert_array_equal(req.set_index(["trial", "request"])["exit"].loc[slowest.index],
                                  slowest.to_numpy())
    argmax = (rec.loc[by_req["exit"].idxmax(), ["trial", "request", "service"]]
              .set_index(["trial", "request"]))
    pd.testing.assert_series_equal(
        req.set_index(["trial", "request"])["critical_service"].astype(str).loc[argmax.index],
        argmax["service"].astype(str), check_names=False)
    # quorum 2 of 3: the second completion
    r2 = run_trials(FanOut(leaves(k), rate=0.5, quorum=2), 1, horizon=300, seed=1,
                    executor="serial", progress=False)
    second = (r2.records.groupby(["trial", "request"])["exit"]
              .apply(lambda e: np.sort(e.to_numpy())[1]))
    exits = r2.requests.set_index(["trial", "request"])["exit"]
    np.testing.assert_array_equal(exits.loc[second.index], second.to_numpy())


def test_join_detects_misaligned_leaves():
    plan = _FanoutPlan(leaf_nodes=[1, 2], request_class="fanout", quorum=2)
    visits = dict(node=np.array([1, 1, 2, 2]), cls=np.zeros(4, dtype=np.int16),
                  arrival=np.array([1.0, 2.0, 1.0, 2.5]), exit=np.array([1.5, 2.5, 1.2, 3.0]),
                  kind=np.zeros(4, dtype=np.int8))
    with pytest.raises(RuntimeError, match="request 1 arrived at 2.0 s at leaf 'a' but at 2.5 s"):
        join_requests(visits, plan, 10.0, 0, ["a", "b"])
    visits["node"] = np.array([1, 1, 1, 2])
    with pytest.raises(RuntimeError, match="leaf 'b' saw 1 requests"):
        join_requests(visits, plan, 10.0, 0, ["a", "b"])


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_independent_leaves_match_order_statistics(path):
    """No queueing (infinite servers): leaf latencies are iid Exponential(rate=2)."""
    k, mu = 4, 2.0
    r = run_trials(FanOut(leaves(k, mu, servers=math.inf), rate=1.0), 6, horizon=2000, seed=2,
                   progress=False, keep_records=False, path=path)
    leaf = stats.expon(scale=1 / mu)
    assert_matches(r, END_TO_END, "mean_response", theory.fanout_max_mean_exponential(k, mu), 0.05)
    assert_matches(r, END_TO_END, "p95_response", theory.fanout_max_quantile(leaf, k, 0.95), 0.05)
    assert_matches(r, END_TO_END, "p99_response", theory.fanout_max_quantile(leaf, k, 0.99), 0.08)
    assert_matches(r, "shard-0", "mean_response", 1 / mu, 0.05)


def test_mixture_leaves_match_order_statistics_of_the_mixture():
    """A leaf slow 5% of the time (Mixture of two exponentials), no queueing: the slowest of 8
    follows the mixture's order statistics (theory takes the Mixture spec itself)."""
    k = 8
    slow_sometimes = Mixture([Exponential(0.01), Exponential(0.5)], [0.95, 0.05])
    shards = [Service(f"shard-{i}", math.inf, slow_sometimes) for i in range(k)]
    r = run_trials(FanOut(shards, rate=2.0), 6, horizon=2000, warmup=100, seed=8, progress=False,
                   keep_records=False)
    assert_matches(r, END_TO_END, "p50_response",
                   theory.fanout_max_quantile(slow_sometimes, k, 0.5), 0.1)
    assert_matches(r, END_TO_END, "p95_response",
                   theory.fanout_max_quantile(slow_sometimes, k, 0.95), 0.1)
    assert_matches(r, "shard-0", "mean_response", slow_sometimes.mean, 0.1)


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_quorum_matches_kth_order_statistic(path):
    k, q = 5, 2
    r = run_trials(FanOut(leaves(k, 1.0, servers=math.inf), rate=1.0, quorum=q), 6, horizon=1500,
                   seed=3, progress=False, keep_records=False, path=path)
    leaf = stats.expon()
    assert_matches(r, END_TO_END, "mean_response", 1 / 5 + 1 / 4, 0.05)      # E[X_(2) of 5]
    for name, level in (("p50_response", 0.5), ("p95_response", 0.95)):
        assert_matches(r, END_TO_END, name, theory.kth_fastest_quantile(leaf, k, q, level), 0.05)
    # hedged request (first of 2)
    h = run_trials(FanOut(leaves(2, 1.0, servers=math.inf), rate=1.0, quorum=1), 6, horizon=1500,
                   seed=4, progress=False, keep_records=False, path=path)
    assert_matches(h, END_TO_END, "mean_response", 0.5, 0.05)


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_shared_arrivals_make_loaded_leaves_dependent(path):
    """M/M/1 leaves at load 0.7: each leaf's marginal is right (Exponential(rate=mu - lambda)), but
    the slowest-of-8 is clearly below the independent-leaves prediction (positive dependence).

    Paired check within each replication, free of finite-run bias: an "independent" surrogate
    takes leaf j's response from request i + 500 j (same simulated marginals, dependence broken:
    500 requests is far beyond the leaves' correlation time); the real mean of the max must be
    below the surrogate's. (The far tail, p95-p99 of the max, moves much less: it is driven by
    one extreme leaf; see analysis.fanout.)
    """
    k, lam, mu = 8, 0.7, 1.0
    r = run_trials(FanOut(leaves(k, mu), rate=lam), 6, horizon=4000, warmup=200, seed=5,
                   progress=False, path=path)
    marginal = 1 / (mu - lam)
    for i in range(k):
        assert_matches(r, f"shard-{i}", "mean_response", marginal, 0.25)
    independent = theory.fanout_max_mean_exponential(k, mu - lam)
    est, half = interval(r, END_TO_END, "mean_response")
    assert est + half < independent, (est, half, independent)
    assert est - half > marginal                      # still slower than any one leaf
    diffs = []
    for _, rec in r.records.groupby("trial"):
        wide = rec.pivot(index="request", columns="service", values="response").to_numpy()
        surrogate = np.column_stack([np.roll(wide[:, j], 500 * j) for j in range(k)])
        diffs.append(wide.max(axis=1).mean() - surrogate.max(axis=1).mean())
    diffs = np.array(diffs)
    half = stats.t.ppf(0.995, diffs.size - 1) * diffs.std(ddof=1) / math.sqrt(diffs.size)
    upper = diffs.mean() + half
    assert upper < 0, diffs


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_background_traffic_and_time_varying_fanout(path):
    schedule = RateSchedule((0.0, 50.0), (0.2, 0.6), period=100.0)
    f = FanOut(leaves(3, 2.0), rate=schedule, background={"shard-1": 0.8})
    r = run_trials(f, 6, horizon=3000, seed=6, progress=False, path=path)
    assert_matches(r, END_TO_END, "arrival_rate", 0.4, 0.1)
    assert_matches(r, "shard-1", "utilisation", (0.4 + 0.8) / 2.0, 0.1)
    assert_matches(r, "shard-0", "utilisation", 0.4 / 2.0, 0.1)
    assert set(r.requests["customer_class"]) == {"fanout"}
    bg = r.records[r.records["customer_class"] == "background"]
    assert len(bg) and (bg["request"] == -1).all() and set(bg["service"]) == {"shard-1"}


def test_fanout_results_identical_across_executors():
    kw = dict(replications=3, horizon=300, seed=7, progress=False)
    f = FanOut(leaves(3), rate=0.6, quorum=2)
    a = run_trials(f, executor="serial", **kw)
    b = run_trials(f, executor="processes", **kw)
    assert a.summary.to_csv() == b.summary.to_csv()
    pd.testing.assert_frame_equal(a.requests, b.requests)


@pytest.mark.parametrize("make, match", [
    (lambda: FanOut(leaves(3), rate=1.0, quorum=4), "quorum=4 is larger than the number of leaves"),
    (lambda: FanOut(leaves(3), rate=1.0, quorum=0), "FanOut quorum must be an integer >= 1"),
    (lambda: FanOut([], rate=1.0), "at least one leaf"),
    (lambda: FanOut(leaves(2), rate=0.0), "FanOut rate must be > 0"),
    (lambda: FanOut(leaves(2)), "exactly one of rate"),
    (lambda: FanOut([Service("a", 1, Exponential(rate=1.0))] * 2, rate=1.0),
     "duplicate fan-out leaf"),
    (lambda: FanOut([Service("a", 1, Exponential(rate=1.0), timeout=1.0)], rate=0.1),
     "fan-out leaf 'a': timeouts are not supported"),
    (lambda: FanOut([Service("a", 1, Exponential(rate=1.0), retry=Retry())], rate=0.1),
     "fan-out leaf 'a': retries are not supported"),
    (lambda: FanOut([Service("a", 1, Exponential(rate=1.0), queue_capacity=3)], rate=0.1),
     "fan-out leaf 'a': a finite queue_capacity"),
    (lambda: FanOut(leaves(2), rate=1.0, background={"shard-9": 1.0}), "unknown leaf 'shard-9'"),
    (lambda: FanOut(leaves(2), rate=1.0, background={"shard-0": -1.0}), "background rate"),
    (lambda: FanOut(leaves(2), rate=1.0, name="background"), "reserved"),
])
def test_bad_fanouts(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_overloaded_leaf_is_named_before_simulating():
    f = FanOut([Service("fast", 1, Exponential(rate=2.0)),
                Service("slow", 1, Exponential(rate=0.5))],
               rate=0.8)
    with pytest.raises(ValueError, match=r"service 'slow': utilisation 1.6 >= 1 \(arrival 0.8 "
                                         r"req/s, capacity 0.5 req/s\)"):
        run_trials(f, 2, horizon=100)
    r = run_trials(f, 1, horizon=100, allow_overload=True, executor="serial", progress=False)
    assert r.params["overloaded"]
