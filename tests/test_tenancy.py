"""Noisy neighbours: Jain's index by definition, the priority station against Cobham's formula, and
per-tenant quotas."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import admission, station, tenancy, theory


def test_jain_index_definition():
    assert tenancy.jain_index([3.0, 3.0, 3.0]) == pytest.approx(1.0)
    assert tenancy.jain_index([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert tenancy.jain_index([1.0, 2.0]) == pytest.approx(9 / 10)
    with pytest.raises(ValueError, match="values"):
        tenancy.jain_index([1.0, -1.0])
    with pytest.raises(ValueError, match="values"):
        tenancy.jain_index([0.0, 0.0])


def test_priority_station_matches_cobham_on_one_server():
    lam, mu = [0.3, 0.5], 1.0
    by_class = {0: [], 1: []}
    for seed in range(8):
        rng = np.random.default_rng(seed)
        t = station.piecewise_poisson([0.0], [sum(lam)], 20000.0, rng)
        cls = np.where(rng.random(t.size) < lam[0] / sum(lam), "high", "low")
        r = tenancy.simulate_priority_station(t, rng.exponential(1 / mu, t.size), 1, cls, {"high": 0, "low": 1})
        r = r[r.arrival > 2000]
        by_class[0].append(r[r.customer_class == "high"].response.mean())
        by_class[1].append(r[r.customer_class == "low"].response.mean())
    exact = theory.mm1_priority_response_times(lam, mu)
    for k in (0, 1):
        v = np.asarray(by_class[k])
        h = stats.t.ppf(0.995, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
        assert abs(v.mean() - exact[k]) <= h


def test_priority_station_with_one_class_is_the_fifo_station():
    rng = np.random.default_rng(2)
    t = station.piecewise_poisson([0.0], [3.0], 500.0, rng)
    s = rng.exponential(1.0, t.size)
    a = tenancy.simulate_priority_station(t, s, 4, np.full(t.size, "x", dtype=object), {"x": 0})
    b = station.simulate_station(t, s, 4)
    np.testing.assert_allclose(a.response, b.response)
    np.testing.assert_array_equal(a.in_system, b.in_system)


def test_per_class_quota_limits_only_its_tenant():
    ctl = tenancy.PerClass({"noisy": admission.TokenBucket(1.0, 1)})
    verdicts = [ctl.decide(0.1 * i, 0, "noisy") for i in range(20)]
    assert verdicts.count("admitted") == 2        # one token at start, one more after 1 s
    assert all(ctl.decide(0.1 * i, 0, "steady") == "admitted" for i in range(20))
    with pytest.raises(ValueError, match="controllers"):
        tenancy.PerClass({"noisy": 3})


def test_priority_station_rejects_unknown_class():
    with pytest.raises(ValueError, match="no entry"):
        tenancy.simulate_priority_station([0.0], [1.0], 1, ["a"], {"b": 0})


def test_priority_station_gives_the_rows_of_the_reference_loop():
    """The event loop as first written (numpy scalars): the list-based loop must give the same rows."""
    import heapq

    rng = np.random.default_rng(4)
    t = np.round(station.piecewise_poisson([0.0, 50.0], [3.0, 9.0], 200.0, rng), 1)
    s = rng.exponential(0.8, t.size)
    cls = np.where(rng.random(t.size) < 0.3, "steady", "noisy").astype(object)
    prio = np.array([{"steady": 0, "noisy": 1}[k] for k in cls])
    response, n_in = np.full(t.size, math.nan), np.zeros(t.size, dtype=np.int64)
    waiting, busy, present, j = [], [], 0, 0
    while j < t.size or busy:
        if j < t.size and (not busy or t[j] < busy[0]):
            n_in[j], present = present, present + 1
            if len(busy) < 3:
                heapq.heappush(busy, t[j] + s[j])
                response[j] = s[j]
            else:
                heapq.heappush(waiting, (prio[j], j))
            j += 1
        else:
            now = heapq.heappop(busy)
            present -= 1
            if waiting:
                _, k = heapq.heappop(waiting)
                heapq.heappush(busy, now + s[k])
                response[k] = now + s[k] - t[k]
    ours = tenancy.simulate_priority_station(t, s, 3, cls, {"steady": 0, "noisy": 1})
    np.testing.assert_array_equal(ours.response.to_numpy(), response)
    np.testing.assert_array_equal(ours.in_system.to_numpy(), n_in)
