"""analysis.theory against published values, textbook identities and independent computations.

Every published number below names its source. Independent checks use a different formula or
exact rational arithmetic (fractions.Fraction), never the code under test.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from analysis import theory as th


def erlang_b_exact(c: int, a: Fraction) -> Fraction:
    """Erlang B from its definition (A^c/c!) / sum_k A^k/k!, in exact rational arithmetic."""
    terms = [a**k / math.factorial(k) for k in range(c + 1)]
    return terms[-1] / sum(terms)


def erlang_c_exact(c: int, a: Fraction) -> Fraction:
    """Erlang C from its definition (Kleinrock 1975, eq. 3.40), exact rationals."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


# ------------------------------------------------------------------------------------------
# Erlang B
# ------------------------------------------------------------------------------------------

def test_erlang_b_published_table_values():
    # Erlang B tables (e.g. ITU-D Teletraffic Engineering Handbook, Iversen, Erlang B table;
    # any telephone-traffic Erlang B table): 10 servers at 5 Erlang -> 0.01838; 5 servers at
    # 2 Erlang -> 0.0367.
    assert th.erlang_b_from_load(5.0, 10) == pytest.approx(0.01838, abs=5e-6)
    assert th.erlang_b_from_load(2.0, 5) == pytest.approx(0.0367, abs=5e-5)
    # Wolfram Language ErlangB documentation example: "30 call lines and 25 Erlangs: the loss
    # probability is approximately 0.05".
    assert th.erlang_b_from_load(25.0, 30) == pytest.approx(0.05, abs=0.005)


@pytest.mark.parametrize("c, a", [(1, Fraction(1, 2)), (4, Fraction(2)), (5, Fraction(3)),
                                  (6, Fraction(2)), (10, Fraction(5)), (25, Fraction(37, 2)),
                                  (60, Fraction(70))])
def test_erlang_b_matches_exact_definition(c, a):
    # Wolfram ErlangB documentation applications: 5 lines at 3 Erlang, a 4-modem pool at 2
    # Erlang, 6 modems at 2 Erlang; values here from the definition in exact arithmetic.
    assert th.erlang_b_from_load(float(a), c) == pytest.approx(float(erlang_b_exact(c, a)),
                                                               rel=1e-12)


def test_erlang_b_single_server_is_a_over_one_plus_a():
    # M/M/1/1 loss system: B = A / (1 + A) (Kleinrock 1975, sec. 3.7 with c = 1).
    for a in (0.01, 0.5, 3.0, 1e3):
        assert th.erlang_b_from_load(a, 1) == pytest.approx(a / (1 + a), rel=1e-14)


@pytest.mark.parametrize("c, a", [(10_000, 12_000.0), (10_000, 9_000.0), (10_000, 9_950.0),
                                  (5_000, 4_000.0), (20_000, 20_000.0)])
def test_erlang_b_large_systems_stable(c, a):
    # Independent formulation through the Poisson distribution: B = P(N = c) / P(N <= c),
    # N ~ Poisson(A) (scipy evaluates both in log space).
    expected = stats.poisson.pmf(c, a) / stats.poisson.cdf(c, a)
    got = th.erlang_b_from_load(a, c)
    assert 0.0 <= got <= 1.0 and math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-300)


def test_erlang_b_heavy_overload_limit():
    # For A >> c, B -> 1 - c/A (fluid limit of the loss system).
    assert th.erlang_b_from_load(12_000.0, 10_000) == pytest.approx(1 - 10_000 / 12_000, abs=5e-3)


# ------------------------------------------------------------------------------------------
# Erlang C and M/M/c
# ------------------------------------------------------------------------------------------

def test_mmc_published_eth_example():
    # ETH Zurich, Advanced Systems Lab 2017, slides "M/M/m queues" (also used as the test of
    # qsmmm.m in Marzolla's Octave queueing package): lambda = 9, mu = 5.
    m2 = th.mmc_metrics(9.0, 5.0, 2)
    assert m2["mean_queue_length"] == pytest.approx(7.674, abs=1e-3)
    assert m2["mean_response"] == pytest.approx(1.053, abs=1e-3)
    m4 = th.mmc_metrics(9.0, 5.0, 4)
    assert m4["mean_queue_length"] == pytest.approx(0.105, abs=1e-3)
    assert m4["mean_response"] == pytest.approx(0.212, abs=1e-3)


def test_erlang_c_two_servers_closed_form():
    # M/M/2: P(wait) = 2 rho^2 / (1 + rho), rho = A/2 (Kleinrock 1975, sec. 3.5; Gross & Harris).
    for a in (0.2, 1.0, 1.5, 1.99):
        rho = a / 2
        assert th.erlang_c_from_load(a, 2) == pytest.approx(2 * rho**2 / (1 + rho), rel=1e-12)


@pytest.mark.parametrize("c, a", [(1, Fraction(1, 2)), (3, Fraction(5, 2)), (10, Fraction(8)),
                                  (40, Fraction(35))])
def test_erlang_c_matches_exact_definition(c, a):
    assert th.erlang_c_from_load(float(a), c) == pytest.approx(float(erlang_c_exact(c, a)),
                                                               rel=1e-12)


def test_mm1_formulas():
    # M/M/1 (Kleinrock 1975, sec. 3.2): P(wait) = rho, W = rho/(mu - lambda), T = 1/(mu - lambda),
    # L = rho/(1 - rho), Lq = rho^2/(1 - rho).
    lam, mu = 3.0, 4.0
    rho = lam / mu
    m = th.mmc_metrics(lam, mu, 1)
    assert m["utilisation"] == pytest.approx(rho)
    assert m["p_wait"] == pytest.approx(rho)
    assert m["mean_wait"] == pytest.approx(rho / (mu - lam))
    assert m["mean_response"] == pytest.approx(1 / (mu - lam))
    assert m["mean_in_system"] == pytest.approx(rho / (1 - rho))
    assert m["mean_queue_length"] == pytest.approx(rho**2 / (1 - rho))


@pytest.mark.parametrize("lam, mu, c", [(9.0, 5.0, 2), (80.0, 1.0, 100), (0.3, 0.1, 4),
                                        (950.0, 1.0, 1000)])
def test_mmc_littles_law_and_identities(lam, mu, c):
    m = th.mmc_metrics(lam, mu, c)
    assert m["mean_in_system"] == pytest.approx(lam * m["mean_response"], rel=1e-12)
    assert m["mean_queue_length"] == pytest.approx(lam * m["mean_wait"], rel=1e-12)
    assert m["mean_response"] == pytest.approx(m["mean_wait"] + 1 / mu, rel=1e-12)
    # L = Lq + offered load (mean number in service = lambda/mu).
    assert m["mean_in_system"] == pytest.approx(m["mean_queue_length"] + lam / mu, rel=1e-12)
    assert m["mean_wait"] == pytest.approx(m["p_wait"] / (c * mu - lam), rel=1e-12)


def test_halfin_whitt_limit_of_erlang_c():
    # Halfin & Whitt (1981), Thm. 4: with c = R + beta sqrt(R), Erlang C -> alpha(beta) as
    # R -> infinity. alpha(1) = 1/(1 + Phi(1)/phi(1)) with the tabulated Phi(1) = 0.841345,
    # phi(1) = 0.241971 (standard normal tables) = 0.22336.
    assert th.halfin_whitt_alpha(1.0) == pytest.approx(1 / (1 + 0.841345 / 0.241971), abs=1e-5)
    r = 10_000.0
    c = int(r + 1.0 * math.sqrt(r))   # 10,100 servers, exactly beta = 1
    assert th.erlang_c_from_load(r, c) == pytest.approx(th.halfin_whitt_alpha(1.0), abs=0.01)


