"""Tail amplification, quorum joins, hedging and Redundancy-d: closed forms against simulation
within 99% confidence intervals (t across independent replications, or the binomial interval
of an empirical quantile), the published Redundancy-d result, and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from analysis import tails, theory
from analysis.topology import Exponential, Gamma, Lognormal, Mixture, two_point


def t_interval(values, level=0.99):
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def quantile_bracket(sample, q, level=0.99):
    """Distribution-free interval of the q-quantile: order statistics at binomial bounds."""
    x = np.sort(sample)
    n = x.size
    lo, hi = stats.binom.interval(level, n, q)
    return x[max(int(lo) - 1, 0)], x[min(int(hi), n - 1)]


LEAVES = [Exponential(0.01), Lognormal(0.01, scv=2.0), two_point(0.01, 0.2, p_high=0.002)]


@pytest.mark.parametrize("leaf", LEAVES, ids=["exp", "lognormal", "mixture"])
@pytest.mark.parametrize("n,frac", [(1, 1.0), (10, 1.0), (100, 1.0), (100, 0.9)])
def test_fanout_quantiles_match_monte_carlo(leaf, n, frac):
    table = tails.fanout_quantiles(leaf, [n], quantiles=(0.5, 0.99), quorum_fraction=frac)
    replies = int(table["replies"].iloc[0])
    assert replies == math.ceil(frac * n)
    sample = tails.sample_fanout(leaf, n, 40_000, np.random.default_rng(n), replies=replies)
    for q, col in [(0.5, "p50_response"), (0.99, "p99_response")]:
        lo, hi = quantile_bracket(sample, q)
        assert lo <= table[col].iloc[0] <= hi, (q, lo, table[col].iloc[0], hi)


@pytest.mark.parametrize("leaf", LEAVES + [Mixture([Exponential(0.01), Exponential(0.25)], [0.999, 0.001])],
                         ids=["exp", "lognormal", "two-point", "mixture"])
def test_vectorised_quantiles_equal_theory(leaf):
    n = [1, 7, 100, 1000]
    full = tails.fanout_quantiles(leaf, n, quantiles=(0.5, 0.999))
    part = tails.fanout_quantiles(leaf, n, quantiles=(0.99,), quorum_fraction=0.9)
    for i, m in enumerate(n):
        assert full["p99.9_response"][i] == pytest.approx(theory.fanout_max_quantile(leaf, m, 0.999), rel=1e-9)
        k = math.ceil(0.9 * m - 1e-9)
        want = (theory.fanout_max_quantile(leaf, m, 0.99) if k == m else
                theory.kth_fastest_quantile(leaf, m, k, 0.99))
        assert part["p99_response"][i] == pytest.approx(want, rel=1e-9)


def test_quorum_cuts_the_tail_and_p_slow_leaf():
    leaf = two_point(0.01, 0.2, p_high=0.002)
    full = tails.fanout_quantiles(leaf, [100], quantiles=(0.99,), slow_threshold=0.1)
    quorum = tails.fanout_quantiles(leaf, [100], quantiles=(0.99,), quorum_fraction=0.95)
    assert full["p_slow_leaf"].iloc[0] == pytest.approx(1 - 0.998 ** 100)
    assert full["p99_response"].iloc[0] == pytest.approx(0.2)
    assert quorum["p99_response"].iloc[0] == pytest.approx(0.01)
    # simulated probability of meeting a slow leaf
    s = tails.sample_fanout(leaf, 100, 20_000, np.random.default_rng(3))
    hit = (s > 0.1).mean()
    half = 2.58 * math.sqrt(hit * (1 - hit) / s.size)
    assert abs(hit - full["p_slow_leaf"].iloc[0]) <= half


@pytest.mark.parametrize("leaf,delay", [(Exponential(0.01), 0.02), (Lognormal(0.01, scv=4.0), 0.02),
                                        (two_point(0.01, 0.2, p_high=0.01), 0.015),
                                        (Exponential(0.01), 0.0)])
def test_hedged_closed_form_matches_monte_carlo(leaf, delay):
    sample = tails.sample_hedged(leaf, delay, 200_000, np.random.default_rng(11))
    for q in (0.5, 0.99):
        lo, hi = quantile_bracket(sample, q)
        assert lo <= tails.hedged_quantile(leaf, delay, q) <= hi
    w = tails.hedge_work(leaf, delay)
    mean, half = t_interval(sample.reshape(20, -1).mean(axis=1))
    assert abs(mean - w["mean_response"]) <= half
    x = leaf.sample(np.random.default_rng(8), 200_000).reshape(-1, 2)
    t = np.minimum(x[:, 0], delay + x[:, 1])
    work = t + np.maximum(t - delay, 0.0)
    mean, half = t_interval(work.reshape(20, -1).mean(axis=1))
    assert abs(mean - w["work"]) <= half


def test_hedge_on_exponential_costs_no_work_and_lognormal_does():
    # memoryless: the backup's busy time replaces the first copy's remaining time exactly
    assert tails.hedge_work(Exponential(0.01), 0.02)["extra_load"] == pytest.approx(0, abs=1e-6)
    assert tails.hedge_work(Lognormal(0.01, scv=4.0), 0.02)["extra_load"] < 0   # saves work
    assert tails.hedge_work(Lognormal(0.01, scv=0.1), 0.01)["extra_load"] > 0   # costs work


@pytest.mark.parametrize("k,d,lam", [(4, 2, 2.0), (4, 2, 3.2), (6, 3, 4.0), (4, 4, 3.0),
                                     (5, 1, 2.5)])
def test_redundancy_d_matches_gardner_et_al(k, d, lam):
    """Gardner et al. (OR 2017), exact mean response of Redundancy-d, against the event loop."""
    exact = tails.redundancy_mean_response(lam, 1.0, k, d)
    means = [tails.simulate_replicas(lam, Exponential(1.0), k, 20_000, s, copies=d)
             .response.mean() for s in range(8)]
    mean, half = t_interval(means)
    assert half < 0.1 * exact
    assert abs(mean - exact) <= half, (mean, half, exact)


def _aitken(a, b, c):
    """Limit of a geometrically converging sequence from three terms (Aitken's delta-squared)."""
    return c - (c - b) ** 2 / ((c - b) - (b - a))


@pytest.mark.parametrize("k,d,lam,jobs", [(3, 2, 0.9, (7, 8, 9)), (4, 2, 0.8, (4, 5, 6)), (4, 3, 1.2, (6, 7, 8))])
def test_redundancy_formula_matches_the_markov_chain(k, d, lam, jobs):
    """The closed form against the Redundancy-d Markov chain solved numerically (neither the formula nor
    the event loop): truncated at 3 job limits and extrapolated, it agrees to 2e-4 relative."""
    exact = tails.redundancy_mean_response(lam, 1.0, k, d)
    runs = [tails.redundancy_markov_mean_response(lam, 1.0, k, d, n) for n in jobs]
    means = [r["mean_response"] for r in runs]
    assert means[0] < means[1] < means[2] < exact * 1.0002         # truncation loses the longest queues
    assert runs[-1]["p_full"] < 0.01
    assert _aitken(*means) == pytest.approx(exact, rel=2e-4)
    # the check discriminates: dividing by C(k, d) instead of C(k-1, d-1) is off by far more than 2e-4
    wrong = math.fsum(1.0 / (k * special.comb(k, d) / special.comb(i - 1, d - 1) - lam) for i in range(d, k + 1))
    assert abs(wrong / exact - 1) > 0.01


def test_full_redundancy_response_is_exponential():
    """Gardner et al. (SIGMETRICS 2015 / Queueing Systems 2016, abstract): the response time of a fully
    redundant class is exponential; with d = k copies the k servers act as one of rate k mu, so
    T ~ Exponential(k mu - lambda). Checked on the event loop's quantiles p10 .. p99 (99% t-intervals)."""
    k, lam = 3, 1.5
    runs = [tails.simulate_replicas(lam, Exponential(1.0), k, 10_000, s, copies=k).response for s in range(8)]
    for q in (0.1, 0.5, 0.9, 0.99):
        mean, half = t_interval([np.quantile(r, q) for r in runs])    # replications: queue samples correlate
        assert abs(mean + math.log(1 - q) / (k - lam)) <= half, q


def test_redundancy_markov_bad_input():
    with pytest.raises(ValueError, match="max_jobs=30"):
        tails.redundancy_markov_mean_response(1.0, 1.0, 4, 2, 30)
    with pytest.raises(ValueError, match="copies=5"):
        tails.redundancy_markov_mean_response(1.0, 1.0, 4, 5, 3)


def test_redundancy_limits_and_published_numbers():
    # d = 1: random routing to k M/M/1 queues; d = k: one M/M/1 of rate k mu
    assert tails.redundancy_mean_response(2.0, 1.0, 4, 1) == pytest.approx(1 / (1 - 0.5))
    assert tails.redundancy_mean_response(2.0, 1.0, 4, 4) == pytest.approx(1 / (4 - 2))
    # k = 4, d = 2, lambda = 2: 1/(4*3/1 - 2) + 1/(4*3/2 - 2) + 1/(4*3/3 - 2)
    assert tails.redundancy_mean_response(2.0, 1.0, 4, 2) == pytest.approx(0.1 + 0.25 + 0.5)
    # stable up to k mu (not only k mu / C(k-1, d-1))
    assert math.isfinite(tails.redundancy_mean_response(3.9, 1.0, 4, 2))


def test_hedge_event_loop_at_light_load_equals_closed_form():
    leaf = Lognormal(0.01, scv=4.0)
    run = tails.simulate_replicas(0.5, leaf, 50, 40_000, 1, hedge_delay=0.02)
    for q in (0.5, 0.99):
        lo, hi = quantile_bracket(run.response, q)
        assert lo <= tails.hedged_quantile(leaf, 0.02, q) <= hi
    assert run.copies_per_request == pytest.approx(1 + float(leaf.sf(0.02)), abs=0.01)


def test_cancellation_matters_only_under_load():
    leaf = Lognormal(0.01, scv=4.0)
    kw = dict(hedge_delay=0.005)
    light = [tails.simulate_replicas(1.0, leaf, 40, 20_000, 2, cancel=c, **kw) for c in (True, False)]
    # hardly any queueing: same draws, (almost all) the same response times whether or not the
    # loser is cancelled; only the servers' busy time differs
    same = np.isclose(light[0].response, light[1].response, rtol=0, atol=1e-12)
    assert same.mean() > 0.99
    assert light[0].utilisation < light[1].utilisation
    busy = [tails.simulate_replicas(300.0, leaf, 4, 20_000, 2, cancel=c, **kw) for c in (True, False)]
    assert busy[0].cancelled > 0 and busy[1].cancelled == 0
    assert busy[0].response.mean() < busy[1].response.mean()
    # no hedge ever sent: identical to the plain run
    never = tails.simulate_replicas(300.0, leaf, 4, 5_000, 2, hedge_delay=1e9)
    plain = tails.simulate_replicas(300.0, leaf, 4, 5_000, 2, copies=1)
    assert never.copies_per_request == 1.0
    assert never.response.mean() == pytest.approx(plain.response.mean(), rel=0.5)


def test_no_redundancy_is_random_routing_mm1():
    lam, k, mu = 3.0, 4, 1.0
    means = [tails.simulate_replicas(lam, Exponential(1 / mu), k, 20_000, s).response.mean()
             for s in range(8)]
    mean, half = t_interval(means)
    assert abs(mean - 1 / (mu - lam / k)) <= half
    run = tails.simulate_replicas(lam, Exponential(1 / mu), k, 20_000, 0)
    assert run.utilisation == pytest.approx(lam / (k * mu), rel=0.05)


@pytest.mark.parametrize("call,match", [
    (lambda: tails.fanout_quantiles(Exponential(0.01), [0]), "fan-out"),
    (lambda: tails.sample_fanout(Exponential(0.01), 10, 10, np.random.default_rng(0), replies=11),
     "replies=11"),
    (lambda: tails.fanout_quantiles(Exponential(0.01), [10], quorum_fraction=1.5),
     "quorum_fraction"),
    (lambda: tails.hedged_quantile(Exponential(0.01), -0.1, 0.99), "hedge delay"),
    (lambda: tails.simulate_replicas(1.0, Exponential(0.01), 4, 100, 0, hedge_delay=-1),
     "hedge delay"),
    (lambda: tails.fanout_quantiles(stats.pareto(b=1.0), [10]), "infinite"),
    (lambda: tails.fanout_quantiles("exp", [10]), "leaf must be"),
    (lambda: tails.redundancy_mean_response(5.0, 1.0, 4, 2), "arrival_rate=5"),
    (lambda: tails.redundancy_mean_response(1.0, 1.0, 4, 5), "copies=5"),
    (lambda: tails.simulate_replicas(1.0, Exponential(0.01), 4, 100, 0, copies=2,
                                     hedge_delay=0.1), "hedge_delay needs"),
    (lambda: tails.simulate_replicas(1.0, Exponential(0.01), 4, 100, 0, copy_service="x"),
     "copy_service"),
])
def test_bad_parameters_name_themselves(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_request_bound_slowness_makes_hedging_pure_extra_load():
    """copy_service='same': a backup is as slow as the original, so a hedge only adds work and,
    under load, makes the tail worse than not hedging; with independent copies it helps."""
    leaf = Mixture([Gamma(0.01, scv=0.25), Exponential(0.25)], [0.99, 0.01])
    delay = float(leaf.ppf(0.5))
    lam = 0.8 * 4 / leaf.mean
    none = tails.simulate_replicas(lam, leaf, 4, 20_000, 3)
    same = tails.simulate_replicas(lam, leaf, 4, 20_000, 3, hedge_delay=delay, copy_service="same")
    indep = tails.simulate_replicas(lam, leaf, 4, 20_000, 3, hedge_delay=delay)
    assert same.utilisation > none.utilisation + 0.05
    assert same.quantile(0.99) > none.quantile(0.99)
    assert indep.quantile(0.99) < none.quantile(0.99)
    # light load: the same-work backup never finishes first, so responses are the service times
    # (up to the rare queueing the hedges' different routing draws change)
    light = tails.simulate_replicas(0.1, leaf, 4, 5_000, 4, hedge_delay=delay, copy_service="same")
    plain = tails.simulate_replicas(0.1, leaf, 4, 5_000, 4)
    same_values = np.isclose(light.response, plain.response, rtol=1e-9, atol=1e-12)
    assert same_values.mean() > 0.99
    assert light.copies_per_request == pytest.approx(1.5, abs=0.03)
