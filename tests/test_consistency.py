"""analysis.consistency: quorum staleness against closed forms and the published PBS results, the lag
queue against M/M/1, the oversell closed form against a direct simulation, bad parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import consistency as c
from analysis import paths
from analysis.topology import Deterministic, Exponential, Gamma, Lognormal, Mixture

from conftest import REAL_DATA, requires_real_data

Z = 4.0  # band half-width in standard errors for the Monte Carlo comparisons


def _instant_wars(write):
    zero = Deterministic(0.0)
    return c.WARS(write, zero, zero, zero)


@pytest.mark.parametrize("n,r,w", [(3, 1, 1), (5, 2, 2), (5, 1, 3), (6, 2, 1), (4, 2, 3)])
def test_t0_matches_probabilistic_quorum_closed_form(n, r, w):
    # heavy-tailed write delays: the t = 0 closed form holds for any write distribution
    trials = c.quorum_trials(n, r, w, _instant_wars(c.PBS_FITS["LNKD-DISK"].write), trials=200_000, seed=3)
    exact = c.consistency_closed_form(n, r, w)
    est = c.consistency_probability(trials, 0.0)
    se = math.sqrt(max(exact * (1 - exact), 1e-12) / trials.trials)
    assert abs(est - exact) <= Z * se + 1e-12, (est, exact)


@pytest.mark.parametrize("n,r,w", [(3, 1, 1), (5, 2, 1), (5, 1, 2)])
def test_exponential_writes_closed_form_for_all_t(n, r, w):
    rate = 200.0  # writes reach a replica after 5 ms on average
    trials = c.quorum_trials(n, r, w, _instant_wars(Exponential(rate=rate)), trials=200_000, seed=4)
    ts = np.array([0.0, 0.001, 0.005, 0.02])
    est = c.consistency_probability(trials, ts)
    exact = np.array([c.consistency_closed_form(n, r, w, t, write_rate=rate) for t in ts])
    se = np.sqrt(np.maximum(exact * (1 - exact), 1e-12) / trials.trials)
    assert np.all(np.abs(est - exact) <= Z * se + 1e-12), (est, exact)


def test_strict_quorum_is_always_consistent():
    for r, w in [(2, 2), (1, 3), (3, 1)]:
        res = c.quorum_trials(3, r, w, c.PBS_FITS["YMMR"], trials=50_000, seed=5)
        assert np.all(res.visible_after == 0.0)
    assert c.consistency_closed_form(3, 2, 2) == 1.0


def _direct_quorum(n, r, w, delays, trials, rng):
    """Event-by-event WARS, one trial at a time: the reference for the vectorised engine."""
    vis = np.empty(trials)
    for k in range(trials):
        W = delays.write.sample(rng, n); A = delays.ack.sample(rng, n)   # noqa: E702
        R = delays.read.sample(rng, n); S = delays.response.sample(rng, n)   # noqa: E702
        commit = sorted(W[i] + A[i] for i in range(n))[w - 1]
        responders = sorted(range(n), key=lambda i: R[i] + S[i])[:r]
        # the least t at which one of them had the write when the read arrived (commit + t + R[i])
        vis[k] = min(max(W[i] - (commit + R[i]), 0.0) for i in responders)
    return vis


def test_vectorised_engine_matches_direct_simulation_exponential_delays():
    delays = c.WARS(Exponential(0.004), Exponential(0.001), Exponential(0.001), Exponential(0.001))
    n, r, w = 4, 2, 1
    vec = c.quorum_trials(n, r, w, delays, trials=200_000, seed=6)
    ref = _direct_quorum(n, r, w, delays, 8_000, np.random.default_rng(7))
    for t in (0.0, 0.002, 0.005):
        p_vec = c.consistency_probability(vec, t)
        p_ref = float(np.mean(ref <= t))
        se = math.sqrt(p_ref * (1 - p_ref) / ref.size + p_vec * (1 - p_vec) / vec.trials)
        assert abs(p_vec - p_ref) <= Z * se + 1e-9, (t, p_vec, p_ref)


def test_more_trials_shrink_the_interval():
    small = c.t_visibility(c.quorum_trials(3, 1, 1, c.PBS_FITS["LNKD-DISK"], trials=50_000, seed=9))
    big = c.t_visibility(c.quorum_trials(3, 1, 1, c.PBS_FITS["LNKD-DISK"], trials=800_000, seed=9))
    assert (big["ci_high"] - big["ci_low"]) < (small["ci_high"] - small["ci_low"])
    assert big["ci_low"] <= big["t"] <= big["ci_high"]


# ------------------------------------------------------------------------------------------ PBS reproduction
_PBS_TRIALS = 400_000


@pytest.fixture(scope="module")
def pbs_runs():
    keys = {k for k in c.PBS_PUBLISHED["t_visibility"]} | {k[:3] for k in c.PBS_PUBLISHED["p_consistent"]} \
        | set(c.PBS_PUBLISHED["latency_999"])
    return {k: c.quorum_trials(3, k[1], k[2], c.PBS_FITS[k[0]], trials=_PBS_TRIALS, seed=10) for k in keys}


def _se(p, n_paper, n_mine):
    return math.sqrt(p * (1 - p) * (1 / n_paper + 1 / n_mine))


@pytest.mark.parametrize("key", sorted(c.PBS_PUBLISHED["t_visibility"]))
def test_pbs_t_visibility_reproduced(pbs_runs, key):
    """The published 99.9% t-visibility sits where our curve is 99.9% consistent, within the Monte
    Carlo error of the paper's 50,000 reads and ours (published values rounded to 0.1 ms)."""
    published = c.PBS_PUBLISHED["t_visibility"][key]
    res = pbs_runs[key]
    se = _se(0.999, c.PBS_PUBLISHED["t_visibility_reads"], res.trials)
    if published == 0.0:
        assert c.consistency_probability(res, 0.0) >= 0.999 - Z * se
        return
    lo = c.consistency_probability(res, max(published - 0.05e-3, 0.0))
    hi = c.consistency_probability(res, published + 0.05e-3)
    assert lo - Z * se <= 0.999 <= hi + Z * se, (key, lo, hi)


