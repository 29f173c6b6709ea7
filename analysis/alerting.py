"""SLO burn-rate alerting (Google SRE Workbook, ch. 5 "Alerting on SLOs") against a plain threshold.

Vocabulary: times in seconds, rates in requests/s; a series is regular with step ``step_s`` seconds and row t
covers ``[t step_s, (t + 1) step_s)``, so an alert computed from row t is raised at the END of that row.

- An SLI counts bad and total events per row; the error ratio over a trailing window is
  ``sum(bad) / sum(total)`` and its **burn rate** is that ratio over the error budget ``1 - slo`` (burn rate 1
  spends exactly the budget in the SLO period).
- A **multiwindow, multi-burn-rate** rule ``(long_s, short_s, factor)`` fires on a row when the burn rates of
  BOTH trailing windows exceed ``factor``. :data:`WORKBOOK_RULES` are the Workbook's recommended parameters for
  a 30-day SLO (Table 5-8): page at 14.4x over 1 h (short window 5 min, 2% of the budget), page at 6x over
  6 h (short 30 min, 5%), ticket at 1x over 3 days (short 6 h, 10%); ``factor = budget_fraction * period / long``.
- :func:`adapt_rules` maps the windows onto a series' step: a window shorter than one step, or not a whole
  number of steps, is rounded UP to whole steps (an hourly series cannot show a 5-min window: 1 h is the finest).
- :func:`deviation_sli` defines an SLI for a request series that has no error counts: the expected rate is a
  forecast from past rows only, and the requests beyond a tolerance band around it (surplus or shortfall)
  are the "bad" events, so abnormal traffic spends the error budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["BurnRateRule", "WORKBOOK_RULES", "SLO_PERIOD_S", "burn_rate_factor", "adapt_rules", "burn_rates",
           "multiwindow_alerts", "step_detection_time", "deviation_sli", "incident_ranges", "alert_report",
           "threshold_for_recall"]

SLO_PERIOD_S = 30 * 86400.0   # the Workbook's 30-day SLO period (seconds)


@dataclass(frozen=True)
class BurnRateRule:
    """One multiwindow rule: fire when the burn rate over BOTH ``long_s`` and ``short_s`` exceeds ``factor``."""

    long_s: float
    short_s: float
    factor: float
    budget_fraction: float   # of the period's error budget spent over ``long_s`` at burn rate ``factor``
    severity: str            # "page" or "ticket"

    def __post_init__(self):
        if not (self.long_s > 0 and self.short_s > 0):
            raise ValueError(f"long_s={self.long_s} and short_s={self.short_s} must be > 0 seconds")
        if self.short_s > self.long_s:
            raise ValueError(f"short_s={self.short_s} must be <= long_s={self.long_s} seconds")
        if not self.factor > 0:
            raise ValueError(f"factor={self.factor} must be > 0")
        if self.severity not in ("page", "ticket"):
            raise ValueError(f"severity={self.severity!r} must be 'page' or 'ticket'")


def burn_rate_factor(budget_fraction: float, long_s: float, period_s: float = SLO_PERIOD_S) -> float:
    """Burn rate that spends ``budget_fraction`` of the budget in ``long_s`` seconds of a ``period_s`` SLO."""
    if not 0 < budget_fraction <= 1:
        raise ValueError(f"budget_fraction={budget_fraction} must be in (0, 1]")
    if not (long_s > 0 and period_s > 0):
        raise ValueError(f"long_s={long_s} and period_s={period_s} must be > 0 seconds")
    return budget_fraction * period_s / long_s


#: The Workbook's Table 5-8 (30-day SLO): long window, short window (1/12 of the long), burn rate, budget spent.
WORKBOOK_RULES: tuple[BurnRateRule, ...] = (
    BurnRateRule(3600.0, 300.0, burn_rate_factor(0.02, 3600.0), 0.02, "page"),        # 14.4x
    BurnRateRule(21600.0, 1800.0, burn_rate_factor(0.05, 21600.0), 0.05, "page"),     # 6x
    BurnRateRule(259200.0, 21600.0, burn_rate_factor(0.10, 259200.0), 0.10, "ticket"),  # 1x
)


def _rows(window_s: float, step_s: float) -> int:
    """Whole rows covering ``window_s`` (rounded up; at least one row)."""
    return max(1, math.ceil(window_s / step_s - 1e-9))


def adapt_rules(rules, step_s: float) -> list[dict]:
    """The rules on a series of step ``step_s``: windows rounded up to whole rows (see module doc).

    Returns one dict per rule with the original rule, ``long_rows``, ``short_rows``, the represented windows in
    seconds, and ``exact`` (both windows are whole multiples of the step).
    """
    if not step_s > 0:
        raise ValueError(f"step_s={step_s} must be > 0 seconds")
    out = []
    for r in rules:
        lr, sr = _rows(r.long_s, step_s), _rows(r.short_s, step_s)
        out.append({"rule": r, "long_rows": lr, "short_rows": sr, "long_s": lr * step_s, "short_s": sr * step_s,
                    "exact": abs(lr * step_s - r.long_s) < 1e-6 and abs(sr * step_s - r.short_s) < 1e-6})
    return out


def _check_events(bad, total):
    b = np.asarray(bad, dtype=float)
    t = np.asarray(total, dtype=float)
    if b.ndim != 1 or b.shape != t.shape:
        raise ValueError(f"bad and total must be one-dimensional of equal length, got {b.shape} and {t.shape}")
    for nm, x in (("bad", b), ("total", t)):
        wrong = np.flatnonzero(~np.isfinite(x) | (x < 0))
        if wrong.size:
            raise ValueError(f"{nm}: row {int(wrong[0])} is {x[wrong[0]]}, not a finite count >= 0")
    return b, t


def burn_rates(bad, total, window_rows: int, slo: float) -> np.ndarray:
    """Burn rate over the trailing ``window_rows`` rows ending at each row (past and current rows only).

    Rows before a full window use the rows available (the alert has less history at the start, never future).
    A window with no events has burn rate 0.
    """
    if not 0 < slo < 1:
        raise ValueError(f"slo={slo} must be in (0, 1)")
    if int(window_rows) != window_rows or window_rows < 1:
        raise ValueError(f"window_rows={window_rows} must be an integer >= 1")
    b, t = _check_events(bad, total)
    k = int(window_rows)
    cb, ct = np.r_[0.0, np.cumsum(b)], np.r_[0.0, np.cumsum(t)]
    i = np.arange(1, b.size + 1)
    lo = np.maximum(0, i - k)
    sb, st = cb[i] - cb[lo], ct[i] - ct[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(st > 0, sb / np.where(st > 0, st, 1.0), 0.0)
    return ratio / (1.0 - slo)


def multiwindow_alerts(bad, total, step_s: float, slo: float, rules=WORKBOOK_RULES) -> dict:
    """Per-rule and combined alerts of the multiwindow, multi-burn-rate policy (module doc).

    Returns ``{"rules": adapt_rules(...) each with its boolean "alerts", "page": OR of page rules,
    "ticket": OR of ticket rules}``; a rule fires on a row when both windows' burn rates are ``> factor``.
    """
    adapted = adapt_rules(rules, step_s)
    n = np.asarray(bad).size
    page, ticket = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for a in adapted:
        f = a["rule"].factor
        fire = (burn_rates(bad, total, a["long_rows"], slo) > f) & (burn_rates(bad, total, a["short_rows"], slo) > f)
        a["alerts"] = fire
        if a["rule"].severity == "page":
            page |= fire
        else:
            ticket |= fire
    return {"rules": adapted, "page": page, "ticket": ticket}


def step_detection_time(burn_rate: float, rule: BurnRateRule, period_s: float = SLO_PERIOD_S) -> float:
    """Closed form: seconds after a step from burn rate 0 to ``burn_rate`` until ``rule`` fires (inf if never).

    The long window's burn rate reaches ``burn_rate * t / long_s`` after t seconds, which exceeds the factor at
    ``t = factor * long_s / burn_rate = budget_fraction * period_s / burn_rate`` (the short window, shorter,
    crosses first); a step no faster than the factor never fires.
    """
    if not burn_rate >= 0:
        raise ValueError(f"burn_rate={burn_rate} must be >= 0")
    if burn_rate <= rule.factor:
        return math.inf
    return rule.factor * rule.long_s / burn_rate


def deviation_sli(values, expected, tolerance, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Bad and total requests per row of a request-rate series without error counts.

    ``values``: observed rate (requests/s); ``expected``: its forecast from past rows only (requests/s);
    ``tolerance``: half-width of the normal band (requests/s). Total events = expected requests in the row
    (``expected * step_s``); bad events = requests beyond the band, surplus or shortfall
    (``max(0, |value - expected| - tolerance) * step_s``). Rows without a forecast (NaN) count no events.
    """
    if not step_s > 0:
        raise ValueError(f"step_s={step_s} must be > 0 seconds")
    x = np.asarray(values, dtype=float)
    f = np.asarray(expected, dtype=float)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=float), x.shape)
    if f.shape != x.shape:
        raise ValueError(f"expected has shape {f.shape}, values {x.shape}")
    bad_tol = np.flatnonzero(tol < 0)
    if bad_tol.size:
        raise ValueError(f"tolerance: row {int(bad_tol[0])} is {tol[bad_tol[0]]}, must be >= 0 requests/s")
    ok = np.isfinite(f) & np.isfinite(tol) & np.isfinite(x)
    total = np.where(ok, np.maximum(f, 0.0), 0.0) * step_s
    bad = np.where(ok, np.maximum(0.0, np.abs(x - np.where(ok, f, 0.0)) - np.where(ok, tol, 0.0)), 0.0) * step_s
    return bad, total


