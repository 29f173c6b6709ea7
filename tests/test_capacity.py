"""analysis.capacity: sizing against hand-computed Erlang C, policies, analytic and simulated
evaluation, the time-compression reduction validated against the uncompressed simulation and
Erlang C, bad input."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import capacity as cap
from analysis import theory
from analysis.workloads import synthetic_demand

MU = 5.0  # requests/s per server: mean service 0.2 s


def hourly(values, start="2024-01-01") -> pd.Series:
    idx = pd.date_range(start, periods=len(values), freq="h", tz="UTC")
    return pd.Series(np.asarray(values, dtype=float), index=idx, name="rps")


@pytest.fixture(scope="module")
def trace() -> pd.Series:
    """Four weeks of the kit's synthetic demand (requests/s), scaled down to keep fleets small."""
    return synthetic_demand(seed=7, start="2017-10-02", periods=4 * 168, events=()) / 4.0


# ---------------------------------------------------------------------------------------------- SLO

def test_slo_validation_names_the_parameter():
    with pytest.raises(ValueError, match="kind"):
        cap.SLO("p95", 1.0)
    with pytest.raises(ValueError, match="probability"):
        cap.SLO.wait_exceeds(0.1, 1.5)
    with pytest.raises(ValueError, match="probability"):
        cap.SLO.wait_exceeds(0.1, 0.0)
    with pytest.raises(ValueError, match="threshold_s"):
        cap.SLO.wait_exceeds(-0.1, 0.05)
    with pytest.raises(ValueError, match="threshold_s"):
        cap.SLO.p99_response(0.0)
    # p99 of an Exp(5/s) service alone is ln(100)/5 = 0.921 s: a 0.9 s p99 target is unreachable
    with pytest.raises(ValueError, match="threshold_s=0.9"):
        cap.servers_needed(10.0, MU, cap.SLO.p99_response(0.9))
    assert cap.SLO.p99_response(1.0).label() == "p99 response <= 1 s"
    assert cap.SLO.wait_exceeds(0.1, 0.05).label() == "P(wait > 0.1 s) <= 5%"


# ------------------------------------------------------------------------------------------- sizing

def test_sizing_matches_hand_computed_erlang_c():
    # lambda = 2/s, mu = 1/s, A = 2 Erlangs.  Erlang C(3, 2) = 4/9; Erlang C(4, 2) = 4/23 (by hand:
    # B(4,2) = (16/24)/(1+2+2+4/3+2/3) = 2/21, C = B/(1 - 0.5(1 - B)) = 4/23).
    assert theory.erlang_c_from_load(2.0, 3) == pytest.approx(4 / 9)
    assert theory.erlang_c_from_load(2.0, 4) == pytest.approx(4 / 23)
    assert cap.servers_needed(2.0, 1.0, wait_target_s=0.0, wait_prob=0.5) == 3       # 0.444 <= 0.5
    assert cap.servers_needed(2.0, 1.0, wait_target_s=0.0, wait_prob=0.4) == 4   # 0.444 > 0.4
    # P(W > t) = C exp(-(c mu - lambda) t): c=3, t=1: (4/9) e^-1 = 0.1635; c=4: (4/23) e^-2 = 0.0235
    assert cap.servers_needed(2.0, 1.0, wait_target_s=1.0, wait_prob=0.17) == 3
    assert cap.servers_needed(2.0, 1.0, wait_target_s=1.0, wait_prob=0.16) == 4
    # M/M/1 response ~ Exp(mu - lambda): p99 = ln(100)/(1 - 0.5) = 9.21 s at lambda = 0.5, mu = 1
    assert cap.servers_needed(0.5, 1.0, p99_response_s=9.3) == 1
    assert cap.servers_needed(0.5, 1.0, p99_response_s=9.1) == 2


@pytest.mark.parametrize("slo", [cap.SLO.wait_exceeds(0.1, 0.05), cap.SLO.wait_exceeds(0.0, 0.2),
                                 cap.SLO.p99_response(1.2), cap.SLO.p99_response(2.0, 0.05)])
def test_sizing_is_the_least_number_of_servers(slo):
    rates = hourly(np.random.default_rng(3).uniform(0.5, 300.0, size=40))
    c = cap.servers_needed(rates, MU, slo)
    assert isinstance(c, pd.Series) and c.index.equals(rates.index) and c.dtype == np.int64

    def meets(lam, k):
        if lam >= k * MU:
            return False
        if slo.kind == "wait_exceeds":
            return theory.mmc_prob_wait_exceeds(lam, MU, k, slo.threshold_s) <= slo.probability
        return theory.mmc_response_quantile(lam, MU, k, slo.quantile) <= slo.threshold_s

    for lam, k in zip(rates, c):
        assert meets(lam, k), (lam, k)
        assert k == 1 or not meets(lam, k - 1), (lam, k)


def test_sizing_conventions():
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    assert cap.servers_needed(0.0, MU, slo) == 1                       # min_servers for no demand
    assert cap.servers_needed(0.0, MU, slo, min_servers=0) == 0
    assert cap.servers_needed(1000.0, MU, slo, max_servers=50) == 50   # a cap may break the SLO
    assert cap.servers_needed(40.0, MU, slo, min_servers=30) == 30
    with pytest.raises(ValueError, match="slo"):
        cap.servers_needed(10.0, MU, slo, wait_prob=0.1)
    with pytest.raises(ValueError, match="wait_target_s"):
        cap.servers_needed(10.0, MU)
    with pytest.raises(ValueError, match="rates: row 2"):
        cap.servers_needed(hourly([1.0, 2.0, -3.0]), MU, slo)
    with pytest.raises(ValueError, match="service_rate"):
        cap.servers_needed(10.0, 0.0, slo)


