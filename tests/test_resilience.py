"""Slow dependency calibration and timeouts, the circuit breaker's state machine, service-mesh overhead."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import datasets, paths
from analysis import resilience as rs
from analysis.rollouts import binomial_interval


# ------------------------------------------------------------------------------------------------ slow dependency
def test_calibration_recovers_the_synthetic_episode():
    s = rs.synthetic_latency_series(seed=1, baseline=50.0, factor=12.0)
    cal = rs.calibrate_episode(s)
    assert cal["factor"] == pytest.approx(12.0, rel=0.05)
    assert cal["baseline"] == pytest.approx(50.0, rel=0.03)
    assert cal["hours_above_double"] == 2          # the 12x hour and the 6x hour after it (the 1.5x hour before is not)


def test_calibration_uses_the_labelled_points_and_the_week_before():
    idx = pd.date_range("2018-01-01", periods=400, freq="h", tz="UTC")
    values = np.full(400, 10.0)
    values[100] = 500.0                            # an unlabelled spike is ignored when labels are given
    values[300] = 80.0
    s = pd.Series(values, index=idx)
    cal = rs.calibrate_episode(s, anomalies=idx[[300]])
    assert cal["factor"] == pytest.approx(8.0) and cal["peak_time"] == idx[300]
    assert rs.calibrate_episode(s)["factor"] == pytest.approx(50.0)


def test_latency_episode_from_the_real_series_when_present():
    root = paths.data_lookup("")[0]
    if root is None or not (root / datasets.get(rs.DEPENDENCY_DATASET).relpath).is_file():
        pytest.skip("real dependency-latency series not available")
    ep = rs.latency_episode("")
    assert ep.is_real and ep.label.startswith("real:") and ep.files
    assert ep.peak == pytest.approx(ep.series.max()) and ep.factor > 5


def test_named_data_dir_without_the_series_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="outbound-01.csv"):
        rs.latency_episode(str(tmp_path))


def test_synthetic_fallback_is_named_synthetic(monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV_VAR, raising=False)
    monkeypatch.setattr(datasets, "locate", lambda name, data_dir="": None)   # the default lookup found nothing
    ep = rs.latency_episode("")
    assert not ep.is_real and ep.label.startswith("synthetic") and ep.factor > 5


def test_one_call_p99_matches_the_lognormal_quantile():
    r = rs.caller_latency(1, 3.0, dependency_median=0.05, dependency_sigma=0.5, own_time=0.02, samples=200000)
    exact = 0.02 + rs.lognormal_quantile(3.0 * 0.05, 0.5, 0.99)
    assert r["p99"] == pytest.approx(exact, rel=0.02)
    assert r["in_flight"] == pytest.approx(100.0 * r["mean"])


def test_timeout_bounds_latency_and_fails_the_slow_calls():
    T = 0.3
    r = rs.caller_latency(3, 10.0, timeout=T, own_time=0.02, samples=20000, seed=2)
    free = rs.caller_latency(3, 10.0, own_time=0.02, samples=20000, seed=2)
    assert r["p99"] <= 0.02 + 3 * T + 1e-12 < free["p99"]
    assert r["in_flight"] < free["in_flight"]
    one = rs.caller_latency(1, 10.0, timeout=T, samples=20000, seed=3)
    from statistics import NormalDist
    p_slow = 1 - NormalDist().cdf(math.log(T / (10.0 * 0.05)) / 0.5)
    lo, hi = binomial_interval(round(one["failed"] * 20000), 20000, 0.999)
    assert lo <= p_slow <= hi
    assert one["p99"] == pytest.approx(0.02 + T)


# ------------------------------------------------------------------------------------------------ circuit breaker
def _breaker(**kw):
    return rs.CircuitBreaker(**{**dict(failure_rate=0.5, window=10, min_calls=4, open_s=5.0, probes=2), **kw})


def test_closed_stays_closed_below_min_calls_and_below_the_rate():
    b = _breaker()
    for t in range(3):
        assert b.allow(t)
        b.record(t, False)
    assert b.state == rs.CLOSED                     # 3 failures < min_calls
    b2 = _breaker()
    for t, ok in enumerate([True, True, False, True, True, False, True]):
        b2.record(t, ok)
    assert b2.state == rs.CLOSED                     # 2/7 < 0.5


def test_closed_opens_on_the_error_rate_and_refuses():
    b = _breaker()
    for t, ok in enumerate([True, False, True, False]):   # 2/4 >= 0.5 at min_calls
        b.record(t, ok)
    assert b.state == rs.OPEN and b.transitions[-1] == (3, rs.CLOSED, rs.OPEN)
    assert not b.allow(3.1) and not b.allow(7.9)


def test_open_goes_half_open_after_open_s_and_lets_only_the_probes_through():
    b = _breaker()
    for t in range(4):
        b.record(t, False)
    assert b.state == rs.OPEN
    assert not b.allow(3 + 4.99)
    assert b.allow(3 + 5.0) and b.state == rs.HALF_OPEN
    assert b.allow(8.1)
    assert not b.allow(8.2)                          # probes = 2 already issued


def test_half_open_failure_reopens_and_successes_close():
    b = _breaker()
    for t in range(4):
        b.record(t, False)
    b.allow(9.0)
    b.record(9.5, False)
    assert b.state == rs.OPEN and b.transitions[-1] == (9.5, rs.HALF_OPEN, rs.OPEN)
    assert not b.allow(14.0) and b.allow(14.6)
    b.allow(14.7)
    b.record(14.8, True)
    assert b.state == rs.HALF_OPEN
    b.record(14.9, True)
    assert b.state == rs.CLOSED and b.allow(15.0)
    b.record(15.1, False)                            # the window was cleared on closing
    assert b.state == rs.CLOSED


def test_late_outcomes_while_open_change_nothing():
    b = _breaker()
    for t in range(4):
        b.record(t, False)
    b.record(3.5, True)
    assert b.state == rs.OPEN and len(b.transitions) == 1


def test_breaker_saves_caller_time_and_dependency_load_and_costs_refusals_after_recovery():
    kw = dict(outage_start=30.0, outage_end=60.0, horizon=120.0, timeout=1.0, seed=4)
    without = rs.simulate_breaker(50.0, **kw)
    b = rs.CircuitBreaker(open_s=2.0)
    withb = rs.simulate_breaker(50.0, breaker=b, **kw)
    assert without["refused"] == 0 and without["sent_during_outage"] > 1000
    assert withb["sent_during_outage"] < 0.1 * without["sent_during_outage"]
    assert withb["caller_busy_s"] < 0.3 * without["caller_busy_s"]
    assert 0 < withb["refused_after_recovery"] <= 50.0 * (2.0 + 1.0) * 2   # at most ~ one open period
    assert 60.0 <= withb["closed_at"] <= 60.0 + 2.0 + 1.0 + 1.0


# ------------------------------------------------------------------------------------------------ mesh
def test_mesh_chain_mean_matches_the_closed_form():
    for mesh in (False, True):
        r = rs.mesh_chain(4, 480.0, 200.0, 4, mesh=mesh, samples=200000, seed=5)
        assert r["mean"] == pytest.approx(rs.mesh_chain_mean(4, 480.0, 200.0, 4, mesh=mesh), rel=0.01)


def test_sidecar_adds_its_published_p90_and_cpu():
    assert rs.sidecar_mean_from_p90(0.00265) * math.log(10) == pytest.approx(0.00265)
    rng = np.random.default_rng(0)
    x = rng.exponential(rs.sidecar_mean_from_p90(0.00265), 200000)
    assert np.quantile(x, 0.9) == pytest.approx(0.00265, rel=0.02)
    a = rs.mesh_chain(3, 480.0, 200.0, 4, mesh=False)
    b = rs.mesh_chain(3, 480.0, 200.0, 4, mesh=True)
    assert b["vcpu"] - a["vcpu"] == pytest.approx(480.0 * 3 * 2 * 0.35e-3 / 0.6)
    assert b["p99"] > a["p99"]


def test_bad_parameters_get_a_one_line_error():
    for call, name in [
        (lambda: rs.caller_latency(1, 2.0, timeout=-1.0), "timeout"),
        (lambda: rs.simulate_breaker(10, outage_start=1, outage_end=2, horizon=3, timeout=-0.5), "timeout"),
        (lambda: rs.CircuitBreaker(failure_rate=1.5), "failure_rate"),
        (lambda: rs.CircuitBreaker(window=5, min_calls=6), "min_calls"),
        (lambda: rs.mesh_chain(2, 1000.0, 200.0, 4), "arrival_rate"),
    ]:
        with pytest.raises(ValueError) as info:
            call()
        assert name in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, value, expected", [
    ("timeout_s", "-1", "timeout_s must be > 0, got -1"),
    ("budget_tokens", "-5", "budget_tokens must be >= 0, got -5"),
    ("backoff", "jittery", "backoff kind must be one of none, exponential, full, equal, decorrelated, got 'jittery'"),
    ("dependency_timeout_s", "0", "dependency_timeout_s must be > 0, got 0"),
])
def test_notebook_04_validate_cell_rejects_bad_parameters(name, value, expected):
    from analysis import reproduce

    nb = paths.NOTEBOOKS / "04_dependencies_resilience.ipynb"
    given = reproduce.validate_parameters([nb], [(name, value)])
    with pytest.raises(Exception) as info:
        reproduce.preflight([nb], given)
    assert expected in str(info.value) and "\n" not in str(info.value).strip()
