"""Traffic surges on fixed capacity: the fluid approximation of the backlog (it grows at
lambda - c mu while the arrival rate exceeds the capacity and drains at c mu - lambda after), spike
shapes, and windowed statistics of a simulated surge (p99 over time, recovery time). Units:
requests/s, seconds, backlog in requests.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import checks


def spike_rates(base_rate, peak_factor, start_s, duration_s) -> tuple[np.ndarray, np.ndarray]:
    """(starts, rates): ``base_rate`` (requests/s), ``peak_factor`` x that from ``start_s`` for
    ``duration_s`` seconds, then back to base (a rectangular spike)."""
    base = checks.positive("base_rate", base_rate)
    factor = checks.positive("peak_factor", peak_factor)
    start = checks.positive("start_s", start_s)
    dur = checks.positive("duration_s", duration_s)
    return np.array([0.0, start, start + dur]), np.array([base, base * factor, base])


def fluid_backlog(starts, rates, capacity, times) -> np.ndarray:
    """Backlog (requests) at each of ``times`` (s) of the fluid queue fed at ``rates[k]`` from
    ``starts[k]`` and served at ``capacity`` = c mu (requests/s), empty at 0:
    dQ/dt = lambda(t) - c mu while Q > 0 or lambda > c mu, else Q stays 0."""
    starts = np.asarray(starts, dtype=float)
    rates = np.asarray(rates, dtype=float)
    cap = checks.positive("capacity", capacity)
    times = np.asarray(times, dtype=float)
    if starts.size == 0 or starts[0] != 0 or starts.shape != rates.shape or np.any(np.diff(starts) <= 0):
        raise ValueError("starts must begin at 0 s and increase, one per rate")
    if np.any(rates < 0) or np.any(times < 0):
        raise ValueError("rates and times must be >= 0")
    # backlog at each breakpoint, then linear (clipped at 0) inside a segment
    q_at = [0.0]
    for k in range(starts.size - 1):
        q_at.append(max(0.0, q_at[-1] + (rates[k] - cap) * (starts[k + 1] - starts[k])))
    k = np.searchsorted(starts, times, side="right") - 1
    return np.maximum(0.0, np.asarray(q_at)[k] + (rates[k] - cap) * (times - starts[k]))


def fluid_spike(base_rate, peak_rate, capacity, duration_s) -> dict:
    """Fluid summary of a rectangular spike from ``base_rate`` to ``peak_rate`` (requests/s) for
    ``duration_s`` on ``capacity`` (requests/s) with base < capacity: peak_backlog (requests),
    peak_wait_s (the backlog / capacity a FIFO arrival at the end of the spike waits) and
    drain_s = peak_backlog / (capacity - base_rate), the time after the spike to empty it."""
    base = checks.positive("base_rate", base_rate)
    peak = checks.positive("peak_rate", peak_rate)
    cap = checks.positive("capacity", capacity)
    dur = checks.positive("duration_s", duration_s)
    if base >= cap:
        raise ValueError(f"base_rate={base} must be below capacity={cap} for the backlog to drain")
    backlog = max(0.0, (peak - cap) * dur)
    return {"peak_backlog": backlog, "peak_wait_s": backlog / cap, "drain_s": backlog / (cap - base)}


def in_system_at(requests: pd.DataFrame, times) -> np.ndarray:
    """Number of admitted requests present (arrived, not yet finished) at each of ``times`` (s),
    from the per-request rows of :func:`analysis.station.simulate_station`."""
    ok = requests["outcome"].eq("admitted").to_numpy()
    arr = np.sort(requests["arrival"].to_numpy()[ok])
    dep = np.sort((requests["arrival"] + requests["response"]).to_numpy()[ok])
    times = np.asarray(times, dtype=float)
    return np.searchsorted(arr, times, side="right") - np.searchsorted(dep, times, side="right")


def windowed(requests: pd.DataFrame, window_s: float, q: float = 0.99) -> pd.DataFrame:
    """Per window of ``window_s`` seconds (by arrival): requests, admitted, the q-quantile and mean
    of the admitted responses (s). Indexed by the window start (s)."""
    w = checks.positive("window_s", window_s)
    q = checks.open_unit("q", q)
    slot = np.floor(requests["arrival"].to_numpy() / w) * w
    frame = requests.assign(window=slot)
    ok = frame[frame["outcome"].eq("admitted")]
    g = ok.groupby("window")["response"]
    out = pd.DataFrame({"requests": frame.groupby("window").size(), "admitted": g.size(),
                        "response_q": g.quantile(q), "mean_response": g.mean()})
    out["admitted"] = out["admitted"].fillna(0).astype(int)
    out.index.name = "window_start_s"
    return out


def recovery_time(series: pd.Series, spike_end_s: float, threshold: float) -> float:
    """Seconds after ``spike_end_s`` until ``series`` (indexed by window start, s) is back at or
    below ``threshold`` and stays there; inf if it never does."""
    end = checks.nonnegative("spike_end_s", spike_end_s)
    after = series[series.index >= end]
    above = after[after > threshold]
    if after.empty:
        return math.inf
    if above.empty:
        return 0.0
    last_bad = above.index[-1]
    later = after.index[after.index > last_bad]
    return float(later[0] - end) if len(later) else math.inf
