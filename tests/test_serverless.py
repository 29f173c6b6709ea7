"""Serverless platform, edge vs region and packing: closed forms against simulation, dispatch
rules, known optimal packings and bad parameters."""
import math

import numpy as np
import pytest

from analysis import edge, packing, serverless as sv, theory
from analysis.topology import Deterministic, Exponential


def _inside(stat, value, slack=0.0):
    mean, lo, hi = stat
    return lo - slack <= value <= hi + slack


# ---------------------------------------------------------------- serverless: closed forms

@pytest.mark.parametrize("lam, ka", [(0.5, 3.0), (2.0, 0.2)])
def test_single_instance_p_cold_is_gap_tail(lam, ka):
    # negligible service: one instance at most, cold iff the gap exceeds the keep-alive
    r = sv.run_platform(lam, 1e-9, 1e-9, ka, horizon=20000, replications=6, seed=1)
    assert _inside(r["p_cold"], sv.p_cold_single_instance(lam, ka))
    # alive fraction of time: E[min(gap, ka)] / E[gap] = 1 - exp(-lam ka)
    assert _inside(r["mean_alive"], 1 - math.exp(-lam * ka))


def test_mminf_keepalive_exact_against_simulation():
    lam, mu, ka = 4.0, 1.0, 2.0
    ex = sv.mminf_keepalive_exact(lam, mu, ka)
    r = sv.run_platform(lam, Exponential(rate=mu), Exponential(rate=mu), ka, horizon=6000,
                        replications=6, seed=2)
    for k in ("p_cold", "mean_busy", "mean_alive", "mean_idle"):
        assert _inside(r[k], ex[k]), (k, ex[k], r[k])


def test_mminf_exact_limits():
    # keep-alive 0: every request cold, alive = busy = rho; small rho: exp(-lam ka)
    ex = sv.mminf_keepalive_exact(3.0, 1.0, 0.0)
    assert ex["p_cold"] == pytest.approx(1.0) and ex["mean_alive"] == pytest.approx(3.0, rel=1e-6)
    ex = sv.mminf_keepalive_exact(0.01, 1000.0, 5.0)
    assert ex["p_cold"] == pytest.approx(math.exp(-0.05), rel=1e-3)


def test_littles_law_for_requests_and_instances():
    lam, ka = 3.0, 1.5
    warm, cold = Exponential(0.4), Exponential(1.0)
    t = sv.poisson_arrivals(lam, 8000, 5)
    s = sv.simulate_platform(t, warm, cold, ka, seed=5, horizon=8000, warmup=800).stats
    # busy instances = arrival rate x mean service (cold and warm mixed)
    assert s["mean_busy"] == pytest.approx(s["arrival_rate"] * s["mean_service"], rel=0.02)
    # alive instances = creation rate x mean lifetime
    assert s["mean_alive"] == pytest.approx(s["creation_rate"] * s["mean_lifetime"], rel=0.05)
    # a longer cold service raises the busy count above the all-warm value
    assert s["mean_busy"] > lam * 0.4


def test_mru_alive_is_max_busy_over_keepalive_window():
    # pathwise identity of the MRU stack: instances alive = max busy over the last keep-alive
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 200, 600))
    ka = 1.0
    run = sv.simulate_platform(t, Exponential(0.5), Exponential(0.5), ka, seed=4)
    # an arrival is cold iff busy just before it equals the max busy over [t - ka, t)
    events = np.r_[run.arrivals, run.completions]
    steps = np.r_[np.ones(t.size), -np.ones(t.size)]
    order = np.lexsort((-steps, events))          # completions first at ties
    times, level = events[order], np.cumsum(steps[order])
    for j in range(20, t.size, 7):
        a = t[j]
        before = level[np.searchsorted(times, a, side="left") - 1] if a > times[0] else 0
        i0 = np.searchsorted(times, a - ka, side="right") - 1
        i1 = np.searchsorted(times, a, side="left")
        window = level[max(i0, 0):i1]
        mx = max(window.max() if window.size else 0, level[i0] if i0 >= 0 else 0)
        assert run.cold[j] == (before >= mx), j


# ---------------------------------------------------------------- dispatch rule