@pytest.mark.parametrize("slo", [cap.SLO.wait_exceeds(0.0, 0.2), cap.SLO.wait_exceeds(0.05, 0.05),
                                 cap.SLO.p99_response(1.0)])
def test_square_root_staffing_is_close_for_large_loads(slo):
    rates = pd.Series([500.0, 1000.0, 2500.0, 5000.0])        # offered loads 100 .. 1000 Erlangs
    exact = cap.servers_needed(rates, MU, slo)
    approx = cap.sqrt_staffing_servers(rates, MU, slo)
    assert (np.abs(approx - exact) <= 2).all(), pd.DataFrame({"exact": exact, "sqrt": approx})
    # the QED beta really is the Halfin-Whitt one when the target is P(wait) itself
    if slo.threshold_s == 0.0:
        beta = theory.halfin_whitt_beta(0.2)
        assert approx.iloc[-1] == theory.square_root_staffing(1000.0, beta)


@pytest.mark.parametrize("slo", [cap.SLO.wait_exceeds(0.0, 0.2), cap.SLO.wait_exceeds(0.1, 0.05),
                                 cap.SLO.p99_response(1.5), cap.SLO.p99_response(2.0, 0.05)])
def test_vectorised_square_root_staffing_equals_the_scalar_root_finder(slo):
    rates = pd.Series(np.r_[0.0, np.geomspace(0.05, 5000.0, 400)])
    vector = cap.sqrt_staffing_servers(rates, MU, slo, min_servers=0).to_numpy()
    scalar = [0 if r == 0 else theory.square_root_staffing(r / MU, cap._qed_beta(r / MU, MU, slo))
              for r in rates]
    assert list(vector) == scalar
    assert cap.sqrt_staffing_servers(float(rates.iloc[200]), MU, slo) == scalar[200]


def test_forecast_column_sizing_and_cost_by_hand():
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    fc = pd.DataFrame({"mean": [5.0, 9.0], "hi95": [10.0, 20.0]}, index=hourly([0, 0]).index)
    c = cap.servers_from_forecast(fc, MU, slo, column="hi95")
    assert list(c) == [cap.servers_needed(10.0, MU, slo), cap.servers_needed(20.0, MU, slo)]
    with pytest.raises(ValueError, match="column='hi80'"):
        cap.servers_from_forecast(fc, MU, slo, column="hi80")
    # cost: servers [2, 2, 4] against demand [5, 5, 10]/s at 5/s per server: busy 1, 1, 2 server-
    # hours
    dem = hourly([5.0, 5.0, 10.0])
    servers = pd.Series([2, 2, 4], index=dem.index)
    out = cap.cost_summary(dem, servers, MU, price_per_server_hour=0.5, warmup_s=600)
    assert out["serving_server_hours"] == pytest.approx(8.0)
    assert out["warmup_server_hours"] == pytest.approx(2 * 600 / 3600)  # one scale-out of 2
    assert out["idle_server_hours"] == pytest.approx(8.0 + 1 / 3 - 4.0)
    assert out["cost"] == pytest.approx(0.5 * (8.0 + 1 / 3))
    assert cap.server_hours(servers) == pytest.approx(8.0)


# ----------------------------------------------------------------------------------------- policies

def test_static_peak_never_below_peak_need(trace):
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    train, test = trace.iloc[:3 * 168], trace.iloc[3 * 168:]
    need = cap.servers_needed(train, MU, slo)
    s = cap.static_peak_policy(train, test.index, MU, slo, headroom=0.1)
    assert s.index.equals(test.index) and s.nunique() == 1
    assert (s >= need.max()).all()
    assert s.iloc[0] == cap.servers_needed(train.max() * 1.1, MU, slo)


def test_scheduled_policy_repeats_weekly(trace):
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    train = trace.iloc[:3 * 168]
    index = pd.date_range(trace.index[3 * 168], periods=2 * 168, freq="h")
    s = cap.scheduled_policy(train, index, MU, slo, quantile=0.9)
    assert (s.iloc[:168].to_numpy() == s.iloc[168:].to_numpy()).all()
    assert s.nunique() > 3                                            # it follows the daily cycle
    # each slot sized on the 0.9 quantile of that hour of the week in the three training weeks
    slot = train.index[30].day_of_week * 24 + train.index[30].hour
    weeks = train[(train.index.day_of_week * 24 + train.index.hour) == slot]
    at = index[(index.day_of_week * 24 + index.hour) == slot][0]
    assert s[at] == cap.servers_needed(weeks.quantile(0.9), MU, slo)
    with pytest.raises(ValueError, match="train: no data for"):
        cap.scheduled_policy(train.iloc[:100], index, MU, slo)
    with pytest.raises(ValueError, match="quantile"):
        cap.scheduled_policy(train, index, MU, slo, quantile=1.5)


@pytest.mark.parametrize("delay,warm", [(300, 300), (0, 0), (120, 600), (60, 0)])
def test_reactive_lags_a_step_change_by_delay_plus_warmup(delay, warm):
    dem = hourly([10.0] * 3 + [40.0] * 3)
    s = cap.reactive_policy(dem, MU, target_utilisation=0.5, reaction_delay_s=delay, warmup_s=warm,
                            cooldown_s=900, step_s=60)
    assert len(s) == 6 * 60 and (s.index[1] - s.index[0]) == pd.Timedelta(minutes=1)
    step_at = dem.index[3]
    before = s[s.index < step_at + pd.Timedelta(seconds=delay + warm)]
    assert (before == 4).all()              # 10/s at 5/s per server and a 50% target: 4 servers
    first_up = s.index[np.flatnonzero(s.to_numpy() > 4)[0]]
    assert first_up == step_at + pd.Timedelta(seconds=delay + warm)
    assert s[first_up] == 8                           # saturated: 4 busy / 0.5
    assert s.iloc[-1] == 16                           # settles at 40/5/0.5
    assert s.attrs == {}                              # issue 9: nothing in attrs