# ------------------------------------------------------------------------------------------
# M/M/c waiting and response-time distributions
# ------------------------------------------------------------------------------------------

def test_wait_tail_and_quantile():
    lam, mu, c = 9.0, 5.0, 2
    pw = th.erlang_c_from_load(lam / mu, c)
    assert th.mmc_prob_wait_exceeds(lam, mu, c, 0.0) == pytest.approx(pw)
    t = 0.7
    expected = pw * math.exp(-(c * mu - lam) * t)
    assert th.mmc_prob_wait_exceeds(lam, mu, c, t) == pytest.approx(expected)
    for q in (0.5, 0.9, 0.99):
        w = th.mmc_wait_quantile(lam, mu, c, q)
        assert th.mmc_prob_wait_exceeds(lam, mu, c, w) == pytest.approx(1 - q, rel=1e-10)
    # Fewer than 1 - C of requests wait: low quantiles are zero.
    low = th.mmc_metrics(1.0, 1.0, 4)
    assert th.mmc_wait_quantile(1.0, 1.0, 4, 0.5) == 0.0 and 1 - low["p_wait"] > 0.5


def test_mm1_response_quantile_is_exponential():
    # M/M/1 response time is Exponential(rate=mu - lambda) (Kleinrock 1975, eq. 3.25).
    lam, mu = 0.5, 1.0
    for q in (0.5, 0.9, 0.99, 0.9999):
        assert th.mmc_response_quantile(lam, mu, 1, q) == pytest.approx(
            -math.log(1 - q) / (mu - lam), rel=1e-9)


def test_max_utilisation_for_quantile_one_server_is_closed_form():
    # M/M/1: p_q = ln(1/(1-q)) / (mu (1 - rho)) <= target  <=>  rho <= 1 - ln(1/(1-q)) / (mu target)
    mu = 10.0
    for target_s, q in ((1.0, 0.99), (0.5, 0.99), (2.0, 0.9)):
        exact = 1 - math.log(1 / (1 - q)) / (mu * target_s)
        rho = th.max_utilisation_for_quantile(mu, 1, target_s, quantile=q)
        assert rho == pytest.approx(exact, abs=1e-9)
        assert rho <= exact                                 # the lower end: the target is met
    assert th.max_utilisation_for_quantile(mu, 1, 1.0) == th.max_utilisation_for_quantile(mu, 1, 1.0, 0.99)