def test_dispatch_mru_lru_pick_different_instances():
    # two instances start together; A finishes at 1, B at 2; a request at 3 goes to B under MRU
    # (most recently idle) and to A under LRU
    arrivals = [0.0, 0.0, 3.0]
    warm = np.array([1.0, 2.0, 1.0])
    for policy, expect in [("mru", 1), ("lru", 0)]:
        run = sv.simulate_platform(arrivals, 1.0, 2.0, 10.0, policy=policy, service_times=(warm, warm))
        assert list(run.cold) == [True, True, False]
        assert run.instance[2] == expect, policy


def test_lru_keeps_more_instances_than_mru():
    t = sv.poisson_arrivals(5.0, 3000, 8)
    kw = dict(seed=9, horizon=3000, warmup=300)
    mru = sv.simulate_platform(t, Exponential(0.5), Exponential(0.8), 2.0, policy="mru", **kw).stats
    lru = sv.simulate_platform(t, Exponential(0.5), Exponential(0.8), 2.0, policy="lru", **kw).stats
    assert lru["mean_idle"] > mru["mean_idle"]
    assert lru["p_cold"] < mru["p_cold"]


def test_keepalive_expiry_exact_script():
    # instance idle from 1.0; keep-alive 2: a request at 2.9 is warm, at 3.1 cold
    for t2, cold in [(2.9, False), (3.1, True)]:
        run = sv.simulate_platform([0.0, t2], 1.0, 1.0, 2.0)
        assert bool(run.cold[1]) == cold


def test_chain_cold_starts():
    t = sv.poisson_arrivals(0.2, 20000, 11)
    stages = [(Deterministic(0.001), Deterministic(0.01))] * 3
    r = sv.simulate_chain(t, stages, 5.0, seed=1, warmup=2000)
    assert len(r["p_cold"]) == 3
    # the first function sees Poisson arrivals with negligible service: ~exp(-lam ka)
    assert r["p_cold"][0] == pytest.approx(math.exp(-0.2 * 5.0), abs=0.02)
    # stages are strongly correlated (the same request is cold at each): far below independence
    assert r["p_any_cold"] < r["p_any_cold_independent"] - 0.1
    assert r["p_any_cold"] >= max(r["p_cold"]) - 1e-12


@pytest.mark.parametrize("kw, word", [
    (dict(keep_alive=-1.0), "keep_alive"),
    (dict(cold_service=0.1, warm_service=0.5), "cold_service"),
    (dict(policy="fifo"), "policy"),
    (dict(warm_service="fast"), "warm_service"),
])
def test_bad_platform_parameters(kw, word):
    args = dict(warm_service=0.1, cold_service=1.0, keep_alive=10.0, policy="mru") | kw
    with pytest.raises(ValueError, match=word):
        sv.simulate_platform([0.0, 1.0], **args)


# ---------------------------------------------------------------- edge vs region

def test_erlang_c_pooling_against_simulation():
    from analysis.simulation import run_trials
    from analysis.topology import Service, ServiceGraph
    lam, mu = 7.0, 1.0
    for c, rate in [(2, lam / 4), (8, lam)]:
        g = ServiceGraph([Service("pool", c, Exponential(rate=mu))], {"pool": rate})
        r = run_trials(g, replications=6, horizon=4000, warmup=400, seed=3, progress=False)
        est = r.estimate("pool", "mean_response")
        exact = edge.pool_mean_response(rate, mu, c)
        assert est["ci_low"] <= exact <= est["ci_high"], (c, exact, est)


def test_edge_vs_region_breakeven():
    lam, mu, k, c = 30.0, 1.0, 10, 4
    gap = edge.breakeven_rtt_gap(lam, mu, k, c)
    assert gap > 0      # pooling: one large pool queues less than ten small ones
    assert edge.edge_vs_region(lam, mu, k, c, 0.0, gap * 1.01)["winner"] == "edge"
    assert edge.edge_vs_region(lam, mu, k, c, 0.0, gap * 0.99)["winner"] == "region"
    # burstier arrivals widen the gap (Allen-Cunneen scales the wait)
    assert edge.breakeven_rtt_gap(lam, mu, k, c, arrival_scv=4.0) > gap
    assert edge.pool_mean_response(lam, mu, 40) == pytest.approx(
        theory.mmc_metrics(lam, mu, 40)["mean_response"])


