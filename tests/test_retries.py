"""Backoff kinds against their definitions, retry budgets, the metastable state and retry amplification."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import retries as rt
from analysis import theory

# One trigger for the metastability tests: 4 servers x 10 requests/s, load 0.75, arrivals doubled for 20 s.
META = dict(arrival_rate=30.0, service_rate=10.0, servers=4, timeout=0.5, horizon=240.0, trigger_start=40.0,
            trigger_end=60.0, spike=2.0, seed=3)


# ------------------------------------------------------------------------------------------------ backoff
def test_no_backoff_and_exponential_are_deterministic():
    rng = np.random.default_rng(0)
    n = np.arange(1, 12)
    assert np.all(rt.backoff_delays("none", n, 0.1, 5.0, rng) == 0)
    np.testing.assert_allclose(rt.backoff_delays("exponential", n, 0.1, 5.0, rng), np.minimum(5.0, 0.1 * 2.0 ** n))


@pytest.mark.parametrize("kind, low, high", [
    ("full", lambda v: 0 * v, lambda v: v),            # uniform(0, expo(n))
    ("equal", lambda v: v / 2, lambda v: v),           # expo(n)/2 + uniform(0, expo(n)/2)
])
def test_jittered_exponential_is_uniform_on_its_defined_range(kind, low, high):
    rng = np.random.default_rng(1)
    for n in (1, 3, 8):                                 # 8: capped (0.01 * 256 > 1)
        v = min(1.0, 0.01 * 2.0 ** n)
        x = rt.backoff_delays(kind, np.full(4000, n), 0.01, 1.0, rng)
        lo, hi = low(v), high(v)
        assert x.min() >= lo and x.max() <= hi
        assert stats.kstest((x - lo) / (hi - lo), "uniform").pvalue > 1e-3


def test_decorrelated_jitter_is_uniform_between_base_and_three_previous_sleeps_capped():
    rng = np.random.default_rng(2)
    prev = np.full(4000, 0.2)
    x = rt.backoff_delays("decorrelated", np.ones(4000), 0.05, 10.0, rng, previous=prev)
    assert x.min() >= 0.05 and x.max() <= 0.6
    assert stats.kstest((x - 0.05) / 0.55, "uniform").pvalue > 1e-3
    capped = rt.backoff_delays("decorrelated", np.ones(4000), 0.05, 0.3, rng, previous=prev)
    assert capped.max() == 0.3 and np.mean(capped == 0.3) == pytest.approx((0.6 - 0.3) / 0.55, abs=0.03)
    first = rt.backoff_delay("decorrelated", 1, 0.05, 10.0, np.random.default_rng(3))   # previous = base
    assert 0.05 <= first <= 0.15


@pytest.mark.parametrize("kind", rt.BACKOFF_KINDS)
def test_event_loop_sleep_equals_the_vectorised_definition(kind):
    u = np.random.default_rng(4).random(50)
    n = np.arange(1, 51) % 9 + 1
    prev = np.linspace(0.01, 2.0, 50)
    vec = rt.backoff_delays(kind, n, 0.02, 1.5, np.random.default_rng(5), previous=prev)
    u = np.random.default_rng(5).random(50)
    loop = [rt._sleep(kind, int(k), 0.02, 1.5, float(x), float(p)) for k, x, p in zip(n, u, prev)]
    np.testing.assert_allclose(vec, loop)


# ------------------------------------------------------------------------------------------------ budget
def test_retry_budget_follows_the_aws_sdk_token_bucket():
    b = rt.RetryBudget(capacity=20, retry_cost=5, timeout_cost=10, success_refund=1)
    assert b.acquire(timed_out=True) == 10 and b.tokens == 10
    assert b.acquire() == 5 and b.tokens == 5
    assert b.acquire(timed_out=True) is None and b.tokens == 5    # cannot pay: no retry
    b.success(retried=True, refund=5)
    assert b.tokens == 10
    b.success()
    assert b.tokens == 11
    for _ in range(20):
        b.success()
    assert b.tokens == 20                                          # never above capacity


def test_aws_defaults():
    b = rt.RetryBudget()
    assert (b.capacity, b.retry_cost, b.timeout_cost, b.success_refund) == (500, 5, 10, 1)


# ------------------------------------------------------------------------------------------------ simulation
def test_retries_off_matches_mmc_closed_forms():
    lam, mu, c, T = 30.0, 10.0, 4, 0.3
    means, tails, waits = [], [], []
    for s in range(8):
        r = rt.simulate_retries(lam, mu, c, timeout=T, horizon=1200.0, trigger_start=0, trigger_end=0, seed=s)
        keep = r.requests.arrival.to_numpy() > 60.0
        resp = r.params["attempt_response"][keep]
        means.append(resp.mean())
        tails.append((resp > T).mean())
        waits.append((r.params["attempt_wait"][keep] > 0).mean())
        assert r.requests.attempts.max() == 1
    exact = theory.mmc_metrics(lam, mu, c)["mean_response"]
    tail = theory.mmc_response_survival(lam, mu, c, T)
    for est, ref in ((means, exact), (tails, tail), (waits, theory.erlang_c(lam, mu, c))):
        m, se = np.mean(est), np.std(est, ddof=1) / math.sqrt(len(est))
        assert abs(m - ref) < 4 * se + 1e-9, (m, se, ref)


def test_metastable_state_persists_after_the_trigger_with_retries():
    r = rt.simulate_retries(**META, max_retries=3)
    before = r.window(0, META["trigger_start"])
    after = r.window(180, META["horizon"])
    assert before["goodput_fraction"] > 0.95
    assert after["goodput_fraction"] < 0.05                  # the trigger ended 120 s earlier
    assert after["amplification"] == pytest.approx(4.0, rel=0.05)   # every request makes 1 + 3 attempts
    assert r.timeline.queue.iloc[-1] > r.timeline.queue[r.timeline.time < 60].max()   # still growing
    assert not r.recovered()


def test_without_retries_the_same_trigger_is_recovered_from():
    r = rt.simulate_retries(**META, max_retries=0)
    assert r.window(180, META["horizon"])["goodput_fraction"] > 0.95
    assert r.timeline.queue.iloc[-1] < 20
    assert r.recovered()


def test_retry_budget_and_load_shedding_remove_the_metastable_state():
    assert rt.simulate_retries(**META, max_retries=3, budget=rt.RetryBudget()).recovered()
    assert rt.simulate_retries(**META, max_retries=3, shed_wait=0.2).recovered()
    # shedding only what the client already gave up on is not enough: served attempts still time out
    assert not rt.simulate_retries(**META, max_retries=3, shed_wait=META["timeout"]).recovered()


def test_recovery_follows_the_metastable_threshold():
    kw = {k: v for k, v in META.items() if k != "arrival_rate"}
    limit = rt.metastable_threshold(10.0, 4, 1)              # 20 requests/s with one retry
    assert limit == 20.0
    assert rt.simulate_retries(0.7 * limit, **{**kw, "spike": 4.0}, max_retries=1).recovered()
    assert not rt.simulate_retries(1.3 * limit, **kw, max_retries=1).recovered()


@pytest.mark.parametrize("depth, retries, p", [(1, 2, 1.0), (3, 2, 1.0), (4, 1, 1.0), (3, 2, 0.3), (2, 3, 0.6)])
def test_amplification_closed_form_against_simulation(depth, retries, p):
    exact = rt.amplification(depth, retries, p)
    if p == 1.0:
        assert exact == (1 + retries) ** depth
    mean, se = rt.simulate_amplification(depth, retries, p, calls=3000, seed=depth)
    assert abs(mean - exact) <= 4 * se + 1e-12


def test_jitter_cuts_the_calls_of_contending_clients():
    none = rt.simulate_contention(30, "none", replications=10, seed=1)
    full = rt.simulate_contention(30, "full", replications=10, seed=1)
    expo = rt.simulate_contention(30, "exponential", replications=10, seed=1)
    assert full["calls"] + 4 * full["calls_se"] < none["calls"] - 4 * none["calls_se"]
    assert expo["time"] > 5 * full["time"]                    # no jitter: clients stay synchronised
    assert none["calls"] >= 30 and full["calls"] >= 30        # every client writes once at least


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call, name, value", [
    (lambda: rt.check_retry_policy(timeout=-1, max_retries=2), "timeout", "-1"),
    (lambda: rt.check_retry_policy(timeout=1, max_retries=2, backoff="jittery"), "backoff kind", "jittery"),
    (lambda: rt.check_retry_policy(timeout=1, max_retries=-1), "max_retries", "-1"),
    (lambda: rt.RetryBudget(capacity=-5), "capacity", "-5"),
    (lambda: rt.RetryBudget(retry_cost=-1), "retry_cost", "-1"),
    (lambda: rt.simulate_retries(1, 1, 1, timeout=0), "timeout", "0"),
    (lambda: rt.simulate_retries(1, 1, 1, timeout=1, backoff="fully"), "backoff kind", "fully"),
    (lambda: rt.backoff_delay("gaussian", 1, 0.1, 1, np.random.default_rng()), "backoff kind", "gaussian"),
    (lambda: rt.simulate_retries(1, 1, 1, timeout=1, trigger_start=5, trigger_end=2), "trigger", "5"),
])
def test_bad_parameters_get_a_one_line_error(call, name, value):
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and name in msg and value in msg


@pytest.mark.parametrize("lam, retries, timeout", [(12.0, 1, 1.0), (20.0, 0, 1.0), (30.0, 0, 1.0), (16.0, 1, 0.5)])
def test_fluid_model_predicts_the_simulated_recovery_time(lam, retries, timeout):
    r = rt.simulate_retries(lam, 10.0, 4, timeout=timeout, max_retries=retries, horizon=400.0, trigger_start=60.0,
                            trigger_end=80.0, spike=60.0 / lam, bin_s=1.0, seed=11)
    backlog = r.backlog_at(80.0 - 1e-9)
    fluid = rt.fluid_recovery_time(backlog, lam, 10.0, 4, timeout=timeout, max_retries=retries)
    measured = r.recovery_time()
    assert math.isfinite(measured) and backlog > 4 * 10.0 * timeout
    assert measured == pytest.approx(fluid, rel=0.2, abs=3.0)


def test_fluid_model_never_recovers_above_the_threshold():
    assert rt.fluid_recovery_time(1000.0, 12.0, 10.0, 4, timeout=1.0, max_retries=3) == math.inf   # 48 > 40
    assert rt.fluid_recovery_time(30.0, 12.0, 10.0, 4, timeout=1.0, max_retries=3) == 0.0          # below c mu T
    r = rt.simulate_retries(12.0, 10.0, 4, timeout=1.0, max_retries=3, horizon=300.0, trigger_start=60.0,
                            trigger_end=80.0, spike=5.0, seed=2)
    assert r.recovery_time() == math.inf


def test_a_capacity_drop_trigger_also_leaves_retrying_clients_down():
    # the same overload from a capacity drop (services started in the window take 3x longer: capacity / 3)
    # instead of a load spike: down long after capacity is back with retries, recovered without
    kw = {**META, "spike": 1.0, "slowdown": 3.0}
    stuck = rt.simulate_retries(**kw, max_retries=3)
    assert stuck.window(0, META["trigger_start"])["goodput_fraction"] > 0.95
    assert stuck.window(180, META["horizon"])["goodput_fraction"] < 0.05
    assert not stuck.recovered()
    fine = rt.simulate_retries(**kw, max_retries=0)
    assert fine.window(180, META["horizon"])["goodput_fraction"] > 0.95
    assert fine.recovered()