@pytest.mark.parametrize("servers", [2, 8, 32])
def test_max_utilisation_for_quantile_meets_the_target_at_its_edge(servers):
    mu, target_s = 10.0, 1.0                                # p99 target: 10 mean service times
    rho = th.max_utilisation_for_quantile(mu, servers, target_s)
    assert th.mmc_response_quantile(rho * servers * mu, mu, servers, 0.99) <= target_s
    assert th.mmc_response_quantile((rho + 1e-9) * servers * mu, mu, servers, 0.99) > target_s
    # more servers of the same speed can run hotter for the same tail (pooling)
    assert rho > th.max_utilisation_for_quantile(mu, servers // 2, target_s)


def test_max_utilisation_for_quantile_is_capped_and_rejects_bad_input():
    # a target the queue meets almost up to saturation: the search stops just below MAX_UTILISATION_SEARCHED
    assert th.MAX_UTILISATION_SEARCHED - 1e-9 < th.max_utilisation_for_quantile(10.0, 64, 100.0) \
        < th.MAX_UTILISATION_SEARCHED
    with pytest.raises(ValueError, match=r"target_s=0.4 s is at or below the service time's own 0.99-quantile"):
        th.max_utilisation_for_quantile(10.0, 4, 0.4)      # service p99 alone: ln(100)/10 = 0.46 s
    for kwargs, name in ((dict(service_rate=0.0), "service_rate"), (dict(servers=1.5), "servers"),
                         (dict(target_s=-1.0), "target_s"), (dict(quantile=1.0), "quantile")):
        args = dict(service_rate=10.0, servers=2, target_s=1.0) | kwargs
        with pytest.raises(ValueError, match=name):
            th.max_utilisation_for_quantile(**args)


def _response_survival_by_quadrature(lam, mu, c, t):
    """P(T > t) by numerically convolving the wait (atom + exponential) with Exp(mu) service."""
    pw = th.erlang_c_from_load(lam / mu, c)
    theta = c * mu - lam
    # P(W + S > t) = (1-C) e^{-mu t} + C * integral_0^t theta e^{-theta w} e^{-mu (t - w)} dw
    #                + C e^{-theta t}
    inner, _ = integrate.quad(lambda w: theta * math.exp(-theta * w - mu * (t - w)), 0, t,
                              epsabs=1e-14, epsrel=1e-12)
    return (1 - pw) * math.exp(-mu * t) + pw * (inner + math.exp(-theta * t))


@pytest.mark.parametrize("lam, mu, c", [(9.0, 5.0, 2), (1.0, 1.0, 2),   # c mu - lambda == mu
                                        (3.0, 1.0, 4),                  # c mu - lambda == mu
                                        (2.5, 1.0, 4), (30.0, 1.0, 35)])
def test_response_quantile_inverts_exact_distribution(lam, mu, c):
    for q in (0.5, 0.95, 0.999):
        t = th.mmc_response_quantile(lam, mu, c, q)
        assert _response_survival_by_quadrature(lam, mu, c, t) == pytest.approx(1 - q, rel=1e-7)
        assert th.mmc_response_survival(lam, mu, c, t) == pytest.approx(1 - q, rel=1e-9)


def _response_survival_decimal(lam, mu, c, t, digits=60):
    """P(T > t) of M/M/c in 60-digit decimal arithmetic (independent high-precision reference).

    Erlang C from its defining sum, then P(T > t) = (1-C) e^{-mu t} + C (mu e^{-theta t} -
    theta e^{-mu t}) / (mu - theta), theta = c mu - lambda != mu.
    """
    from decimal import Decimal, localcontext
    with localcontext() as ctx:
        ctx.prec = digits
        lam, mu, t = Decimal(repr(lam)), Decimal(repr(mu)), Decimal(repr(t))
        a = lam / mu
        rho = a / c
        term, total = Decimal(1), Decimal(0)
        for k in range(c):
            total += term
            term = term * a / (k + 1)             # term is now a^(k+1)/(k+1)!
        last = term / (1 - rho)                   # a^c / c! / (1 - rho)
        p_wait = last / (total + last)
        theta = c * mu - lam
        both = (mu * (-theta * t).exp() - theta * (-mu * t).exp()) / (mu - theta)
        return float((1 - p_wait) * (-mu * t).exp() + p_wait * both)


@pytest.mark.parametrize("lam", [0.497, 0.4999, 0.49999999, 0.5 * (1 - 1e-12)])
def test_response_quantile_one_server_near_saturation(lam):
    # Issue 11: one server at >= 99.35% utilisation raised OverflowError from expm1 (theta t > 709).
    # M/M/1: the response time is Exponential(mu - lambda) exactly.
    mu = 0.5
    t = th.mmc_response_quantile(lam, mu, 1, 0.99)
    assert math.isfinite(t)
    assert t == pytest.approx(-math.log(0.01) / (mu - lam), rel=1e-9)
    assert th.mmc_response_survival(lam, mu, 1, t) == pytest.approx(0.01, rel=1e-9)


@pytest.mark.parametrize("lam, mu, c", [(0.497, 0.5, 1), (0.499, 0.5, 1), (1.996, 0.5, 4),
                                        (19.99, 1.0, 20), (0.49, 0.5, 1)])
def test_response_survival_near_saturation_matches_high_precision(lam, mu, c):
    for q in (0.9, 0.99, 0.9999):
        t = th.mmc_response_quantile(lam, mu, c, q)
        assert th.mmc_response_survival(lam, mu, c, t) == pytest.approx(1 - q, rel=1e-9)
        assert _response_survival_decimal(lam, mu, c, t) == pytest.approx(1 - q, rel=1e-8)
    for t in (1.0, 100.0, 1e4, 1e5):
        assert th.mmc_response_survival(lam, mu, c, t) == pytest.approx(
            _response_survival_decimal(lam, mu, c, t), rel=1e-9, abs=1e-300)


def test_response_quantile_continuous_through_special_case():
    # c mu - lambda == mu (here c = 2, lambda = mu) is the Erlang-2 special case; neighbouring
    # arrival rates must give neighbouring quantiles.
    at = th.mmc_response_quantile(1.0, 1.0, 2, 0.99)
    assert th.mmc_response_quantile(1.0 + 1e-7, 1.0, 2, 0.99) == pytest.approx(at, rel=1e-5)
    assert th.mmc_response_quantile(1.0 - 1e-7, 1.0, 2, 0.99) == pytest.approx(at, rel=1e-5)
    # Hand check at lambda = mu = 1, c = 2: C = 1/3, P(T > t) = (2/3) e^{-t} + (1/3)(1 + t) e^{-t}.
    t = at
    survival = (2 / 3) * math.exp(-t) + (1 / 3) * (1 + t) * math.exp(-t)
    assert survival == pytest.approx(0.01, rel=1e-9)


# ------------------------------------------------------------------------------------------
# Staffing
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lam, mu", [(9.0, 5.0), (100.0, 1.0), (2000.0, 0.5), (0.3, 2.0)])
def test_servers_for_targets_are_least(lam, mu):
    a = lam / mu
    c = th.servers_for_wait_probability(lam, mu, 0.2)
    assert th.erlang_c_from_load(a, c) <= 0.2
    assert c - 1 <= a or th.erlang_c_from_load(a, c - 1) > 0.2

    c = th.servers_for_mean_wait(lam, mu, 0.01 / mu)
    assert th.mmc_metrics(lam, mu, c)["mean_wait"] <= 0.01 / mu
    assert c - 1 <= a or th.mmc_metrics(lam, mu, c - 1)["mean_wait"] > 0.01 / mu

    t = 0.1 / mu
    c = th.servers_for_service_level(lam, mu, t, 0.95)       # 95% wait at most t
    assert th.mmc_prob_wait_exceeds(lam, mu, c, t) <= 0.05
    assert th.mmc_service_level(lam, mu, c, t) >= 0.95
    assert c - 1 <= a or th.mmc_service_level(lam, mu, c - 1, t) < 0.95


def test_staffing_hand_example():
    # lambda = 9, mu = 5 (A = 1.8): C(2) = 0.8526, C(3) = 0.3542, C(4) = 0.1285 (exact definition).
    assert float(erlang_c_exact(3, Fraction(9, 5))) > 0.2 > float(erlang_c_exact(4, Fraction(9, 5)))
    assert th.servers_for_wait_probability(9.0, 5.0, 0.2) == 4
    # Integer load exactly: never returns an unstable c == A.
    assert th.servers_for_wait_probability(10.0, 1.0, 0.999999) == 11


def test_square_root_staffing_and_halfin_whitt_beta():
    assert th.square_root_staffing(100.0, 1.0) == 110          # ceil(100 + 1 * 10)
    assert th.square_root_staffing(100.0, 0.5) == 105
    assert th.square_root_staffing(2.0, 1.5) == math.ceil(2 + 1.5 * math.sqrt(2))
    for alpha in (0.5, 0.2, 0.05, 1e-6):
        beta = th.halfin_whitt_beta(alpha)
        assert th.halfin_whitt_alpha(beta) == pytest.approx(alpha, rel=1e-10)
    # alpha(beta) decreasing: lower delay probability needs a larger beta.
    assert th.halfin_whitt_beta(0.05) > th.halfin_whitt_beta(0.2) > th.halfin_whitt_beta(0.5)
    # Borst, Mandelbaum & Reiman (2004) / Halfin-Whitt: square-root staffing is within a couple
    # of servers of the exact Erlang C optimum for large pools.
    r = 5_000.0
    exact = th.servers_for_wait_probability(r, 1.0, 0.2)
    assert abs(th.square_root_staffing(r, th.halfin_whitt_beta(0.2)) - exact) <= 2


# ------------------------------------------------------------------------------------------
# M/G/1, Kingman, priorities
# ------------------------------------------------------------------------------------------

def test_pollaczek_khinchine():
    lam, mu = 0.8, 1.0
    mm1 = th.mmc_metrics(lam, mu, 1)
    # SCV = 1 is M/M/1.
    assert th.mg1_mean_wait(lam, mu, service_scv=1.0) == pytest.approx(mm1["mean_wait"], rel=1e-12)
    # SCV = 0 is M/D/1: W = rho / (2 mu (1 - rho)), half the M/M/1 wait (Kleinrock 1975, eq. 5.73).
    md1 = th.mg1_mean_wait(lam, mu, service_scv=0.0)
    assert md1 == pytest.approx(0.8 / (2 * 1.0 * 0.2), rel=1e-12)
    assert md1 == pytest.approx(mm1["mean_wait"] / 2, rel=1e-12)
    m = th.mg1_metrics(lam, mu, service_scv=1.0)
    for key in ("utilisation", "p_wait", "mean_wait", "mean_response", "mean_queue_length",
                "mean_in_system"):
        assert m[key] == pytest.approx(mm1[key], rel=1e-12)


def test_kingman():
    lam, mu = 0.7, 1.0
    # Exact for M/M/1 ...
    mm1_wait = th.mmc_metrics(lam, mu, 1)["mean_wait"]
    assert th.kingman_wait(lam, mu, arrival_scv=1.0, service_scv=1.0) == pytest.approx(mm1_wait)
    # ... and equal to Pollaczek-Khinchine for Poisson arrivals (ca^2 = 1).
    for cs2 in (0.0, 0.5, 4.0):
        pk = th.mg1_mean_wait(lam, mu, service_scv=cs2)
        assert th.kingman_wait(lam, mu, arrival_scv=1.0, service_scv=cs2) == pytest.approx(pk)
    # D/D/1 has no queueing.
    assert th.kingman_wait(lam, mu, arrival_scv=0.0, service_scv=0.0) == 0.0


def test_priority_nonpreemptive_cobham():
    lams, mu = [0.2, 0.3, 0.25], 1.0
    w = th.mm1_priority_waits(lams, mu)
    rho = np.cumsum(lams) / mu
    w0 = sum(lams) / mu**2                      # sum lambda_i E[S^2]/2 with E[S^2] = 2/mu^2
    hand = [w0 / (1 * (1 - rho[0])), w0 / ((1 - rho[0]) * (1 - rho[1])),
            w0 / ((1 - rho[1]) * (1 - rho[2]))]
    assert w == pytest.approx(hand, rel=1e-12)
    # Kleinrock's conservation law (Queueing Systems Vol. 2, sec. 3.4): sum rho_k W_k =
    # rho W0 / (1 - rho) for any non-preemptive work-conserving discipline.
    total = rho[-1]
    assert sum(l / mu * wk for l, wk in zip(lams, w)) == pytest.approx(total * w0 / (1 - total))
    # Identical service times: the arrival-weighted mean wait equals FCFS M/M/1.
    fcfs = th.mmc_metrics(sum(lams), mu, 1)["mean_wait"]
    assert np.dot(lams, w) / sum(lams) == pytest.approx(fcfs)
    # A single class is plain M/M/1.
    single = th.mmc_metrics(0.6, 1.0, 1)["mean_wait"]
    assert th.mm1_priority_waits([0.6], 1.0) == pytest.approx([single])


def test_priority_preemptive_resume():
    lams, mu = [0.3, 0.2, 0.4], 2.0
    t = th.mm1_priority_response_times(lams, mu, preemptive=True)
    # The top class does not see lower classes: M/M/1 with its own traffic.
    assert t[0] == pytest.approx(1 / (mu - lams[0]))
    # Classes 0..k together behave as an M/M/1 queue (exponential, identical service): their
    # arrival-weighted mean response equals 1/(mu - sum of their rates).
    for k in range(len(lams)):
        agg = np.dot(lams[:k + 1], t[:k + 1]) / sum(lams[:k + 1])
        assert agg == pytest.approx(1 / (mu - sum(lams[:k + 1])), rel=1e-12)
    w = th.mm1_priority_waits(lams, mu, preemptive=True)
    assert w == pytest.approx([x - 1 / mu for x in t])
    assert w[0] < w[1] < w[2]
    # Non-preemptive response = wait + service.
    assert th.mm1_priority_response_times(lams, mu) == pytest.approx(
        [x + 1 / mu for x in th.mm1_priority_waits(lams, mu)])


def test_priority_per_class_service_rates():
    lams, mus = [0.2, 0.1], [1.0, 0.5]
    w = th.mm1_priority_waits(lams, mus)
    w0 = 0.2 / 1.0**2 + 0.1 / 0.5**2
    s1, s2 = 0.2, 0.2 + 0.2
    assert w == pytest.approx([w0 / (1 - s1), w0 / ((1 - s1) * (1 - s2))])


# ------------------------------------------------------------------------------------------
# Jackson networks
# ------------------------------------------------------------------------------------------

def test_jackson_bolch_example_7_4():
    # Bolch, Greiner, de Meer & Trivedi, Queueing Networks and Markov Chains, Example 7.4
    # (p. 287 of the 1998 edition; also the qnos.m test of Marzolla's Octave queueing package):
    # service times [0.04, 0.03, 0.06, 0.05] s, external arrivals 4/s at node 4.
    routing = [[0, 0.5, 0.5, 0], [1, 0, 0, 0], [0.6, 0, 0, 0], [1, 0, 0, 0]]
    mu = [1 / 0.04, 1 / 0.03, 1 / 0.06, 1 / 0.05]
    df = th.jackson_network([0, 0, 0, 4], mu, 1, routing, names=["cpu", "d1", "d2", "term"])
    assert list(df.index) == ["cpu", "d1", "d2", "term"]
    assert df["arrival_rate"].to_numpy() == pytest.approx([20, 10, 10, 4], abs=1e-9)
    assert df["utilisation"].to_numpy() == pytest.approx([0.8, 0.3, 0.6, 0.2], abs=1e-2)
    assert df["mean_response"].to_numpy() == pytest.approx([0.2, 0.043, 0.15, 0.0625], abs=1e-3)
    assert df["mean_in_system"].to_numpy() == pytest.approx([4, 0.429, 1.5, 0.25], abs=1e-3)
    totals = th.jackson_totals([0, 0, 0, 4], mu, 1, routing)
    assert totals.throughput == pytest.approx(4.0)
    assert totals.mean_in_system == pytest.approx(df["mean_in_system"].sum())
    assert totals.mean_response == pytest.approx(totals.mean_in_system / 4.0)
    # End-to-end response = sum over nodes of visits x per-visit response.
    assert totals.mean_response == pytest.approx((df["visits"] * df["mean_response"]).sum())
    assert df.attrs == {}                                   # results never hide in attrs
    assert totals.as_dict() == dict(mean_in_system=totals.mean_in_system,
                                    mean_response=totals.mean_response, throughput=4.0)


def test_jackson_tandem_is_two_mm1():
    lam = 2.0
    df = th.jackson_network([lam, 0.0], [3.0, 5.0], [1, 1], [[0, 1], [0, 0]], names=["a", "b"])
    for node, mu in (("a", 3.0), ("b", 5.0)):
        mm1 = th.mmc_metrics(lam, mu, 1)
        for key in ("utilisation", "mean_wait", "mean_response", "mean_in_system"):
            assert df.loc[node, key] == pytest.approx(mm1[key])
    tot = th.jackson_totals([lam, 0.0], [3.0, 5.0], [1, 1], [[0, 1], [0, 0]])
    assert tot.mean_response == pytest.approx(1 / (3 - 2) + 1 / (5 - 2))


def test_jackson_single_node_feedback_by_hand():
    # One M/M/1 node, a request returns with probability p: effective rate lambda/(1-p),
    # visits 1/(1-p), end-to-end response = visits x 1/(mu - lambda/(1-p)).
    lam, p, mu = 1.0, 0.5, 3.0
    df = th.jackson_network([lam], [mu], [1], [[p]])
    eff = lam / (1 - p)
    assert df["arrival_rate"].iloc[0] == pytest.approx(eff)
    assert df["visits"].iloc[0] == pytest.approx(1 / (1 - p))
    assert df["utilisation"].iloc[0] == pytest.approx(eff / mu)
    tot = th.jackson_totals([lam], [mu], [1], [[p]])
    assert tot.mean_response == pytest.approx((1 / (1 - p)) / (mu - eff))
    assert list(df.index) == ["node1"]                      # default names as run_trials
    assert th.jackson_traffic([lam], [[p]]) == pytest.approx([eff])


def test_jackson_multiserver_nodes_use_mmc():
    routing = [[0, 0.7, 0.2], [0.1, 0, 0], [0, 0, 0]]
    gamma = [5.0, 1.0, 0.5]
    lam = th.jackson_traffic(gamma, routing)
    # Traffic equations by hand via the linear system (I - P^T) lambda = gamma.
    assert lam == pytest.approx(np.linalg.solve(np.eye(3) - np.array(routing).T, gamma))
    df = th.jackson_network(gamma, [2.0, 1.5, 4.0], [4, 6, 1], routing, names=["web", "app", "db"])
    for i, node in enumerate(df.index):
        m = th.mmc_metrics(lam[i], [2.0, 1.5, 4.0][i], [4, 6, 1][i])
        assert df.loc[node, "p_wait"] == pytest.approx(m["p_wait"])
        assert df.loc[node, "mean_response"] == pytest.approx(m["mean_response"])
    assert isinstance(df, pd.DataFrame) and df.index.name == "service"


# ------------------------------------------------------------------------------------------
# Little's law
# ------------------------------------------------------------------------------------------

def test_littles_law():
    assert th.littles_law(arrival_rate=4.0, mean_response=0.5) == pytest.approx(2.0)
    assert th.littles_law(mean_in_system=2.0, mean_response=0.5) == pytest.approx(4.0)
    assert th.littles_law(mean_in_system=2.0, arrival_rate=4.0) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------
# Fan-out order statistics
# ------------------------------------------------------------------------------------------

def test_fanout_prob_slow_tail_at_scale():
    # Dean & Barroso, "The Tail at Scale", CACM 56(2), 2013: one slow leaf in 100, fan-out to
    # 100 leaves -> 63% of requests are slow; one in 10,000 with 2,000 leaves -> almost
    # 1 in 5 (18%).
    assert th.fanout_prob_slow(100, 0.01) == pytest.approx(0.63, abs=0.005)
    assert th.fanout_prob_slow(2000, 1e-4) == pytest.approx(0.18, abs=0.005)
    assert th.fanout_prob_slow(1, 0.3) == pytest.approx(0.3)
    assert th.fanout_prob_slow(5, 0.0) == 0.0 and th.fanout_prob_slow(5, 1.0) == 1.0


def test_fanout_max_quantile_exponential():
    rate = 2.0
    dist = stats.expon(scale=1 / rate)
    for n in (1, 10, 1000):
        for q in (0.5, 0.99):
            expected = -math.log(1 - q ** (1 / n)) / rate
            assert th.fanout_max_quantile(dist, n, q) == pytest.approx(expected, rel=1e-10)


def test_order_statistic_cdf_is_binomial_sum():
    n = 7
    for k in range(1, n + 1):
        for f in (0.0, 0.1, 0.5, 0.93, 1.0):
            binom_sum = sum(math.comb(n, j) * f**j * (1 - f) ** (n - j) for j in range(k, n + 1))
            assert th.order_statistic_cdf(f, n, k) == pytest.approx(binom_sum, abs=1e-14)
    arr = th.order_statistic_cdf(np.array([0.2, 0.4]), 3, 3)
    assert arr == pytest.approx([0.2**3, 0.4**3])


def test_max_of_exponentials_mean_is_harmonic():
    # Renyi representation (David & Nagaraja, Order Statistics, 3rd ed., sec. 2.5):
    # E[max of n iid Exp(rate)] = H_n / rate; H_10 = 7381/2520.
    assert th.fanout_max_mean_exponential(10, 1.0) == pytest.approx(7381 / 2520, rel=1e-14)
    assert th.fanout_max_mean_exponential(1, 4.0) == pytest.approx(0.25)
    big = 1_000_000
    assert th.fanout_max_mean_exponential(big, 1.0) == pytest.approx(
        math.log(big) + 0.5772156649015329 + 1 / (2 * big), rel=1e-12)


def test_kth_fastest_quantile():
    dist = stats.expon(scale=0.01)
    n = 5
    # k = n is the max; k = 1 (the fastest) of n Exp(rate) is Exp(n rate).
    slowest = th.fanout_max_quantile(dist, n, 0.99)
    assert th.kth_fastest_quantile(dist, n, n, 0.99) == pytest.approx(slowest)
    assert th.kth_fastest_quantile(dist, n, 1, 0.9) == pytest.approx(-math.log(0.1) * 0.01 / n)
    # Majority quorum of 3 (the 2nd fastest): the quantile inverts the order-statistic CDF.
    for q in (0.1, 0.5, 0.999999):
        x = th.kth_fastest_quantile(dist, 3, 2, q)
        assert th.order_statistic_cdf(dist.cdf(x), 3, 2) == pytest.approx(q, rel=1e-9)
    lognorm = stats.lognorm(s=1.0, scale=0.02)
    x = th.kth_fastest_quantile(lognorm, 100, 90, 0.99)
    assert th.order_statistic_cdf(lognorm.cdf(x), 100, 90) == pytest.approx(0.99, rel=1e-9)


# ------------------------------------------------------------------------------------------
# Supermarket model
# ------------------------------------------------------------------------------------------

def test_supermarket_d1_is_mm1():
    for lam in (0.3, 0.9, 0.99):
        assert th.supermarket_mean_response(lam, 1.0, 1) == pytest.approx(1 / (1 - lam))
        for k in (0, 1, 5):
            assert th.supermarket_tail(lam, 1.0, 1, k) == pytest.approx(lam**k)   # M/M/1 P(N >= k)


def test_supermarket_two_choices_values():
    # Mitzenmacher (2001), Theorem 3.6/eq. for T_d: T_d(lambda) = sum_{i>=1} lambda^((d^i-d)/(d-1)).
    # Hand sum at lambda = 1/2, d = 2: 1 + 2^-2 + 2^-6 + 2^-14 + 2^-30 + ...
    hand = sum(Fraction(1, 2 ** (2**i - 2)) for i in range(1, 8))
    assert th.supermarket_mean_response(0.5, 1.0, 2) == pytest.approx(float(hand), rel=1e-15)
    assert th.supermarket_mean_response(0.5, 1.0, 2) == pytest.approx(1.2657, abs=5e-5)
    # At lambda = 0.99 two choices give about 5.43 time units versus 100 for one choice: the
    # paper's "exponential improvement" (series summed independently to 1e-4 here).
    t2 = th.supermarket_mean_response(0.99, 1.0, 2)
    assert t2 == pytest.approx(sum(0.99 ** (2**i - 2) for i in range(1, 40)), rel=1e-12)
    assert t2 == pytest.approx(5.432, abs=1e-3)
    assert th.supermarket_mean_response(0.99, 1.0, 1) == pytest.approx(100.0)
    # d = 3: only a constant factor better than d = 2.
    assert th.supermarket_mean_response(0.99, 1.0, 3) == pytest.approx(
        sum(0.99 ** ((3**i - 3) / 2) for i in range(1, 30)), rel=1e-12)


def test_supermarket_tail_and_little():
    lam, d = 0.9, 2
    tails = [th.supermarket_tail(lam, 1.0, d, k) for k in range(0, 12)]
    assert tails[0] == 1.0
    assert tails[1] == pytest.approx(lam)            # fraction of busy servers = load
    assert tails[2] == pytest.approx(lam**3)         # (d^2 - 1)/(d - 1) = 3
    # Little: mean queue length per server = sum_{k>=1} s_k = lambda * T.
    assert sum(tails[1:]) == pytest.approx(lam * th.supermarket_mean_response(lam, 1.0, d),
                                           rel=1e-12)
    assert th.supermarket_tail(lam, 1.0, 2, 2000) == 0.0  # exponent overflows: no NaN


def test_supermarket_service_rate_scaling():
    # Same utilisation, service rate mu: times scale by 1/mu, tails unchanged.
    mu = 4.0
    assert th.supermarket_mean_response(0.8 * mu, mu, 2) == pytest.approx(
        th.supermarket_mean_response(0.8, 1.0, 2) / mu)
    unit = th.supermarket_tail(0.8, 1.0, 3, 2)
    assert th.supermarket_tail(0.8 * mu, mu, 3, 2) == pytest.approx(unit)


# ------------------------------------------------------------------------------------------
# Universal Scalability Law
# ------------------------------------------------------------------------------------------

def test_usl_throughput_formula():
    assert th.usl_throughput(1, 100.0, 0.1, 0.01) == pytest.approx(100.0)
    assert th.usl_throughput(10, 100.0, 0.0, 0.0) == pytest.approx(1000.0)
    assert th.usl_throughput(np.array([2.0, 4.0]), 1.0, 0.02, 0.02) == pytest.approx(
        [2 / 1.06, 4 / (1 + 0.06 + 0.24)])


def test_fit_usl_published_usl_package_coef_test():
    # usl R package (S. Moeding), tests/coef.R: this data set gives alpha = sigma = 0.02 and
    # beta = kappa = 0.02 (three significant digits).
    fit = th.fit_usl([1, 2, 4, 6, 8, 10], [1, 1.8868, 3.0769, 3.5294, 3.5398, 3.3557])
    assert float(f"{fit.sigma:.3g}") == 0.02
    assert float(f"{fit.kappa:.3g}") == 0.02
    assert fit.gamma == pytest.approx(1.0, abs=1e-3)
    assert fit.r_squared > 0.9999


def test_fit_usl_gunther_raytracer():
    # Ray-tracer benchmark on an SGI Origin 2000 (Gunther, Guerrilla Capacity Planning, 2007,
    # ch. 5; dataset `raytracer` of the usl R package). Published fit (usl tests/confint.Rout.save):
    # alpha (sigma) = 0.0578, beta (kappa) = 0.0000, gamma (lam) = 21.8488.
    procs = [1, 4, 8, 12, 16, 20, 24, 28, 32, 48, 64]
    tput = [20, 78, 130, 170, 190, 200, 210, 230, 260, 280, 310]
    fit = th.fit_usl(procs, tput)
    assert fit.sigma == pytest.approx(0.0578, abs=5e-5)
    assert fit.kappa == 0.0
    assert fit.gamma == pytest.approx(21.8488, abs=5e-5)
    assert math.isinf(fit.peak_concurrency)
    assert fit.peak_throughput == pytest.approx(fit.gamma / fit.sigma)   # Amdahl ceiling


def test_fit_usl_gunther_spec_sdm91():
    # SPEC SDM91 on a 16-CPU Sun SPARCcenter 2000 (Gunther 2007; dataset `specsdm91` of the usl
    # R package). usl tests/peak-scalability.Rout.save: peak at N = 97 (2 significant digits);
    # tests/efficiency.Rout.save: efficiency at N = 1 is X(1)/lam = 64.9/lam = 0.7211.
    load = [1, 18, 36, 72, 108, 144, 216]
    tput = [64.9, 995.9, 1652.4, 1853.2, 1828.9, 1775.0, 1702.2]
    fit = th.fit_usl(load, tput)
    assert float(f"{fit.peak_concurrency:.2g}") == 97
    assert 64.9 / fit.gamma == pytest.approx(0.7211, abs=5e-5)
    assert fit.sigma == pytest.approx(0.0277, abs=5e-5)
    assert fit.kappa == pytest.approx(1.04e-4, abs=5e-7)
    assert fit.peak_concurrency == pytest.approx(math.sqrt((1 - fit.sigma) / fit.kappa))


@pytest.mark.parametrize("lam, sigma, kappa", [(1000.0, 0.02, 1e-4), (50.0, 0.05, 0.0),
                                               (200.0, 0.0, 5e-3)])
def test_fit_usl_recovers_generating_parameters(lam, sigma, kappa):
    n = np.array([1, 2, 4, 8, 16, 32, 48, 64, 96, 128], dtype=float)
    x = th.usl_throughput(n, lam, sigma, kappa)
    fit = th.fit_usl(n, x)
    assert fit.gamma == pytest.approx(lam, rel=1e-6)
    assert fit.sigma == pytest.approx(sigma, rel=1e-5, abs=1e-9)
    assert fit.kappa == pytest.approx(kappa, rel=1e-5, abs=1e-12)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-10)
    if kappa > 0:
        grid = np.linspace(1, 2000, 400_000)
        argmax = grid[np.argmax(th.usl_throughput(grid, lam, sigma, kappa))]
        assert fit.peak_concurrency == pytest.approx(argmax, rel=1e-3)
        at_peak = th.usl_throughput(fit.peak_concurrency, lam, sigma, kappa)
        assert fit.peak_throughput == pytest.approx(at_peak)


