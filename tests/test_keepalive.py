"""Keep-alive policies over an application population: the fixed policy against its closed form,
the hybrid histogram policy against its definition on hand-made idle times, the population
against the published distributions, and bad parameters."""
import math

import numpy as np
import pytest

from analysis import keepalive as ka, serverless as sv


def _one_app(rate, cv=1.0, exec_s=1e-9, memory_mb=1.0):
    return ka.Population(np.array([rate]), np.array([exec_s]), np.array([memory_mb]), np.array([cv]),
                         np.array(["poisson"]))


def _binomial_ok(count, n, p, z=4.5):
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p))


# ---------------------------------------------------------------- fixed policy: closed form

@pytest.mark.parametrize("rate, keep_alive", [(1 / 600.0, 600.0), (1 / 60.0, 30.0), (0.2, 20.0)])
def test_fixed_policy_poisson_cold_probability_is_exp_minus_rate_keepalive(rate, keep_alive):
    pop = _one_app(rate)
    inv = ka.invocations(pop, 1e12, max_invocations=40001, seed=7)
    gaps = int(inv.valid.sum())
    assert gaps == 40000
    out = ka.fixed_outcome(inv, pop, keep_alive)
    cold_gaps = int(out["cold"][0]) - 1                       # the first invocation is always cold
    p = sv.p_cold_single_instance(rate, keep_alive)           # exp(-rate keep_alive)
    assert _binomial_ok(cold_gaps, gaps, p), (cold_gaps / gaps, p)
    # waste per idle period: E[min(g, k)] = (1 - exp(-r k)) / r, memory 1 MB
    warm, waste = ka.loaded_window_outcome(inv.idle[0], 0.0, keep_alive)
    exact = (1 - p) / rate
    sd = waste.std(ddof=1) / math.sqrt(gaps)
    assert abs(waste.mean() - exact) <= 4.5 * sd, (waste.mean(), exact)
    # the waste rate reported per application is that waste over the observed span
    assert out["waste_mb"][0] == pytest.approx(waste.sum() / inv.span[0], rel=1e-9)


def test_loaded_window_outcome_by_hand():
    warm, waste = ka.loaded_window_outcome([10.0, 50.0, 90.0, 0.0], [20.0, 20.0, 20.0, 0.0], [60.0] * 4)
    assert warm.tolist() == [False, True, False, True]        # before pre-warm, inside, after unload, at 0
    assert waste.tolist() == [0.0, 30.0, 40.0, 0.0]


# ---------------------------------------------------------------- hybrid policy: its definition

def test_hybrid_regular_idle_times_give_head_and_tail_windows():
    g = np.full(10, 30.5 * 60)                                 # every idle time in bin 30 (1-min bins)
    w = ka.hybrid_windows(g)
    # no history: the default keep-alive of the whole 4-hour range
    assert (w.head_cut[0], w.tail_cut[0], w.mode[0]) == (0.0, 4 * 3600.0, 1)
    # then head = 30 min - 10%, tail = (30 + 1) min + 10%
    assert np.allclose(w.head_cut[1:], 30 * 60 * 0.9)
    assert np.allclose(w.tail_cut[1:], 31 * 60 * 1.1)
    assert (w.mode[1:] == 0).all()


def test_hybrid_percentiles_are_the_5th_and_99th_of_the_histogram():
    g = np.r_[np.full(19, 300.0), 3000.0, 1.0]                 # bins 5 (x19) and 50 (x1), then a probe
    w = ka.hybrid_windows(g)
    assert w.head_cut[20] == pytest.approx(5 * 60 * 0.9)       # 5%: bin 5
    assert w.tail_cut[20] == pytest.approx(51 * 60 * 1.1)      # 99%: needs the one value in bin 50
    w95 = ka.hybrid_windows(g, tail_q=0.95)
    assert w95.tail_cut[20] == pytest.approx(6 * 60 * 1.1)     # 95% = 19/20 reached in bin 5
    w0 = ka.hybrid_windows(g, margin=0.0)
    assert (w0.head_cut[20], w0.tail_cut[20]) == (300.0, 3060.0)


def test_hybrid_falls_back_to_keep_alive_when_histogram_is_not_representative():
    # one idle time in each 1-minute bin: CV of bin counts = sqrt(240/n - 1), below 2 beyond 48 bins
    g = (np.arange(240) + 0.5) * 60.0
    w = ka.hybrid_windows(g)
    assert w.mode[10] == 0                                     # 10 distinct bins: CV 4.8, representative
    assert w.mode[60] == 1 and (w.head_cut[60], w.tail_cut[60]) == (0.0, 4 * 3600.0)
    assert (w.mode[49:] == 1).all() and (w.mode[1:49] == 0).all()
    w_low = ka.hybrid_windows(g, cv_threshold=0.5)              # sqrt(240/n - 1) >= 0.5 up to n = 192
    assert w_low.mode[150] == 0 and w_low.mode[200] == 1


