"""Streaming anomaly detectors: every score uses only the values before it (no look-ahead).

Both return an anomaly score in [0, 1] per row, ``2 Phi(|z|) - 1`` of a z-score of the row against a baseline
fitted on earlier rows only, so NAB's threshold sweep (:mod:`analysis.nab_scoring`) applies directly.

- :func:`rolling_gaussian_scores`: z against the mean and standard deviation of the previous ``window`` rows.
- :func:`stl_residual_scores`: every ``refit`` rows, fit statsmodels' STL (daily period) on the previous
  ``history`` rows; the rows up to the next refit are compared with the last trend value plus the seasonal
  value one period earlier; z is robust (median and 1.4826 x MAD of the fit's residuals).
Rows without enough history get score 0 (they fall in NAB's probation period anyway).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import erf

__all__ = ["z_to_score", "rolling_gaussian_scores", "stl_residual_scores", "daily_period"]

_MAD_TO_SD = 1.4826


def z_to_score(z) -> np.ndarray:
    """``2 Phi(|z|) - 1``: the probability that a standard normal lies closer to 0 than ``z`` (NaN -> 0)."""
    z = np.nan_to_num(np.abs(np.asarray(z, dtype=float)), nan=0.0, posinf=40.0)
    return erf(z / np.sqrt(2.0))


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
    # a flat history: any change is maximally surprising, no change is not
    diff = x.to_numpy() - mu
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, diff / np.where(sd > 0, sd, 1.0), np.where(np.abs(diff) > 0, np.inf, 0.0))
    return z_to_score(z)


def daily_period(timestamps) -> int:
    """Rows per day from the median step of ``timestamps`` (at least 1)."""
    ts = pd.to_datetime(pd.Series(list(timestamps)))
    step = ts.diff().dt.total_seconds().median()
    if not step or not np.isfinite(step) or step <= 0:
        return 1
    return max(1, int(round(86400.0 / step)))


def stl_residual_scores(values, period: int, history: int | None = None, refit: int | None = None,
                        min_history: int | None = None) -> np.ndarray:
    """Robust z of the residual against an STL fit on past rows only (period in rows; see module doc).

    ``history``: rows of past used per fit (default 7 periods, at least 64); ``refit``: rows between fits
    (default one period, at least 12); ``min_history``: rows needed before the first fit (default 2 periods,
    at least 30). With ``period < 4`` or too short a history the seasonal part is dropped (robust level only).
    """
    from statsmodels.tsa.seasonal import STL

    x = _check_values(values)
    if int(period) != period or period < 1:
        raise ValueError(f"period={period} must be an integer >= 1 row")
    period = int(period)
    history = int(history or max(7 * period, 64))
    refit = int(refit or max(period, 12))
    min_history = int(min_history or max(2 * period, 30))
    for nm, v in (("history", history), ("refit", refit), ("min_history", min_history)):
        if v < 1:
            raise ValueError(f"{nm}={v} must be >= 1 row")
    n = x.size
    z = np.zeros(n)
    start = min_history
    while start < n:
        stop = min(n, start + refit)
        past = x[max(0, start - history):start]
        seasonal_ok = period >= 4 and past.size >= 2 * period
        if seasonal_ok:
            fit = STL(past, period=period, robust=False).fit()
            resid = fit.resid
            trend_last = fit.trend[-1]
            seas = fit.seasonal
            idx = np.arange(start, stop)
            # seasonal value of the same phase in the last full period of the fit
            k = past.size - period + ((idx - start) % period)
            expected = trend_last + seas[k]
        else:
            level = np.median(past)
            resid = past - level
            expected = np.full(stop - start, level)
        med = np.median(resid)
        mad = np.median(np.abs(resid - med)) * _MAD_TO_SD
        r = x[start:stop] - expected - med
        if mad > 0:
            z[start:stop] = r / mad
        else:
            z[start:stop] = np.where(np.abs(r) > 0, np.inf, 0.0)
        start = stop
    return z_to_score(z)