def test_fit_usl_noisy_data_within_tolerance():
    rng = np.random.default_rng(20240611)
    n = np.repeat([1, 2, 4, 8, 16, 32, 64, 128], 5).astype(float)
    x = th.usl_throughput(n, 500.0, 0.03, 2e-4) * rng.normal(1.0, 0.01, n.size)
    fit = th.fit_usl(n, x)
    assert fit.sigma == pytest.approx(0.03, abs=0.004)
    assert fit.kappa == pytest.approx(2e-4, rel=0.1)
    assert fit.gamma == pytest.approx(500.0, rel=0.02)
    assert fit.r_squared > 0.99
    assert fit.throughput(8) == pytest.approx(th.usl_throughput(8, fit.gamma, fit.sigma, fit.kappa))
    with pytest.raises(Exception):
        fit.sigma = 0.5   # frozen


# ------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument
# ------------------------------------------------------------------------------------------

ROUTE_OK = [[0, 0.5], [0.2, 0]]


@pytest.mark.parametrize("call, match", [
    (lambda: th.erlang_b_from_load(1.0, 0), "servers"),
    (lambda: th.erlang_b_from_load(1.0, 2.5), "servers"),
    (lambda: th.erlang_b_from_load(1.0, True), "servers"),
    (lambda: th.erlang_b_from_load(1.0, "3"), "servers"),
    (lambda: th.erlang_b_from_load(0.0, 3), "offered_load"),
    (lambda: th.erlang_b_from_load(-1.0, 3), "offered_load"),
    (lambda: th.erlang_b_from_load(float("nan"), 3), "offered_load"),
    (lambda: th.erlang_c_from_load(3.0, 3), "utilisation"),
    (lambda: th.erlang_c_from_load(3.0, -1), "servers"),
    (lambda: th.mmc_metrics(-1.0, 1.0, 2), "arrival_rate"),
    (lambda: th.mmc_metrics(0.0, 1.0, 2), "arrival_rate"),
    (lambda: th.mmc_metrics(1.0, 0.0, 2), "service_rate"),
    (lambda: th.mmc_metrics(1.0, 1.0, 1.5), "servers"),
    (lambda: th.mmc_metrics(1.0, 1.0, False), "servers"),
    (lambda: th.mmc_metrics(2.0, 1.0, 2), "utilisation"),
    (lambda: th.mmc_metrics(5.0, 1.0, 2), r"utilisation .* = 2.5"),
    (lambda: th.mmc_prob_wait_exceeds(1.0, 1.0, 2, -1.0), "wait_within must"),
    (lambda: th.mmc_wait_quantile(1.0, 1.0, 2, 1.0), "q must"),
    (lambda: th.mmc_wait_quantile(1.0, 1.0, 2, 0.0), "q must"),
    (lambda: th.mmc_response_quantile(1.0, 1.0, 2, 1.5), "q must"),
    (lambda: th.mmc_response_quantile(3.0, 1.0, 2, 0.5), "utilisation"),
    (lambda: th.mmc_response_survival(1.0, 1.0, 2, -0.1), "t must"),
    (lambda: th.servers_for_wait_probability(1.0, 1.0, 0.0), "target"),
    (lambda: th.servers_for_wait_probability(1.0, 1.0, 1.0), "target"),
    (lambda: th.servers_for_wait_probability(-1.0, 1.0, 0.2), "arrival_rate"),
    (lambda: th.servers_for_mean_wait(1.0, 1.0, 0.0), "target_wait"),
    (lambda: th.servers_for_mean_wait(1.0, -2.0, 1.0), "service_rate"),
    (lambda: th.servers_for_service_level(1.0, 1.0, -1.0, 0.9), "wait_within must"),
    (lambda: th.servers_for_service_level(1.0, 1.0, 1.0, 1.2), "fraction"),
    (lambda: th.servers_for_service_level(1.0, 1.0, 1.0, 1.0), "fraction"),
    (lambda: th.servers_for_wait_probability_from_load(0.0, 0.2), "offered_load"),
    (lambda: th.erlang_c(2.0, 1.0, 2), "utilisation"),
    (lambda: th.erlang_b(1.0, 0.0, 2), "service_rate"),
    (lambda: th.erlang_c_from_load(1e12, 10**13), "MAX_OFFERED_LOAD"),
    (lambda: th.servers_for_wait_probability(1e12, 1.0, 0.05), "MAX_OFFERED_LOAD"),
    (lambda: th.mmc_metrics(1e12, 1.0, 10**13), "MAX_OFFERED_LOAD"),
    (lambda: th.mmc_metrics(1.0, 2.0, 1, quantiles=[1.5]), "quantiles"),
    (lambda: th.square_root_staffing(0.0, 1.0), "offered_load"),
    (lambda: th.square_root_staffing(10.0, -1.0), "beta"),
    (lambda: th.halfin_whitt_beta(0.0), "p_wait"),
    (lambda: th.halfin_whitt_beta(1.0), "p_wait"),
    (lambda: th.halfin_whitt_alpha(0.0), "beta"),
    (lambda: th.mg1_mean_wait(1.0, 1 / 1.0, service_scv=0.5), "utilisation"),
    (lambda: th.mg1_mean_wait(1.0, 1 / 0.5, service_scv=-0.5), "service_scv"),
    (lambda: th.mg1_mean_wait(1.0, -2.0, service_scv=0.5), "service_rate"),
    (lambda: th.mg1_metrics(0.0, 1 / 0.5, service_scv=1.0), "arrival_rate"),
    (lambda: th.kingman_wait(1.0, 1.0, arrival_scv=1.0, service_scv=1.0), "utilisation"),
    (lambda: th.kingman_wait(0.5, 1.0, arrival_scv=-1.0, service_scv=1.0), "arrival_scv"),
    (lambda: th.kingman_wait(0.5, 1.0, arrival_scv=1.0, service_scv=-1.0), "service_scv"),
    (lambda: th.mm1_priority_waits([0.5, 0.6], 1.0), "utilisation"),
    (lambda: th.mm1_priority_waits([0.5, -0.1], 1.0), r"arrival_rates\[1\]"),
    (lambda: th.mm1_priority_waits([0.5, 0.1], [1.0, 1.0, 1.0]), "service_rate"),
    (lambda: th.mm1_priority_waits([0.5, 0.1], 0.0), "service_rate"),
    (lambda: th.mm1_priority_waits([], 1.0), "arrival_rates"),
    (lambda: th.jackson_traffic([1.0, 1.0], [[0, 1.2], [0, 0]]), "routing row 0"),
    (lambda: th.jackson_traffic([1.0, 1.0], [[0, -0.2], [0, 0]]), r"routing\[0\]\[1\]"),
    (lambda: th.jackson_traffic([1.0, 1.0], [[0, 1.0], [1.0, 0]]), "spectral radius"),
    (lambda: th.jackson_traffic([1.0, 0.0, 0.0], [[0, 1, 0], [0, 0, 1], [0, 1, 0]]),
     "spectral radius"),
    (lambda: th.jackson_traffic([1.0, 1.0], [[0, 0.5, 0], [0, 0, 0]]), "square"),
    (lambda: th.jackson_traffic([1.0, 1.0, 1.0], ROUTE_OK), "3 nodes"),
    (lambda: th.jackson_traffic([1.0, -1.0], ROUTE_OK), r"external_rates\[1\]"),
    (lambda: th.jackson_traffic([0.0, 0.0], ROUTE_OK), "external_rates"),
    (lambda: th.jackson_network([1.0, 1.0], [1.0], 2, ROUTE_OK), "service_rates"),
    (lambda: th.jackson_network([1.0, 1.0], [1.0, -1.0], 2, ROUTE_OK), r"service_rates\[1\]"),
    (lambda: th.jackson_network([1.0, 1.0], 5.0, [1, 2, 3], ROUTE_OK), "servers"),
    (lambda: th.jackson_network([1.0, 1.0], 5.0, [1, 2.5], ROUTE_OK), r"servers\[1\]"),
    (lambda: th.jackson_network([1.0, 1.0], 5.0, 1, ROUTE_OK, names=["a"]), "names"),
    (lambda: th.jackson_network([1.0, 1.0], 5.0, 1, ROUTE_OK, names=["a", "a"]), "names"),
    (lambda: th.jackson_network([1.0, 4.0], [5.0, 4.0], 1, ROUTE_OK, names=["web", "db"]),
     r"utilisation of node 'db'"),
    (lambda: th.jackson_totals([1.0, 1.0], 0.0, 1, ROUTE_OK), "service_rates"),
    (lambda: th.littles_law(mean_in_system=1.0), "exactly two"),
    (lambda: th.littles_law(mean_in_system=1.0, arrival_rate=1.0, mean_response=1.0),
     "exactly two"),
    (lambda: th.littles_law(mean_in_system=-1.0, mean_response=1.0), "mean_in_system must"),
    (lambda: th.littles_law(mean_in_system=1.0, mean_response=0.0), "mean_response must"),
    (lambda: th.littles_law(mean_in_system=1.0, arrival_rate=0.0), "arrival_rate"),
    (lambda: th.littles_law(arrival_rate=-1.0, mean_response=1.0), "arrival_rate"),
    (lambda: th.fanout_prob_slow(0, 0.1), "n must"),
    (lambda: th.fanout_prob_slow(10, 1.5), "p must"),
    (lambda: th.fanout_prob_slow(10, -0.1), "p must"),
    (lambda: th.fanout_max_quantile(stats.expon(), 3, 1.0), "q must"),
    (lambda: th.fanout_max_quantile("expon", 3, 0.5), "dist"),
    (lambda: th.fanout_max_quantile(stats.expon(), 2.5, 0.5), "n must"),
    (lambda: th.order_statistic_cdf(0.5, 3, 4), "k must"),
    (lambda: th.order_statistic_cdf(0.5, 3, 0), "k must"),
    (lambda: th.order_statistic_cdf(1.5, 3, 1), "F must"),
    (lambda: th.fanout_max_mean_exponential(3, 0.0), "rate"),
    (lambda: th.fanout_max_mean_exponential(0, 1.0), "n must"),
    (lambda: th.kth_fastest_quantile(stats.expon(), 3, 4, 0.5), "k must"),
    (lambda: th.kth_fastest_quantile(stats.expon(), 3, 2, 0.0), "q must"),
    (lambda: th.supermarket_tail(1.0, 1.0, 2, 1), "utilisation"),
    (lambda: th.supermarket_tail(0.5, 1.0, 0, 1), "d must"),
    (lambda: th.supermarket_tail(0.5, 1.0, 2, -1), "k must"),
    (lambda: th.supermarket_mean_response(0.5, 0.0, 2), "service_rate"),
    (lambda: th.supermarket_mean_response(-0.5, 1.0, 2), "arrival_rate_per_queue"),
    (lambda: th.usl_throughput(0, 1.0, 0.1, 0.1), "n"),
    (lambda: th.usl_throughput(2, 0.0, 0.1, 0.1), "gamma"),
    (lambda: th.usl_throughput(2, 1.0, -0.1, 0.1), "sigma"),
    (lambda: th.usl_throughput(2, 1.0, 0.1, -0.1), "kappa"),
    (lambda: th.fit_usl([1, 2], [1.0, 1.9]), "at least 3"),
    (lambda: th.fit_usl([1, 2, 4], [1.0, 1.9]), "same length"),
    (lambda: th.fit_usl([1, 2, 4], [1.0, -1.9, 3.0]), r"throughput\[1\]"),
    (lambda: th.fit_usl([1, 0, 4], [1.0, 1.9, 3.0]), r"concurrency\[1\]"),
    (lambda: th.fit_usl([1, 2, 4], [1.0, float("inf"), 3.0]), r"throughput\[1\]"),
    (lambda: th.fit_usl([2, 2, 2, 4], [1.0, 1.1, 1.0, 3.0]), "distinct"),
    (lambda: th.fit_usl("1,2,3", [1.0, 1.9, 3.0]), "concurrency"),
])
def test_invalid_input_raises_value_error_naming_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_accepted_integer_types():
    # numpy integers and integral floats are servers; bools are not (tested above).
    assert th.erlang_b_from_load(5.0, np.int64(10)) == th.erlang_b_from_load(5.0, 10)
    assert th.erlang_b_from_load(np.float32(5.0), 10.0) == pytest.approx(
        th.erlang_b_from_load(5.0, 10))
    assert th.mmc_metrics(np.float64(1.0), 2, np.int32(1))["utilisation"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------
# One vocabulary (issue 9): argument order, offered-load variants, shared metric names
# ------------------------------------------------------------------------------------------

def test_rate_and_load_forms_agree_and_old_order_fails_loudly():
    # erlang_b/erlang_c take (arrival_rate, service_rate, servers) like mmc_metrics.
    assert th.erlang_c(9.0, 5.0, 4) == pytest.approx(float(erlang_c_exact(4, Fraction(9, 5))),
                                                      rel=1e-12)
    assert th.erlang_c(9.0, 5.0, 4) == th.erlang_c_from_load(9.0 / 5.0, 4)
    assert th.erlang_c(9.0, 5.0, 4) == th.mmc_metrics(9.0, 5.0, 4)["p_wait"]
    assert th.erlang_b(10.0, 2.0, 10) == th.erlang_b_from_load(5.0, 10)
    with pytest.raises(TypeError):
        th.erlang_c(10, 5.0)          # the old (servers, offered_load) call is an error now
    with pytest.raises(TypeError):
        th.mg1_mean_wait(8.0, 0.1, 1.0)        # scv is a keyword: an old (mean_service) call fails
    with pytest.raises(TypeError):
        th.supermarket_mean_response(0.8, 2)   # (arrival_rate_per_queue, service_rate, d)


def test_staffing_by_service_level_and_by_offered_load():
    lam, mu = 100.0, 1.0
    for t, fraction in [(0.0, 0.8), (0.05, 0.8), (0.2, 0.95), (1.0, 0.99)]:
        c = th.servers_for_service_level(lam, mu, t, fraction)
        # independent: the service level from the exact Erlang C definition
        def level(k):
            return 1 - float(erlang_c_exact(k, Fraction(100))) * math.exp(-(k * mu - lam) * t)
        assert level(c) >= fraction and level(c - 1) < fraction
    # wait_within = 0: "fraction served at once" is P(wait) <= 1 - fraction
    assert (th.servers_for_service_level(lam, mu, 0.0, 0.8)
            == th.servers_for_wait_probability(lam, mu, 0.2))
    for a in (0.3, 1.8, 100.0, 2500.0):
        assert (th.servers_for_wait_probability_from_load(a, 0.1)
                == th.servers_for_wait_probability(a * 3.0, 3.0, 0.1))


def test_mmc_metrics_use_the_simulation_metric_names_and_quantiles():
    m = th.mmc_metrics(24.0, 10.0, 3)
    assert {"utilisation", "p_wait", "mean_wait", "mean_response", "mean_queue_length",
            "mean_in_system", "p50_response", "p95_response", "p99_response"} <= set(m)
    for q in th.RESPONSE_QUANTILES:
        assert m[th.quantile_name(q)] == th.mmc_response_quantile(24.0, 10.0, 3, q)
    assert th.quantile_name(0.999) == "p99.9_response"
    m2 = th.mmc_metrics(24.0, 10.0, 3, quantiles=[0.9])
    assert "p90_response" in m2 and "p99_response" not in m2


def test_usl_fit_reports_gamma_and_the_scalability_limit():
    fit = th.fit_usl([1, 2, 4, 6, 8, 10], [1.0, 1.8868, 3.0769, 3.5294, 3.5398, 3.3557])
    assert not hasattr(fit, "lam")
    assert fit.contention_ceiling == pytest.approx(fit.gamma / fit.sigma)
    grid = np.linspace(1, 200, 20000)
    assert fit.throughput(grid).max() <= fit.peak_throughput * (1 + 1e-9)
    assert fit.peak_throughput < fit.contention_ceiling


# ------------------------------------------------------------------------------------------
# Absurd sizes answer fast (issue 8.5): bounded by the algorithm's step count, not wall time
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, c", [(5.0, 10**10), (1e10, 10**10 + 50_000), (1e10, 10**10 - 10**6),
                                  (1e6, 10**12), (3.0, 10**15)])