def test_edge_bad_parameters():
    with pytest.raises(ValueError, match="sites"):
        edge.edge_vs_region(1.0, 1.0, 0, 2, 0.0, 0.01)
    with pytest.raises(ValueError, match="rtt_edge"):
        edge.edge_vs_region(1.0, 1.0, 2, 2, -0.01, 0.01)


# ---------------------------------------------------------------- packing

def test_ffd_suboptimal_known_case():
    # capacity 10: OPT packs (4,3,3)(4,3,3) on 2 nodes; FFD puts 4+4 together and needs 3
    sizes = [4, 4, 3, 3, 3, 3]
    assert len(packing.first_fit_decreasing(sizes, 10)) == 3
    opt = packing.optimal_packing(sizes, 10)
    assert len(opt) == 2
    assert packing.packing_stats(sizes, 10, opt)["utilisation"] == pytest.approx(1.0)


def test_optimal_against_brute_force_small_random():
    rng = np.random.default_rng(0)
    for _ in range(25):
        n = int(rng.integers(3, 7))
        sizes = rng.integers(1, 10, n).astype(float)
        opt = packing.optimal_packing(sizes, 10)
        st = packing.packing_stats(sizes, 10, opt)         # checks every item placed once, no overflow
        # brute force: every assignment of items to n labelled bins (vectorised)
        labels = np.array(np.meshgrid(*[np.arange(n)] * n, indexing="ij")).reshape(n, -1).T
        loads = np.stack([(np.where(labels == b, sizes, 0.0)).sum(axis=1) for b in range(n)], axis=1)
        used = (loads > 0).sum(axis=1)
        best = int(used[loads.max(axis=1) <= 10].min())
        assert st["nodes"] == best
        ffd = len(packing.first_fit_decreasing(sizes, 10))
        assert best <= ffd <= 11 / 9 * best + 6 / 9 + 1e-9


def test_fragmentation_and_bfd():
    sizes = [6, 5, 5, 4]
    b = packing.best_fit_decreasing(sizes, 10)
    assert packing.packing_stats(sizes, 10, b)["nodes"] == 2
    s = packing.packing_stats([6, 6], 10, [[0], [1]], probe=5)
    assert s["fragmentation"] == pytest.approx(1.0)          # both holes (4) smaller than 5
    assert s["utilisation"] == pytest.approx(0.6)


def test_packing_bad_parameters():
    with pytest.raises(ValueError, match="larger than a node"):
        packing.first_fit_decreasing([3, 12], 10)
    with pytest.raises(ValueError, match="capacity"):
        packing.first_fit_decreasing([3], 0)


def test_ramp_provisioning():
    d = np.linspace(10, 100, 91)           # a ramp, requests/s per 60 s step
    react = packing.ramp_provisioning(d, 60, 5.0, 4, 300, anticipate=False)
    ahead = packing.ramp_provisioning(d, 60, 5.0, 4, 300, anticipate=True)
    assert react["shortfall"] > 0 and ahead["shortfall"] == 0
    assert ahead["over_provisioning"] > react["over_provisioning"]
    zero = packing.ramp_provisioning(d, 60, 5.0, 4, 0)
    assert zero["shortfall"] == 0
    # finer containers waste less capacity
    assert packing.ramp_provisioning(d, 60, 1.0, 1, 0)["over_provisioning"] < zero["over_provisioning"]


def test_more_bad_inputs():
    with pytest.raises(ValueError, match="sorted"):
        sv.simulate_platform([2.0, 1.0], 0.1, 1.0, 5.0)
    with pytest.raises(ValueError, match="arrival_rate"):
        sv.mminf_keepalive_exact(0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="demand"):
        packing.ramp_provisioning([1.0, -2.0], 60, 1.0, 1, 0)
    with pytest.raises(ValueError, match="max_items"):
        packing.optimal_packing(np.ones(20), 10)
    with pytest.raises(ValueError, match="stages"):
        sv.simulate_chain([0.0], [], 1.0)
