"""Geographic routing: each policy's split, the user-latency closed form against simulation, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import geography, station, theory

RTT = np.array([[0.01, 0.08, 0.20], [0.08, 0.01, 0.15], [0.20, 0.15, 0.01]])
SERVERS = [10, 10, 10]
MU = 10.0


def test_nearest_keeps_traffic_home_and_spill_over_caps_utilisation():
    demand = [95.0, 60.0, 40.0]
    F = geography.split("nearest", demand, SERVERS, MU, RTT)
    assert np.allclose(F, np.diag(demand))
    assert geography.user_latency(np.diag([105.0, 10.0, 10.0]), SERVERS, MU, RTT)["quantile"] == np.inf
    F = geography.split("spill_over", demand, SERVERS, MU, RTT, spill_threshold=0.8)
    np.testing.assert_allclose(F.sum(axis=1), demand)
    assert np.all(F.sum(axis=0) <= 0.8 * 100 + 1e-9)
    assert F[0, 1] == pytest.approx(15.0)      # the excess of region 0 goes to the nearest other region


def test_latency_aware_beats_nearest_and_spill_over_on_mean_latency():
    demand = [92.0, 50.0, 30.0]
    lat = {p: geography.user_latency(geography.split(p, demand, SERVERS, MU, RTT), SERVERS, MU, RTT)["mean"]
           for p in geography.GEO_POLICIES}
    assert lat["latency_aware"] <= lat["nearest"] + 1e-9
    assert lat["latency_aware"] <= lat["spill_over"] + 1e-9


def test_user_latency_quantile_matches_simulation():
    demand = [70.0, 40.0, 20.0]
    F = geography.split("spill_over", demand, SERVERS, MU, RTT, spill_threshold=0.6)
    exact = geography.user_latency(F, SERVERS, MU, RTT, q=0.99)
    rng = np.random.default_rng(0)
    lat = []
    for j in range(3):
        t = station.piecewise_poisson([0.0], [F[:, j].sum()], 3000.0, rng)
        r = station.simulate_station(t, rng.exponential(1 / MU, t.size), SERVERS[j])
        resp = r.response.to_numpy()[t > 300]
        src = rng.choice(3, size=resp.size, p=F[:, j] / F[:, j].sum())   # random split: source independent of the run
        lat.append(resp + RTT[src, j])
    lat = np.concatenate(lat)
    assert np.quantile(lat, 0.99) == pytest.approx(exact["quantile"], rel=0.05)
    assert lat.mean() == pytest.approx(exact["mean"], rel=0.03)


@pytest.mark.parametrize("kwargs, name", [
    (dict(rtt=-RTT), "rtt"),
    (dict(policy="anycast"), "policy"),
    (dict(demand=[200.0, 100.0, 50.0]), "capacity"),
    (dict(servers=[10, 0, 10]), "servers"),
])
def test_bad_parameters(kwargs, name):
    args = dict(policy="nearest", demand=[50.0, 40.0, 30.0], servers=SERVERS, service_rate=MU, rtt=RTT) | kwargs
    with pytest.raises(ValueError, match=name):
        geography.split(args.pop("policy"), **args)


def test_latency_aware_split_is_the_greedy_on_mmc_mean_responses():
    """The greedy as first written (theory.mmc_metrics with its default quantiles, which split does not
    need): the same routing matrix, bit for bit, and the same latencies."""
    demand, c, mu = [92.0, 40.0, 50.0], [SERVERS[0]] * 3, MU
    rtt = np.asarray(RTT)
    lam, cap = np.asarray(demand), np.asarray(c) * mu
    ref, load = np.zeros((3, 3)), np.zeros(3)

    def mean_resp(x, j):
        return theory.mmc_metrics(x, mu, c[j])["mean_response"] if x < cap[j] else np.inf

    for i in np.argsort(-lam):
        chunk = lam[i] / 60
        for _ in range(60):
            costs = [np.inf if load[j] + chunk >= cap[j] * 0.999 else
                     chunk * (rtt[i, j] + mean_resp(load[j] + chunk, j))
                     + (load[j] * (mean_resp(load[j] + chunk, j) - mean_resp(load[j], j)) if load[j] > 0 else 0.0)
                     for j in range(3)]
            best = int(np.argmin(costs))
            ref[i, best] += chunk
            load[best] += chunk
    F = geography.split("latency_aware", demand, c, mu, rtt, steps=60)
    np.testing.assert_array_equal(F, ref)
    lat = geography.user_latency(F, c, mu, rtt)
    assert lat["mean"] == float((F / F.sum() * (rtt + np.array(
        [theory.mmc_metrics(x, mu, c[j])["mean_response"] for j, x in enumerate(F.sum(axis=0))])[None, :])).sum())


def test_brent_root_is_scipys_to_the_last_bit():
    from scipy import optimize

    rng = np.random.default_rng(3)
    cases = [(lambda x: x ** 3 - 2 * x - 5, 2.0, 3.0, 1e-12), (lambda x: np.cos(x) - x, 0.0, 1.0, 1e-6),
             (lambda x: np.exp(x) - 10.0, -5.0, 10.0, 2e-12), (lambda x: (x - 0.3) ** 9, 0.0, 1.0, 1e-10)]
    for _ in range(40):      # survival functions like user_latency's: a mixture of M/M/c responses + RTT
        lam, rtt, q = rng.uniform(10, 95), rng.uniform(0.0, 0.3), rng.uniform(0.5, 0.999)
        cases.append((lambda t, lam=lam, rtt=rtt, q=q: (theory.mmc_response_survival(lam, MU, 10, t - rtt)
                                                        if t > rtt else 1.0) - (1 - q), 0.0, 20.0, 1e-6))
    for _ in range(60):      # roots of assorted shapes: every branch (interpolate, extrapolate, bisect) is taken
        r, k, p = rng.uniform(-1, 1), rng.uniform(0.0, 50.0), int(rng.integers(1, 4))
        cases.append((lambda x, r=r, k=k, p=p: (x - r) ** (2 * p - 1) * (1 + k * (x - r) ** 2) + 1e-3 * np.sin(40 * x)
                      if abs(x - r) > 0.05 else (x - r) * (1 + k), -1.5, 1.7, 1e-14))
    for f, a, b, xtol in cases:
        assert geography._brentq(f, a, b, xtol) == optimize.brentq(f, a, b, xtol=xtol)
    with pytest.raises(ValueError, match="different signs"):
        geography._brentq(lambda x: x * x + 1, -1.0, 1.0, 1e-6)
