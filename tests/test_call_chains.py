"""Call depth and a shared database: closed forms against the exact recursion engine (99%
t-intervals across replications) and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import call_chains as cc
from analysis.simulation import run_trials
from analysis.topology import Exponential, Lognormal, Mixture, Service, ServiceGraph


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



def _two_rate_reference(a, b, t):
    """(b e^-at - a e^-bt) / (b - a) in 50-digit decimal arithmetic (no cancellation error)."""
    from decimal import Decimal, localcontext
    with localcontext() as ctx:
        ctx.prec = 50
        da, db, dt = Decimal(a), Decimal(b), Decimal(t)
        return float((db * (-da * dt).exp() - da * (-db * dt).exp()) / (db - da))


@pytest.mark.parametrize("a, b", [(75.0, 9500.0), (75.0, 100.0), (100.0, 75.0), (75.0, 75.0001), (3.0, 5.0)])
def test_two_rate_survival_is_exact_to_rounding(a, b):
    # the two-rate closed form (the shared database's caller): accurate to 1e-15 also for close rates,
    # where the matrix exponential it replaces was off by 2e-12; vectorised, scalars stay scalars
    ts = np.linspace(0.0, 0.5, 51)
    got = cc.hypoexponential_survival([a, b], ts)
    assert got.shape == ts.shape
    np.testing.assert_allclose(got, [_two_rate_reference(a, b, t) for t in ts], rtol=0, atol=1e-15)
    assert isinstance(cc.hypoexponential_survival([a, b], 0.01), float)
    assert cc.hypoexponential_survival([a, b], -1.0) == 1.0

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


def test_shared_lognormal_database_matches_pollaczek_khinchine():
    """Exponential callers feed the database a Poisson stream: an M/G/1 database with lognormal service
    has the Pollaczek-Khinchine mean; the recursion engine (any service distribution) agrees."""
    mu, lam, m = 100.0, 50.0, 6
    db = Lognormal(1 / 500.0, scv=3.0)                    # utilisation 0.6
    graph = ServiceGraph([Service(f"c{i}", 1, Exponential(rate=mu)) for i in range(m)]
                         + [Service("db", 1, db)],
                         arrivals={f"c{i}": lam for i in range(m)}, routing={f"c{i}": "db" for i in range(m)})
    res = run_trials(graph, 8, horizon=300.0, seed=6, executor="serial")
    assert res.path == "recursion"
    exact = cc.shared_database_mean_response(lam, mu, m, db)
    assert exact["database_utilisation"] == pytest.approx(0.6)
    # P-K differs from the exponential database's mean by far more than the interval
    assert exact["mean_response"] - cc.shared_database_response(lam, mu, m, 500.0)["mean_response"] > 0.002
    est, half = per_trial_interval(res, np.mean)
    assert abs(est - exact["mean_response"]) <= half, (est, half, exact)


def test_chain_with_a_mixture_last_station_matches_the_engine():
    lam = 60.0
    services = [Exponential(0.01), Exponential(0.008),
                Mixture([Exponential(0.005), Exponential(0.1)], [0.95, 0.05])]   # mean 8.75 ms, SCV > 1
    graph = ServiceGraph([Service(f"s{i}", 1, d) for i, d in enumerate(services)],
                         arrivals={"s0": lam}, routing={"s0": "s1", "s1": "s2"})
    res = run_trials(graph, 8, horizon=400.0, seed=7, executor="serial")
    exact = cc.chain_mean_response(lam, services)
    assert exact == pytest.approx(1 / 40 + 1 / 65 + cc.mg1_mean_response(lam, services[-1]))
    est, half = per_trial_interval(res, np.mean)
    assert abs(est - exact) <= half, (est, half, exact)
    # all exponential: the same as the Erlang/hypoexponential form
    assert cc.chain_mean_response(60.0, [Exponential(0.01)] * 4) == pytest.approx(
        cc.chain_response(60.0, 100.0, 4)["mean_response"])


@pytest.mark.parametrize("call,match", [
    (lambda: cc.chain_response(60.0, 100.0, 0), "depth"),
    (lambda: cc.chain_response(100.0, 100.0, 3), "unstable"),
    (lambda: cc.shared_database_response(50.0, 100.0, 10, 400.0), "database"),
    (lambda: cc.hypoexponential_quantile([1.0, -2.0], 0.5), "rates"),
    (lambda: cc.chain_mean_response(60.0, [Lognormal(0.01, scv=2.0), Exponential(0.01)]), r"services\[0\]"),
    (lambda: cc.chain_mean_response(60.0, []), "services"),
    (lambda: cc.shared_database_mean_response(50.0, 100.0, 6, 0.002), "database_service=0.002"),
    (lambda: cc.shared_database_mean_response(50.0, 100.0, 6, Lognormal(0.004, scv=2.0)), "database"),
    (lambda: cc.mg1_mean_response(60.0, Exponential(0.02)), "unstable"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
