"""Alerting, aggregation and sampling of telemetry: pages and recall, SLO burn rates, a mergeable quantile
sketch, trace sampling and telemetry volume.

Times are seconds, rates per second, fractions in [0, 1]. Alert series are boolean per row of a regular series
with step ``step_s`` seconds; an *episode* (one page) is a maximal run of consecutive alerting rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["DDSketch", "alert_episodes", "episode_stats", "burn_rate_alerts", "threshold_alerts",
           "sampled_p99_error", "telemetry_volume", "aggregate_interval", "alerts_at_interval", "inject_incidents"]


# ------------------------------------------------------------------------------------------------ sketch

@dataclass
class DDSketch:
    """A mergeable quantile sketch with relative error ``relative_accuracy`` (Masson, Rim & Lee, VLDB 2019).

    A positive value x goes to bucket ``ceil(log_gamma x)``, ``gamma = (1 + a) / (1 - a)``; a bucket is read
    back as ``2 gamma^i / (gamma + 1)``, within relative error ``a`` of every value in it. Zeros are counted
    apart. Quantile q returns the bucket holding the element of rank ``floor(q (n - 1))`` (0-based), so it is
    within relative error ``a`` of that exact order statistic. Merging adds bucket counts (exact).
    """

    relative_accuracy: float = 0.01
    buckets: dict = field(default_factory=dict)
    zeros: int = 0
    count: int = 0

    def __post_init__(self):
        a = self.relative_accuracy
        if not 0 < a < 1:
            raise ValueError(f"relative_accuracy={a} must be in (0, 1)")
        self._gamma = (1 + a) / (1 - a)
        self._lg = math.log(self._gamma)

    def add(self, values) -> "DDSketch":
        """Add values (>= 0; e.g. latencies in seconds); returns self."""
        x = np.asarray(values, dtype=float).ravel()
        bad = np.flatnonzero(~(x >= 0) | ~np.isfinite(x))
        if bad.size:
            raise ValueError(f"values: row {int(bad[0])} is {x[bad[0]]}; the sketch takes finite values >= 0")
        pos = x[x > 0]
        self.zeros += int(x.size - pos.size)
        idx, cnt = np.unique(np.ceil(np.log(pos) / self._lg).astype(np.int64), return_counts=True)
        for i, c in zip(idx.tolist(), cnt.tolist()):
            self.buckets[i] = self.buckets.get(i, 0) + c
        self.count += int(x.size)
        return self

    def merge(self, other: "DDSketch") -> "DDSketch":
        """Add another sketch's counts into this one (same relative accuracy required); returns self."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(f"cannot merge relative_accuracy={other.relative_accuracy} into "
                             f"{self.relative_accuracy}")
        for i, c in other.buckets.items():
            self.buckets[i] = self.buckets.get(i, 0) + c
        self.zeros += other.zeros
        self.count += other.count
        return self

    def quantile(self, q: float) -> float:
        """Estimate of the q-quantile (rank ``floor(q (n - 1))``)."""
        if not 0 <= q <= 1:
            raise ValueError(f"q={q} must be in [0, 1]")
        if self.count == 0:
            raise ValueError("quantile of an empty sketch")
        rank = math.floor(q * (self.count - 1))
        if rank < self.zeros:
            return 0.0
        seen = self.zeros
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen > rank:
                return 2.0 * self._gamma ** i / (self._gamma + 1.0)
        raise AssertionError("unreachable: counts are inconsistent")

    @property
    def n_buckets(self) -> int:
        """Buckets in use (memory: about 12 bytes each as index + count)."""
        return len(self.buckets) + (1 if self.zeros else 0)


# ------------------------------------------------------------------------------------------------ alerts

def alert_episodes(alerts) -> np.ndarray:
    """Row index of the first row of every episode (maximal run of True) of a boolean alert series."""
    a = np.asarray(alerts, dtype=bool)
    return np.flatnonzero(a & ~np.r_[False, a[:-1]])


