"""Little's law measured by the engine: time-average L against lambda * W and the M/M/c closed form."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import theory
from analysis.simulation import TrialResult, run_trials, time_average_in_system
from analysis.topology import Exponential, Service, ServiceGraph


def _result(requests, carried, warmup, horizon, replications=2):
    return TrialResult(summary=pd.DataFrame(), per_trial=pd.DataFrame(), records=None,
                       requests=pd.DataFrame(requests), traffic=None,
                       params=dict(warmup=warmup, horizon=horizon, replications=replications),
                       carried_over=pd.DataFrame(carried))


def test_time_average_integrates_overlaps_exactly():
    res = _result({"trial": [0, 0, 0, 1], "arrival": [1.0, 1.0, 9.0, 2.0],
                   "exit": [2.0, 4.0, np.nan, 3.0]},
                  {"trial": [0], "arrival": [0.5], "exit": [6.0]}, warmup=1.0, horizon=11.0)
    L = time_average_in_system(res, 1.0, 11.0)
    # trial 0: overlaps 1 + 3 + 2 (incomplete counts to the end) + 5 (arrived before the warm-up
    # cut, still there at it) over 10 s; trial 1: 1 s over 10 s
    assert L.loc[0] == pytest.approx(1.1)
    assert L.loc[1] == pytest.approx(0.1)


def test_time_average_rejects_bad_window_and_bare_tables():
    res = _result({"trial": [0], "arrival": [1.0], "exit": [2.0]},
                  {"trial": [], "arrival": [], "exit": []},
                  warmup=1.0, horizon=10.0, replications=1)
    with pytest.raises(ValueError, match="start"):
        time_average_in_system(res, 5.0, 5.0)
    with pytest.raises(ValueError, match="warm-up cut"):
        time_average_in_system(res, 0.5, 5.0)
    with pytest.raises(ValueError, match="horizon"):
        time_average_in_system(res, 1.0, 12.0)
    with pytest.raises(ValueError, match="TrialResult"):
        time_average_in_system(res.requests, 1.0, 5.0)


def test_time_average_from_the_warmup_cut_counts_requests_already_inside():
    # M/M/1 at rho = 0.9: many requests are inside at the warm-up cut. Counting only those that
    # arrived after it (the old behaviour) underestimates L; with them, the integral equals the
    # summary's end-to-end mean_in_system (the same integral, computed in the worker).
    graph = ServiceGraph([Service("api", 1, Exponential(rate=1.0))], {"api": 0.9})
    res = run_trials(graph, replications=3, horizon=400.0, warmup=100.0, seed=3,
                     executor="serial", progress=False)
    assert len(res.carried_over) > 0
    L = time_average_in_system(res, 100.0, 400.0)
    per_trial = res.per_trial[(res.per_trial["service"] == "end-to-end")
                              & (res.per_trial["metric"] == "mean_in_system")
                              & (res.per_trial["customer_class"] == "all")]
    assert L.to_numpy() == pytest.approx(per_trial["value"].to_numpy(), rel=1e-12)
    req = res.requests
    old = (np.clip(np.minimum(req["exit"].fillna(400.0), 400.0) - np.maximum(req["arrival"], 100.0),
                   0, None).groupby(req["trial"]).sum() / 300.0)
    # a replication with requests inside at the cut is underestimated by the old count; one without
    # any (the queue happened to be empty at the cut) is not
    inside = set(res.carried_over["trial"])
    assert inside, "the test needs a replication with requests inside at the warm-up cut"
    for trial in L.index:
        if trial in inside:
            assert old.loc[trial] < L.loc[trial], trial
        else:
            assert old.loc[trial] == pytest.approx(L.loc[trial], rel=1e-12), trial


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_littles_law_and_mmc_mean_in_system(path):
    lam, mu, c = 24.0, 10.0, 3      # rho = 0.8
    graph = ServiceGraph(services=[Service("api", servers=c, service_time=Exponential(rate=mu))],
                         arrivals={"api": lam})
    horizon, warmup = 1500.0, 100.0
    res = run_trials(graph, replications=8, horizon=horizon, warmup=warmup, seed=11,
                     executor="serial", progress=False, path=path)
    L = time_average_in_system(res, warmup + 5.0, horizon)
    exact = theory.mmc_metrics(lam, mu, c)["mean_in_system"]
    half = stats.t.ppf(0.995, len(L) - 1) * L.std(ddof=1) / np.sqrt(len(L))
    assert abs(L.mean() - exact) <= half, (L.mean(), exact, half)
    assert half < 0.2 * exact            # the interval is narrow enough to fail
    lam_w = (res.estimate("end-to-end", "throughput").estimate
             * res.estimate("end-to-end", "mean_response").estimate)
    assert L.mean() == pytest.approx(lam_w, rel=0.03)
    # theory and simulation share metric names: one join compares them (99% intervals)
    cmp = res.compare(theory.mmc_metrics(lam, mu, c), service="api", confidence=0.99)
    assert {"p_wait", "mean_wait", "mean_response", "mean_in_system", "mean_queue_length",
            "p99_response", "utilisation"} <= set(cmp["metric"])
    assert cmp.set_index("metric").loc[["p_wait", "mean_in_system", "mean_queue_length"],
                                       "inside"].all(), cmp