def test_reactive_scale_in_cooldown_and_step_limits():
    dem = hourly([40.0, 10.0, 40.0, 10.0, 10.0, 40.0, 10.0, 10.0])
    delay, warm, cool = 120, 240, 1800
    s = cap.reactive_policy(dem, MU, target_utilisation=0.5, reaction_delay_s=delay, warmup_s=warm,
                            cooldown_s=cool, step_s=60, max_step_up=3, max_step_down=5)
    v = s.to_numpy()
    d = np.diff(v)
    assert d.max() <= 3 and d.min() >= -5
    k_launch = np.flatnonzero(d > 0) + 1 - warm // 60  # ups become serving warmup after launch
    k_down = np.flatnonzero(d < 0) + 1
    actions = np.sort(np.concatenate([k_launch, k_down]))
    for k in k_down:
        previous = actions[actions < k]
        assert previous.size == 0 or k - previous[-1] >= cool // 60, (k, previous[-1:])
    assert len(k_down) > 0 and len(k_launch) > 0
    # drop at 01:00 with nothing pending: scale-in exactly reaction_delay_s later (16 -> 4 within
    # step limits)
    first_down = s.index[k_down[0]]
    assert first_down == dem.index[1] + pd.Timedelta(seconds=delay)


def test_reactive_bad_input_names_the_parameter():
    dem = hourly([10.0] * 3)
    for kwargs, name in [(dict(target_utilisation=1.2), "target_utilisation"),
                         (dict(target_utilisation=0.0), "target_utilisation"),
                         (dict(reaction_delay_s=-60), "reaction_delay_s"),
                         (dict(warmup_s=-1), "warmup_s"),
                         (dict(warmup_s=90), "warmup_s"),            # not a multiple of step_s
                         (dict(cooldown_s=-5), "cooldown_s"),
                         (dict(step_s=7 * 60), "step_s"),            # does not divide the hour
                         (dict(max_step_up=0), "max_step_up"),
                         (dict(min_servers=0), "min_servers")]:
        with pytest.raises(ValueError, match=name):
            cap.reactive_policy(dem, MU, **kwargs)
    with pytest.raises(ValueError, match="demand: row 1"):
        cap.reactive_policy(hourly([1.0, np.nan, 2.0]), MU)


def test_predictive_with_a_perfect_forecast_meets_the_slo_every_hour(trace):
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    week = trace.iloc[3 * 168:]
    fc = pd.DataFrame({"hi95": week, "lead_h": 1.0})
    s = cap.predictive_policy(fc, MU, slo, warmup_s=300, lead_time_h=1)
    res = cap.evaluate_policy(week, s, MU, slo, warmup_s=300, name="predictive")
    assert res.summary["attainment"] == 1.0 and res.summary["overloaded_intervals"] == 0
    assert (res.intervals["p_wait_exceeds"] <= 0.05).all()
    assert res.summary["warmup_server_hours"] > 0
    # nothing is kept in attrs (issue 9): the warm-up billed is the one stated to the evaluation
    assert s.attrs == {} and s.name == "servers"
    assert res.summary["warmup_server_hours"] == pytest.approx(
        cap.warmup_server_hours(s, warmup_s=300))
    assert cap.evaluate_policy(week, s, MU, slo).summary["warmup_server_hours"] == 0
    # an under-forecast is not saved by the sizing: 20% low -> violations
    low = cap.predictive_policy(fc.assign(hi95=week * 0.8), MU, slo)
    assert cap.evaluate_policy(week, low, MU, slo).summary["attainment"] < 0.5
    with pytest.raises(ValueError, match="lead_time_h"):
        cap.predictive_policy(fc, MU, slo, warmup_s=600, lead_time_h=0.1)
    with pytest.raises(ValueError, match="issued 0 h ahead"):
        cap.predictive_policy(fc.assign(lead_h=0.0), MU, slo, warmup_s=300)


def test_forecasts_issued_with_lead_time(trace):
    from analysis.forecasting import SeasonalNaive

    start, end = trace.index[3 * 168], trace.index[3 * 168 + 48]
    fc = cap.issued_forecasts(trace, lambda: SeasonalNaive(), start, end, lead_time_h=2,
                              refit_every_h=24)
    assert fc.index[0] == start and len(fc) == 48
    assert (fc["lead_h"] >= 2).all() and (fc["lead_h"] <= 2 + 23).all()
    # the origin (last observed hour) is at least lead + 1 hours before each target hour
    gap_h = (fc.index - pd.DatetimeIndex(fc["origin"])) / pd.Timedelta(hours=1)
    assert (gap_h == fc["h"]).all() and (gap_h >= 3).all()
    # seasonal naive: the forecast mean is the value one week earlier
    assert np.allclose(fc["mean"], trace.shift(168).reindex(fc.index))
    s = cap.predictive_policy(fc, MU, cap.SLO.wait_exceeds(0.1, 0.05), warmup_s=600, lead_time_h=2)
    assert s.index.equals(fc.index)


# ------------------------------------------------------------------------------ analytic evaluation