def episode_stats(alerts, incidents, step_s: float, horizon_s: float | None = None) -> dict:
    """Pages per day, recall and detection delay of an alert series against incident row ranges.

    ``incidents``: ``[(first_row, last_row), ...]`` (inclusive). An incident is detected when any alerting row
    falls in it; its delay is ``(first alerting row - first_row) * step_s`` seconds. An episode starting
    outside every incident is a false page. ``horizon_s`` (default: the series length) scales per-day counts.
    """
    if not step_s > 0:
        raise ValueError(f"step_s={step_s} must be > 0 seconds")
    a = np.asarray(alerts, dtype=bool)
    starts = alert_episodes(a)
    inside = np.zeros(a.size, dtype=bool)
    delays = []
    for lo, hi in incidents:
        if not 0 <= lo <= hi < a.size:
            raise ValueError(f"incident rows ({lo}, {hi}) outside 0..{a.size - 1}")
        inside[lo:hi + 1] = True
        hit = np.flatnonzero(a[lo:hi + 1])
        if hit.size:
            delays.append(hit[0] * step_s)
    days = (horizon_s if horizon_s is not None else a.size * step_s) / 86400.0
    false = int((~inside[starts]).sum()) if starts.size else 0
    n_inc = len(incidents)
    return {"pages_per_day": starts.size / days, "false_pages_per_day": false / days,
            "recall": (len(delays) / n_inc) if n_inc else float("nan"),
            "median_delay_s": float(np.median(delays)) if delays else float("nan"),
            "pages": int(starts.size), "false_pages": false, "detected": len(delays), "incidents": n_inc}


def threshold_alerts(values, threshold: float) -> np.ndarray:
    """Plain static threshold: alert on every row whose value exceeds ``threshold``."""
    return np.asarray(values, dtype=float) > threshold


def burn_rate_alerts(bad, total, step_s: float, slo: float,
                     rules=((3600.0, 300.0, 14.4), (21600.0, 1800.0, 6.0))) -> np.ndarray:
    """Pages of a multi-window, multi-burn-rate SLO alert (Google SRE Workbook, ch. 5) from past rows only.

    ``bad``/``total``: bad and total events per row; ``slo``: target good fraction (e.g. 0.999); ``rules``:
    ``(long_s, short_s, factor)`` page rules. A thin front end of :func:`analysis.alerting.multiwindow_alerts`
    (the one implementation: windows rounded up to whole rows, a rule fires when both windows burn faster than
    its factor); returns its "page" series.
    """
    from analysis import alerting

    built = tuple(alerting.BurnRateRule(float(lo), float(sh), float(f), min(1.0, f * lo / alerting.SLO_PERIOD_S),
                                        "page") for lo, sh, f in rules)
    if not step_s > 0:
        raise ValueError(f"step_s={step_s} must be > 0 seconds")
    return alerting.multiwindow_alerts(bad, total, step_s, slo, rules=built)["page"]


# ------------------------------------------------------------------------------------------- aggregation