@pytest.mark.parametrize("key", sorted(c.PBS_PUBLISHED["p_consistent"]))
def test_pbs_probability_of_consistency_reproduced(pbs_runs, key):
    published = c.PBS_PUBLISHED["p_consistent"][key]
    res = pbs_runs[key[:3]]
    est = c.consistency_probability(res, key[3])
    se = _se(max(min(est, 1 - 1e-4), 1e-4), c.PBS_PUBLISHED["p_consistent_writes"], res.trials)
    assert abs(est - published) <= Z * se + 0.0005, (key, est, published)   # published to 0.1 %


@pytest.mark.parametrize("key", sorted(c.PBS_PUBLISHED["latency_999"]))
def test_pbs_latency_tails_reproduced(pbs_runs, key):
    res = pbs_runs[key]
    se = _se(0.999, 1_000_000, res.trials)
    for sample, published in zip((res.read_latency, res.write_latency), c.PBS_PUBLISHED["latency_999"][key]):
        lo = np.mean(sample <= published - 0.005e-3)
        hi = np.mean(sample <= published + 0.005e-3)   # published to 0.01 ms
        assert lo - Z * se <= 0.999 <= hi + Z * se, (key, lo, hi)


def test_pbs_fits_are_the_published_mixtures():
    ssd = c.PBS_FITS["LNKD-SSD"].write
    assert ssd.weights == pytest.approx((0.9122, 0.0878))
    assert ssd.components[0].scale == pytest.approx(0.235e-3) and ssd.components[0].shape == 10
    assert ssd.components[1].rate == pytest.approx(1660.0)
    assert c.PBS_FITS["WAN"].wan_delay_s == pytest.approx(0.075)


# ------------------------------------------------------------------------------------------ lag queue
def test_lag_queue_matches_mm1_closed_form():
    lam, mu = 800.0, 1000.0
    means, p99s = [], []
    for seed in range(20):
        lags = c.simulate_lag(lam, mu, writes=60_000, seed=seed)
        means.append(lags.mean())
        p99s.append(np.quantile(lags, 0.99))
    for values, exact in ((means, c.lag_mean(lam, mu)), (p99s, c.lag_quantile(lam, mu, 0.99))):
        m, se = np.mean(values), np.std(values, ddof=1) / math.sqrt(len(values))
        half = stats.t.ppf(0.995, len(values) - 1) * se
        assert abs(m - exact) <= half + 0.01 * exact, (m, exact, half)


def test_lag_schedule_stationary_and_backlog():
    mu = 500.0
    flat = c.simulate_lag_schedule(np.full(6, 400.0), 60.0, mu, seed=1)
    assert flat["mean_lag"].iloc[1:].mean() == pytest.approx(c.lag_mean(400.0, mu), rel=0.1)
    surge = c.simulate_lag_schedule(np.array([400.0, 600.0, 400.0]), 60.0, mu, seed=1)
    # an overloaded minute builds a backlog of ~ (600 - 500) * 60 writes: ~ 12 s at its end
    assert surge["p99_lag"].iloc[1] > 5.0
    assert surge["mean_lag"].iloc[2] > surge["mean_lag"].iloc[0]


