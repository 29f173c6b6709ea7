"""Service-graph description, validation (bad input), traffic equations and ciw compilation."""
from __future__ import annotations

import math
import random

import ciw
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import theory
from analysis.topology import (
    Arrivals, CustomerClass, Deterministic, Empirical, Exponential, Gamma, HyperExponential,
    Lognormal, Mixture, Pool, RateSchedule, Retry, Service, ServiceGraph, Uniform, _PoolState,
    two_point,
)


def svc(name, rate=10.0, servers=1, **kw):
    return Service(name, servers, Exponential(rate=rate), **kw)


def shop(**kw):
    """A small shop: frontend -> catalog / checkout, checkout -> payments."""
    base = dict(
        services=[svc("frontend", 100.0, 2), svc("catalog", 80.0), svc("checkout", 50.0),
                  svc("payments", 40.0)],
        arrivals={"frontend": 60.0},
        routing={"frontend": {"catalog": 0.6, "checkout": 0.3},
                 "checkout": {"payments": 0.8}},
    )
    base.update(kw)
    return ServiceGraph(**base)


# ----------------------------------------------------------------------------------------------
# distribution specs
# ----------------------------------------------------------------------------------------------

def _samples(spec, n=40_000, seed=11):
    ciw.seed(seed)
    d = spec.to_ciw()
    return np.array([d.sample() for _ in range(n)])


@pytest.mark.parametrize("spec", [
    Exponential(rate=4.0), Gamma(0.5, scv=0.25), Gamma(0.2, scv=3.0), Uniform(low=0.1, high=0.3),
    HyperExponential(0.25, scv=5.0), Lognormal(0.1, scv=0.5), Deterministic(0.7),
    Empirical([0.1, 0.2, 0.6]), Mixture([Exponential(rate=10.0), Deterministic(0.5)], [0.8, 0.2]),
    two_point(0.1, 0.3, p_high=0.25), Mixture([Gamma(0.2, scv=0.5), Lognormal(1.0, scv=0.3)]),
])
def test_spec_mean_and_scv_match_samples(spec):
    x = _samples(spec)
    se = x.std() / math.sqrt(x.size)
    assert abs(x.mean() - spec.mean) <= 4 * se + 1e-12
    # sample SCV within 10 % (plenty of samples for these light-tailed / moderate cases)
    scv = x.var() / x.mean() ** 2
    assert scv == pytest.approx(spec.scv, rel=0.1, abs=1e-9)


def test_spec_scipy_equivalents():
    for spec in (Exponential(rate=3.0), Gamma(2.0, scv=0.5), Lognormal(1.5, scv=2.0),
                 Uniform(low=1.0, high=3.0)):
        d = spec.scipy()
        assert d.mean() == pytest.approx(spec.mean, rel=1e-9)
        assert d.var() / d.mean() ** 2 == pytest.approx(spec.scv, rel=1e-9)


@pytest.mark.parametrize("spec", [Exponential(0.01), Exponential(rate=3.7), Gamma(0.02, scv=0.3),
                                  Gamma(5.0, shape=4), Gamma(0.3, scv=7.0), Lognormal(0.01, scv=2.0),
                                  Lognormal(2.0, sigma=1.3)], ids=repr)
def test_closed_forms_are_scipy_stats_bit_for_bit(spec):
    # cdf/sf/ppf/isf avoid importing scipy.stats but must give its numbers exactly, edges included
    xs = np.r_[-1.0, 0.0, np.geomspace(1e-6, 1e4, 200), np.inf, np.nan]
    qs = np.r_[-0.1, 0.0, 1e-300, np.linspace(1e-12, 1 - 1e-12, 201), 1.0, 1.1, np.nan]
    frozen = spec.scipy()
    for method, args in (("cdf", xs), ("sf", xs), ("ppf", qs), ("isf", qs)):
        ours, theirs = getattr(spec, method)(args), getattr(frozen, method)(args)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{spec!r}.{method}")
        for v in args[::23]:
            one = getattr(spec, method)(v)
            assert np.ndim(one) == 0
            assert one == getattr(frozen, method)(v) or (np.isnan(one) and np.isnan(getattr(frozen, method)(v)))
    mix = HyperExponential(1.0, scv=4.0)        # its components are Exponential specs now
    p, r1, r2 = mix._params
    assert mix.sf(0.7) == p * stats.expon(scale=1 / r1).sf(0.7) + (1 - p) * stats.expon(scale=1 / r2).sf(0.7)


