"""Priority queues: the closed forms against hand values and known special cases, the event loop on hand-built
cases, the simulation against the closed forms within confidence intervals (M/G/1 and M/M/c, non-preemptive
and preemptive-resume), a cross-check against ciw, the compliance-peak scenario, and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import priority, theory
from analysis.topology import Deterministic, Exponential, HyperExponential


def inside(summary, cls, metric, value, slack=0.0):
    lo, hi = summary.loc[cls, f"{metric}_lo"], summary.loc[cls, f"{metric}_hi"]
    width = hi - lo
    return lo - slack * width <= value <= hi + slack * width, (lo, summary.loc[cls, metric], hi, value)


# ------------------------------------------------------------------------------------ closed forms
def test_mg1_closed_form_with_exponential_service_is_the_mm1_priority_formula():
    lam, mu = [0.2, 0.3, 0.25], 1.25
    for pre in (False, True):
        assert priority.mg1_priority_response_times(lam, 1 / mu, preemptive=pre) == pytest.approx(
            theory.mm1_priority_response_times(lam, mu, preemptive=pre))


def test_mg1_cobham_by_hand_with_deterministic_low_class():
    # class 0: exp mean 0.5 s at 0.4/s (rho 0.2, E[S^2] = 0.5); class 1: deterministic 2 s at 0.2/s (rho 0.4, E[S^2]=4)
    r = 0.4 * 0.5 / 2 + 0.2 * 4 / 2                                 # 0.1 + 0.4 = 0.5 s
    t = priority.mg1_priority_response_times([0.4, 0.2], [Exponential(0.5), Deterministic(2.0)])
    assert t == pytest.approx([r / (1 * 0.8) + 0.5, r / (0.8 * 0.4) + 2.0])
    tp = priority.mg1_priority_response_times([0.4, 0.2], [Exponential(0.5), Deterministic(2.0)], preemptive=True)
    assert tp == pytest.approx([0.5 + 0.1 / 0.8, 2.0 / 0.8 + 0.5 / (0.8 * 0.4)])


def test_mmc_closed_form_special_cases():
    # one server: the M/M/1 priority formulas
    for pre in (False, True):
        assert priority.mmc_priority_response_times([0.3, 0.4], 1.0, 1, preemptive=pre) == pytest.approx(
            theory.mm1_priority_response_times([0.3, 0.4], 1.0, preemptive=pre))
    # one class: the M/M/c mean response
    for pre in (False, True):
        assert priority.mmc_priority_response_times([7.0], 2.0, 4, preemptive=pre) == pytest.approx(
            [theory.mmc_metrics(7.0, 2.0, 4)["mean_response"]])
    # work conservation: the rate-weighted mean response is the FIFO M/M/c one
    lam = [2.0, 3.0, 1.5]
    for pre in (False, True):
        t = priority.mmc_priority_response_times(lam, 1.0, 8, preemptive=pre)
        assert np.dot(lam, t) / sum(lam) == pytest.approx(theory.mmc_metrics(6.5, 1.0, 8)["mean_response"])


# ------------------------------------------------------------------------------------ event loop by hand
def test_event_loop_preemptive_resume_and_nonpreemptive_by_hand():
    t = np.array([0.0, 2.0])
    prio = np.array([1, 0])
    svc = np.array([10.0, 1.0])
    # preemptive-resume: the high request runs 2..3, the low one resumes and ends at 11
    assert priority._event_loop(t, prio, svc, 1, True).tolist() == [11.0, 1.0]
    # non-preemptive: the high one waits until 10
    assert priority._event_loop(t, prio, svc, 1, False).tolist() == [10.0, 9.0]
    # two servers: nobody waits
    assert priority._event_loop(t, prio, svc, 2, True).tolist() == [10.0, 1.0]


def test_event_loop_serves_waiting_requests_by_priority_then_arrival():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    prio = np.array([0, 1, 1, 0])
    svc = np.array([5.0, 1.0, 1.0, 1.0])
    # at 5 the class-0 request (arrived 3) goes first, then the class-1 ones in arrival order
    assert priority._event_loop(t, prio, svc, 1, False).tolist() == [5.0, 6.0, 6.0, 3.0]


# ------------------------------------------------------------------------------------ simulation vs theory
@pytest.mark.slow
@pytest.mark.parametrize("pre", [False, True])
def test_simulated_mg1_priority_matches_the_closed_forms(pre):
    lam = [0.3, 0.15]
    services = [HyperExponential(0.6, scv=3.0), Deterministic(2.0)]
    exact = priority.mg1_priority_response_times(lam, services, preemptive=pre)
    per = priority.replicate(lam, services, 1, 40_000, discipline="preemptive" if pre else "nonpreemptive",
                             replications=8, seed=11)
    s = priority.summarise(per)
    for k in (0, 1):
        ok, info = inside(s, k, "mean_response", exact[k])
        assert ok, info


@pytest.mark.slow
@pytest.mark.parametrize("pre", [False, True])
def test_simulated_mmc_priority_matches_the_closed_forms(pre):
    lam, mu, c = [1.0, 1.2, 0.8], 1.0, 4
    exact = priority.mmc_priority_response_times(lam, mu, c, preemptive=pre)
    per = priority.replicate(lam, 1 / mu, c, 20_000, discipline="preemptive" if pre else "nonpreemptive",
                             replications=8, seed=3)
    s = priority.summarise(per)
    for k in range(3):
        ok, info = inside(s, k, "mean_response", exact[k])
        assert ok, info


def test_simulated_fifo_p99_matches_mmc_quantile():
    per = priority.replicate([6.0], 0.5, 4, 20_000, discipline="fifo", replications=6, seed=2)
    s = priority.summarise(per)
    ok, info = inside(s, 0, "p99_response", theory.mmc_response_quantile(6.0, 2.0, 4, 0.99))
    assert ok, info
    ok, info = inside(s, 0, "mean_response", theory.mmc_metrics(6.0, 2.0, 4)["mean_response"])
    assert ok, info


@pytest.mark.slow
def test_ciw_preemptive_multi_server_agrees_with_the_closed_form_and_the_event_loop():
    """ciw's priority_classes with "resume" pre-emption (via ServiceGraph) on 2 servers, the closed form and
    this module's event loop: the same model."""
    from analysis.simulation import run_trials
    from analysis.topology import Arrivals, CustomerClass, Service, ServiceGraph

    lam, mu, c = [0.8, 0.7], 1.0, 2
    exact = priority.mmc_priority_response_times(lam, mu, c, preemptive=True)
    g = ServiceGraph([Service("cpu", c, Exponential(rate=mu))],
                     [Arrivals("cpu", rate=r, customer_class=n) for r, n in zip(lam, ("hi", "lo"))],
                     classes=[CustomerClass("hi", 0), CustomerClass("lo", 1)], preemptive=True)
    r = run_trials(g, replications=6, horizon=5000, warmup=500, seed=8, progress=False, executor="serial")
    ours = priority.summarise(priority.replicate(lam, 1 / mu, c, 5000, discipline="preemptive", replications=6,
                                                 seed=8))
    for k, name in enumerate(("hi", "lo")):
        est = r.estimate("end-to-end", "mean_response", customer_class=name, confidence=0.99)
        assert abs(float(est["estimate"]) - exact[k]) <= float(est["half_width"]), (name, est, exact[k])
        ok, info = inside(ours, k, "mean_response", exact[k])
        assert ok, info