def test_evaluation_matches_erlang_c_per_hour_and_flags_overload():
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    dem = hourly([10.0, 30.0, 30.0, 0.0])
    servers = pd.Series([4, 7, 5, 2], index=dem.index)  # hour 2: 30/s on 5 x 5/s: utilisation 1.2
    res = cap.evaluate_policy(dem, servers, MU, slo)
    iv = res.intervals
    assert list(iv["overloaded"]) == [False, False, True, False]
    p_exc, rq = iv["p_wait_exceeds"], iv["response_quantile_s"]
    assert p_exc.iloc[0] == pytest.approx(theory.mmc_prob_wait_exceeds(10.0, MU, 4, 0.1))
    assert p_exc.iloc[1] == pytest.approx(theory.mmc_prob_wait_exceeds(30.0, MU, 7, 0.1))
    assert rq.iloc[1] == pytest.approx(theory.mmc_response_quantile(30.0, MU, 7, 0.99))
    assert iv["p_wait_exceeds"].iloc[2] == 1.0 and math.isinf(iv["response_quantile_s"].iloc[2])
    assert not iv["meets_slo"].iloc[2] and iv["meets_slo"].iloc[3]     # no demand: nothing to miss
    assert res.summary["overloaded_intervals"] == 1
    assert res.summary["worst_interval"] == dem.index[2]
    assert res.summary["attainment"] == pytest.approx(
        np.mean([theory.mmc_prob_wait_exceeds(10, MU, 4, 0.1) <= 0.05,
                 theory.mmc_prob_wait_exceeds(30, MU, 7, 0.1) <= 0.05, False, True]))
    # 30% of the requests are in the overloaded hour: the pooled p99 is unbounded
    assert math.isinf(res.summary["p99_response_s"])


def test_vectorised_response_survival_matches_theory():
    for lam, c, x in [(20.0, 5, 0.3), (20.0, 7, 1.0), (3.0, 1, 2.0), (99.0, 21, 0.5)]:
        pw = theory.erlang_c_from_load(lam / MU, c)
        got = cap._response_survival_vec(x, MU, np.array([c * MU - lam]), np.array([pw]))[0]
        assert got == pytest.approx(theory.mmc_response_survival(lam, MU, c, x), rel=1e-12)


def test_sub_hour_schedule_is_a_mixture_of_pieces():
    slo = cap.SLO.p99_response(1.2)
    dem = hourly([20.0, 20.0])
    idx = pd.date_range(dem.index[0], periods=120, freq="min")
    servers = pd.Series(np.where(np.arange(120) < 15, 5, 7), index=idx)  # 15 min at 5, then 7
    res = cap.evaluate_policy(dem, servers, MU, slo)
    iv = res.intervals
    assert list(iv["pieces"]) == [2, 1]
    x = iv["response_quantile_s"].iloc[0]
    mix = (0.25 * theory.mmc_response_survival(20.0, MU, 5, x)
           + 0.75 * theory.mmc_response_survival(20.0, MU, 7, x))
    assert mix == pytest.approx(0.01, rel=1e-6)
    assert iv["servers"].iloc[0] == pytest.approx(0.25 * 5 + 0.75 * 7)
    assert iv["server_hours"].sum() == pytest.approx(cap.server_hours(servers))
    # a minute-level overload (utilisation >= 1) makes the hour a violation
    over = servers.copy()
    over.iloc[70] = 3
    res2 = cap.evaluate_policy(dem, over, MU, slo)
    assert list(res2.intervals["overloaded"]) == [False, True]
    with pytest.raises(ValueError, match="servers: the schedule must cover"):
        cap.evaluate_policy(dem, servers.iloc[:60], MU, slo)
    with pytest.raises(ValueError, match="servers: row 3"):
        cap.evaluate_policy(dem, servers.astype(float).where(np.arange(120) != 3, 2.5), MU, slo)


# --------------------------------------------------------------------------------------- simulation

@pytest.mark.parametrize("path", ["recursion", "ciw"])
def test_simulation_bounds_and_flags_overloaded_hours(path):
    slo = cap.SLO.wait_exceeds(0.1, 0.1)
    dem = hourly([10.0, 30.0, 10.0])
    servers = pd.Series([4, 4, 4], index=dem.index)          # hour 1 has utilisation 1.5
    res = cap.simulate_policy(dem, servers, MU, slo, replications=3, seed=1, max_in_system=40,
                              executor="serial", path=path)
    iv = res.intervals
    assert list(iv["overloaded"]) == [False, True, False]
    assert iv["violated"].iloc[1] and not iv["meets_slo"].iloc[1]
    assert iv["rejected_fraction"].iloc[1] > 0.05            # the cap of 40 requests sheds load
    assert res.summary["overloaded_intervals"] == 1
    assert res.summary["worst_interval"] == dem.index[1]
    assert res.summary["attainment"] <= 2 / 3
    # the capped backlog drains during the next piece's settle (seconds in a real hour), so the
    # hour after the overload is measured near its own steady state, not as a congested replay
    # (fluid backlog: 5 s replay at +10/s = 50, capped at 40 requests; drains at 20 - 10 = 10/s)
    plan = cap.compressed_pieces(dem, servers, MU, max_in_system=40)
    assert list(plan["sim_s"] - plan["settle_s"]) == [20.0, 5.0, 20.0]
    assert (plan["max_in_system"] == 40).all() and plan.attrs == {}   # a column, not attrs
    assert plan["settle_s"].iloc[2] == pytest.approx(40 / 10)
    assert iv["p_wait_exceeds"].iloc[2] < 0.1 and not iv["violated"].iloc[2]
    assert res.replications["simulated_requests"].max() < 5000  # bounded: short compressed pieces


def test_simulation_is_reproducible_whatever_the_executor():
    slo = cap.SLO.wait_exceeds(0.1, 0.1)
    dem = hourly([10.0, 20.0])
    servers = cap.servers_needed(dem, MU, slo)
    a = cap.simulate_policy(dem, servers, MU, slo, replications=2, seed=5, executor="serial")
    b = cap.simulate_policy(dem, servers, MU, slo, replications=2, seed=5, executor="processes")
    pd.testing.assert_frame_equal(a.intervals, b.intervals)
    pd.testing.assert_frame_equal(a.replications, b.replications)
    c = cap.simulate_policy(dem, servers, MU, slo, replications=2, seed=6, executor="serial")
    assert not a.replications["p99_response_s"].equals(c.replications["p99_response_s"])


