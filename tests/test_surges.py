"""The fluid approximation of a surge: its arithmetic, and a simulated heavy-traffic spike whose
backlog and drain time it predicts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import station, surges


def test_fluid_backlog_grows_and_drains_at_the_rate_gaps():
    starts, rates = surges.spike_rates(80.0, 1.5, 100.0, 200.0)   # 80 -> 120 -> 80 on capacity 100
    t = np.array([0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0])
    q = surges.fluid_backlog(starts, rates, 100.0, t)
    assert q.tolist() == pytest.approx([0, 0, 2000, 4000, 2000, 0, 0])
    f = surges.fluid_spike(80.0, 120.0, 100.0, 200.0)
    assert f == pytest.approx({"peak_backlog": 4000.0, "peak_wait_s": 40.0, "drain_s": 200.0})
    assert surges.fluid_spike(80.0, 90.0, 100.0, 200.0)["peak_backlog"] == 0.0


def test_simulated_spike_follows_the_fluid_backlog():
    mu, c = 1.0, 50
    starts, rates = surges.spike_rates(35.0, 2.0, 200.0, 300.0)    # 35 -> 70 on capacity 50
    rng = np.random.default_rng(0)
    t = station.piecewise_poisson(starts, rates, 1200.0, rng)
    r = station.simulate_station(t, rng.exponential(1 / mu, t.size), c)
    grid = np.array([300.0, 500.0, 700.0, 800.0])
    sim = surges.in_system_at(r, grid)
    fluid = surges.fluid_backlog(starts, rates, c * mu, grid)
    # in system = backlog beyond the busy servers: compare the queue part at the peak within 10%
    assert sim[1] - c == pytest.approx(fluid[1], rel=0.1)
    f = surges.fluid_spike(35.0, 70.0, 50.0, 300.0)
    p99 = surges.windowed(r, 20.0)["response_q"]
    rec = surges.recovery_time(p99, 500.0, threshold=10.0)
    assert rec == pytest.approx(f["drain_s"], rel=0.25)


def test_windowed_counts_rejected_requests_and_recovery_time_rules():
    r = pd.DataFrame({"arrival": [0.5, 1.5, 1.7, 2.2], "customer_class": "all",
                      "outcome": ["admitted", "queue_full", "admitted", "admitted"],
                      "response": [1.0, np.nan, 3.0, 0.5], "in_system": 0})
    w = surges.windowed(r, 1.0, q=0.5)
    assert w["requests"].tolist() == [1, 2, 1]
    assert w["admitted"].tolist() == [1, 1, 1]
    s = pd.Series([5.0, 9.0, 2.0, 8.0, 1.0, 1.0], index=[0, 10, 20, 30, 40, 50])
    assert surges.recovery_time(s, 10.0, 3.0) == 30.0
    assert surges.recovery_time(s, 40.0, 3.0) == 0.0
    assert surges.recovery_time(pd.Series([9.0], index=[0]), 0.0, 3.0) == float("inf")


@pytest.mark.parametrize("call, name", [
    (lambda: surges.fluid_spike(120.0, 150.0, 100.0, 10.0), "base_rate"),
    (lambda: surges.fluid_spike(50.0, 150.0, -1.0, 10.0), "capacity"),
    (lambda: surges.spike_rates(10.0, 3.0, 5.0, -1.0), "duration_s"),
    (lambda: surges.fluid_backlog([1.0], [2.0], 1.0, [0.0]), "starts"),
])
def test_bad_parameters(call, name):
    with pytest.raises(ValueError, match=name):
        call()