def incident_ranges(labels) -> list[tuple[int, int]]:
    """Maximal runs of labelled rows as inclusive ``(first_row, last_row)`` pairs."""
    a = np.asarray(labels, dtype=bool)
    idx = np.flatnonzero(a)
    if idx.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[cuts + 1]]
    ends = np.r_[idx[cuts], idx[-1]]
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def alert_report(alerts, incidents, step_s: float, grace_rows: int = 0, scored_from: int = 0) -> dict:
    """Detection time, recall and false pages per 30-day month of a boolean alert series.

    An episode (maximal run of alerting rows) is one page. An incident ``(first, last)`` is detected when an
    alert row falls in ``first .. last + grace_rows``; its detection time is ``(row - first + 1) * step_s``
    seconds (an alert on a row is raised at the row's end). A page starting outside every such range is false.
    Rows before ``scored_from`` (warm-up: no forecast yet) are not scored, nor are incidents starting there.
    """
    if not step_s > 0:
        raise ValueError(f"step_s={step_s} must be > 0 seconds")
    if int(grace_rows) != grace_rows or grace_rows < 0:
        raise ValueError(f"grace_rows={grace_rows} must be an integer >= 0")
    a = np.asarray(alerts, dtype=bool).copy()
    n = a.size
    a[:scored_from] = False
    covered = np.zeros(n, dtype=bool)
    times = []
    n_inc = 0
    for lo, hi in incidents:
        if not 0 <= lo <= hi < n:
            raise ValueError(f"incident rows ({lo}, {hi}) outside 0..{n - 1}")
        if lo < scored_from:
            continue
        n_inc += 1
        end = min(n - 1, hi + int(grace_rows))
        covered[lo:end + 1] = True
        hit = np.flatnonzero(a[lo:end + 1])
        if hit.size:
            times.append((hit[0] + 1) * step_s)
    starts = np.flatnonzero(a & ~np.r_[False, a[:-1]])
    false = int((~covered[starts]).sum())
    months = (n - scored_from) * step_s / SLO_PERIOD_S
    return {"incidents": n_inc, "detected": len(times), "recall": len(times) / n_inc if n_inc else float("nan"),
            "median_detection_s": float(np.median(times)) if times else float("nan"),
            "mean_detection_s": float(np.mean(times)) if times else float("nan"),
            "pages": int(starts.size), "false_pages": false,
            "false_pages_per_month": false / months if months > 0 else float("nan")}