def test_common_paths_do_not_import_scipy_stats():
    # scipy.stats costs about 1 CPU-s of imports per notebook; closed forms, t-intervals and coverage
    # verdicts use scipy.special instead
    import subprocess
    import sys
    code = (
        "import sys\n"
        "from analysis import call_chains, theory, validation\n"
        "from analysis.simulation import run_trials\n"
        "from analysis.topology import Exponential, Lognormal, Gamma, ServiceGraph, Service\n"
        "Lognormal(0.01, scv=2.0).isf(1e-3); Gamma(1.0, scv=0.5).cdf(0.3); Exponential(2.0).ppf(0.99)\n"
        "call_chains.chain_response(5.0, 10.0, 3); call_chains.hypoexponential_quantile([2.0, 2.0], 0.9)\n"
        "theory.halfin_whitt_alpha(0.5); validation.coverage_verdict(17, 20)\n"
        "g = ServiceGraph([Service('a', 1, Exponential(rate=10.0))], {'a': 5.0})\n"
        "run_trials(g, replications=3, horizon=50.0, seed=1)\n"
        "assert 'scipy.stats' not in sys.modules, 'scipy.stats was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("make, culprit", [
    (lambda: Exponential(rate=0.0), "Exponential rate"),
    (lambda: Exponential(rate=-2.0), "Exponential rate"),
    (lambda: Exponential(rate=float("nan")), "Exponential rate"),
    (lambda: Exponential(rate="fast"), "Exponential rate"),
    (lambda: Deterministic(-1.0), "Deterministic mean"),
    (lambda: Exponential(0.0), "Exponential mean"),
    (lambda: Exponential(), "exactly one of mean, rate"),
    (lambda: Exponential(0.5, rate=2.0), "exactly one of mean, rate"),
    (lambda: Uniform(1.0), "Uniform: give mean with scv"),
    (lambda: Uniform(1.0, scv=0.5), "Uniform scv must be <= 1/3"),
    (lambda: Gamma(1.0, scv=0.5, shape=2.0), "scv or shape"),
    (lambda: Gamma(shape=2.0), "shape and rate"),
    (lambda: Gamma(shape=0.0, rate=1.0), "Gamma shape"),
    (lambda: Lognormal(1.0, scv=1.0, sigma=1.0), "scv or sigma"),
    (lambda: Mixture([Exponential(1.0)], [0.5]), "sum to 1"),
    (lambda: Mixture([Exponential(1.0), 2.0], [0.5]), "2 components"),
    (lambda: Mixture([Exponential(1.0), "slow"], [0.5, 0.5]), r"components\[1\]"),
    (lambda: Mixture([Exponential(1.0), 1.0], [0.5, -0.5]), r"weights\[1\]"),
    (lambda: Mixture(Exponential(1.0)), "sequence"),
    (lambda: Mixture([]), "at least one"),
    (lambda: two_point(0.01, 1.0, 1.5), "p_high"),
    (lambda: Uniform(low=2.0, high=1.0), "Uniform high"),
    (lambda: Uniform(low=-1.0, high=1.0), "Uniform low"),
    (lambda: Gamma(1.0, scv=0.0), "Gamma scv"),
    (lambda: Gamma(-1.0), "Gamma mean"),
    (lambda: Lognormal(0.0, scv=1.0), "Lognormal mean"),
    (lambda: HyperExponential(1.0, scv=0.5), "HyperExponential scv"),
    (lambda: Empirical([]), "Empirical values"),
    (lambda: Empirical([0.1, -0.2]), "Empirical values"),
    (lambda: Empirical([0.0, 0.0]), "Empirical values"),
])
def test_malformed_distributions_are_named(make, culprit):
    with pytest.raises(ValueError, match=culprit):
        make()


