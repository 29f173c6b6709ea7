"""Dispatch policies: each policy's rule, the pool simulation against closed forms (M/M/1 per server
for random, E_n/M/1 for round-robin, the supermarket limit for power-of-d, M/M/c as JSQ's bound)
and against the ciw Pool of analysis.topology, stale information, bad input."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import dispatch, theory


def _ci(values, level=0.99):
    v = np.asarray(values, dtype=float)
    h = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return v.mean() - h, v.mean() + h


def test_shortest_picks_a_shortest_queue_and_breaks_ties_at_random():
    rng = np.random.default_rng(0)
    lengths = [3, 1, 4, 1, 5]
    picks = {dispatch.shortest(lengths, range(5), rng) for _ in range(200)}
    assert picks == {1, 3}
    assert dispatch.shortest(lengths, [0, 2, 4], rng) == 0


def test_power_of_d_samples_d_distinct_servers_uniformly():
    rng = np.random.default_rng(1)
    draws = dispatch.sample_distinct(rng, 6, 3, size=6000)
    assert all(len(set(row)) == 3 for row in draws)
    counts = np.bincount(draws.ravel(), minlength=6)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_jsq_never_sends_to_a_longer_queue_than_the_shortest():
    run = dispatch.simulate_pool(3.6, [1.0] * 4, "jsq", 500.0, warmup=0.0, seed=2)
    r = run.requests
    dep = r.arrival + r.response
    for j in range(0, len(r), 37):   # queue lengths seen by request j, recomputed from the records
        t = r.arrival.iloc[j]
        earlier = r.iloc[:j]
        lengths = [int(((earlier.server == k) & (dep.iloc[:j] > t)).sum()) for k in range(4)]
        assert lengths[r.server.iloc[j]] == min(lengths)


def test_round_robin_cycles_and_random_is_uniform():
    run = dispatch.simulate_pool(2.0, [1.0] * 3, "round_robin", 300.0, warmup=0.0, seed=3)
    s = run.requests.server.to_numpy()
    assert np.all((s[1:] - s[:-1]) % 3 == 1)
    run = dispatch.simulate_pool(2.0, [1.0] * 3, "random", 3000.0, warmup=0.0, seed=3)
    assert stats.chisquare(np.bincount(run.requests.server, minlength=3)).pvalue > 1e-3


def test_capacity_weighted_sends_in_proportion_to_speed():
    run = dispatch.simulate_pool(2.0, [1.0, 1.0, 0.5], "capacity_weighted", 4000.0, warmup=0.0, seed=4)
    share = np.bincount(run.requests.server, minlength=3) / len(run.requests)
    assert share == pytest.approx([0.4, 0.4, 0.2], abs=0.02)


def test_random_dispatch_matches_mm1_per_server():
    lam, mu, n = 3.2, 1.0, 4
    means = [dispatch.simulate_pool(lam, [mu] * n, "random", 4000.0, seed=s).summary()["mean_response"]
             for s in range(8)]
    lo, hi = _ci(means)
    assert lo <= dispatch.random_mean_response(lam, mu, n) <= hi


def test_round_robin_matches_the_erlang_arrival_closed_form():
    lam, mu, n = 3.2, 1.0, 4
    means = [dispatch.simulate_pool(lam, [mu] * n, "round_robin", 4000.0, seed=s).summary()["mean_response"]
             for s in range(8)]
    lo, hi = _ci(means)
    sigma = dispatch.round_robin_decay(lam, mu, n)
    assert lo <= 1 / (mu * (1 - sigma)) <= hi
    # n = 1 is M/M/1: sigma = rho
    assert dispatch.round_robin_decay(0.7, 1.0, 1) == pytest.approx(0.7, rel=1e-9)


def test_power_of_two_on_a_large_pool_approaches_the_supermarket_limit():
    lam_q, mu, n = 0.8, 1.0, 100
    means = [dispatch.simulate_pool(lam_q * n, [mu] * n, "power_of_d", 400.0, seed=s).summary()["mean_response"]
             for s in range(4)]
    limit = theory.supermarket_mean_response(lam_q, mu, 2)
    assert np.mean(means) == pytest.approx(limit, rel=0.05)
    assert np.mean(means) < dispatch.random_mean_response(lam_q * n, mu, n) * 0.6


def test_jsq_lies_between_central_queue_and_random():
    lam, mu, n = 3.4, 1.0, 4
    m = np.mean([dispatch.simulate_pool(lam, [mu] * n, "jsq", 3000.0, seed=s).summary()["mean_response"]
                 for s in range(4)])
    assert theory.mmc_metrics(lam, mu, n)["mean_response"] < m < dispatch.random_mean_response(lam, mu, n)


def test_pool_agrees_with_the_ciw_pool_of_topology():
    from analysis import simulation, topology
    lam, mu, n = 3.0, 1.0, 4
    graph = topology.ServiceGraph(
        services=[topology.Service(f"s{i}", 1, topology.Exponential(rate=mu)) for i in range(n)],
        pools=[topology.Pool("lb", tuple(f"s{i}" for i in range(n)), policy="power_of_d", d=2)],
        arrivals=[topology.Arrivals("lb", rate=lam)])
    res = simulation.run_trials(graph, replications=4, horizon=1500.0, seed=5, executor="serial")
    ciw = res.estimate(simulation.END_TO_END, "mean_response")
    ours = [dispatch.simulate_pool(lam, [mu] * n, "power_of_d", 1500.0, seed=s).summary()["mean_response"]
            for s in range(6)]
    lo, hi = _ci(ours)
    # the two 99% intervals overlap: the same model on two engines
    assert ciw["ci_low"] <= hi and lo <= ciw["ci_high"]


def test_stale_information_makes_jsq_herd():
    lam, mu, n = 8.0, 1.0, 10
    fresh = dispatch.simulate_pool(lam, [mu] * n, "jsq", 2000.0, seed=6).summary()["mean_response"]
    stale = dispatch.simulate_pool(lam, [mu] * n, "jsq", 2000.0, seed=6, info_period_s=10.0).summary()["mean_response"]
    assert stale > 2 * fresh


def test_stall_skips_the_stalled_part_of_each_period():
    s = dispatch.Stall(10.0, 2.0)
    assert s.finish(0.0, 1.0) == pytest.approx(3.0)      # waits out [0, 2)
    assert s.finish(5.0, 7.0) == pytest.approx(14.0)     # 5 s to 10, stall to 12, 2 s more
    assert s.available == pytest.approx(0.8)


@pytest.mark.parametrize("kwargs, name", [
    (dict(policy="fastest"), "policy"),
    (dict(arrival_rate=-1.0), "arrival_rate"),
    (dict(service_rates=[1.0, -2.0]), "service_rates"),
    (dict(info_period_s=-1.0), "info_period_s"),
    (dict(policy="power_of_d", d=5), "d"),
    (dict(horizon=0.0), "horizon"),
])
def test_bad_parameters_name_themselves(kwargs, name):
    args = dict(arrival_rate=1.0, service_rates=[1.0] * 4, policy="random", horizon=10.0) | kwargs
    with pytest.raises(ValueError, match=name):
        dispatch.simulate_pool(**args)


def test_stall_and_closed_form_reject_bad_input():
    with pytest.raises(ValueError, match="duration_s"):
        dispatch.Stall(1.0, 2.0)
    with pytest.raises(ValueError, match="overloads"):
        dispatch.random_mean_response(5.0, 1.0, 4)


def test_relaxation_time_is_morses_formula():
    assert dispatch.relaxation_time(0.81, 2.0) == pytest.approx(1 / (2.0 * 0.1 ** 2))
    with pytest.raises(ValueError, match="utilisation"):
        dispatch.relaxation_time(1.0, 1.0)


def test_run_length_is_the_longer_of_requests_and_relaxation_times():
    # rho = 0.81, mu = 2/s: relaxation time 1 / (2 * 0.1^2) = 50 s
    assert dispatch.run_length(0.81, 16.2, 2.0, requests=1000, relaxation_times=2.0) == pytest.approx(100.0)
    assert dispatch.run_length(0.81, 16.2, 2.0, requests=3240, relaxation_times=2.0) == pytest.approx(200.0)
    assert dispatch.run_length(0.81, 16.2, 2.0, requests=3240, relaxation_times=0.0) == pytest.approx(200.0)
    for kwargs, name in ((dict(utilisation=1.0), "utilisation"), (dict(arrival_rate=0.0), "arrival_rate"),
                         (dict(service_rate=-2.0), "service_rate"), (dict(requests=10.5), "requests"),
                         (dict(relaxation_times=-1.0), "relaxation_times")):
        args = dict(utilisation=0.81, arrival_rate=16.2, service_rate=2.0, requests=1000, relaxation_times=2.0)
        with pytest.raises(ValueError, match=name):
            dispatch.run_length(**(args | kwargs))


def _reference_pool(lam, mus, policy, horizon, warmup, seed, d=2, info=0.0, stalls=None):
    """The pool loop as first written (numpy scalars, one deque per server, dispatch.shortest with
    rng.integers for ties): the fast loop of simulate_pool must give the same rows, bit for bit."""
    from collections import deque
    stalls = stalls or {}
    mus = np.asarray(mus, dtype=float)
    n = mus.size
    rng = np.random.default_rng(seed)
    count = int(lam * horizon + 6 * math.sqrt(lam * horizon) + 10)
    t_arr = np.cumsum(rng.exponential(1.0 / lam, count))
    t_arr = t_arr[t_arr < horizon]
    m = t_arr.size
    work = rng.exponential(1.0, m)
    weights = mus * np.array([stalls[i].available if i in stalls else 1.0 for i in range(n)])
    fixed = {"random": lambda: rng.integers(n, size=m),
             "capacity_weighted": lambda: rng.choice(n, size=m, p=weights / weights.sum()),
             "round_robin": lambda: (np.arange(m) + int(rng.integers(n))) % n}.get(policy, lambda: None)()
    samples = dispatch.sample_distinct(rng, n, d, size=m) if policy == "power_of_d" else None
    in_system, last, board, next_refresh = [deque() for _ in range(n)], [0.0] * n, [0] * n, 0.0
    server, response = np.empty(m, dtype=np.int64), np.empty(m)
    for j in range(m):
        t = t_arr[j]
        if fixed is not None:
            i = int(fixed[j])
        else:
            cand = range(n) if policy == "jsq" else samples[j]
            if info > 0:
                if t >= next_refresh:
                    for k in range(n):
                        while in_system[k] and in_system[k][0] <= t:
                            in_system[k].popleft()
                        board[k] = len(in_system[k])
                    next_refresh = (math.floor(t / info) + 1) * info
                lengths = board
            else:
                for k in range(n):
                    while in_system[k] and in_system[k][0] <= t:
                        in_system[k].popleft()
                lengths = [len(q) for q in in_system]
            i = dispatch.shortest(lengths, [int(k) for k in cand], rng)
        start = last[i] if last[i] > t else t
        done = stalls[i].finish(start, work[j] / mus[i]) if i in stalls else start + work[j] / mus[i]
        last[i] = done
        in_system[i].append(done)
        server[j], response[j] = i, done - t
    keep = t_arr >= warmup
    return pd.DataFrame({"arrival": t_arr[keep], "server": server[keep], "response": response[keep]})


@pytest.mark.parametrize("policy", dispatch.POLICIES)
@pytest.mark.parametrize("kwargs", [
    dict(), dict(d=3), dict(stalls={0: dispatch.Stall(5.0, 1.0)}), dict(info=0.5),
    dict(info=2.0, d=3, stalls={2: dispatch.Stall(2.0, 0.5)}),
], ids=["exact", "d3", "stalled", "stale", "stale-d3-stalled"])
def test_fast_pool_loop_gives_the_rows_of_the_reference_loop(policy, kwargs):
    for mus, lam in (([10.0] * 6 + [5.0], 58.0), ([1.0] * 3, 2.6)):   # many ties at low load, few near 0.9
        ref = _reference_pool(lam, mus, policy, 150.0, 15.0, seed=11, **kwargs)
        run = dispatch.simulate_pool(lam, mus, policy, 150.0, warmup=15.0, seed=11, d=kwargs.get("d", 2),
                                     info_period_s=kwargs.get("info", 0.0), stalls=kwargs.get("stalls"))
        pd.testing.assert_frame_equal(run.requests, ref)


def test_tie_breaker_draws_what_rng_integers_draws():
    for warm in (0, 1, 2):      # 0-2 earlier 32-bit draws: the generator may hold half of a 64-bit output
        ours, theirs = np.random.default_rng(5), np.random.default_rng(5)
        for rng in (ours, theirs):
            rng.integers(7, size=warm)
        below = dispatch._uniform_below(ours)
        ks = [2, 3, 10, 2, 100, 7, 2**31 + 5, 3] * 400
        assert [below(k) for k in ks] == [int(theirs.integers(k)) for k in ks]
    assert dispatch._uniform_below(np.random.default_rng(1))(1) == 0
