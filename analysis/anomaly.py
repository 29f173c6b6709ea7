"""Streaming anomaly detectors: every score uses only the values before it (no look-ahead).

Both return an anomaly score in [0, 1] per row, ``|z| / (1 + |z|)`` of a z-score of the row against a baseline
fitted on earlier rows only, so NAB's threshold sweep (:mod:`analysis.nab_scoring`) applies directly.

- :func:`rolling_gaussian_scores`: z against the mean and standard deviation of the previous ``window`` rows.
- :func:`stl_residual_scores`: every ``refit`` rows, fit statsmodels' STL (daily period) on the previous
  ``history`` rows (loess evaluated on a coarse grid, statsmodels' ``trend_jump``/``low_pass_jump``); the rows up to the next refit are compared with the last trend value plus the seasonal
  value one period earlier; z of each prediction error is robust: its distance to the median of the previous
  ``history`` prediction errors over their interquartile range / 1.349 (a robust standard deviation).
Rows without enough history get score 0. NAB's probation period (15% of a file, at most 750 rows) covers the
two-period STL warm-up only in files of at least 2 * period / 0.15 rows (3840 at 5 min); shorter files have
scored rows before the first fit.

**Calibration across files.** A robust z is not comparable between series: on a heavy-tailed or mostly
constant series (IQR near 0) ordinary rows reach |z| of 10^2..10^6, so NAB's single corpus-wide threshold either
floods such files with false positives or misses everything elsewhere (the robust STL detector scored 0.1 on
NAB v1.1). :func:`rank_calibrate` (``stl_residual_scores(..., calibrate=True)``, the default) replaces each score
by its empirical rank among the previous ``history`` scores (a streaming empirical p-value), so a threshold means
the same exceedance rate in every file; ties in rank are broken by the score itself.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["z_to_score", "score_to_z", "rolling_gaussian_scores", "stl_residual_scores", "stl_prediction_errors", "error_scores",
           "daily_period", "rank_calibrate"]

_IQR_TO_SD = 1.349  # interquartile range of a standard normal


def z_to_score(z) -> np.ndarray:
    """``|z| / (1 + |z|)`` in [0, 1) (NaN -> 0, infinite -> 1).

    NAB's threshold sweep depends only on the order of the scores, so any increasing map of |z| gives the same
    NAB score; this one does not saturate in floating point (``2 Phi(|z|) - 1`` is exactly 1.0 for every
    |z| > 8.3, which ties all large deviations and leaves the sweep no threshold between them).
    """
    z = np.nan_to_num(np.abs(np.asarray(z, dtype=float)), nan=0.0, posinf=np.inf)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(z), 1.0, z / (1.0 + z))


def score_to_z(scores) -> np.ndarray:
    """Inverse of :func:`z_to_score`: ``|z| = s / (1 - s)`` for scores s in [0, 1] (a z threshold applied to
    scores). A score of 1 (infinite |z|) gives about 1e15: s is capped at ``1 - 1e-15``."""
    s = np.asarray(scores, dtype=float)
    bad = np.flatnonzero(~((s >= 0) & (s <= 1)))
    if bad.size:
        raise ValueError(f"scores: row {int(bad[0])} is {s.flat[bad[0]]}, outside [0, 1]")
    return s / (1.0 - np.minimum(s, 1 - 1e-15))


def _check_values(values, name="values") -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{name}: row {int(bad[0])} is {x[bad[0]]}, not a finite number")
    return x


def rolling_gaussian_scores(values, window: int = 288, min_periods: int = 30) -> np.ndarray:
    """Score of row t from the mean and sd of rows ``t-window .. t-1`` (rows, not seconds)."""
    if int(window) != window or window < 2:
        raise ValueError(f"window={window} must be an integer >= 2 rows")
    if int(min_periods) != min_periods or not 2 <= min_periods <= window:
        raise ValueError(f"min_periods={min_periods} must be an integer in [2, window={window}]")
    x = pd.Series(_check_values(values))
    past = x.shift(1).rolling(int(window), min_periods=int(min_periods))
    mu, sd = past.mean().to_numpy(), past.std(ddof=1).to_numpy()
    # a flat history: a floor on the scale keeps z finite and ordered by the size of the change
    floor = 1e-6 * np.maximum(1.0, np.abs(np.nan_to_num(mu)))
    z = (x.to_numpy() - mu) / np.maximum(np.nan_to_num(sd), floor)
    return z_to_score(z)



def daily_period(timestamps) -> int:
    """Rows per day from the median step of ``timestamps`` (at least 1)."""
    ts = pd.to_datetime(pd.Series(list(timestamps)))
    step = ts.diff().dt.total_seconds().median()
    if not step or not np.isfinite(step) or step <= 0:
        return 1
    return max(1, int(round(86400.0 / step)))


def stl_residual_scores(values, period: int, history: int | None = None, refit: int | None = None,
                        min_history: int | None = None, scale: str = "robust", calibrate: bool = True) -> np.ndarray:
    """Scores of the prediction errors of an STL fit on past rows only (period in rows; see module doc).

    ``scale``: "robust" (IQR of past errors, the default) or "sd" (their standard deviation); see
    :func:`error_scores`. ``calibrate``: rank each score among the previous ``history`` scores
    (:func:`rank_calibrate`; comparable across series). Other arguments as :func:`stl_prediction_errors`.
    """
    if int(period) != period or period < 1:
        raise ValueError(f"period={period} must be an integer >= 1 row")
    history = int(history or max(4 * int(period), 64))
    err = stl_prediction_errors(values, int(period), history=history, refit=refit, min_history=min_history)
    s = error_scores(err, history=history, scale=scale)
    return rank_calibrate(s, history) if calibrate else s


def rank_calibrate(scores, history: int, min_periods: int = 30) -> np.ndarray:
    """Streaming empirical rank of each score among itself and the previous ``history`` scores, in [0, 1).

    Row t gets ``(r - 1 + s_t) / m``, where r is the (average) rank of s_t among the ``m`` values of rows
    ``t - history .. t`` (r = m for a new maximum) and ``s_t`` in [0, 1) breaks ties within a rank. Under a
    stationary score distribution, P(score >= 1 - j/m) is about j/m in every series, whatever its tails: one
    corpus-wide threshold then means one exceedance rate. Scores 0 (no prediction yet) and rows with fewer than
    ``min_periods`` values stay 0.
    """
    if int(history) != history or history < 1:
        raise ValueError(f"history={history} must be an integer >= 1 row")
    s = np.asarray(scores, dtype=float)
    bad = np.flatnonzero(~((s >= 0) & (s < 1)) & ~(s == 1))
    if bad.size:
        raise ValueError(f"scores: row {int(bad[0])} is {s[bad[0]]}, outside [0, 1]")
    roll = pd.Series(s).rolling(int(history) + 1, min_periods=int(min_periods))
    r, m = roll.rank(method="average").to_numpy(), roll.count().to_numpy()
    out = np.nan_to_num((r - 1.0 + np.minimum(s, 1 - 1e-12)) / m, nan=0.0)
    out[s == 0] = 0.0
    return np.clip(out, 0.0, 1.0)



def stl_prediction_errors(values, period: int, history: int | None = None, refit: int | None = None,
                          min_history: int | None = None) -> np.ndarray:
    """Prediction error of every row from an STL fit on earlier rows only (NaN before the first fit).

    ``history``: rows of past used per fit (default 4 periods, at least 64); ``refit``: rows between fits
    (default one period, at least 96); ``min_history``: rows needed before the first fit (default 2 periods,
    at least 30). With ``period < 4`` or too short a history the seasonal part is dropped (robust level only).
    """
    from statsmodels.tsa.seasonal import STL

    x = _check_values(values)
    if int(period) != period or period < 1:
        raise ValueError(f"period={period} must be an integer >= 1 row")
    period = int(period)
    history = int(history or max(4 * period, 64))
    refit = int(refit or max(period, 96))
    min_history = int(min_history or max(2 * period, 30))
    for nm, v in (("history", history), ("refit", refit), ("min_history", min_history)):
        if v < 1:
            raise ValueError(f"{nm}={v} must be >= 1 row")
    n = x.size
    err = np.full(n, np.nan)   # one-step-ahead prediction error of each row, from a fit on earlier rows
    start = min_history
    while start < n:
        stop = min(n, start + refit)
        past = x[max(0, start - history):start]
        if period >= 4 and past.size >= 2 * period:
            jump = max(1, period // 10)   # loess evaluated every `jump` rows and interpolated: ~10x faster fits
            fit = STL(past, period=period, robust=False, trend_jump=jump, low_pass_jump=jump).fit()
            # seasonal value of the same phase in the last full period of the fit, plus the last trend value
            k = past.size - period + ((np.arange(start, stop) - start) % period)
            expected = fit.trend[-1] + fit.seasonal[k]
        else:
            expected = np.full(stop - start, np.median(past))
        err[start:stop] = x[start:stop] - expected
        start = stop
    return err


def error_scores(err, history: int, scale: str = "robust") -> np.ndarray:
    """Anomaly scores of prediction errors against the previous ``history`` errors (past only).

    ``scale="robust"``: z = (e - median) / (IQR / 1.349), falling back to the standard deviation when the IQR
    is 0; ``scale="sd"``: z = (e - median) / standard deviation. NaN errors (no prediction yet) score 0.
    """
    if scale not in ("robust", "sd"):
        raise ValueError(f"scale={scale!r} must be 'robust' or 'sd'")
    err = np.asarray(err, dtype=float)
    if int(history) != history or history < 2:
        raise ValueError(f"history={history} must be an integer >= 2 rows")
    history = int(history)
    # robust threshold: centre and scale of the PREVIOUS `history` prediction errors (median, IQR / 1.349)
    e = pd.Series(err)
    past_e = e.shift(1).rolling(history, min_periods=min(history, 30))
    centre = past_e.median().to_numpy()
    iqr = (past_e.quantile(0.75) - past_e.quantile(0.25)).to_numpy() / _IQR_TO_SD
    floor = 1e-6 * np.maximum(1.0, e.abs().shift(1).rolling(history, min_periods=1).max().fillna(0).to_numpy())
    sd = past_e.std().to_numpy()   # fallback when half the past errors are equal (IQR 0: counts, flat lines)
    spread = np.where(np.nan_to_num(iqr) > 0, iqr, np.nan_to_num(sd)) if scale == "robust" else np.nan_to_num(sd)
    z = np.nan_to_num((err - centre) / np.maximum(spread, floor), nan=0.0)
    return z_to_score(z)
