"""Little's law measured by the engine: time-average L against lambda * W and the M/M/c closed form."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import theory
from analysis.simulation import run_trials, time_average_in_system
from analysis.topology import Exponential, Service, ServiceGraph


def test_time_average_integrates_overlaps_exactly():
    req = pd.DataFrame({"trial": [0, 0, 0, 1], "arrival": [0.0, 1.0, 9.0, 2.0],
                        "exit": [2.0, 4.0, np.nan, 3.0]})
    L = time_average_in_system(req, 1.0, 11.0)
    # trial 0: overlaps 1 + 3 + 2 (incomplete counts to the end) over 10 s; trial 1: 1 s over 10 s
    assert L.loc[0] == pytest.approx(0.6)
    assert L.loc[1] == pytest.approx(0.1)


def test_time_average_rejects_bad_window():
    req = pd.DataFrame({"trial": [0], "arrival": [0.0], "exit": [1.0]})
    with pytest.raises(ValueError, match="start"):
        time_average_in_system(req, 5.0, 5.0)
    with pytest.raises(ValueError, match="missing column"):
        time_average_in_system(req.drop(columns="exit"), 0.0, 1.0)


@pytest.mark.parametrize("path", ["recursion", "ciw"])   # every exact fast path vs ciw
def test_littles_law_and_mmc_mean_in_system(path):
    lam, mu, c = 24.0, 10.0, 3      # rho = 0.8
    graph = ServiceGraph(services=[Service("api", servers=c, service_time=Exponential(mu))],
                         arrivals={"api": lam})
    horizon, warmup = 1500.0, 100.0
    res = run_trials(graph, replications=8, horizon=horizon, warmup=warmup, seed=11,
                     executor="serial", progress=False, path=path)
    L = time_average_in_system(res.requests, warmup + 5.0, horizon)
    exact = theory.mmc_metrics(lam, mu, c)["mean_in_system"]
    half = stats.t.ppf(0.995, len(L) - 1) * L.std(ddof=1) / np.sqrt(len(L))
    assert abs(L.mean() - exact) <= half, (L.mean(), exact, half)
    assert half < 0.2 * exact            # the interval is narrow enough to fail
    lam_w = (res.estimate("end-to-end", "throughput").estimate
             * res.estimate("end-to-end", "mean_response").estimate)
    assert L.mean() == pytest.approx(lam_w, rel=0.03)