def test_simulation_bad_input_fails_before_simulating():
    slo = cap.SLO.wait_exceeds(0.1, 0.1)
    dem = hourly([10.0, 20.0])
    for kwargs, name in [(dict(replications=0), "replications"),
                         (dict(segment_s=7200), "segment_s"), (dict(segment_s=-1), "segment_s"),
                         (dict(executor="threads"), "executor"),
                         (dict(max_in_system=2), "max_in_system"),
                         (dict(settle_factor=-1), "settle_factor"),
                         (dict(max_settle_s=-1), "max_settle_s")]:
        with pytest.raises(ValueError, match=name):
            cap.simulate_policy(dem, 6, MU, slo, **kwargs)
    with pytest.raises(ValueError, match="slo"):
        cap.simulate_policy(dem, 6, MU, "p99")
    with pytest.raises(ValueError, match="demand: row 1"):
        cap.simulate_policy(hourly([10.0, -1.0]), 6, MU, slo)
    with pytest.raises(ValueError, match="servers: row 0"):
        cap.simulate_policy(dem, pd.Series([-1, 3], index=dem.index), MU, slo)


# -------------------------------------------------------- the time-compression reduction, validated

VALID_RATES = [3.0, 9.0, 5.0]   # requests/s: a step up, then down (servers change every hour)
VALID_SLO = cap.SLO.wait_exceeds(0.1, 0.1)
Z = 3.29                        # two-sided 99.9%: six comparisons per check, seeded
VALID_REPS = 240


@pytest.fixture(scope="module", params=["recursion", "ciw"])   # the exact fast path and ciw
def compressed(request):
    dem = hourly(VALID_RATES)
    servers = cap.servers_needed(dem, MU, VALID_SLO)
    res = cap.simulate_policy(dem, servers, MU, VALID_SLO, replications=VALID_REPS, seed=2024,
                              segment_s=20.0, path=request.param)
    return dem, servers, res


@pytest.fixture(scope="module")
def uncompressed(compressed):
    """The real-time system: each hour simulated for 3600 s as 5-minute batches (batch means)."""
    dem, servers, _ = compressed
    idx = pd.date_range(dem.index[0], periods=3 * BATCHES, freq=f"{60 // BATCHES}min")
    dem5 = pd.Series(np.repeat(dem.to_numpy(), BATCHES), index=idx)
    srv5 = pd.Series(np.repeat(servers.to_numpy(), BATCHES), index=idx)
    res = cap.simulate_policy(dem5, srv5, MU, VALID_SLO, replications=2, seed=99,
                              segment_s=3600 / BATCHES, path="ciw")   # independent of the fast path
    plan = cap.compressed_pieces(dem5, srv5, MU, segment_s=3600 / BATCHES)
    # truly uncompressed: every piece simulated for its real duration, no settling
    assert (plan["sim_s"] == plan["duration_s"]).all() and (plan["settle_s"] == 0).all()
    return res


BATCHES = 12
T_BATCH = stats.t.ppf(0.9995, BATCHES - 1)   # 99.9% two-sided, batch-means degrees of freedom