def test_erlang_recursion_steps_are_bounded_whatever_the_servers(a, c):
    b, steps = th._erlang_b_steps(a, c)
    assert steps <= th._burn_in(a) + 1          # O(sqrt(load)) steps, not O(servers)
    assert 0.0 <= b <= 1.0
    if c > a:
        assert 0.0 <= th.erlang_c_from_load(a, c) <= 1.0


def test_erlang_huge_values_are_accurate():
    # Started from the Poisson hazard below c, the contraction reproduces the full recursion.
    for a, c in [(4_000.0, 5_000), (9_000.0, 9_100), (20_000.0, 19_000)]:
        b, steps = th._erlang_b_steps(a, c)
        assert steps < c                                    # really started below c
        exact = stats.poisson.pmf(c, a) / stats.poisson.cdf(c, a)
        assert b == pytest.approx(exact, rel=1e-9)
    # Halfin-Whitt: C(R + beta sqrt(R)) -> alpha(beta) as R -> infinity (error O(1/sqrt(R))).
    r = 1e10
    c = int(r + 1.0 * math.sqrt(r))
    assert th.erlang_c_from_load(r, c) == pytest.approx(th.halfin_whitt_alpha(1.0), abs=1e-4)
    assert th.erlang_c(5.0, 1.0, 10**10) == 0.0
    assert th.erlang_b(1.0, 1.0, 10**12) == 0.0


def test_staffing_huge_loads_is_step_bounded_and_matches_halfin_whitt():
    a = 1e10
    target = 0.05
    c, steps = th._staff_steps(a, lambda k, b: th._c_from_b(b, a, k) <= target)
    beta = th.halfin_whitt_beta(target)
    assert abs(c - (a + beta * math.sqrt(a))) <= 0.01 * math.sqrt(a)
    assert steps <= th._burn_in(a) + 2 * beta * math.sqrt(a) + 10
    assert th.servers_for_wait_probability(a, 1.0, target) == c