def test_hybrid_out_of_bound_idle_times_switch_to_the_forecast():
    g = np.array([5 * 3600.0, 6 * 3600.0, 600.0, 600.0, 600.0])
    w = ka.hybrid_windows(g)
    # after one out-of-bound idle time: forecast = that time, window +-15%
    assert w.mode[1] == 2
    assert (w.head_cut[1], w.tail_cut[1]) == pytest.approx((18000 * 0.85, 18000 * 1.15))
    # exponential smoothing (alpha 0.5): 0.5 x 21600 + 0.5 x 18000
    assert (w.head_cut[2], w.tail_cut[2]) == pytest.approx((19800 * 0.85, 19800 * 1.15))
    # 2 of 3 out of bounds >= 50%: still the forecast; 2 of 4 = 50%: forecast; 2 of 5 < 50%: histogram
    assert w.mode[3] == 2 and w.mode[4] == 2
    w2 = ka.hybrid_windows(np.r_[g, 600.0])
    assert w2.mode[5] == 0 and w2.head_cut[5] == pytest.approx(10 * 60 * 0.9)   # in-range values only
    # a higher threshold keeps the histogram when half are out of bounds
    w3 = ka.hybrid_windows(g, oob_threshold=0.9)
    assert w3.mode[4] == 0


def test_hybrid_windows_match_a_direct_recomputation():
    # the two-level quantile search against a plain cumulative sum over all bins, period by period
    rng = np.random.default_rng(11)
    g = np.where(rng.random((6, 120)) < 0.1, rng.uniform(4 * 3600, 9 * 3600, (6, 120)),
                 rng.gamma(0.5, 900.0, (6, 120)))
    valid = np.arange(120)[None, :] < rng.integers(30, 121, 6)[:, None]
    w = ka.hybrid_windows(g, valid)
    for a in range(6):
        for j in range(1, int(valid[a].sum())):
            past = g[a, :j]
            inr = past[past < 4 * 3600]
            if (past.size - inr.size) >= 0.5 * past.size:
                assert w.mode[a, j] == 2
                continue
            hist = np.bincount((inr // 60).astype(int), minlength=240).astype(float)
            cv = hist.std() / hist.mean() if inr.size else 0.0
            if cv < 2:
                assert w.mode[a, j] == 1 and w.tail_cut[a, j] == 4 * 3600
                continue
            c = np.cumsum(hist) / inr.size
            hb, tb = np.argmax(c >= 0.05 - 1e-12), np.argmax(c >= 0.99 - 1e-12)
            assert w.mode[a, j] == 0
            assert w.head_cut[a, j] == pytest.approx(hb * 60 * 0.9)
            assert w.tail_cut[a, j] == pytest.approx((tb + 1) * 60 * 1.1)


def test_hybrid_prewarms_a_periodic_application_that_fixed_keep_alive_misses():
    pop = ka.Population(np.array([1 / 1800.0]), np.array([1.0]), np.array([100.0]), np.array([0.01]),
                        np.array(["timer"]))
    inv = ka.invocations(pop, 30 * 86400, max_invocations=300, seed=3)
    fixed = ka.fixed_outcome(inv, pop, 600.0)
    hybrid = ka.hybrid_outcome(inv, pop)
    assert fixed["p_cold"][0] == 1.0                          # 30-minute gaps, 10-minute keep-alive
    assert hybrid["cold"][0] == 1                             # only the very first invocation
    assert hybrid["waste_mb"][0] < 0.2 * ka.fixed_outcome(inv, pop, 1900.0)["waste_mb"][0]


# ---------------------------------------------------------------- the population

def test_population_reproduces_the_published_distributions():
    n = 20000
    pop = ka.generate_population(n, seed=5)
    s = pop.summary()
    for key, p in (("fraction_at_most_hourly", ka.FRACTION_AT_MOST_HOURLY),
                   ("fraction_at_most_per_minute", ka.FRACTION_AT_MOST_PER_MINUTE),
                   ("fraction_iat_cv_above_1", ka.FRACTION_IAT_CV_ABOVE_1),
                   ("fraction_timer", ka.FRACTION_TIMER_ONLY)):
        assert _binomial_ok(s[key] * n, n, p), (key, s[key], p)
    # execution times: the log-normal fit's mean and sigma of ln(seconds)
    assert abs(s["exec_log_mean"] - ka.EXEC_LOG_MEAN) <= 4.5 * ka.EXEC_LOG_SIGMA / math.sqrt(n)
    assert abs(s["exec_log_sigma"] - ka.EXEC_LOG_SIGMA) <= 4.5 * ka.EXEC_LOG_SIGMA / math.sqrt(2 * n)
    # memory: half the applications below the Burr fit's median
    median = float(ka.burr_quantile(0.5))
    assert _binomial_ok(np.sum(pop.memory_mb < median), n, 0.5)
    assert 130 < median < 150                                  # lambda (2^(1/k) - 1)^(1/c) = 139.8 MB
    # timers: 95% of them among applications invoked at most once per minute
    timers = pop.kind == "timer"
    assert _binomial_ok(np.sum(pop.rate[timers] <= 1 / 60), int(timers.sum()), ka.TIMER_AT_MOST_PER_MINUTE)
    # out-of-sample published facts, within sampling error of the model (not fitted to them)
    assert abs(s["fraction_above_one_per_second"] - ka.FRACTION_ABOVE_ONE_PER_SECOND) < 0.01
    assert s["daily_invocation_decades_p1_p99"] > ka.DAILY_INVOCATION_DECADES
    assert s["invocation_share_of_per_minute_apps"] > ka.INVOCATION_SHARE_OF_PER_MINUTE_APPS


def test_rate_lognormal_passes_through_both_published_points():
    mu, sigma = ka.rate_lognormal_from_quantiles(0.45, 0.81)
    from scipy.stats import norm
    assert norm.cdf((math.log10(24) - mu) / sigma) == pytest.approx(0.45)
    assert norm.cdf((math.log10(1440) - mu) / sigma) == pytest.approx(0.81)


def test_invocations_have_the_applications_rate_and_cv():
    pop = ka.Population(np.array([0.1, 0.1, 0.1]), np.full(3, 1e-9), np.ones(3), np.array([0.05, 1.0, 3.0]),
                        np.array(["timer", "poisson", "bursty"]))
    inv = ka.invocations(pop, 1e9, max_invocations=20001, seed=9)
    for a, cv in enumerate([0.05, 1.0, 3.0]):
        gaps = inv.idle[a][inv.valid[a]]
        assert gaps.mean() == pytest.approx(10.0, rel=4.5 * cv / math.sqrt(gaps.size) + 1e-3)
        assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.1)
    # the horizon bounds the invocations: about rate x horizon of them
    inv = ka.invocations(pop, 2000.0, max_invocations=5000, seed=9)
    assert _binomial_ok(inv.count[1], 5000, 200 / 5000)


def test_pareto_front():
    x = np.array([1.0, 2.0, 3.0, 2.5, 1.0])
    y = np.array([5.0, 3.0, 1.0, 3.5, 6.0])
    assert ka.pareto_front(x, y).tolist() == [True, True, True, False, False]


# ---------------------------------------------------------------- bad parameters

@pytest.mark.parametrize("call, match", [
    (lambda: ka.generate_population(0), "n_apps"),
    (lambda: ka.generate_population(10, timer_fraction=0.7, cv_above_1_fraction=0.5), "timer_fraction"),
    (lambda: ka.generate_population(10, bursty_cv=(0.5, 2.0)), "bursty_cv"),
    (lambda: ka.rate_lognormal_from_quantiles(0.8, 0.4), "p_minute"),
    (lambda: ka.hybrid_windows([1.0], range_s=100.0, bin_s=60.0), "range_s"),
    (lambda: ka.hybrid_windows([1.0], head_q=0.9, tail_q=0.5), "head_q"),
    (lambda: ka.hybrid_windows([1.0], margin=1.0), "margin"),
    (lambda: ka.hybrid_windows([-1.0]), "idle"),
    (lambda: ka.hybrid_windows([1.0], smoothing=0.0), "smoothing"),
    (lambda: ka.invocations(_one_app(1.0), -5.0), "horizon"),
    (lambda: ka.fixed_outcome(ka.invocations(_one_app(1.0), 10.0), _one_app(1.0), -1.0), "keep_alive"),
])
def test_bad_parameters_name_the_culprit(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cold_at_equal_memory_interpolates_the_fixed_frontier():
    waste, cold = [1.5, 1.0, 2.0], [50.0, 90.0, 40.0]        # unsorted on purpose
    assert ka.cold_at_equal_memory(waste, cold, 1.25) == pytest.approx(70.0)
    assert ka.cold_at_equal_memory(waste, cold, 2.0) == pytest.approx(40.0)
    assert math.isnan(ka.cold_at_equal_memory(waste, cold, 2.5))      # no extrapolation
    with pytest.raises(ValueError, match="fixed_waste"):
        ka.cold_at_equal_memory([1.0], [2.0], 1.0)


def test_t_interval_against_scipy_and_clipping():
    from scipy import stats
    v = np.array([38.0, 41.5, 40.2, 36.9, 42.3])
    mean, lo, hi = ka.t_interval(v)
    ref = stats.t.interval(0.95, v.size - 1, loc=v.mean(), scale=stats.sem(v))
    assert (lo, hi) == pytest.approx(ref) and mean == pytest.approx(v.mean())
    assert ka.t_interval([1.0, 99.0], low=0, high=100)[1:] == (0, 100)
    with pytest.raises(ValueError, match="replications"):
        ka.t_interval([1.0])