def threshold_for_recall(score, incidents, step_s: float, recall: float, grace_rows: int = 0,
                         scored_from: int = 0) -> tuple[float, dict]:
    """Highest threshold T whose plain alert ``score > T`` reaches ``recall``, with its :func:`alert_report`.

    The candidate thresholds are the distinct score values just below each incident's best score (the sweep
    needs no labels beyond the incidents the recall is measured on). Raises ValueError if no T reaches it.
    """
    s = np.nan_to_num(np.asarray(score, dtype=float), nan=-np.inf)
    if not 0 < recall <= 1:
        raise ValueError(f"recall={recall} must be in (0, 1]")
    peaks = []
    for lo, hi in incidents:
        if lo >= scored_from:
            peaks.append(float(s[lo:min(s.size, hi + int(grace_rows) + 1)].max()))
    for t in sorted(set(np.nextafter(np.array(peaks), -np.inf).tolist()), reverse=True):
        rep = alert_report(s > t, incidents, step_s, grace_rows, scored_from)
        if rep["recall"] >= recall - 1e-12:
            return t, rep
    raise ValueError(f"recall={recall}: no threshold on the score reaches it")


def forecast_band(values, period: int, k: float = 3.0, history: int | None = None, refit: int | None = None,
                  min_history: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Expected value and band half-width of every row from past rows only (NaN during warm-up).

    Expected: the one-step-ahead STL prediction of :func:`analysis.anomaly.stl_prediction_errors` (``period``
    rows per season); half-width: ``k`` robust standard deviations (IQR / 1.349) of the previous ``history``
    prediction errors (default: that function's history). Same units as ``values`` (e.g. requests/s).
    """
    from analysis import anomaly

    if not k >= 0:
        raise ValueError(f"k={k} must be >= 0 standard deviations")
    x = np.asarray(values, dtype=float)
    history = int(history or max(4 * int(period), 64))
    err = anomaly.stl_prediction_errors(x, period, history=history, refit=refit, min_history=min_history)
    past = pd.Series(err).shift(1).rolling(history, min_periods=min(history, 30))
    spread = ((past.quantile(0.75) - past.quantile(0.25)) / 1.349).to_numpy()
    return x - err, k * spread
