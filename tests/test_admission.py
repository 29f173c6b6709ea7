"""Admission control: the token bucket against its definition, queue caps against M/M/c/K,
priority shedding, client-side adaptive throttling, the station recursion against M/M/c, and
rejected requests counted (never dropped)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import admission, station, theory


def _mmc_run(lam, mu, c, horizon, seed, **kw):
    rng = np.random.default_rng(seed)
    t = station.piecewise_poisson([0.0], [lam], horizon, rng)
    return station.simulate_station(t, rng.exponential(1 / mu, t.size), c, **kw)


def test_token_bucket_follows_its_definition():
    # a full bucket of 5 admits a burst of 5 simultaneous requests, then one per 1/rate seconds
    times = np.r_[np.zeros(8), 0.5, 1.0, 1.05, 2.0]
    ok = admission.token_bucket_admits(times, rate=1.0, burst=5)
    assert ok.tolist() == [True] * 5 + [False] * 3 + [False, True, False, True]
    # over every interval [s, t] it admits at most burst + rate (t - s)
    rng = np.random.default_rng(0)
    arr = np.sort(rng.uniform(0, 100, 2000))
    ok = admission.token_bucket_admits(arr, rate=3.0, burst=10)
    adm = arr[ok]
    for i in range(0, adm.size, 7):
        j = np.arange(i, adm.size)
        assert np.all(j - i + 1 <= 10 + 3.0 * (adm[j] - adm[i]) + 1e-9)
    # long-run admitted rate is the token rate when offered more
    assert ok.sum() / 100.0 == pytest.approx(3.0, abs=0.15)


def test_token_bucket_refuses_time_going_back_and_bad_sizes():
    b = admission.TokenBucket(1.0, 2)
    b.take(5.0)
    with pytest.raises(ValueError, match="must not decrease"):
        b.take(4.0)
    with pytest.raises(ValueError, match="burst"):
        admission.TokenBucket(1.0, 0.5)
    with pytest.raises(ValueError, match="rate"):
        admission.TokenBucket(-1.0, 2)


def test_station_matches_mmc():
    lam, mu, c = 8.0, 1.0, 10
    means = [float(_mmc_run(lam, mu, c, 3000.0, s).query("arrival > 300").response.mean()) for s in range(8)]
    v = np.asarray(means)
    h = stats.t.ppf(0.995, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    assert abs(v.mean() - theory.mmc_metrics(lam, mu, c)["mean_response"]) <= h


def test_queue_cap_rejects_the_mmck_blocking_fraction_and_counts_every_request():
    lam, mu, c, cap = 9.0, 1.0, 8, 12
    runs = [_mmc_run(lam, mu, c, 3000.0, s, admission=admission.QueueCap(cap)) for s in range(6)]
    fractions = []
    for r in runs:
        assert r.outcome.isin(["admitted", "queue_full"]).all()
        assert r.in_system.max() <= cap
        assert r.loc[r.outcome == "queue_full", "response"].isna().all()
        fractions.append(float(r.query("arrival > 300").outcome.eq("queue_full").mean()))
    v = np.asarray(fractions)
    h = stats.t.ppf(0.995, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    assert abs(v.mean() - admission.mmck_blocking(lam, mu, c, cap)) <= h
    # K -> infinity: no blocking; K = c: Erlang B
    assert admission.mmck_blocking(3.0, 1.0, 4, 4) == pytest.approx(theory.erlang_b(3.0, 1.0, 4), rel=1e-12)


def test_priority_shedding_sheds_the_low_class_first():
    rng = np.random.default_rng(3)
    t = station.piecewise_poisson([0.0], [12.0], 2000.0, rng)
    cls = np.where(rng.random(t.size) < 0.5, "checkout", "browse")
    shed = admission.PriorityShedding({"checkout": 30, "browse": 12})
    r = station.simulate_station(t, rng.exponential(1.0, t.size), 10, admission=shed, classes=cls)
    rej = r[r.outcome == "shed"]
    assert (rej.loc[rej.customer_class == "browse", "in_system"] >= 12).all()
    frac = r.groupby("customer_class").outcome.apply(lambda s: s.eq("shed").mean())
    assert frac["browse"] > 5 * frac["checkout"]
    with pytest.raises(ValueError, match="no shedding threshold"):
        shed.decide(0.0, 0, "search")


def test_adaptive_throttle_rejects_locally_when_the_backend_rejects():
    thr = admission.AdaptiveThrottle(admission.QueueCap(1), k=1.0, window_s=100.0, seed=0)
    # the backend is always full: after a few tries the client rejects most requests itself
    verdicts = [thr.decide(float(i) * 0.01, 5, None) for i in range(500)]
    assert verdicts.count("client_throttled") > 400
    assert set(verdicts) == {"client_throttled", "queue_full"}
    # a healthy backend: no local rejection with k = 2
    thr = admission.AdaptiveThrottle(admission.QueueCap(100), k=2.0, window_s=10.0, seed=0)
    assert all(thr.decide(float(i), 0, None) == "admitted" for i in range(200))
    assert thr.reject_probability() == 0.0


@pytest.mark.parametrize("call, name", [
    (lambda: admission.QueueCap(0), "max_in_system"),
    (lambda: admission.AdaptiveThrottle(admission.QueueCap(2), k=0.5), "k"),
    (lambda: admission.AdaptiveThrottle(object()), "backend"),
    (lambda: admission.mmck_blocking(1.0, 1.0, 4, 2), "max_in_system"),
    (lambda: station.simulate_station([1.0, 0.5], [1.0, 1.0], 1), "sorted"),
    (lambda: station.simulate_station([1.0], [1.0], 0), "servers"),
])
def test_bad_parameters(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_piecewise_poisson_has_the_right_count_in_each_segment():
    rng = np.random.default_rng(4)
    t = station.piecewise_poisson([0.0, 100.0, 200.0], [5.0, 20.0, 5.0], 300.0, rng)
    counts = np.histogram(t, bins=[0, 100, 200, 300])[0]
    assert counts == pytest.approx([500, 2000, 500], rel=0.12)
    assert np.all(np.diff(t) >= 0)


def _reference_station(t_arr, s, c, admission=None, classes=None):
    """The station loop as first written (numpy scalars, a heap of the departures of the requests
    present): simulate_station must give the same rows, bit for bit."""
    import heapq
    cls = np.full(t_arr.size, "all", dtype=object) if classes is None else np.asarray(classes, dtype=object)
    free, present = [0.0] * c, []
    outcome, response = np.empty(t_arr.size, dtype=object), np.full(t_arr.size, math.nan)
    n_in = np.empty(t_arr.size, dtype=np.int64)
    for j in range(t_arr.size):
        t = t_arr[j]
        while present and present[0] <= t:
            heapq.heappop(present)
        n_in[j] = len(present)
        verdict = admission.decide(t, len(present), cls[j]) if admission is not None else station.ADMITTED
        outcome[j] = verdict
        if verdict != station.ADMITTED:
            continue
        done = max(free[0], t) + s[j]
        heapq.heapreplace(free, done)
        heapq.heappush(present, done)
        response[j] = done - t
    return pd.DataFrame({"arrival": t_arr, "customer_class": cls, "outcome": outcome, "response": response,
                         "in_system": n_in})


@pytest.mark.parametrize("servers", [1, 4])
@pytest.mark.parametrize("make", [
    lambda c: None, lambda c: admission.QueueCap(c + 2), lambda c: admission.TokenBucket(2.0, 2 * c),
    lambda c: admission.PriorityShedding({"checkout": 16 * c, "browse": 2 * c}),
    lambda c: admission.AdaptiveThrottle(admission.QueueCap(3 * c), seed=1),
], ids=["none", "cap", "bucket", "shed", "throttle"])
def test_station_gives_the_rows_of_the_reference_loop(servers, make):
    rng = np.random.default_rng(9)
    t = np.round(station.piecewise_poisson([0.0, 100.0, 150.0], [1.5, 6.0, 1.5], 400.0, rng), 1)  # equal instants
    s = rng.exponential(servers / 2.0, t.size)
    s[::13] = 0.0                                  # zero service: a request that leaves as it arrives
    cls = np.where(rng.random(t.size) < 0.2, "checkout", "browse")
    ours = station.simulate_station(t, s, servers, admission=make(servers), classes=cls)
    pd.testing.assert_frame_equal(ours, _reference_station(t, s, servers, admission=make(servers), classes=cls))
