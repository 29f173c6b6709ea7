"""Call depth and a shared database: closed forms against the exact recursion engine (99%
t-intervals across replications) and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import call_chains as cc
from analysis.simulation import run_trials
from analysis.topology import Exponential, Service, ServiceGraph


def per_trial_interval(result, fn, level=0.99):
    x = result.requests.groupby("trial").response.apply(fn).to_numpy()
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def test_hypoexponential_matches_erlang_and_monte_carlo():
    assert cc.hypoexponential_quantile([3.0, 3.0], 0.99) == pytest.approx(
        cc.hypoexponential_quantile([3.0, 3.0 * (1 + 1e-7)], 0.99), rel=1e-6)
    rng = np.random.default_rng(5)
    n = 2_000_000
    x = rng.exponential(1 / 3.0, n) + rng.exponential(1 / 5.0, n) + rng.exponential(1 / 9.0, n)
    for t in (0.2, 0.8, 2.0):
        p = (x > t).mean()
        assert abs(p - cc.hypoexponential_survival([3.0, 5.0, 9.0], t)) <= 3 * math.sqrt(p * (1 - p) / x.size)


@pytest.mark.parametrize("depth", [1, 5])
def test_chain_matches_the_engine(depth):
    mu, lam = 100.0, 60.0
    graph = ServiceGraph([Service(f"s{i}", 1, Exponential(rate=mu)) for i in range(depth)],
                         arrivals={"s0": lam}, routing={f"s{i}": f"s{i + 1}" for i in range(depth - 1)})
    res = run_trials(graph, 8, horizon=600.0, seed=3, executor="serial")
    exact = cc.chain_response(lam, mu, depth)
    for key, fn in [("mean_response", np.mean), ("p99_response", lambda r: np.quantile(r, 0.99))]:
        est, half = per_trial_interval(res, fn)
        assert abs(est - exact[key]) <= half, (key, est, half, exact[key])


def test_shared_database_matches_the_engine():
    mu, lam, m, mu_db = 100.0, 50.0, 6, 400.0
    graph = ServiceGraph([Service(f"c{i}", 1, Exponential(rate=mu)) for i in range(m)]
                         + [Service("db", 1, Exponential(rate=mu_db))],
                         arrivals={f"c{i}": lam for i in range(m)}, routing={f"c{i}": "db" for i in range(m)})
    res = run_trials(graph, 8, horizon=300.0, seed=4, executor="serial")
    exact = cc.shared_database_response(lam, mu, m, mu_db)
    assert exact["database_utilisation"] == pytest.approx(0.75)
    for key, fn in [("mean_response", np.mean), ("p99_response", lambda r: np.quantile(r, 0.99))]:
        est, half = per_trial_interval(res, fn)
        assert abs(est - exact[key]) <= half, (key, est, half, exact[key])


@pytest.mark.parametrize("call,match", [
    (lambda: cc.chain_response(60.0, 100.0, 0), "depth"),
    (lambda: cc.chain_response(100.0, 100.0, 3), "unstable"),
    (lambda: cc.shared_database_response(50.0, 100.0, 10, 400.0), "database"),
    (lambda: cc.hypoexponential_quantile([1.0, -2.0], 0.5), "rates"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