def test_lag_quantile_values():
    assert c.lag_quantile(0.0 + 1.0, 2.0, 0.99) == pytest.approx(math.log(100))
    assert c.lag_mean(9.0, 10.0) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ overselling
def assert_sale_matches(cf, sim):
    """Simulated oversold units: mean and P(oversell > 0) within Z standard errors of the closed form."""
    se_e = sim.std(ddof=1) / math.sqrt(sim.size)
    assert abs(sim.mean() - cf["expected_oversold"]) <= Z * se_e
    p = cf["p_oversell"]
    assert abs(np.mean(sim > 0) - p) <= Z * math.sqrt(p * (1 - p) / sim.size)


@pytest.mark.parametrize("rates,lag", [([5.0, 5.0, 5.0], 0.3), ([10.0, 2.0], 0.5), ([3.0, 1.0], 0.4)])
def test_oversell_closed_form_matches_direct_simulation(rates, lag):
    cf = c.oversell_closed_form(rates, lag)
    sim = c.simulate_sale(40, rates, lag, trials=6000, seed=12)
    assert_sale_matches(cf, sim)


def test_oversell_mean_is_lag_times_cross_region_rate():
    rates = np.array([7.0, 2.0, 1.0])
    lag = 0.25
    cf = c.oversell_closed_form(rates, lag)
    assert cf["expected_oversold"] == pytest.approx(lag * np.sum(rates * (1 - rates / rates.sum())), rel=1e-6)


def test_oversell_edge_cases():
    assert c.oversell_closed_form([5.0], 1.0) == {"expected_oversold": 0.0, "p_oversell": 0.0}
    assert c.oversell_closed_form([5.0, 5.0], 0.0)["p_oversell"] == 0.0
    assert np.all(c.simulate_sale(10, [5.0], 1.0, trials=50, seed=1) == 0)
    assert np.all(c.simulate_sale(10, [5.0, 5.0], 0.0, trials=50, seed=1) == 0)


# ---------------------------------------------------------------------- overselling with a random lag
def test_random_lag_constant_limit():
    """A lag distribution concentrated on d gives the constant-lag numbers (and the same simulated sales)."""
    rates, d = [20.0, 12.0, 8.0], 0.25
    const = c.oversell_closed_form(rates, d)
    assert c.oversell_closed_form(rates, Deterministic(d)) == const
    near = c.oversell_closed_form(rates, Gamma(d, scv=1e-6))
    assert near["p_oversell"] == pytest.approx(const["p_oversell"], abs=1e-4)
    assert near["expected_oversold"] == pytest.approx(const["expected_oversold"], rel=1e-9)
    assert np.array_equal(c.simulate_sale(20, rates, Deterministic(d), trials=200, seed=4),
                          c.simulate_sale(20, rates, d, trials=200, seed=4))


@pytest.mark.parametrize("rates", [[20.0, 12.0, 8.0], [10.0, 10.0], [3.0, 1.0]])
def test_exponential_lag_closed_form_equals_integral_over_the_lag(rates):
    """The Laplace-transform closed form against quadrature of the constant-lag P(oversell) over the lag
    (and the mean, linear in the lag, against mean lag x the constant-lag mean at 1 s)."""
    lag = Exponential(0.1)
    exact = c.oversell_exponential_lag(rates, 0.1)
    integral = c.oversell_closed_form(rates, lag)
    assert integral["p_oversell"] == pytest.approx(exact["p_oversell"], rel=1e-7)
    assert integral["expected_oversold"] == pytest.approx(exact["expected_oversold"], rel=1e-7)
    # variability at the same mean lowers P(oversell) (concave in the lag) but not the mean (linear)
    const = c.oversell_closed_form(rates, 0.1)
    assert exact["p_oversell"] < const["p_oversell"]
    assert exact["expected_oversold"] == pytest.approx(const["expected_oversold"], rel=1e-6)


@pytest.mark.parametrize("lag", [Exponential(0.3), Lognormal(0.2, scv=3.0)])
def test_random_lag_matches_direct_simulation(lag):
    rates = [5.0, 4.0, 3.0]
    cf = c.oversell_closed_form(rates, lag)
    sim = c.simulate_sale(30, rates, lag, trials=5000, seed=21)
    assert_sale_matches(cf, sim)


def test_replication_lag_distribution_is_the_lag_queue():
    dist = c.replication_lag_distribution(900.0, 1000.0)
    assert dist.mean == pytest.approx(c.lag_mean(900.0, 1000.0))
    assert float(dist.ppf(0.99)) == pytest.approx(c.lag_quantile(900.0, 1000.0, 0.99))
    sim = c.simulate_lag(900.0, 1000.0, writes=200_000, seed=5)
    assert abs(sim.mean() - dist.mean) < 0.05 * dist.mean
    with pytest.raises(ValueError, match="write_rate"):
        c.replication_lag_distribution(1000.0, 1000.0)


