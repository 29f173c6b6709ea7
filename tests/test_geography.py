"""Geographic routing: each policy's split, the user-latency closed form against simulation, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import geography, station

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