# ----------------------------------------------------------------------------------------------
# services and graph structure
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(servers=0), "service 'api': servers"),
    (dict(servers=1.5), "service 'api': servers"),
    (dict(servers=True), "service 'api': servers"),
    (dict(service_time=None), "service 'api': service_time is required"),
    (dict(service_time=0.05), "service 'api': service_time must be a distribution spec"),
    (dict(service_time=ciw.dists.Exponential(3.0)), "service 'api': service_time must be"),
    (dict(service_time={"gold": "fast"}), r"service 'api': service_time\['gold'\]"),
    (dict(queue_capacity=-1), "service 'api': queue_capacity"),
    (dict(schedule=[]), "service 'api': schedule must not be empty"),
    (dict(schedule=[(2, 10.0), (1, 5.0)]), "schedule end times must increase"),
    (dict(schedule=[(0, 10.0)]), "never has a server"),
    (dict(schedule=[(2,)]), r"schedule\[0\]"),
    (dict(timeout=0.0), "service 'api': timeout must be > 0"),
    (dict(timeout="soon"), "service 'api': timeout"),
    (dict(retry=3), "service 'api': retry must be a Retry"),
])
def test_bad_service_inputs(kwargs, match):
    base = dict(name="api", servers=1, service_time=Exponential(rate=10.0))
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Service(**base)


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_retries=-1), "Retry max_retries"),
    (dict(multiplier=0.5), "Retry multiplier"),
    (dict(backoff=-1.0), "Retry backoff"),
    (dict(on=("crash",)), "Retry on"),
])
def test_bad_retry(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Retry(**kwargs)


def test_unknown_names_are_named():
    with pytest.raises(ValueError, match="routing from 'frontend': unknown destination 'search'"):
        shop(routing={"frontend": {"search": 0.5}})
    with pytest.raises(ValueError, match="routing source 'cart' is not a service"):
        shop(routing={"cart": {"checkout": 0.5}})
    with pytest.raises(ValueError, match="arrivals target 'gateway' is not a service or pool"):
        shop(arrivals={"gateway": 10.0})
    with pytest.raises(ValueError, match=r"pool 'web': member\(s\) \['web-9'\] are not services"):
        ServiceGraph([svc("web-1"), svc("web-2")], [Arrivals("web", rate=1.0)],
                     pools=[Pool("web", ["web-1", "web-9"])])
    with pytest.raises(ValueError, match=r"duplicate service name\(s\): \['catalog'\]"):
        shop(services=[svc("frontend", 100.0, 2), svc("catalog"), svc("catalog"), svc("checkout"),
                       svc("payments")])
    with pytest.raises(ValueError, match=r"undeclared class\(es\) \['gold'\]"):
        shop(arrivals=[Arrivals("frontend", rate=5.0, customer_class="gold")],
             classes=[CustomerClass("silver")])


def test_routing_rows_and_probabilities():
    with pytest.raises(ValueError, match=r"routing from 'frontend': probabilities sum to 1.2 > 1"):
        shop(routing={"frontend": {"catalog": 0.7, "checkout": 0.5}})
    with pytest.raises(ValueError, match=r"'frontend' -> 'catalog' must be in \[0, 1\]"):
        shop(routing={"frontend": {"catalog": -0.1}})
    with pytest.raises(ValueError, match=r"'frontend' -> 'catalog' must be in \[0, 1\]"):
        shop(routing={"frontend": {"catalog": 1.5}})
    with pytest.raises(ValueError,
                       match="routing probability 'frontend' -> 'catalog' must be a number"):
        shop(routing={"frontend": {"catalog": "half"}})
    with pytest.raises(ValueError, match=r"routing traps requests: .*\['catalog', 'checkout'\]"):
        shop(routing={"catalog": {"checkout": 1.0}, "checkout": {"catalog": 1.0}})
    # a string row means probability 1
    g = shop(routing={"frontend": "catalog"})
    assert g.routing == {"frontend": {"catalog": 1.0}}


def test_pool_validation():
    members = ["w1", "w2", "w3"]
    with pytest.raises(ValueError, match="pool 'web': unknown policy 'fastest'"):
        Pool("web", members, policy="fastest")
    with pytest.raises(ValueError, match="pool 'web': d=4 is larger than the pool"):
        Pool("web", members, policy="power_of_d", d=4)
    with pytest.raises(ValueError, match="pool 'web': members must not be empty"):
        Pool("web", [])
    with pytest.raises(ValueError, match="pool 'w1' has the same name as a service"):
        ServiceGraph([svc(m) for m in members], [Arrivals("w1", rate=1.0)],
                     pools=[Pool("w1", members)])
    with pytest.raises(ValueError, match="enters both 'web' and 'w1'"):
        ServiceGraph([svc(m) for m in members],
                     [Arrivals("web", rate=1.0), Arrivals("w1", rate=1.0)],
                     pools=[Pool("web", members)])


@pytest.mark.parametrize("kwargs, match", [
    (dict(rate=0.0), "rate must be > 0"),
    (dict(rate=-5.0), "rate must be > 0"),
    (dict(rate=None), "exactly one of rate"),
    (dict(rate=1.0, interarrival=Exponential(rate=1.0)), "exactly one of rate"),
    (dict(rate=None, interarrival=Deterministic(0.0)), "interarrival mean must be > 0"),
])
def test_bad_arrivals(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Arrivals("frontend", **kwargs)


def test_classes_and_per_class_service_times():
    g = ServiceGraph(
        [Service("api", 1, {"gold": Exponential(rate=20.0), "bronze": Exponential(rate=10.0)})],
        [Arrivals("api", rate=3.0, customer_class="gold"),
         Arrivals("api", rate=4.0, customer_class="bronze")],
        classes={"gold": 0, "bronze": 5})
    t = g.traffic()
    assert t.loc["api", "utilisation"] == pytest.approx(3 / 20 + 4 / 10)
    with pytest.raises(ValueError,
                       match=r"service 'api': no service_time for class\(es\) \['bronze'\]"):
        ServiceGraph([Service("api", 1, {"gold": Exponential(rate=20.0)})],
                     [Arrivals("api", rate=3.0, customer_class="gold"),
                      Arrivals("api", rate=4.0, customer_class="bronze")])
    with pytest.raises(ValueError, match="two arrival streams for class 'gold'"):
        ServiceGraph([svc("api")], [Arrivals("api", rate=1.0, customer_class="gold"),
                                    Arrivals("api", rate=2.0, customer_class="gold")])


# ----------------------------------------------------------------------------------------------
# traffic equations and stability
# ----------------------------------------------------------------------------------------------

def test_traffic_matches_jackson_network_with_feedback():
    g = ServiceGraph(
        [svc("front", 5.0, 2), svc("app", 8.0), svc("db", 10.0)], {"front": 4.0},
        routing={"front": {"app": 0.9}, "app": {"db": 0.5, "front": 0.2}, "db": {"app": 0.3}})
    t = g.traffic()
    ref = theory.jackson_network([4.0, 0, 0], [5.0, 8.0, 10.0], [2, 1, 1], g.routing_matrix(),
                                 names=g.names)
    np.testing.assert_allclose(t["arrival_rate"], ref["arrival_rate"], rtol=1e-12)
    np.testing.assert_allclose(t["utilisation"], ref["utilisation"], rtol=1e-12)


def test_overload_error_names_the_service_with_numbers():
    with pytest.raises(ValueError) as err:
        shop(arrivals={"frontend": 60.0},
             routing={"frontend": {"checkout": 56 / 60}}).check()
    msg = str(err.value)
    assert msg.startswith("service 'checkout': utilisation 1.12 >= 1 (arrival 56 req/s, "
                          "capacity 50 req/s)")
    assert "allow_overload=True" in msg
    # overload reached only through feedback (traffic equations, not the external rate)
    g = ServiceGraph([svc("api", 5.0)], {"api": 4.0}, routing={"api": {"api": 0.3}})
    with pytest.raises(ValueError, match=r"service 'api': utilisation 1.14 >= 1 \(arrival 5.714"):
        g.check()
    assert g.check(allow_overload=True).loc["api", "utilisation"] == pytest.approx(4 / 0.7 / 5)


def test_pool_splits_in_traffic_equations():
    members = [Service("big", 4, Exponential(rate=1.0)), Service("small", 1, Exponential(rate=1.0))]
    for policy, expected in (("random", [0.5, 0.5]), ("round_robin", [0.5, 0.5]),
                             ("capacity_weighted", [0.8, 0.2]), ("jsq", [0.8, 0.2])):
        g = ServiceGraph(members, [Arrivals("pool", rate=2.0)],
                         pools=[Pool("pool", ["big", "small"], policy)])
        np.testing.assert_allclose(g.traffic()["arrival_rate"], np.array(expected) * 2.0)
    g = ServiceGraph(members, [Arrivals("pool", rate=2.0)], pools=[Pool("pool", ["big", "small"])])
    with pytest.raises(ValueError, match="service 'small': utilisation 1 >= 1"):
        g.check()


def test_schedule_mean_servers_and_capacity():
    s = Service("api", 1, Exponential(rate=2.0), schedule=[(1, 100.0), (3, 200.0), (2, 400.0)])
    assert s.mean_servers == pytest.approx((100 + 300 + 400) / 400)
    g = ServiceGraph([s], {"api": 3.0})
    assert g.traffic().loc["api", "utilisation"] == pytest.approx(3.0 / (2.0 * 2.0))


# ----------------------------------------------------------------------------------------------
# rate schedules
# ----------------------------------------------------------------------------------------------

def test_rate_schedule_from_series_and_integral():
    idx = pd.date_range("2024-01-01", periods=4, freq="h")
    s = pd.Series([10.0, 20.0, 0.0, 5.0], index=idx)
    rs = RateSchedule.from_series(s, time_scale=1 / 3600)     # one hour per simulated second
    assert rs.starts == (0.0, 1.0, 2.0, 3.0)
    assert rs.integral(0.0, 4.0) == pytest.approx(35.0)
    assert rs.mean_rate(0.5, 2.5) == pytest.approx((5 + 20 + 0) / 2.0)
    periodic = RateSchedule((0.0, 1.0), (2.0, 6.0), period=3.0)
    assert periodic.integral(0.0, 6.0) == pytest.approx(2 * (2 + 12))
    assert periodic.rate_at(4.5) == 6.0


@pytest.mark.parametrize("make, match", [
    (lambda: RateSchedule((1.0, 2.0), (1.0, 1.0)), r"starts\[0\] must be 0"),
    (lambda: RateSchedule((0.0, 0.0), (1.0, 1.0)), "strictly increasing"),
    (lambda: RateSchedule((0.0, 1.0), (1.0, -1.0)), r"rates\[1\] must be finite and >= 0"),
    (lambda: RateSchedule((0.0, 1.0), (0.0, 0.0)), "must not all be zero"),
    (lambda: RateSchedule((0.0, 1.0), (1.0,)), "as many starts as rates"),
    (lambda: RateSchedule((0.0, 5.0), (1.0, 1.0), period=5.0), "period must be >"),
    (lambda: RateSchedule.from_series([1.0, 2.0]), "needs a pandas Series"),
    (lambda: RateSchedule.from_series(pd.Series([1.0, np.nan])), "rate at 1 must be finite"),
    (lambda: RateSchedule.from_series(pd.Series([1.0], index=["a"])), "index must be times"),
])
def test_bad_rate_schedules(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_piecewise_poisson_counts_per_interval():
    """Inversion sampling: counts in each interval are Poisson(rate x length) (4 sigma)."""
    rs = RateSchedule((0.0, 10.0, 30.0), (5.0, 0.0, 20.0), period=40.0)
    d = rs.to_ciw()
    random.seed(3)
    t, times = 0.0, []
    while t < 4000.0:
        t += d.sample(t=t)
        times.append(t)
    times = np.array(times[:-1])
    phase = times % 40.0
    for lo, hi, rate in ((0, 10, 5.0), (10, 30, 0.0), (30, 40, 20.0)):
        n = np.count_nonzero((phase >= lo) & (phase < hi))
        expected = rate * (hi - lo) * 100
        assert abs(n - expected) <= 4 * math.sqrt(expected) if expected else n == 0


# ----------------------------------------------------------------------------------------------
# balancers (unit level, on stand-in nodes)
# ----------------------------------------------------------------------------------------------

class _Node:
    def __init__(self, i, n):
        self.id_number, self.number_of_individuals = i, n


def _pool(policy, loads, d=2, weights=None):
    state = _PoolState(policy, list(range(1, len(loads) + 1)), d, weights or [1.0] * len(loads))
    state.nodes = [None] + [_Node(i + 1, n) for i, n in enumerate(loads)]
    return state


def test_balancer_choices():
    random.seed(5)
    jsq = _pool("jsq", [3, 1, 4, 1, 5])
    picks = {jsq.choose().id_number for _ in range(200)}
    assert picks == {2, 4}                                   # the two shortest, ties at random
    rr = _pool("round_robin", [9, 9, 9])
    assert [rr.choose().id_number for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]
    pod = _pool("power_of_d", [0, 5, 5, 5], d=2)
    picks = [pod.choose().id_number for _ in range(3000)]
    # node 1 (empty) wins whenever sampled: P = 1 - C(3,2)/C(4,2) = 1/2
    assert abs(picks.count(1) / 3000 - 0.5) < 4 * math.sqrt(0.25 / 3000)
    cw = _pool("capacity_weighted", [0, 0], weights=[3.0, 1.0])
    picks = [cw.choose().id_number for _ in range(4000)]
    assert abs(picks.count(1) / 4000 - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 4000)
    hetero = _pool("jsq", [4, 1], weights=[4.0, 0.5])         # 4/4 = 1 per server vs 1/0.5 = 2
    assert hetero.choose().id_number == 1


# ----------------------------------------------------------------------------------------------
# compilation to ciw
# ----------------------------------------------------------------------------------------------

def test_compiled_network_runs_in_plain_ciw():
    g = shop(services=[svc("frontend", 100.0, 2), svc("catalog", 80.0),
                       svc("checkout", 50.0, queue_capacity=5,
                           retry=Retry(1, backoff=Exponential(rate=10.0))),
                       svc("payments", 40.0, timeout=0.5)])
    model = g.compile()
    assert model.node_names == ["frontend", "catalog", "checkout", "payments", None]
    assert model.network.number_of_nodes == 5                # + hidden retry back-off node
    ciw.seed(1)
    sim = g.simulation()
    sim.simulate_until_max_time(50.0)
    nodes = {r.node for r in sim.get_all_records()}
    assert nodes <= {1, 2, 3, 4, 5} and {1, 2, 3, 4} <= nodes


def test_selective_node_updates_follow_ciw_full_updates_exactly():
    """_KitSimulation refreshes only touched nodes; ciw refreshes every node after every event.
    On a graph using every feature the two must produce the same records."""
    from analysis.topology import _KitSimulation

    class FullUpdates(_KitSimulation):
        event_and_return_nextnode = ciw.Simulation.event_and_return_nextnode

    members = [Service(f"w{i}", 1, Exponential(rate=1.2), queue_capacity=4,
                       timeout=Exponential(rate=0.5),
                       retry=Retry(2, backoff=Exponential(rate=2.0),
                                   multiplier=2.0)) for i in range(3)]
    g = ServiceGraph(
        members + [Service("db", 2, Gamma(0.3, scv=0.5), schedule=[(1, 20.0), (3, 50.0)]),
                   Service("cache", math.inf, Deterministic(0.05))],
        [Arrivals("web", rate=RateSchedule((0.0, 30.0), (1.5, 3.5), period=60.0),
                  customer_class="gold"),
         Arrivals("cache", rate=1.0, customer_class="bronze")],
        routing={"w0": {"db": 0.5}, "w1": {"db": 0.5, "w2": 0.1}, "cache": {"web": 0.5}},
        pools=[Pool("web", ["w0", "w1", "w2"], "power_of_d", d=2)],
        classes={"gold": 0, "bronze": 1}, preemptive=True)
    runs = []
    for cls in (_KitSimulation, FullUpdates):
        model = g.compile()
        ciw.seed(17)
        sim = cls(model.network, arrival_node_class=model.arrival_node_class)
        sim.simulate_until_max_time(400.0)
        runs.append(sorted((r.id_number, r.node, r.record_type, r.arrival_date, r.exit_date)
                           for r in sim.get_all_records()))
    kinds = {r[2] for r in runs[0]}
    assert {"service", "renege", "rejection", "interrupted service"} <= kinds
    assert runs[0] == runs[1] and len(runs[0]) > 1000


# ----------------------------------------------------------------------------------------------
# one parameterisation story (issue 9): built from the mean, numpy sampling, Mixture
# ----------------------------------------------------------------------------------------------

ALL_SPECS = [
    Exponential(0.25), Gamma(0.5, scv=0.25), Gamma(shape=3.0, rate=6.0), Uniform(0.2, scv=0.1),
    Uniform(low=0.1, high=0.3), HyperExponential(0.25, scv=5.0), Lognormal(0.1, scv=0.5),
    Lognormal(0.1, sigma=0.8), Deterministic(0.7), Empirical([0.1, 0.2, 0.6]),
    Mixture([Exponential(rate=10.0), Deterministic(0.5)], [0.8, 0.2]), two_point(0.01, 1.0, 0.01),
]


def test_every_spec_is_built_from_its_mean():
    # the one positional argument is the mean in seconds; other parameters are keywords
    assert Exponential(0.25) == Exponential(rate=4.0) and Exponential(0.25).mean == 0.25
    assert Gamma(0.5, shape=4.0) == Gamma(0.5, scv=0.25)
    assert Gamma(shape=3.0, rate=6.0).mean == pytest.approx(0.5)
    assert Gamma(shape=3.0, rate=6.0).scv == pytest.approx(1 / 3)
    assert Lognormal(0.1, sigma=0.8).scv == pytest.approx(math.expm1(0.64))
    u = Uniform(0.2, scv=0.1)
    assert (u.mean, u.scv) == (pytest.approx(0.2), pytest.approx(0.1))
    for spec in ALL_SPECS:
        assert spec.mean > 0 and spec.scv >= 0
    with pytest.raises(TypeError):
        Gamma(0.5, 0.25)            # the old positional scv is an error, not a silent change
    with pytest.raises(TypeError):
        Uniform(0.1, 0.3)           # the old (low, high) form must be spelled low=, high=


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: type(s).__name__)
def test_numpy_sampling_is_vectorised_reproducible_and_right(spec):
    x = spec.sample(np.random.default_rng(5), 200_000)
    assert x.shape == (200_000,) and x.dtype == float and (x >= 0).all()
    assert np.array_equal(x, spec.sample(np.random.default_rng(5), 200_000))
    se = x.std() / math.sqrt(x.size)
    assert abs(x.mean() - spec.mean) <= 5 * se + 1e-12
    assert x.var() / x.mean() ** 2 == pytest.approx(spec.scv, rel=0.1, abs=1e-9)
    assert spec.sample(np.random.default_rng(1), 0).shape == (0,)
    # the cdf agrees with the sample (Kolmogorov distance), ppf inverts it
    grid = np.quantile(x, [0.1, 0.5, 0.9])
    assert np.abs(spec.cdf(grid) - [np.mean(x <= g) for g in grid]).max() < 0.01
    for q in (0.1, 0.5, 0.9, 0.99):
        v = float(spec.ppf(q))
        assert float(spec.cdf(v)) >= q - 1e-9
        assert float(spec.cdf(v * (1 - 1e-6))) < q + 1e-9 or v == 0


def test_sample_checks_its_arguments():
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        Exponential(1.0).sample(np.random.RandomState(1), 3)
    with pytest.raises(ValueError, match="size"):
        Exponential(1.0).sample(np.random.default_rng(1), -1)


def test_mixture_moments_and_two_point_by_hand():
    m = Mixture([Exponential(1.0), Deterministic(2.0)], [0.3, 0.7])
    assert m.mean == pytest.approx(0.3 * 1 + 0.7 * 2)
    second = 0.3 * 2.0 + 0.7 * 4.0                      # E[X^2]: 2/rate^2 and 2^2
    assert m.scv == pytest.approx(second / m.mean**2 - 1)
    # cdf: 0.3 (1 - e^-x) below 2, plus the 0.7 atom at 2
    assert m.cdf(1.0) == pytest.approx(0.3 * (1 - math.exp(-1)))
    assert m.cdf(2.0) == pytest.approx(0.3 * (1 - math.exp(-2)) + 0.7)
    assert m.ppf(0.5) == 2.0                            # the atom, exactly
    slow = two_point(0.01, 1.0, p_high=1e-4)            # 1 in 10,000 takes 1 s
    assert slow.mean == pytest.approx(0.9999 * 0.01 + 1e-4)
    assert slow.sf(0.5) == pytest.approx(1e-4) and slow.isf(1e-4 / 2) == 1.0
    assert Mixture([Exponential(1.0), 1.0]).weights == (0.5, 0.5)


def test_mixture_order_statistics_closed_forms():
    # max of n two-point leaves: P(max <= fast) = (1 - p)^n exactly
    n, p = 100, 1e-3
    leaf = two_point(0.01, 1.0, p_high=p)
    edge = (1 - p) ** n                                  # about 0.905
    assert theory.fanout_max_quantile(leaf, n, edge - 0.01) == 0.01
    assert theory.fanout_max_quantile(leaf, n, edge + 0.01) == 1.0
    # a continuous mixture: the quantile inverts the order-statistic cdf
    mix = Mixture([Exponential(0.01), Exponential(1.0)], [0.99, 0.01])
    for k, q in [(100, 0.99), (100, 0.5), (90, 0.9), (1, 0.5)]:
        x = theory.kth_fastest_quantile(mix, 100, k, q)
        assert theory.order_statistic_cdf(float(mix.cdf(x)), 100, k) == pytest.approx(q, rel=1e-7)
    # a one-component mixture is its component, far in the tail too
    single = Mixture([Lognormal(0.01, scv=1.0)], [1.0])
    assert single.isf(1e-9) == pytest.approx(Lognormal(0.01, scv=1.0).isf(1e-9), rel=1e-12)


def test_mixture_runs_in_ciw_with_the_right_moments():
    spec = Mixture([Exponential(rate=10.0), Deterministic(0.5)], [0.8, 0.2])
    svc_ = Service("api", 1, spec)
    assert svc_.service_time == spec
    x = _samples(spec, n=60_000, seed=3)
    assert x.mean() == pytest.approx(spec.mean, rel=0.02)
    assert np.mean(x == 0.5) == pytest.approx(0.2, abs=0.01)


def test_closed_form_helpers_build_the_frozen_scipy_distribution_once(monkeypatch):
    # specs whose cdf/sf/ppf/isf come from scipy.stats (Uniform) reuse one frozen distribution per
    # distinct spec (root finders call them thousands of times), with the values of a freshly built one
    from analysis import topology
    built = []
    original = topology.Uniform.scipy
    monkeypatch.setattr(topology.Uniform, "scipy", lambda self: built.append(self) or original(self))
    topology._frozen_scipy.cache_clear()
    u = topology.Uniform(low=0.01, high=0.03)
    values = [u.sf(0.02), u.cdf(0.02), u.ppf(0.5), u.isf(0.01), topology.Uniform(low=0.01, high=0.03).sf(0.02)]
    assert len(built) == 1
    fresh = original(u)
    assert values == [fresh.sf(0.02), fresh.cdf(0.02), fresh.ppf(0.5), fresh.isf(0.01), fresh.sf(0.02)]
    topology.Uniform(low=0.01, high=0.05).sf(0.02)       # another spec: its own distribution
    assert len(built) == 2