def aggregate_interval(values, step_s: float, interval_s: float) -> tuple[np.ndarray, int]:
    """Means over consecutive buckets of ``interval_s`` seconds; returns (bucket means, rows per bucket).

    A metric published every ``interval_s`` is only seen at the END of its bucket: an alert on bucket j is
    raised at row ``(j + 1) * k - 1`` of the original series (k rows per bucket).
    """
    k = int(round(interval_s / step_s))
    if k < 1 or abs(k * step_s - interval_s) > 1e-9 * interval_s:
        raise ValueError(f"interval_s={interval_s} must be a whole multiple of step_s={step_s}")
    x = np.asarray(values, dtype=float)
    n = (x.size // k) * k
    return x[:n].reshape(-1, k).mean(axis=1), k


def alerts_at_interval(values, step_s: float, interval_s: float, z_threshold: float, history_s: float,
                       min_history_rows: int = 30, seasonal_lag_s: float | None = None) -> np.ndarray:
    """Alerts, at the original resolution, of a rolling-Gaussian detector run on ``interval_s`` bucket means.

    The metric is published every ``interval_s`` seconds as the mean of its bucket; the detector compares each
    bucket with the mean and sd of the previous ``history_s`` seconds of buckets (past only) and pages when
    |z| > ``z_threshold``. A page on bucket j is raised at its last original row ``(j + 1) k - 1`` (k rows per
    bucket): the metric is only known when the bucket closes. With ``seasonal_lag_s`` (e.g. 86400 for a daily
    cycle) the detector scores each bucket's difference to the bucket one lag earlier instead of its level
    (seasonal differencing; the first lag of buckets gets no alert). Returns a boolean array of ``len(values)``.
    """
    from analysis import anomaly

    if not z_threshold > 0:
        raise ValueError(f"z_threshold={z_threshold} must be > 0")
    if not history_s >= interval_s:
        raise ValueError(f"history_s={history_s} must be >= interval_s={interval_s} seconds")
    x = np.asarray(values, dtype=float)
    means, k = aggregate_interval(x, step_s, interval_s)
    if seasonal_lag_s is not None:
        lag = int(round(seasonal_lag_s / interval_s))
        if lag < 1 or abs(lag * interval_s - seasonal_lag_s) > 1e-9 * seasonal_lag_s:
            raise ValueError(f"seasonal_lag_s={seasonal_lag_s} must be a whole multiple of interval_s={interval_s}")
        diff = np.zeros_like(means)
        diff[lag:] = means[lag:] - means[:-lag]
        means = diff
    window = max(2, int(round(history_s / interval_s)))
    s = anomaly.rolling_gaussian_scores(means, window=window, min_periods=min(window, max(2, min_history_rows)))
    z = s / (1.0 - np.minimum(s, 1 - 1e-15))
    out = np.zeros(x.size, dtype=bool)
    out[(np.flatnonzero(z > z_threshold) + 1) * k - 1] = True
    return out


def inject_incidents(values, starts, durations, multipliers) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A copy of ``values`` with rows ``start .. start + duration - 1`` multiplied by ``multiplier`` (rows).

    Returns the new series and the incidents as inclusive ``(first_row, last_row)`` pairs; incidents must not
    overlap and must lie inside the series.
    """
    x = np.asarray(values, dtype=float).copy()
    if not len(starts) == len(durations) == len(multipliers):
        raise ValueError(f"starts, durations and multipliers differ in length: {len(starts)}, {len(durations)}, "
                         f"{len(multipliers)}")
    taken = np.zeros(x.size, dtype=bool)
    incidents = []
    for a, d, m in zip(starts, durations, multipliers):
        a, d = int(a), int(d)
        if d < 1 or a < 0 or a + d > x.size:
            raise ValueError(f"incident at row {a} lasting {d} rows lies outside 0..{x.size - 1}")
        if taken[a:a + d].any():
            raise ValueError(f"incident at row {a} overlaps another")
        taken[a:a + d] = True
        x[a:a + d] *= float(m)
        incidents.append((a, a + d - 1))
    return x, incidents


# ----------------------------------------------------------------------------------------------- sampling

def _weighted_quantile(x, w, q):
    o = np.argsort(x)
    x, w = x[o], w[o]
    c = np.cumsum(w)
    return float(x[np.searchsorted(c, q * c[-1])])


def sampled_p99_error(latencies, rate: float, rng, mode: str = "head", tail_cut_s: float | None = None,
                      q: float = 0.99) -> float:
    """Relative error of the q-quantile latency estimated from a trace sample.

    ``head``: keep each trace with probability ``rate`` (decided before the latency is known). ``tail``: keep
    every trace slower than ``tail_cut_s`` and the others with probability ``rate``, each kept fast trace
    weighted 1/rate (Horvitz-Thompson), so the quantile is unbiased in expectation.
    """
    if not 0 < rate <= 1:
        raise ValueError(f"rate={rate} must be in (0, 1]")
    if mode not in ("head", "tail"):
        raise ValueError(f"mode={mode!r} must be 'head' or 'tail'")
    x = np.asarray(latencies, dtype=float)
    exact = float(np.quantile(x, q, method="inverted_cdf"))
    u = rng.random(x.size)
    if mode == "head":
        keep = u < rate
        if not keep.any():
            return float("nan")
        est = float(np.quantile(x[keep], q, method="inverted_cdf"))
    else:
        if tail_cut_s is None:
            raise ValueError("mode='tail' needs tail_cut_s (seconds)")
        slow = x > tail_cut_s
        keep = slow | (u < rate)
        w = np.where(slow, 1.0, 1.0 / rate)[keep]
        est = _weighted_quantile(x[keep], w, q)
    return (est - exact) / exact


def telemetry_volume(services: int, hosts_per_service: int, metrics_per_host: int, resolution_s: float,
                     bytes_per_point: float = 16.0, price_per_gb_month: float = 0.0) -> dict:
    """Points per second, bytes per month and monthly cost of a metrics fleet (30-day month).

    Active series = services x hosts x metrics; each emits one point every ``resolution_s`` seconds.
    """
    for nm, v in dict(services=services, hosts_per_service=hosts_per_service,
                      metrics_per_host=metrics_per_host).items():
        if int(v) != v or v < 1:
            raise ValueError(f"{nm}={v} must be an integer >= 1")
    if not resolution_s > 0:
        raise ValueError(f"resolution_s={resolution_s} must be > 0 seconds")
    series = services * hosts_per_service * metrics_per_host
    pps = series / resolution_s
    gb_month = pps * 30 * 86400 * bytes_per_point / 1e9
    return {"series": series, "points_per_s": pps, "gb_per_month": gb_month,
            "cost_per_month": gb_month * price_per_gb_month}