def test_mitigation_reserve():
    sim = c.simulate_sale(30, [5.0, 5.0, 5.0], 0.3, trials=3000, seed=13)
    none = c.mitigated_oversell(sim, 0)
    assert none["expected_oversold"] == pytest.approx(sim.mean())
    prev = none["p_oversell"]
    for m in (1, 3, 6, 10):
        cur = c.mitigated_oversell(sim, m)["p_oversell"]
        assert cur <= prev
        prev = cur
    assert c.mitigated_oversell(sim, int(sim.max()))["p_oversell"] == 0.0


# ------------------------------------------------------------------------------------------ data
@requires_real_data
def test_query_rate_series_real():
    series, label, files = c.query_rate_series(str(REAL_DATA))
    assert label.startswith("real:") and len(series) == 15840 and files
    assert series.min() > 0


def test_query_rate_series_synthetic_default(no_real_data):
    series, label, files = c.query_rate_series()
    assert label == "synthetic default: data/synthetic/mongodb_query_rate.csv (no real data found)"
    assert files == [paths.DATA_SYNTHETIC / "mongodb_query_rate.csv"]   # the committed file, not memory
    expected = c.synthetic_query_rate()
    assert np.array_equal(series.to_numpy(), expected.to_numpy()) and series.index.equals(expected.index)


def test_query_rate_series_named_location_without_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="mongo-01.csv"):
        c.query_rate_series(str(tmp_path))


# ------------------------------------------------------------------------------------------ bad parameters
@pytest.mark.parametrize("call,match", [
    (lambda: c.quorum_trials(3, 4, 1, c.PBS_FITS["YMMR"], trials=10), "r=4"),
    (lambda: c.quorum_trials(3, 1, 5, c.PBS_FITS["YMMR"], trials=10), "w=5"),
    (lambda: c.consistency_closed_form(2, 3, 1), "r=3"),
    (lambda: c.quorum_trials(3, 1, 1, "fast", trials=10), "delays"),
    (lambda: c.quorum_trials(3, 1, 1, c.PBS_FITS["YMMR"], trials=0), "trials"),
    (lambda: c.WARS(Exponential(0.1), Exponential(0.1), Exponential(0.1), Deterministic(-0.001)), "-0.001"),
    (lambda: Exponential(-0.002), "-0.002"),
    (lambda: c.WARS.symmetric(Exponential(0.1), Exponential(0.1), wan_delay_s=-1), "wan_delay_s"),
    (lambda: Mixture((Exponential(0.1), Exponential(0.2)), (0.5, 0.6)), "sum to 1"),
    (lambda: c.pareto_exponential(1.2, 0.001, 2.0, 100.0), "p_pareto"),
    (lambda: c.Pareto(scale=-1.0, shape=2.0), "Pareto scale"),
    (lambda: c.lag_quantile(100.0, 100.0), "write_rate=100.0"),
    (lambda: c.lag_quantile(50.0, 100.0, q=1.0), "q must"),
    (lambda: c.oversell_closed_form([5.0, -1.0], 0.2), "region_rates"),
    (lambda: c.oversell_closed_form([5.0], -0.2), "lag_s"),
    (lambda: c.oversell_closed_form([5.0, 2.0], "0.2"), "lag_s='0.2'"),
    (lambda: c.simulate_sale(10, [5.0, 2.0], [0.2]), "lag_s="),
    (lambda: c.oversell_exponential_lag([5.0, 2.0], 0.0), "mean_lag_s"),
    (lambda: c.simulate_sale(0, [5.0], 0.2), "stock"),
    (lambda: c.mitigated_oversell(np.array([1, 2]), -1), "reserve_units"),
    (lambda: c.consistency_probability(c.quorum_trials(3, 1, 1, c.PBS_FITS["YMMR"], trials=10), -1.0), "t="),
    (lambda: c.consistency_closed_form(3, 1, 1, 0.01), "write_rate"),
])
def test_bad_parameters_one_line_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_skellam_cdf_without_scipy_stats_matches_scipy_stats():
    from scipy import stats

    from analysis import consistency as cons_
    rng = np.random.default_rng(3)
    for a, b in rng.uniform(1e-6, 40.0, (300, 2)):
        assert cons_._skellam_cdf_minus1_and_0(a, b) == (stats.skellam.cdf(-1, a, b), stats.skellam.cdf(0, a, b))
    assert all(math.isnan(v) for v in cons_._skellam_cdf_minus1_and_0(0.0, 3.0))
    assert -cons_._special().ndtri(0.025) == stats.norm.isf(0.025)