# ------------------------------------------------------------------------------------ compliance peak
def test_reserved_servers_is_the_least_count_under_the_utilisation_cap():
    assert priority.reserved_servers(1.8, 8, 0.9) == 2
    assert priority.reserved_servers(1.81, 8, 0.9) == 3
    assert priority.reserved_servers(50.0, 8, 0.9) == 7


def test_compliance_peak_preemption_protects_online_and_reserved_share_is_exact():
    pts = priority.compliance_peak(servers=4, online_rate=20.0, online_service=0.05, batch_service=1.0,
                                   batch_loads=[1.6], batch_work_server_h=10.0, horizon=3000, replications=4, seed=1)
    by = {p.policy: p for p in pts}
    assert set(by) == {"no protection", "non-preemptive priority", "preemptive priority", "reserved share"}
    assert all(p.batch_completion_h == pytest.approx(10.0 / 1.6) for p in pts)
    # preemptive: online sees an M/M/4 of its own
    pre = by["preemptive priority"]
    exact = theory.mmc_response_quantile(20.0, 20.0, 4, 0.99)
    assert pre.online_p99_lo - 0.5 * (pre.online_p99_hi - pre.online_p99_lo) <= exact <= pre.online_p99_hi + \
        0.5 * (pre.online_p99_hi - pre.online_p99_lo)
    # FIFO behind 1 s batch tasks is worse than either priority
    assert by["no protection"].online_p99_lo > by["non-preemptive priority"].online_p99_hi
    assert by["non-preemptive priority"].online_p99_s > by["preemptive priority"].online_p99_s
    res = by["reserved share"]
    assert res.reserved == 2 and res.online_p99_s == pytest.approx(theory.mmc_response_quantile(20.0, 20.0, 2, 0.99))


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("call, match", [
    (lambda: priority.mg1_priority_response_times([0.5, 0.6], 1.0), "total load"),
    (lambda: priority.mg1_priority_response_times([0.5, -1], 1.0), r"arrival_rates\[1\]"),
    (lambda: priority.mg1_priority_response_times([0.1, 0.1], [1.0]), "services has 1"),
    (lambda: priority.mmc_priority_response_times([3.0], 1.0, 3), "no steady state"),
    (lambda: priority.mmc_priority_response_times([1.0], 1.0, 0), "servers"),
    (lambda: priority.simulate_priority([1.0], 0.5, 1, 10, discipline="lifo"), "discipline"),
    (lambda: priority.simulate_priority([1.0], 0.5, 1, 10, warmup=10), "warmup"),
    (lambda: priority.simulate_priority([3.0], 0.5, 1, 10), "offered load"),
    (lambda: priority.simulate_priority([1.0], "fast", 1, 10), r"services\[0\]"),
    (lambda: priority.reserved_servers(1.0, 4, 1.5), "max_utilisation"),
])
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_replications_are_reproducible_from_the_seed():
    a = priority.replicate([2.0, 1.0], [0.2, 0.5], 2, 500, replications=2, seed=4)
    b = priority.replicate([2.0, 1.0], [0.2, 0.5], 2, 500, replications=2, seed=4)
    assert a.equals(b)
    assert not math.isclose(a["mean_response"].iloc[0],
                            priority.replicate([2.0, 1.0], [0.2, 0.5], 2, 500, replications=2, seed=5)
                            ["mean_response"].iloc[0])