def _hourly_batches(res: cap.PolicyResult, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per hour: mean of the 5-minute batch estimates and its standard error."""
    x = res.intervals[column].to_numpy().reshape(-1, BATCHES)
    return x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(BATCHES)


def _se(half: np.ndarray, reps: int) -> np.ndarray:
    return half / stats.t.ppf(0.975, reps - 1)


def test_compressed_simulation_agrees_with_erlang_c_per_hour(compressed):
    dem, servers, res = compressed
    exact = cap.evaluate_policy(dem, servers, MU, VALID_SLO).intervals
    iv = res.intervals
    for column in ("p_wait_exceeds", "mean_wait_s"):
        se = _se(iv[f"{column}_hi"].to_numpy() - iv[column].to_numpy(), VALID_REPS)
        assert (np.abs(iv[column] - exact[column]) <= Z * se).all(), \
            pd.DataFrame({"sim": iv[column], "erlang": exact[column], "se": se})
        # the check has power: a 30% bias would be detected in every hour
        assert (Z * se <= 0.3 * exact[column].to_numpy()).all()
    # and the plan really is compressed (~180x) with every piece relaxed
    assert res.summary["simulated_requests"] < VALID_REPS * sum(VALID_RATES) * 60
    assert res.summary["unrelaxed_intervals"] == 0
    assert res.summary["analytic_in_ci"] >= 2 / 3


def test_compressed_simulation_agrees_with_the_uncompressed_one(compressed, uncompressed):
    _, _, comp = compressed
    weights = np.asarray(VALID_RATES) / sum(VALID_RATES)  # requests per hour, for the pooled check
    for column in ("p_wait_exceeds", "mean_wait_s"):
        c_mean = comp.intervals[column].to_numpy()
        c_se = _se(comp.intervals[f"{column}_hi"].to_numpy() - c_mean, VALID_REPS)
        u_mean, u_se = _hourly_batches(uncompressed, column)
        tol = T_BATCH * np.sqrt(c_se ** 2 + u_se ** 2)
        assert (np.abs(c_mean - u_mean) <= tol).all(), pd.DataFrame(
            {"compressed": c_mean, "uncompressed": u_mean, "tol": tol})
        assert (tol <= 0.5 * u_mean).all()                # power: a 50% bias in an hour would show
        pooled_tol = T_BATCH * np.sqrt(np.sum(weights ** 2 * (c_se ** 2 + u_se ** 2)))
        assert abs(np.dot(weights, c_mean - u_mean)) <= pooled_tol
        assert pooled_tol <= 0.3 * np.dot(weights, u_mean)   # over the window: a 30% bias would
    # the uncompressed simulation itself agrees with Erlang C (the engine models M/M/c)
    dem = hourly(VALID_RATES)
    servers = cap.servers_needed(dem, MU, VALID_SLO)
    exact = cap.evaluate_policy(dem, servers, MU, VALID_SLO).intervals
    for column in ("p_wait_exceeds", "mean_wait_s"):
        u_mean, u_se = _hourly_batches(uncompressed, column)
        assert (np.abs(u_mean - exact[column].to_numpy()) <= T_BATCH * u_se).all()


@pytest.mark.parametrize("path", ["recursion", "ciw"])
def test_compressed_sub_hour_pieces_agree_with_the_erlang_c_mixture(path):
    """A schedule that changes every 15 minutes (as a reactive policy's does): each piece is
    replayed for min_piece_s (+ its settle) and the hour is the duration-weighted mixture."""
    dem = hourly([6.0, 9.0, 6.0])
    idx = pd.date_range(dem.index[0], periods=12, freq="15min")
    servers = pd.Series([2, 3, 2, 3, 3, 4, 3, 4, 2, 3, 2, 3], index=idx)
    plan = cap.compressed_pieces(dem, servers, MU)
    assert len(plan) == 12 and np.allclose(plan["sim_s"] - plan["settle_s"], 5.0)
    exact = cap.evaluate_policy(dem, servers, MU, VALID_SLO).intervals["p_wait_exceeds"].to_numpy()
    res = cap.simulate_policy(dem, servers, MU, VALID_SLO, replications=VALID_REPS, seed=1,
                              path=path)
    iv = res.intervals
    se = _se(iv["p_wait_exceeds_hi"].to_numpy() - iv["p_wait_exceeds"].to_numpy(), VALID_REPS)
    assert (np.abs(iv["p_wait_exceeds"].to_numpy() - exact) <= Z * se).all()
    assert (Z * se <= 0.2 * exact).all()


# ----------------------------------------------------------------------------------------- frontier

def test_frontier_and_savings(trace):
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    train, week = trace.iloc[:3 * 168], trace.iloc[3 * 168:]
    static = cap.static_peak_policy(train, week.index, MU, slo)
    perfect = cap.predictive_policy(pd.DataFrame({"hi95": week}), MU, slo)
    lean = cap.predictive_policy(pd.DataFrame({"hi95": week * 0.7}), MU, slo)
    results = [cap.evaluate_policy(week, s, MU, slo, name=n, price_per_server_hour=0.1)
               for n, s in [("static peak", static), ("predictive", perfect), ("lean", lean)]]
    f = cap.policy_frontier(results)
    assert list(f.index) == ["lean", "predictive", "static peak"]           # sorted by cost
    assert {"cost", "server_hours", "attainment", "attainment_lo", "attainment_hi",
            "p99_response_s", "idle_server_hours", "worst_interval"} <= set(f.columns)
    assert (f["attainment_lo"] == f["attainment"]).all()                   # analytic: exact
    assert f.loc["static peak", "server_hours"] == pytest.approx(static.sum())
    assert f.loc["static peak", "cost"] == pytest.approx(0.1 * static.sum())
    sv = cap.savings_against(f, "static peak")
    assert sv.loc["predictive", "saving"] == pytest.approx(0.1 * (static.sum() - perfect.sum()))
    assert sv.loc["predictive", "equal_or_better"] and not sv.loc["lean", "equal_or_better"]
    best = cap.cheapest_at_equal_slo(f, "static peak")
    assert best["policy"] == "predictive" and best["saving_pct"] > 0
    assert cap.cheapest_at_equal_slo(f, "static peak", by="attainment_analytic")["policy"] == \
        "predictive"
    with pytest.raises(ValueError, match="by='p95'"):
        cap.savings_against(f, "static peak", by="p95")
    with pytest.raises(ValueError, match="baseline='reactive'"):
        cap.savings_against(f, "reactive")
    with pytest.raises(ValueError, match="no policy reaches"):
        cap.cheapest_at_equal_slo(f, "static peak", candidates=["lean"])
    with pytest.raises(ValueError, match="different SLOs"):
        other = cap.evaluate_policy(week, static, MU, cap.SLO.p99_response(2.0), name="x")
        cap.policy_frontier(results + [other])


def test_one_server_near_saturation_does_not_crash_the_evaluations():
    # Issue 11: one server at >= 99.35% utilisation raised OverflowError (expm1) in the response
    # quantile, crashing evaluate_policy and simulate_policy.
    mu = 0.5
    dem = hourly([0.2, 0.497, 0.4999])
    slo = cap.SLO.p99_response(60.0)
    res = cap.evaluate_policy(dem, 1, mu, slo)
    q = res.intervals["response_quantile_s"].to_numpy()
    assert q[1:] == pytest.approx([-math.log(0.01) / (mu - r) for r in (0.497, 0.4999)], rel=1e-9)
    assert not res.intervals["meets_slo"].iloc[1:].any()
    sim = cap.simulate_policy(dem, 1, mu, slo, replications=2, seed=0)
    assert sim.intervals["response_quantile_s_analytic"].to_numpy() == pytest.approx(q, rel=1e-12)
    # the vectorised mixture survival agrees with theory there too (theta -> 0)
    for lam in (0.497, 0.4999, 0.49999999):
        t = theory.mmc_response_quantile(lam, mu, 1, 0.99)
        got = cap._response_survival_vec(t, mu, np.array([mu - lam]), np.array([lam / mu]))[0]
        assert got == pytest.approx(0.01, rel=1e-9)


def test_issued_forecasts_need_only_the_models_history():
    # Issue 11: two weeks were demanded whatever the model; a daily seasonal naive needs two days.
    from analysis.forecasting import SeasonalNaive

    rng = np.random.default_rng(1)
    base = 10 + 5 * np.sin(2 * np.pi * np.arange(5 * 24) / 24)
    y = hourly(base + rng.normal(0, 0.3, len(base)))
    start, end = y.index[3 * 24], y.index[4 * 24]
    fc = cap.issued_forecasts(y, lambda: SeasonalNaive(season=24), start, end, lead_time_h=1,
                              refit_every_h=24)
    assert fc.index[0] == start and len(fc) == 24 and (fc["lead_h"] >= 1).all()
    back = np.ceil(fc["h"].to_numpy() / 24).astype(int) * 24        # whole seasons back
    assert np.allclose(fc["mean"],
                       [y[t - pd.Timedelta(hours=int(k))] for t, k in zip(fc.index, back)])
    # too little history: the error says what the model needs
    with pytest.raises(ValueError, match=r"needs 48 points of history.*has 46"):
        cap.issued_forecasts(y, lambda: SeasonalNaive(season=24), y.index[47], end,
                             lead_time_h=1)
    with pytest.raises(ValueError, match="needs 336 points"):          # a weekly model still does
        cap.issued_forecasts(y, lambda: SeasonalNaive(), start, end)
    with pytest.raises(ValueError, match="max_train"):
        cap.issued_forecasts(y, lambda: SeasonalNaive(season=24), start, end, max_train=30)


def test_issued_forecasts_on_a_per_minute_series():
    # step 60 s: lead time and refit interval are hours converted to steps; lead_h stays in hours
    from analysis.forecasting import SeasonalNaive

    idx = pd.date_range("2024-03-04", periods=6 * 60, freq="min", tz="UTC")
    y = pd.Series(3.0 + np.sin(2 * np.pi * np.arange(len(idx)) / 60), index=idx)
    start, end = idx[3 * 60], idx[5 * 60]
    fc = cap.issued_forecasts(y, lambda: SeasonalNaive(season=60), start, end,
                              lead_time_h=5 / 60, refit_every_h=0.5)
    assert len(fc) == 120 and fc.index[0] == start
    assert fc["lead_h"].min() == pytest.approx(5 / 60)                 # 5 minutes ahead
    assert fc["lead_h"].max() == pytest.approx((5 + 29) / 60)          # refit every 30 steps
    back = np.ceil(fc["h"].to_numpy() / 60).astype(int) * 60
    assert np.allclose(fc["mean"],
                       [y[t - pd.Timedelta(minutes=int(k))] for t, k in zip(fc.index, back)])
    with pytest.raises(ValueError, match="refit_every_h"):
        cap.issued_forecasts(y, lambda: SeasonalNaive(season=60), start, end,
                             refit_every_h=0.5 / 60)
    s = cap.predictive_policy(fc, MU, cap.SLO.wait_exceeds(0.1, 0.05), lead_time_h=5 / 60)
    assert s.index.equals(fc.index)


# ------------------------------------------------------------------- replay length from a precision

def test_replay_length_follows_rate_and_precision():
    # Issue 11: a fixed segment replayed ~15 requests per hour at 1.5 requests/s. The default now
    # measures each hour for n / reps x (1/rate + 2 tau) s, n = 1.96^2 (1 - p0) / (p0 precision^2).
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    dem = hourly([1.5, 20.0, 200.0, 0.0])
    servers = cap.servers_needed(dem, MU, slo)
    reps = 4
    res = cap.simulate_policy(dem, servers, MU, slo, replications=reps, seed=3)
    s, iv = res.summary, res.intervals
    assert s["replay"] == "precision" and s["precision_target"] == 0.25
    assert s["engine"] == "recursion" and not s["replay_capped"]
    n = 1.959963984540054 ** 2 * 0.95 / (0.05 * 0.25 ** 2) / reps
    tau = cap._relaxation_s(dem.to_numpy()[:3], servers.to_numpy()[:3], MU)
    assert iv["replay_measure_s"].to_numpy()[:3] == pytest.approx(
        n * (1 / dem.to_numpy()[:3] + 2 * tau), rel=1e-9)
    assert iv["replay_precision"].to_numpy()[:3] == pytest.approx(0.25, rel=1e-9)
    assert np.isnan(iv["replay_precision"].iloc[3])                     # no demand: nothing to do
    # the 1.5 requests/s hour now holds hundreds of requests per replication, not ~15
    assert 1.5 * iv["replay_measure_s"].iloc[0] > 300
    # a tighter target replays longer (n grows as 1 / precision^2)
    fine = cap.simulate_policy(dem, servers, MU, slo, replications=reps, seed=3, precision=0.125)
    assert fine.intervals["replay_measure_s"].iloc[0] == pytest.approx(
        4 * iv["replay_measure_s"].iloc[0], rel=1e-9)
    # a fixed segment is still available and says so
    seg = cap.simulate_policy(dem, servers, MU, slo, replications=2, seed=3, segment_s=20.0)
    assert seg.summary["replay"] == "segment_s" and seg.summary["segment_s"] == 20.0
    with pytest.raises(ValueError, match="precision"):
        cap.simulate_policy(dem, servers, MU, slo, precision=0)


def test_replay_cap_warns_with_the_precision_reached():
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    dem = hourly([30.0, 60.0])
    servers = cap.servers_needed(dem, MU, slo)
    with pytest.warns(UserWarning, match=r"capped at max_requests=2e\+04.*expected relative "
                                         r"half-width"):
        res = cap.simulate_policy(dem, servers, MU, slo, replications=2, seed=1,
                                  max_requests=2e4)
    s = res.summary
    assert s["replay_capped"] and s["replay_precision_max"] > 0.25
    assert res.replications["simulated_requests"].max() < 2.4e4          # the cap held
    plan_total = (res.intervals["replay_measure_s"] * dem).sum()
    assert plan_total <= 2e4


def test_replay_precision_is_calibrated_against_erlang_c():
    # hours sized exactly (P(wait > 0.1 s) near 5%): the simulation's 95% intervals contain
    # Erlang C in about 95% of them, and their half-widths are near the predicted precision
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    rng = np.random.default_rng(5)
    dem = hourly(rng.uniform(2.0, 12.0, 30))
    servers = cap.servers_needed(dem, MU, slo)
    res = cap.simulate_policy(dem, servers, MU, slo, replications=8, seed=11, precision=0.3)
    iv = res.intervals
    assert res.summary["analytic_in_ci"] >= 0.8
    near = iv["p_wait_exceeds_analytic"] > 0.025
    pa = iv["p_wait_exceeds_analytic"][near]
    predicted = 0.3 * 0.05 * np.sqrt(pa * (1 - pa) / (0.05 * 0.95))    # at the hour's own value
    actual = (iv["p_wait_exceeds_hi"] - iv["p_wait_exceeds"])[near]
    assert 0.6 < float(np.median(actual / predicted)) < 1.6


# ------------------------------------------------------------------ demand series of other shapes

def test_per_minute_demand_through_sizing_policies_and_evaluation():
    # Issue 11: any demand series: a per-minute series is sized, scheduled, autoscaled and
    # evaluated at its own step; server-hours count minutes as 1/60 h
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    idx = pd.date_range("2024-03-04", periods=3 * 24 * 60, freq="min", tz="UTC")
    minute = np.arange(len(idx))
    dem = pd.Series(8.0 + 6.0 * np.sin(2 * np.pi * minute / 1440), index=idx, name="ingress")
    need = cap.servers_needed(dem, MU, slo)
    assert need.index.equals(idx)
    assert cap.server_hours(need) == pytest.approx(need.sum() / 60)
    # a daily schedule by minute of the day (slots at the series' step) from two training days
    train, day3 = dem.iloc[:2 * 1440], dem.iloc[2 * 1440:]
    sched = cap.scheduled_policy(train, day3.index, MU, slo, quantile=1.0, period_s=86400)
    assert (sched.to_numpy() == need.iloc[2 * 1440:].to_numpy()).all()   # the series repeats daily
    with pytest.raises(ValueError, match=r"no data for .* slots.*period_s"):
        cap.scheduled_policy(train, day3.index, MU, slo)                 # a week is not covered
    hourly_slots = cap.scheduled_policy(train, day3.index, MU, slo, period_s=86400, slot_s=3600)
    assert hourly_slots.iloc[:60].nunique() == 1                         # one value per hour
    react = cap.reactive_policy(day3, MU, step_s=60, warmup_s=120, reaction_delay_s=60,
                                cooldown_s=300)
    assert react.index.equals(day3.index)
    res = cap.evaluate_policy(day3, sched, MU, slo)
    assert res.summary["attainment"] == 1.0 and len(res.intervals) == 1440
    assert res.summary["server_hours"] == pytest.approx(sched.sum() / 60)
    sim = cap.simulate_policy(day3.iloc[:120], sched.iloc[:120], MU, slo, replications=2, seed=4)
    assert len(sim.intervals) == 120
    # each minute is measured at most for its real 60 s
    assert (sim.intervals["replay_measure_s"] <= 60 + 1e-9).all()


def test_demand_with_zero_hours():
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    dem = hourly([0.0, 0.0, 4.0, 0.0, 12.0, 0.0])
    need = cap.servers_needed(dem, MU, slo, min_servers=0)
    assert list(need[dem == 0]) == [0, 0, 0, 0]
    res = cap.evaluate_policy(dem, need, MU, slo)
    assert res.summary["attainment"] == 1.0 and not res.intervals["overloaded"].any()
    assert (res.intervals.loc[dem == 0, "p_wait_exceeds"] == 0).all()
    sim = cap.simulate_policy(dem, cap.servers_needed(dem, MU, slo), MU, slo, replications=2,
                              seed=2)
    assert sim.intervals["meets_slo"].all()
    assert np.isnan(sim.intervals.loc[dem == 0, "replay_precision"]).all()
    react = cap.reactive_policy(dem, MU, step_s=60)
    assert (react >= 1).all()                                            # min_servers
    assert cap.reactive_policy(dem.iloc[:2], MU).eq(1).all()


def test_two_weeks_of_hourly_demand_and_the_step_is_never_guessed():
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    two = synthetic_demand(seed=3, start="2024-01-01", periods=2 * 168, events=()) / 4.0
    train, test = two.iloc[:168], two.iloc[168:]
    s = cap.scheduled_policy(train, test.index, MU, slo, quantile=1.0)
    assert (s.to_numpy() == cap.servers_needed(train, MU, slo).to_numpy()).all()
    res = cap.evaluate_policy(test, s, MU, slo)
    assert res.summary["intervals"] == 168
    # a single timestamp without a freq does not say how long its interval is: refused
    one = pd.Series([5.0], index=pd.DatetimeIndex(["2024-01-01"], tz="UTC"))
    with pytest.raises(ValueError, match="demand: need at least two timestamps"):
        cap.evaluate_policy(one, 2, MU, slo)
    assert cap.evaluate_policy(hourly([5.0]), 2, MU, slo).summary["server_hours"] == 2.0


def test_a_recorded_unit_that_is_not_a_rate_is_refused():
    # a loader that records the unit (workloads.load_trace: attrs["unit"]) lets sizing refuse a
    # count per hour passed as requests/s (3600x off) instead of sizing for it silently
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    counts = hourly([3600.0 * 4, 3600.0 * 8])
    counts.attrs["unit"] = "count"
    with pytest.raises(ValueError, match=r"rates: its recorded unit is 'count'.*divide by the step"):
        cap.servers_needed(counts, MU, slo)
    latency = hourly([0.2, 0.3])
    latency.attrs["unit"] = "latency (units not stated)"
    with pytest.raises(ValueError, match="demand: its recorded unit is 'latency"):
        cap.evaluate_policy(latency, 2, MU, slo)
    rate = counts / 3600.0
    rate.attrs["unit"] = "requests/s"
    assert list(cap.servers_needed(rate, MU, slo)) == list(cap.servers_needed(
        hourly([4.0, 8.0]), MU, slo))
