"""Demand forecasting on statsmodels: four seasonal models plus Croston/SBA for intermittent
demand, one interface, rolling-origin backtests.

Every model is a small object with ``fit(y_train)`` and ``forecast(horizon, levels=(0.8, 0.95))``.
The training series is a pandas Series of demand (requests/s) on a regular DatetimeIndex (hourly for
the kit); ``forecast`` returns a DataFrame indexed by the future timestamps with columns ``mean``
and one ``loNN``/``hiNN`` pair per interval level (``lo80``, ``hi80``, ``lo95``, ``hi95``), in
requests/s.

Models (seasons are counted in steps of the series: 24 = a day, 168 = a week of hours):

``SeasonalNaive``
    y(T+h) = y(T+h-168k), the same hour one week earlier (k whole weeks back when h > 168).
    Intervals from the empirical quantiles of the training data's own seasonal differences at that
    lag (no normality assumption).
``ETSForecaster``
    ETS(A,N,A) with a weekly season of 7 on the daily (24-hour block) means of log demand
    (statsmodels ``ETSModel``, heuristic initial states, so only the smoothing parameters are
    optimised), plus a median hour-of-week shape; analytic (normal) intervals on the log scale plus
    the hourly residual variance.
``FourierARMA``
    log demand = intercept [+ slope] + Fourier terms (period 24 and period 168) + optional event
    dummies + ARMA(1,1) error. Two-step fit: OLS for the regression, then the ARMA error by maximum
    likelihood (statsmodels ``SARIMAX``) on the OLS residuals. Intervals from the ARMA forecast
    variance (regression coefficient uncertainty is ignored: small next to the noise with weeks of
    hourly data).
``MSTLForecaster``
    ``statsmodels.tsa.seasonal.MSTL`` with periods (24, 168) on log demand; each seasonal component
    is forecast by repeating its last cycle, the seasonally adjusted series (trend + remainder) by
    an AR(2) with a mean (statsmodels ``ARIMA``, Burg estimates); intervals from that AR model only.
    Local-constant seasonal smoothing (``seasonal_deg=0``) so that the repeated last cycle is not an
    extrapolation.

Log models (``log=True``, the default except for the baseline) work on z = log(y + c), with the
offset c chosen per training series (``Transform.choose``) and recorded on the fitted model
(``model.transform_``) and in every backtest row (column ``transform``): c = 0 (a plain log) when
all demand is positive, otherwise c = the smallest positive value of the series (its resolution: for
integer counts that is log1p exactly), unless ``offset=`` states it. Zeros are therefore accepted;
negative demand is an error. The column ``mean`` is the back-transformed model-scale mean,
exp(mean_z) - c, which is the forecast *median* in requests/s, not its mean (the mean of a
log-normal forecast is higher, exp(mean_z + var_z / 2) - c; no bias adjustment is made: the median
is the MAE-optimal point forecast). Interval bounds are quantiles, and quantiles map exactly through
the monotone back-transform. Every column of every model is then clipped at 0: a bound below 0 is
the quantile of max(Y, 0) (demand cannot be negative), so no forecast is ever negative.

Other series. ``seasonal_periods`` derives the seasons from the step and the history length (a day
and, with at least two weeks of history, a week); ``prepare_demand`` applies the kit's rule for
sub-hourly series (mean rate per hour when there are two weeks of history, else the native step with
daily seasonality); ``classify_demand`` puts a series in the Syntetos-Boylan classes (smooth,
erratic, intermittent, lumpy) and ``default_models(series=...)`` gives intermittent or lumpy series
the Croston/SBA model (``CrostonSBA``) instead of the log-scale models.

``CrostonSBA``
    Croston's method with the Syntetos-Boylan bias correction for intermittent demand: a flat rate
    (smoothed non-zero size / smoothed interval), intervals from the demand probability and the
    empirical sizes (lower bounds 0). Identity scale.

A full SARIMA with a 168-step season is deliberately not offered: its state dimension (> 168) makes
each likelihood evaluation slow and the fit fragile; Fourier terms and MSTL carry the weekly pattern
instead.

Statsmodels warnings raised while fitting (convergence and the like) are captured, never printed:
each model keeps them in ``fit_warnings`` and ``backtest`` counts them per model and origin (column
``n_warnings``).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from dataclasses import dataclass

import numpy as np
import pandas as pd
from analysis._lazy import lazy_module

stats = lazy_module("scipy.stats")    # imported on first use (about 1 CPU-s)

from .checks import show as _show

DAY = 24
"""Daily season of an hourly series (steps)."""
WEEK = 168
"""Weekly season of an hourly series (steps)."""
DEFAULT_LEVELS = (0.8, 0.95)
# a Monday 00:00: the phase origin of Fourier terms and hour-of-week profiles
_EPOCH = pd.Timestamp("1970-01-05")

__all__ = [
    "ADI_CUTOFF",
    "CV2_CUTOFF",
    "CrostonSBA",
    "DemandClass",
    "SeasonalPeriods",
    "Transform",
    "classify_demand",
    "prepare_demand",
    "seasonal_periods",
    "to_hourly",
    "DAY",
    "DEFAULT_LEVELS",
    "WEEK",
    "ETSForecaster",
    "Forecaster",
    "FourierARMA",
    "MSTLForecaster",
    "SeasonalNaive",
    "accuracy_table",
    "backtest",
    "coverage",
    "default_models",
    "event_dummies",
    "fourier_terms",
    "interval_columns",
    "mae",
    "mase",
    "mean_width",
    "rmse",
    "seasonal_naive_scale",
    "smape",
    "us_retail_events",
]


# ------------------------------------------------------------------------------------- validation

def _check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={_show(value)}: must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={_show(value)}: must be >= {minimum}")
    return int(value)


def _check_levels(levels) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in levels)
    except TypeError as exc:
        raise ValueError(f"levels={_show(levels)}: must be a sequence of probabilities in (0, 1)") \
            from exc
    if not out:
        raise ValueError("levels=(): give at least one interval level, e.g. (0.8, 0.95)")
    for v in out:
        if not (0.0 < v < 1.0) or math.isnan(v):
            raise ValueError(f"levels={_show(levels)}: level {_show(v)} is not in (0, 1)")
    if len(set(out)) != len(out):
        raise ValueError(f"levels={_show(levels)}: duplicated level")
    return out


def interval_columns(level: float) -> tuple[str, str]:
    """Interval column names of a level: 0.8 -> ('lo80', 'hi80'), 0.975 -> ('lo97.5', 'hi97.5')."""
    tag = f"{100 * float(level):.6g}"
    return f"lo{tag}", f"hi{tag}"


def _check_series(y, name: str, min_length: int = 1) -> pd.Series:
    """Float Series on an increasing, regular DatetimeIndex with finite values, else ValueError."""
    if not isinstance(y, pd.Series):
        raise ValueError(f"{name}: expected a pandas Series with a DatetimeIndex, "
                         f"got {type(y).__name__}")
    if not isinstance(y.index, pd.DatetimeIndex):
        raise ValueError(f"{name}: the index must be a DatetimeIndex, got {type(y.index).__name__}")
    if len(y) < min_length:
        raise ValueError(f"{name}: {len(y)} observations, need at least {min_length}")
    try:
        values = pd.to_numeric(y, errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: values must be numeric ({exc})") from exc
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}: {bad.size} missing or non-finite value(s), first at row {i} "
                         f"({y.index[i]}): {_show(y.iloc[i])}; fill or interpolate gaps first")
    if len(y) >= 2:
        step = np.diff(y.index.asi8)
        back = np.flatnonzero(step <= 0)
        if back.size:
            i = int(back[0]) + 1
            what = "duplicated" if step[back[0]] == 0 else "not increasing"
            raise ValueError(f"{name}: index is {what} at row {i} "
                             f"({y.index[i]} after {y.index[i - 1]}); "
                             "sort and de-duplicate the series first")
        irregular = np.flatnonzero(step != step[0])
        if irregular.size:
            i = int(irregular[0]) + 1
            expected = pd.Timedelta(int(step[0]), unit=y.index.unit)
            raise ValueError(f"{name}: index is not regularly spaced at row {i} "
                             f"({y.index[i - 1]} -> {y.index[i]}, expected a step of {expected}); "
                             "reindex to a fixed frequency and fill gaps first")
    return pd.Series(values, index=y.index, name=y.name)


def _step(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        raise ValueError("series: need at least two timestamps to know the sampling step")
    return index[1] - index[0]


def _future_index(index: pd.DatetimeIndex, horizon: int) -> pd.DatetimeIndex:
    step = _step(index)
    return pd.date_range(index[-1] + step, periods=horizon, freq=step, name="timestamp")


def _phase(index: pd.DatetimeIndex) -> np.ndarray:
    """Time in steps since a fixed Monday 00:00 (float): one convention for training and future."""
    step = _step(index) if len(index) >= 2 else pd.Timedelta(hours=1)
    epoch = _EPOCH.tz_localize(index.tz) if index.tz is not None else _EPOCH
    return np.asarray((index - epoch) / step, dtype=float)


_Bounds = dict[float, tuple[np.ndarray, np.ndarray]]


class _Captured:
    """Context manager recording every warning raised inside it (printed nowhere)."""

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self.records = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        return False

    @property
    def messages(self) -> list[str]:
        return [f"{w.category.__name__}: {str(w.message).splitlines()[0] if str(w.message) else ''}"
                for w in self.records]


# ------------------------------------------------------------------------------------ transform

@dataclass(frozen=True)
class Transform:
    """The model-scale transform of demand: z = log(y + offset) (``kind="log"``) or z = y
    (``kind="none"``); ``offset`` in the units of the series (requests/s).

    ``inverse`` maps model-scale quantiles back (monotone, so quantiles map exactly) and clips at 0.
    """

    kind: str = "none"
    offset: float = 0.0

    @classmethod
    def choose(cls, y: pd.Series, log: bool, offset: float | None = None) -> Transform:
        """The transform of one training series: identity without ``log``; with ``log``, the stated
        ``offset`` if given, else 0 when all values are positive, else the smallest positive value
        (the data's resolution; log1p for integer counts). Negative demand, an all-zero series or a
        stated offset of 0 on a series with zeros: ValueError naming the row."""
        if not log:
            return cls("none", 0.0)
        values = y.to_numpy(dtype=float)
        neg = np.flatnonzero(values < 0)
        if neg.size:
            i = int(neg[0])
            raise ValueError(f"y_train: demand must be >= 0 for a log model, row {i} "
                             f"({y.index[i]}) is {_show(values[i])}; use log=False for signed data")
        if offset is not None:
            if not (isinstance(offset, (int, float, np.integer, np.floating))
                    and not isinstance(offset, bool) and math.isfinite(offset) and offset >= 0):
                raise ValueError(f"offset={_show(offset)}: must be a number >= 0 (requests/s)")
        if offset is not None:
            zero = np.flatnonzero(values + offset <= 0)
            if zero.size:
                i = int(zero[0])
                raise ValueError(f"offset={_show(offset)}: row {i} ({y.index[i]}) is "
                                 f"{_show(values[i])}, so log(y + offset) is undefined; use "
                                 "offset=None (chosen from the data) or a positive offset")
            return cls("log", float(offset))
        if values.min() > 0:
            return cls("log", 0.0)
        positive = values[values > 0]
        if positive.size == 0:
            raise ValueError(f"y_train: all {values.size} values are 0; nothing to model on a log "
                             "scale (use CrostonSBA, or SeasonalNaive, which forecasts 0)")
        return cls("log", float(positive.min()))

    def forward(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        return np.log(y + self.offset) if self.kind == "log" else y

    def inverse(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        y = np.exp(z) - self.offset if self.kind == "log" else z
        return np.maximum(y, 0.0)

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        return "log(y)" if self.offset == 0 else f"log(y + {self.offset:.6g})"


# ------------------------------------------------------------------------------------- base model

class Forecaster:
    """Common interface: ``fit(y_train)`` then ``forecast(horizon, levels)``; see the module doc."""

    name = "forecaster"
    min_length = 2 * WEEK

    def __init__(self, log: bool = False, offset: float | None = None):
        self.log = bool(log)
        if offset is not None:
            Transform.choose(pd.Series([1.0]), True, offset)  # validates the number only
        self.offset = offset
        self.transform_: Transform | None = None
        self.fit_warnings: list[str] = []
        self._index: pd.DatetimeIndex | None = None

    # subclasses implement these two on the (possibly log-transformed) numpy array
    def _fit(self, z: np.ndarray, index: pd.DatetimeIndex) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict(self, horizon: int, levels: tuple[float, ...],
                 future: pd.DatetimeIndex) -> tuple[np.ndarray, _Bounds]:
        raise NotImplementedError  # pragma: no cover - abstract

    def fit(self, y_train: pd.Series) -> Forecaster:
        """Fit to a regular series of demand (requests/s, >= 0; zeros allowed); returns self.

        The transform chosen for this series is kept in ``transform_`` (see ``Transform.choose``).
        """
        y = _check_series(y_train, "y_train", self.min_length)
        self.transform_ = Transform.choose(y, self.log, self.offset)
        z = self.transform_.forward(y.to_numpy())
        with _Captured() as cap:
            self._fit(z, y.index)
        self.fit_warnings = cap.messages
        self._index = y.index
        return self

    def forecast(self, horizon: int, levels: Sequence[float] = DEFAULT_LEVELS) -> pd.DataFrame:
        """Point forecast ``mean`` and interval bounds (requests/s, >= 0), next ``horizon`` steps.

        For log models ``mean`` is the forecast median (see the module doc)."""
        if self._index is None:
            raise ValueError(f"{type(self).__name__}: call fit(y_train) before forecast()")
        horizon = _check_int(horizon, "horizon")
        levels = _check_levels(levels)
        future = _future_index(self._index, horizon)
        with _Captured() as cap:
            mean, bounds = self._predict(horizon, levels, future)
        self.fit_warnings = self.fit_warnings + cap.messages
        back = self.transform_.inverse
        out = {"mean": back(np.asarray(mean, dtype=float))}
        for level in levels:
            lo, hi = bounds[level]
            lo_name, hi_name = interval_columns(level)
            out[lo_name] = back(np.asarray(lo, dtype=float))
            out[hi_name] = back(np.asarray(hi, dtype=float))
        frame = pd.DataFrame(out, index=future)
        frame.index.name = "timestamp"
        return frame


def _normal_bounds(mean: np.ndarray, var: np.ndarray, levels) -> _Bounds:
    """Normal central intervals from forecast means and variances (model scale)."""
    sd = np.sqrt(np.maximum(np.asarray(var, dtype=float), 0.0))
    out = {}
    for level in levels:
        z = stats.norm.ppf(0.5 + level / 2.0)
        out[level] = (mean - z * sd, mean + z * sd)
    return out


# ------------------------------------------------------------------------------------- the models

class SeasonalNaive(Forecaster):
    """y(T+h) = y(T+h-k*season), k = ceil(h/season): the same hour one season (a week) earlier.

    Intervals: the empirical quantiles of the training data's seasonal differences y(t) -
    y(t-k*season) at the lag actually used (k = 1 for h <= season), added to the point forecast. No
    normality assumption; it needs ``(k+1)*season`` training points for lag k (fewer: the
    sigma*sqrt(k) normal rule, Hyndman & Athanasopoulos, FPP3 5.5, scaled from the lag-1
    differences). With ``log=True`` the same on log demand.
    """

    name = "seasonal_naive"

    def __init__(self, season: int = WEEK, log: bool = False, offset: float | None = None):
        super().__init__(log=log, offset=offset)
        self.season = _check_int(season, "season")
        self.min_length = 2 * self.season
        self._z: np.ndarray | None = None

    def _fit(self, z, index):
        self._z = z

    def _predict(self, horizon, levels, future):
        z, m = self._z, self.season
        h = np.arange(1, horizon + 1)
        k = (h - 1) // m + 1  # whole seasons back
        mean = z[len(z) - 1 + h - k * m]  # T + h - k*m with T the last training position
        hi = np.empty((len(levels), horizon))
        lo = np.empty((len(levels), horizon))
        for kk in np.unique(k):
            sel = k == kk
            lag = int(kk) * m
            if len(z) - lag >= m:  # at least a season of differences at this lag
                diffs = z[lag:] - z[:-lag]
                for j, level in enumerate(levels):
                    q_lo, q_hi = np.quantile(diffs, [0.5 - level / 2, 0.5 + level / 2])
                    lo[j, sel] = mean[sel] + q_lo
                    hi[j, sel] = mean[sel] + q_hi
            else:
                d1 = z[m:] - z[:-m]
                sd = np.sqrt(np.mean(d1 ** 2) * kk)
                for j, level in enumerate(levels):
                    zq = stats.norm.ppf(0.5 + level / 2)
                    lo[j, sel] = mean[sel] - zq * sd
                    hi[j, sel] = mean[sel] + zq * sd
        return mean, {level: (lo[j], hi[j]) for j, level in enumerate(levels)}


def _hour_of_week(phase: np.ndarray, season: int) -> np.ndarray:
    return np.mod(np.round(phase).astype(np.int64), season)


class ETSForecaster(Forecaster):
    """Exponential smoothing of daily levels: ETS(A,N,A) with a weekly season on 24-hour block means
    of log demand, plus a median hour-of-week shape.

    log y(t) = D(b) + q(t) + e(t). Blocks of ``block`` steps (24 h) end at the last training point
    (a leading partial block is dropped). D(b), the block mean of log demand, follows ETS(A,N,A)
    (``trend="add"`` or ``"damped"`` for ETS(A,A,A) / ETS(A,Ad,A); both did worse on the e-commerce
    series) with a season of ``season // block`` blocks (7 days; statsmodels ``ETSModel``, heuristic
    initial states, so only the smoothing and damping parameters are optimised). q is the median of
    log y - D per hour of week (the intraday shape of each weekday); e is the hourly residual.
    Intervals: normal on the log scale with variance = ETS forecast variance of D + training
    variance of e.

    ``season == block`` (e.g. ``block=24, season=24`` for a series shorter than two weeks): the
    block means have no season left (``level_season_`` = 1, ETS(A,N,N) on daily means) and the
    whole daily pattern is carried by the hour-of-day shape q; the seasonality is not dropped
    (tested). ``level_season_`` records the season (in blocks) of the ETS part of each fit.

    Why not ETS on the hourly values: fitted hour by hour, ETS drives alpha to ~0.9 (a near random
    walk on hourly noise that persists for the whole horizon); on the e-commerce series that lost to
    seasonal naive.
    """

    name = "ets"

    def __init__(self, block: int = DAY, season: int = WEEK, trend: str | None = None,
                 log: bool = True, maxiter: int = 200, offset: float | None = None):
        super().__init__(log=log, offset=offset)
        self.block = _check_int(block, "block", minimum=1)
        self.season = _check_int(season, "season", minimum=2)
        if self.season % self.block:
            raise ValueError(f"season={_show(season)}: must be a whole number of blocks of "
                             f"{_show(block)} steps")
        if trend not in (None, "add", "damped"):
            raise ValueError(f"trend={trend!r}: expected None, 'add' or 'damped'")
        self.trend = trend
        self.maxiter = _check_int(maxiter, "maxiter")
        self.min_length = 2 * self.season

    def _fit(self, z, index):
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        phase = _phase(index)
        nb = len(z) // self.block
        keep = nb * self.block
        z, phase = z[len(z) - keep:], phase[len(phase) - keep:]
        levels = z.reshape(nb, self.block).mean(axis=1)
        r = z - np.repeat(levels, self.block)
        pos = _hour_of_week(phase, self.season)
        shape = pd.Series(r).groupby(pos).median().reindex(range(self.season))
        self._shape = shape.interpolate(limit_direction="both").fillna(0.0).to_numpy()
        e = r - self._shape[pos]
        self._resid_var = float(np.mean(e ** 2))
        self._phase_end = phase[-1]
        m = self.season // self.block
        self.level_season_ = m
        # statsmodels' heuristic start needs 10 + 2 * (m // 2) blocks; below that (under ~16 days of
        # hourly data) the initial states are estimated with the smoothing parameters instead
        init = "heuristic" if nb >= 10 + 2 * (m // 2) else "estimated"
        # statsmodels 0.15 ETS prediction needs a pandas endog (numpy input breaks get_prediction)
        model = ETSModel(pd.Series(levels), error="add",
                         trend=None if self.trend is None else "add",
                         damped_trend=self.trend == "damped",
                         seasonal="add" if m > 1 else None, seasonal_periods=m if m > 1 else None,
                         initialization_method=init)
        self.result_ = model.fit(disp=False, maxiter=self.maxiter)

    def _predict(self, horizon, levels, future):
        n_blocks = -(-horizon // self.block)
        n = self.result_.model.nobs
        pred = self.result_.get_prediction(start=n, end=n + n_blocks - 1)
        level_mean = np.repeat(np.asarray(pred.predicted_mean, dtype=float), self.block)[:horizon]
        level_var = np.repeat(np.asarray(pred.forecast_variance, dtype=float), self.block)[:horizon]
        pos = _hour_of_week(self._phase_end + np.arange(1, horizon + 1), self.season)
        mean = level_mean + self._shape[pos]
        return mean, _normal_bounds(mean, level_var + self._resid_var, levels)


def fourier_terms(index: pd.DatetimeIndex, period: float, order: int) -> pd.DataFrame:
    """sin/cos pairs k = 1..order of a season of ``period`` steps, phase fixed to a Monday 00:00
    epoch.

    Columns ``sin{period}_{k}``, ``cos{period}_{k}``; the same phase convention on any index of the
    same step, so terms for future timestamps continue those of the training data.
    """
    order = _check_int(order, "order", minimum=0)
    t = _phase(index)
    cols = {}
    for k in range(1, order + 1):
        w = 2.0 * np.pi * k * t / period
        cols[f"sin{period:g}_{k}"] = np.sin(w)
        cols[f"cos{period:g}_{k}"] = np.cos(w)
    return pd.DataFrame(cols, index=index)


def _seasonal_design(index: pd.DatetimeIndex, daily_order: int, weekly_order: int,
                     daily: int, weekly: int) -> pd.DataFrame:
    """Fourier terms of both seasons without duplicates (weekly harmonic 7k == daily harmonic k)."""
    parts = [fourier_terms(index, daily, daily_order)]
    weekly_terms = fourier_terms(index, weekly, weekly_order)
    keep = []
    for k in range(1, weekly_order + 1):
        ratio = k * daily / weekly  # frequency of this weekly harmonic in daily-harmonic units
        if abs(ratio - round(ratio)) < 1e-9 and 1 <= round(ratio) <= daily_order:
            continue
        keep += [f"sin{weekly:g}_{k}", f"cos{weekly:g}_{k}"]
    parts.append(weekly_terms[keep])
    return pd.concat(parts, axis=1)


class FourierARMA(Forecaster):
    """Regression on Fourier terms (daily and weekly) and optional event dummies, with ARMA errors.

    log demand = b0 [+ b1 t] + Fourier(24, ``daily_order``) + Fourier(168, ``weekly_order``) +
    events + u, u ~ ARMA(``order``). Fit in two steps (OLS, then the ARMA error by maximum
    likelihood with statsmodels SARIMAX on the OLS residuals; ``maxiter`` L-BFGS iterations).
    ``exog``: a DataFrame of extra regressors (e.g. ``event_dummies``) indexed by timestamp and
    covering the training *and* forecast timestamps. An exog column that is constant over a training
    window (an event not yet seen) is dropped for that fit, and listed in ``dropped_exog``: an
    effect never observed cannot be estimated.
    """

    name = "fourier_arma"

    def __init__(self, daily_order: int = 8, weekly_order: int = 10,
                 order: tuple[int, int, int] = (1, 0, 1), trend: str = "c",
                 exog: pd.DataFrame | None = None, log: bool = True, maxiter: int = 50,
                 daily: int = DAY, weekly: int = WEEK, offset: float | None = None):
        super().__init__(log=log, offset=offset)
        self.daily_order = _check_int(daily_order, "daily_order", minimum=0)
        self.weekly_order = _check_int(weekly_order, "weekly_order", minimum=0)
        if len(tuple(order)) != 3:
            raise ValueError(f"order={_show(order)}: expected (p, d, q) of non-negative integers")
        self.order = tuple(_check_int(v, "order", minimum=0) for v in order)
        if trend not in ("c", "ct"):
            raise ValueError(f"trend={trend!r}: expected 'c' (intercept) or 'ct' (intercept and "
                             "linear trend)")
        self.trend = trend
        if exog is not None:
            if not isinstance(exog, pd.DataFrame) or not isinstance(exog.index, pd.DatetimeIndex):
                raise ValueError("exog: expected a DataFrame of regressors indexed by timestamp")
            try:
                exog = exog.astype(float)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"exog: columns must be numeric ({exc})") from exc
            if not np.isfinite(exog.to_numpy()).all():
                raise ValueError("exog: contains missing or non-finite values")
            if exog.index.has_duplicates:
                first = exog.index[exog.index.duplicated()][0]
                raise ValueError(f"exog: duplicated timestamp {first}")
        self.exog = exog
        self.maxiter = _check_int(maxiter, "maxiter")
        self.daily, self.weekly = _check_int(daily, "daily"), _check_int(weekly, "weekly")
        # two cycles of the longest season actually modelled (no weekly terms: two days)
        self.min_length = 2 * (self.weekly if self.weekly_order > 0 else self.daily)
        self.dropped_exog: list[str] = []

    def _exog_for(self, index: pd.DatetimeIndex, what: str) -> pd.DataFrame:
        if (index.tz is None) != (self.exog.index.tz is None):
            raise ValueError(f"exog: index time zone {self.exog.index.tz} does not match the "
                             f"series' {index.tz}")
        missing = index.difference(self.exog.index)
        if len(missing):
            raise ValueError(f"exog: no values for {len(missing)} {what} timestamp(s), "
                             f"first {missing[0]}; "
                             "exog must cover the training and forecast periods")
        return self.exog.loc[index]

    def _design(self, index: pd.DatetimeIndex, what: str) -> pd.DataFrame:
        X = _seasonal_design(index, self.daily_order, self.weekly_order, self.daily, self.weekly)
        X.insert(0, "const", 1.0)
        if self.trend == "ct":
            X.insert(1, "trend", _phase(index) - self._t0)
        if self.exog is not None:
            ex = self._exog_for(index, what)
            X = pd.concat([X, ex[[c for c in ex.columns if c not in self.dropped_exog]]], axis=1)
        return X

    def _fit(self, z, index):
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        self._t0 = _phase(index)[-1]
        self.dropped_exog = []
        if self.exog is not None:
            ex = self._exog_for(index, "training")
            self.dropped_exog = [c for c in ex.columns if np.ptp(ex[c].to_numpy()) == 0]
        X = self._design(index, "training").to_numpy()
        self.beta_, *_ = np.linalg.lstsq(X, z, rcond=None)
        resid = z - X @ self.beta_
        model = SARIMAX(resid, order=self.order, trend="n", concentrate_scale=True)
        self.arma_ = model.fit(disp=False, maxiter=self.maxiter)

    def _predict(self, horizon, levels, future):
        X = self._design(future, "forecast").to_numpy()
        fc = self.arma_.get_forecast(horizon)
        mean = X @ self.beta_ + np.asarray(fc.predicted_mean, dtype=float)
        return mean, _normal_bounds(mean, np.asarray(fc.var_pred_mean, dtype=float), levels)


class MSTLForecaster(Forecaster):
    """MSTL (periods 24 and 168) on log demand; seasonals repeat their last cycle; ARIMA on the
    adjusted series.

    The seasonally adjusted series (trend + remainder) is modelled by ARIMA(``order``), default
    (2,0,0) with a mean: mean-reverting, which beat random-walk-like (1,1,1) and (0,1,1) remainders
    on the e-commerce series. Pure AR with d = 0 is estimated by Burg's method (fast), anything else
    by state-space maximum likelihood (``maxiter`` iterations). Intervals are that ARIMA model's:
    the error of the repeated seasonal cycle is not included, so they run somewhat narrow (about
    0.90 for a nominal 0.95 on a clean synthetic series).

    STL settings (``windows``, ``stl_kwargs``): local-constant seasonal smoothing
    (``seasonal_deg=0``), because the default local-linear smoother extrapolates at the end of the
    series and roughly doubles the variance of the very cycle that is repeated; seasonal windows of
    25 cycles; LOESS jumps of about a tenth of each smoother window (Cleveland et al. 1990), ~4x
    faster at a negligible change in the components.
    """

    name = "mstl_arima"

    def __init__(self, periods: Sequence[int] = (DAY, WEEK),
                 order: tuple[int, int, int] = (2, 0, 0), log: bool = True, maxiter: int = 50,
                 iterate: int = 2, windows: int | Sequence[int] | None = 25,
                 stl_kwargs: Mapping | None = None, offset: float | None = None):
        super().__init__(log=log, offset=offset)
        periods = tuple(_check_int(p, "periods", minimum=2) for p in periods)
        if not periods:
            raise ValueError("periods=(): give at least one seasonal period, e.g. (24, 168)")
        self.periods = tuple(sorted(periods))
        if len(tuple(order)) != 3:
            raise ValueError(f"order={_show(order)}: expected (p, d, q)")
        self.order = tuple(_check_int(v, "order", minimum=0) for v in order)
        self.maxiter = _check_int(maxiter, "maxiter")
        self.iterate = _check_int(iterate, "iterate")
        if windows is None or isinstance(windows, (int, np.integer)):
            self.windows = windows if windows is None else (int(windows),) * len(self.periods)
        else:
            self.windows = tuple(int(w) for w in windows)
        if self.windows is not None and (len(self.windows) != len(self.periods)
                                         or any(w < 3 or w % 2 == 0 for w in self.windows)):
            raise ValueError(f"windows={_show(windows)}: odd integers >= 3, one per period")
        default_stl = {"seasonal_deg": 0, "seasonal_jump": 1, "trend_jump": 5, "low_pass_jump": 3}
        self.stl_kwargs = default_stl if stl_kwargs is None else dict(stl_kwargs)
        self.min_length = 2 * max(self.periods) + 1  # MSTL drops periods >= half the data length

    def _fit(self, z, index):
        from statsmodels.tsa.arima.model import ARIMA
        from statsmodels.tsa.seasonal import MSTL

        dec = MSTL(z, periods=self.periods, windows=self.windows, iterate=self.iterate,
                   stl_kwargs=self.stl_kwargs).fit()
        seasonal = np.asarray(dec.seasonal, dtype=float).reshape(len(z), -1)
        self._last_cycles = [seasonal[-p:, j].copy() for j, p in enumerate(self.periods)]
        adjusted = z - seasonal.sum(axis=1)
        p, d, q = self.order
        model = ARIMA(adjusted, order=self.order, trend="c" if d == 0 else "n")
        if q == 0 and d == 0 and p > 0:
            self.arima_ = model.fit(method="burg")
        else:
            self.arima_ = model.fit(method_kwargs={"maxiter": self.maxiter})

    def _predict(self, horizon, levels, future):
        h = np.arange(horizon)
        seasonal = sum(cycle[h % len(cycle)] for cycle in self._last_cycles)
        fc = self.arima_.get_forecast(horizon)
        mean = np.asarray(fc.predicted_mean, dtype=float) + seasonal
        return mean, _normal_bounds(mean, np.asarray(fc.var_pred_mean, dtype=float), levels)


class CrostonSBA(Forecaster):
    """Croston's method with the Syntetos-Boylan approximation (SBA), for intermittent demand.

    Non-zero demand sizes and the intervals between them (in steps) are smoothed separately by
    simple exponential smoothing with ``alpha`` (initialised at the first size and first
    interval); the forecast per step is the flat rate (1 - alpha/2) * size / interval (SBA,
    Syntetos & Boylan 2005; ``variant="croston"`` omits the factor, which is biased upwards).
    Intervals: demand occurs in a step with probability 1/interval, and its size is drawn from the
    training sizes, so the q-quantile is 0 for q <= 1 - 1/interval and the training sizes'
    empirical quantile at (q - (1 - 1/interval)) * interval above. Identity transform (no log).
    """

    name = "croston_sba"

    def __init__(self, alpha: float = 0.1, variant: str = "sba"):
        super().__init__(log=False)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
                or not 0 < alpha <= 1:
            raise ValueError(f"alpha={_show(alpha)}: must be a number in (0, 1]")
        if variant not in ("sba", "croston"):
            raise ValueError(f"variant={_show(variant)}: expected 'sba' or 'croston'")
        self.alpha, self.variant = float(alpha), variant
        self.min_length = 2

    def _fit(self, z, index):
        if (z < 0).any():
            i = int(np.flatnonzero(z < 0)[0])
            raise ValueError(f"y_train: demand must be >= 0, row {i} ({index[i]}) is {_show(z[i])}")
        nz = np.flatnonzero(z > 0)
        if nz.size == 0:
            self.size_, self.interval_, self._sizes = 0.0, math.inf, np.zeros(1)
            return
        sizes = z[nz]
        gaps = np.diff(np.r_[-1, nz]).astype(float)  # steps since the previous demand (or start)
        size, gap = sizes[0], gaps[0]
        for q, g in zip(sizes[1:], gaps[1:]):
            size += self.alpha * (q - size)
            gap += self.alpha * (g - gap)
        self.size_, self.interval_ = float(size), float(max(gap, 1.0))
        self._sizes = sizes

    def _predict(self, horizon, levels, future):
        if not math.isfinite(self.interval_):
            zero = np.zeros(horizon)
            return zero, {level: (zero, zero) for level in levels}
        factor = 1.0 - self.alpha / 2 if self.variant == "sba" else 1.0
        mean = np.full(horizon, factor * self.size_ / self.interval_)
        p_demand = 1.0 / self.interval_
        out = {}
        for level in levels:
            bounds = []
            for q in (0.5 - level / 2, 0.5 + level / 2):
                if q <= 1.0 - p_demand:
                    bounds.append(np.zeros(horizon))
                else:
                    qs = min(1.0, (q - (1.0 - p_demand)) / p_demand)
                    bounds.append(np.full(horizon, float(np.quantile(self._sizes, qs))))
            out[level] = (bounds[0], bounds[1])
        return mean, out


# ------------------------------------------------------------------------------ series diagnosis

ADI_CUTOFF = 1.32
"""Syntetos-Boylan-Croston (2005) cut-off of the average inter-demand interval (steps)."""
CV2_CUTOFF = 0.49
"""Syntetos-Boylan-Croston (2005) cut-off of the squared coefficient of variation of sizes."""


@dataclass(frozen=True)
class DemandClass:
    """Syntetos-Boylan classification of a demand series.

    adi: average inter-demand interval, steps per non-zero value (n / n_nonzero; 1 = demand every
    step); cv2: squared coefficient of variation of the non-zero sizes; zero_share: fraction of
    steps with zero demand; category: "smooth" (adi < 1.32, cv2 < 0.49), "erratic" (adi < 1.32),
    "intermittent" (adi >= 1.32, cv2 < 0.49) or "lumpy" (both above).

    The classification was made for non-seasonal series; a small market with no demand at night is
    "intermittent" by ADI although its zeros are predictable. So ``active_adi`` repeats the ADI on
    the phases of the day (``period`` steps) where demand is non-zero at least half of the time:
    below 1.32 the zeros are seasonal (``seasonal_zeros``) and the seasonal log-scale models apply.
    """

    adi: float
    cv2: float
    zero_share: float
    n: int
    category: str
    period: int | None = None
    active_adi: float | None = None

    @property
    def seasonal_zeros(self) -> bool:
        """True when the zeros fall in a daily pattern and demand is regular when active."""
        return self.active_adi is not None and self.active_adi < ADI_CUTOFF

    @property
    def intermittent(self) -> bool:
        """True for the intermittent and lumpy classes whose zeros are not just seasonal
        (Croston/SBA territory)."""
        return self.category in ("intermittent", "lumpy") and not self.seasonal_zeros

    def advice(self) -> str:
        """One readable sentence: the class, its numbers and what to forecast it with."""
        head = (f"{self.category} demand (Syntetos-Boylan: ADI {self.adi:.2f} steps per demand, "
                f"CV2 of sizes {self.cv2:.2f}; {100 * self.zero_share:.0f}% of the {self.n} steps "
                "are 0)")
        if self.intermittent:
            return (head + ": demand is absent in most steps, so a continuous model of log demand "
                    "has no level to follow at this step; forecast the mean rate with CrostonSBA, "
                    "or aggregate to a longer step (e.g. days) where demand is regular")
        if self.seasonal_zeros and self.category in ("intermittent", "lumpy"):
            return (head + f"; the zeros are seasonal (ADI {self.active_adi:.2f} in the active "
                    f"phases of the {self.period}-step day): the seasonal log-scale models apply")
        return head + ": the seasonal log-scale models apply"


def classify_demand(series, period: int | None = None) -> DemandClass:
    """Classify demand (a Series or array, >= 0) by ADI and CV2 (Syntetos, Boylan & Croston 2005).

    ``period``: steps per day for the seasonal-zeros check (see ``DemandClass``); default: from a
    Series' DatetimeIndex (``seasonal_periods``), none for an array.
    """
    if period is None and isinstance(series, pd.Series) and isinstance(series.index,
                                                                        pd.DatetimeIndex):
        with contextlib.suppress(ValueError):
            period = seasonal_periods(series).daily
    if period is not None:
        period = _check_int(period, "period")
    y = np.asarray(series, dtype=float).ravel()
    if y.size == 0 or not np.isfinite(y).all():
        raise ValueError("series: need a non-empty series of finite values")
    if (y < 0).any():
        i = int(np.flatnonzero(y < 0)[0])
        raise ValueError(f"series: demand must be >= 0, row {i} is {_show(y[i])}")
    sizes = y[y > 0]
    if sizes.size == 0:
        return DemandClass(math.inf, math.nan, 1.0, int(y.size), "lumpy")
    adi = y.size / sizes.size
    cv2 = float(np.var(sizes) / np.mean(sizes) ** 2) if sizes.size > 1 else 0.0
    smooth_gap = adi < ADI_CUTOFF
    smooth_size = cv2 < CV2_CUTOFF
    category = ("smooth" if smooth_size else "erratic") if smooth_gap else \
        ("intermittent" if smooth_size else "lumpy")
    active_adi = None
    if period is not None and period > 1 and y.size >= 2 * period:
        phase = np.arange(y.size) % period
        nonzero_share = np.bincount(phase, weights=(y > 0).astype(float), minlength=period) \
            / np.bincount(phase, minlength=period)
        active = nonzero_share[phase] >= 0.5
        if active.any() and (y[active] > 0).any():
            active_adi = float(active.sum() / (y[active] > 0).sum())
    return DemandClass(float(adi), cv2, float(1 - sizes.size / y.size), int(y.size), category,
                       period, active_adi)


@dataclass(frozen=True)
class SeasonalPeriods:
    """Seasons of a series in steps: ``daily`` (1 day / step), ``weekly`` (7 days / step, None
    with less than two weeks of history); ``season`` = the longest one (seasonal naive, MASE)."""

    step: pd.Timedelta
    daily: int
    weekly: int | None
    history: pd.Timedelta

    @property
    def season(self) -> int:
        return self.weekly if self.weekly is not None else self.daily

    @property
    def periods(self) -> tuple[int, ...]:
        return (self.daily,) if self.weekly is None else (self.daily, self.weekly)


def seasonal_periods(series) -> SeasonalPeriods:
    """Daily and weekly periods (steps) from the step of a regular series and its history length.

    The step must divide a day (1 min, 5 min, 1 h, ...). The weekly season is used only with at
    least two weeks of history (two cycles to estimate it from)."""
    index = series.index if isinstance(series, pd.Series) else series
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        raise ValueError("series: need a Series on a DatetimeIndex with at least two timestamps")
    step = _step(index)
    day = pd.Timedelta(days=1)
    if step <= pd.Timedelta(0) or day % step != pd.Timedelta(0):
        raise ValueError(f"series: step {step} does not divide a day; resample to a step that does "
                         "(e.g. to_hourly)")
    daily = int(day // step)
    history = step * len(index)
    weekly = 7 * daily if history >= pd.Timedelta(days=14) else None
    return SeasonalPeriods(step, daily, weekly, history)


def to_hourly(series: pd.Series) -> pd.Series:
    """Mean rate per hour: each hour [t, t + 1 h) gets the mean of the samples stamped inside it
    (a rate in requests/s stays a rate in requests/s). The step must divide an hour; hours with
    fewer samples than 1 h / step (the partial first and last hours) are dropped."""
    y = _check_series(series, "series", 2)
    step = _step(y.index)
    hour = pd.Timedelta(hours=1)
    if step > hour or hour % step != pd.Timedelta(0):
        raise ValueError(f"series: step {step} does not divide an hour; to_hourly cannot "
                         "average it")
    per_hour = int(hour // step)
    grouped = y.resample("h")
    mean, count = grouped.mean(), grouped.count()
    full = count == per_hour
    first, last = np.flatnonzero(full.to_numpy())[[0, -1]] if full.any() else (0, -1)
    out = mean.iloc[first:last + 1]
    if not full.iloc[first:last + 1].all():
        bad = out.index[~full.iloc[first:last + 1].to_numpy()][0]
        raise ValueError(f"series: the hour {bad} has fewer than {per_hour} samples; fill the gap "
                         "first")
    out.index = pd.DatetimeIndex(out.index, freq="h", name="timestamp")
    return out.rename(series.name)


def prepare_demand(series: pd.Series) -> tuple[pd.Series, str]:
    """The kit's rule for the step of a demand series, returned as (series, rule sentence).

    Hourly or longer steps: unchanged. Sub-hourly steps with at least two weeks of history: the
    mean rate per hour (``to_hourly``; daily and weekly seasons of 24 and 168). Sub-hourly with
    less: the native step, daily season only (e.g. 1440 steps at 1 min), because a weekly season
    cannot be estimated from less than two cycles.
    """
    y = _check_series(series, "series", 2)
    sp = seasonal_periods(y)
    if sp.step >= pd.Timedelta(hours=1):
        return y, f"step {sp.step} kept; seasons {sp.periods} steps"
    if sp.weekly is not None:
        hourly = to_hourly(y)
        return hourly, (f"step {sp.step} resampled to the mean rate per hour ({len(hourly)} hours, "
                        f"{sp.history} of history); seasons (24, 168) h")
    return y, (f"step {sp.step} kept (history {sp.history} < 14 days: no weekly season); daily "
               f"season {sp.daily} steps")


def default_models(exog: pd.DataFrame | None = None,
                   series: pd.Series | None = None) -> dict[str, Callable[[], Forecaster]]:
    """The kit's models as name -> factory (a fresh unfitted model per call), for ``backtest``.

    Without ``series``: the four hourly models (seasons 24 and 168), as tuned on the e-commerce
    series. With ``series``: seasons from ``seasonal_periods(series)`` (so any step dividing a
    day, and a daily season only when the history is under two weeks); an intermittent or lumpy
    series (``classify_demand``) gets seasonal naive and ``CrostonSBA`` instead of the log-scale
    models. ``exog`` (e.g. ``event_dummies(series.index, us_retail_events(...))``) goes to the
    Fourier-ARMA model.
    """
    if series is None:
        return {
            "seasonal_naive": lambda: SeasonalNaive(season=WEEK),
            "ets": lambda: ETSForecaster(),
            "fourier_arma": lambda: FourierARMA(exog=exog),
            "mstl_arima": lambda: MSTLForecaster(),
        }
    y = _check_series(series, "series", 2)
    sp = seasonal_periods(y)
    if classify_demand(y).intermittent:
        return {"seasonal_naive": lambda: SeasonalNaive(season=sp.season),
                "croston_sba": lambda: CrostonSBA()}
    weekly = sp.weekly if sp.weekly is not None else sp.daily
    return {
        "seasonal_naive": lambda: SeasonalNaive(season=sp.season),
        "ets": lambda: ETSForecaster(block=sp.daily, season=sp.season),
        "fourier_arma": lambda: FourierARMA(exog=exog, daily=sp.daily, weekly=weekly,
                                            weekly_order=10 if sp.weekly is not None else 0),
        "mstl_arima": lambda: MSTLForecaster(periods=sp.periods),
    }


# ------------------------------------------------------------------------------- event regressors

def us_retail_events(years: Iterable[int]) -> dict[str, list[pd.Timestamp]]:
    """Black Friday (the day after the 4th Thursday of November) and Cyber Monday, per year."""
    out: dict[str, list[pd.Timestamp]] = {"black_friday": [], "cyber_monday": []}
    for year in sorted({int(y) for y in years}):
        nov1 = pd.Timestamp(year=year, month=11, day=1)
        thanksgiving = nov1 + pd.Timedelta(days=(3 - nov1.day_of_week) % 7 + 21)
        out["black_friday"].append(thanksgiving + pd.Timedelta(days=1))
        out["cyber_monday"].append(thanksgiving + pd.Timedelta(days=4))
    return out


def event_dummies(index: pd.DatetimeIndex, events: Mapping[str, Iterable],
                  duration: str = "1D") -> pd.DataFrame:
    """0/1 columns, one per event name, equal to 1 from each event start (a date or timestamp, in
    the index's time zone when naive) for ``duration``; an exog table for ``FourierARMA`` (extend
    ``index`` to the future).
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"index: expected a DatetimeIndex, got {type(index).__name__}")
    length = pd.Timedelta(duration)
    if length <= pd.Timedelta(0):
        raise ValueError(f"duration={duration!r}: must be positive")
    cols = {}
    for name, starts in events.items():
        col = np.zeros(len(index))
        for start in starts:
            t0 = pd.Timestamp(start)
            if index.tz is not None and t0.tzinfo is None:
                t0 = t0.tz_localize(index.tz)
            col[(index >= t0) & (index < t0 + length)] = 1.0
        cols[str(name)] = col
    return pd.DataFrame(cols, index=index)


# ---------------------------------------------------------------------------------------- metrics

def _pair(actual, forecast) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float).ravel()
    f = np.asarray(forecast, dtype=float).ravel()
    if a.shape != f.shape:
        raise ValueError(f"actual and forecast differ in length ({a.size} vs {f.size})")
    if a.size == 0:
        raise ValueError("actual: empty")
    return a, f


def mae(actual, forecast) -> float:
    """Mean absolute error (units of the data, requests/s)."""
    a, f = _pair(actual, forecast)
    return float(np.mean(np.abs(a - f)))


def rmse(actual, forecast) -> float:
    """Root mean squared error (requests/s)."""
    a, f = _pair(actual, forecast)
    return float(np.sqrt(np.mean((a - f) ** 2)))


def smape(actual, forecast) -> float:
    """Symmetric MAPE in percent (0..200): 200 * mean(|a - f| / (|a| + |f|)); 0/0 terms count 0."""
    a, f = _pair(actual, forecast)
    den = np.abs(a) + np.abs(f)
    terms = np.divide(np.abs(a - f), den, out=np.zeros_like(den), where=den > 0)
    return float(200.0 * np.mean(terms))


def seasonal_naive_scale(y_train, season: int = WEEK) -> float:
    """In-sample seasonal-naive MAE, mean |y(t) - y(t - season)|: the MASE denominator."""
    season = _check_int(season, "season")
    y = np.asarray(y_train, dtype=float).ravel()
    if y.size <= season:
        raise ValueError(f"y_train: {y.size} points, need more than season={season} "
                         "for the MASE scale")
    return float(np.mean(np.abs(y[season:] - y[:-season])))


def mase(actual, forecast, scale: float | np.ndarray) -> float:
    """Mean absolute scaled error (Hyndman & Koehler 2006): mean(|a - f| / scale).

    ``scale``: one number or one per point (each origin's in-sample seasonal-naive MAE).
    """
    a, f = _pair(actual, forecast)
    s = np.broadcast_to(np.asarray(scale, dtype=float), a.shape)
    if not np.all(s > 0):
        raise ValueError("scale: must be positive (a constant training series has no "
                         "seasonal-naive error)")
    return float(np.mean(np.abs(a - f) / s))


def coverage(actual, lower, upper) -> float:
    """Fraction of actual values inside [lower, upper] (0..1)."""
    a, lo = _pair(actual, lower)
    _, hi = _pair(actual, upper)
    return float(np.mean((a >= lo) & (a <= hi)))


def mean_width(lower, upper) -> float:
    """Mean interval width, upper - lower (requests/s)."""
    lo, hi = _pair(lower, upper)
    return float(np.mean(hi - lo))


# --------------------------------------------------------------------------------------- backtest

def _blas_threads(n: int | None):
    """Limit BLAS threads while fitting (threadpoolctl, pinned in requirements.lock).

    Each fit works on small matrices (2,000 x 40): multi-threaded OpenBLAS only adds overhead, and
    on a loaded 2-core machine it made the Fourier-ARMA fits ~10x slower.
    """
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError as exc:  # a broken environment, not an option: say so instead of ignoring it
        raise ImportError(f"blas_threads={n}: needs threadpoolctl (in requirements.lock; "
                          "run `make setup`), or pass blas_threads=None") from exc
    return threadpool_limits(limits=n, user_api="blas")


def backtest(series: pd.Series, models: Mapping[str, Callable[[], Forecaster]], initial: int,
             horizon: int, step: int, levels: Sequence[float] = DEFAULT_LEVELS,
             max_train: int | None = None, season: int | None = None,
             blas_threads: int | None = 1) -> pd.DataFrame:
    """Rolling-origin backtest: refit every model at each origin and forecast ``horizon`` steps.

    Origins are at positions ``initial, initial + step, ...`` (number of points before the first
    forecast) while a whole horizon of actuals remains. Each fit sees only ``series`` before the
    origin, at most the last ``max_train`` points. ``models`` maps a name to a factory returning a
    fresh model.

    Returns a tidy DataFrame, one row per model, origin and step ahead: ``model, origin`` (last
    training timestamp), ``train_start, n_train, h, timestamp, actual, mean, loNN, hiNN ...``,
    ``mase_scale`` (the origin's in-sample seasonal-naive MAE at ``season``), ``season``,
    ``transform`` (the model-scale transform of that fit, e.g. ``log(y)``, ``log(y + 0.5)``,
    ``none``) and ``n_warnings`` (captured statsmodels warnings of that fit).
    ``attrs['warnings']`` holds the warning texts counted per model, ``attrs['demand_class']`` the
    Syntetos-Boylan class of the series (``classify_demand``) and ``attrs['unit']`` the series'
    ``attrs['unit']`` when it has one (``workloads.load_trace`` sets it).

    ``season`` (steps; default: ``seasonal_periods(series).season``, 168 for two weeks or more of
    hourly data) sets the MASE scale and the minimum training length (two seasons).
    ``blas_threads`` limits BLAS threads during the fits through threadpoolctl (None: leave as
    is). Bad arguments raise ValueError naming the parameter before anything is fitted; a
    model failing at an origin raises with the model name and origin.
    """
    y = _check_series(series, "series")
    horizon = _check_int(horizon, "horizon")
    step = _check_int(step, "step")
    season = seasonal_periods(y).season if season is None else _check_int(season, "season")
    initial = _check_int(initial, "initial")
    levels = _check_levels(levels)
    if initial < 2 * season:
        raise ValueError(f"initial={initial}: need at least two seasons "
                         f"(2 x {season} = {2 * season} points) of training data")
    if max_train is not None:
        max_train = _check_int(max_train, "max_train")
        if max_train < 2 * season:
            raise ValueError(f"max_train={max_train}: need at least two seasons (2 x {season} = "
                             f"{2 * season} points)")
    if initial + horizon > len(y):
        raise ValueError(f"initial={initial} + horizon={horizon} exceeds the {len(y)} points of "
                         "series: no origin fits")
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models: expected a non-empty dict of name -> factory")
    shortest = initial if max_train is None else min(initial, max_train)
    for name, factory in models.items():
        if not callable(factory):
            raise ValueError(f"models[{name!r}]: expected a factory (callable returning a model), "
                             f"got {type(factory).__name__}")
        probe = factory()  # check what can be checked before fitting anything
        if not (callable(getattr(probe, "fit", None))
                and callable(getattr(probe, "forecast", None))):
            raise ValueError(f"models[{name!r}]: the factory returned {type(probe).__name__}, "
                             "which has no fit(y_train) / forecast(horizon, levels) methods")
        need = int(getattr(probe, "min_length", 0))
        if need > shortest:
            which = "max_train" if max_train is not None and max_train < initial else "initial"
            raise ValueError(f"{which}={shortest}: model {name!r} needs at least {need} "
                             "training points")
        if getattr(probe, "log", False) and (y < 0).any():
            i = int(np.flatnonzero(y.to_numpy() < 0)[0])
            raise ValueError(f"series: model {name!r} uses log=True but row {i} ({y.index[i]}) "
                             f"is {_show(y.iloc[i])}; demand must be >= 0")

    if blas_threads is not None:
        blas_threads = _check_int(blas_threads, "blas_threads")

    origins = list(range(initial, len(y) - horizon + 1, step))
    values = y.to_numpy()
    frames = []
    warn_counts: dict[str, Counter] = {name: Counter() for name in models}
    for o in origins:
        start = 0 if max_train is None else max(0, o - max_train)
        train = y.iloc[start:o]
        scale = seasonal_naive_scale(values[start:o], season)
        actual = values[o:o + horizon]
        target_index = y.index[o:o + horizon]
        for name, factory in models.items():
            model = factory()
            with _Captured() as cap, _blas_threads(blas_threads):
                try:
                    fc = model.fit(train.copy()).forecast(horizon, levels)
                except ValueError as exc:
                    raise ValueError(f"model {name!r} at origin {y.index[o - 1]}: {exc}") from exc
                except Exception as exc:  # a numerical failure inside statsmodels: say where
                    raise RuntimeError(f"model {name!r} failed at origin {y.index[o - 1]} "
                                       f"(train {y.index[start]} .. {y.index[o - 1]}): {exc}") \
                        from exc
            msgs = list(getattr(model, "fit_warnings", [])) + cap.messages
            warn_counts[name].update(msgs)
            if len(fc) != horizon or not fc.index.equals(target_index):
                raise RuntimeError(f"model {name!r} at origin {y.index[o - 1]}: forecast index "
                                   f"does not match the {horizon} timestamps after the origin")
            frame = pd.DataFrame({
                "model": name,
                "origin": y.index[o - 1],
                "train_start": y.index[start],
                "n_train": o - start,
                "h": np.arange(1, horizon + 1),
                "timestamp": target_index,
                "actual": actual,
            })
            for col in fc.columns:
                frame[col] = fc[col].to_numpy()
            frame["mase_scale"] = scale
            frame["season"] = season
            frame["transform"] = str(getattr(model, "transform_", None) or "n/a")
            frame["n_warnings"] = len(msgs)
            frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["warnings"] = {name: dict(sorted(c.items())) for name, c in warn_counts.items()}
    out.attrs["levels"] = list(levels)
    dc = classify_demand(y) if (y >= 0).all() else None
    out.attrs["demand_class"] = None if dc is None else dc.category
    if series.attrs.get("unit") is not None:
        out.attrs["unit"] = series.attrs["unit"]
    return out


def accuracy_table(backtest_df: pd.DataFrame, season: int | None = None,
                   baseline: str | None = "seasonal_naive") -> pd.DataFrame:
    """One row per model: MAE, RMSE (requests/s), sMAPE (%), MASE, interval coverage and mean width
    per level.

    MASE scales each absolute error by its origin's in-sample seasonal-naive MAE at the season the
    backtest used (Hyndman & Koehler 2006; its ``season`` column, so the season is given once, to
    ``backtest``; passing a different ``season`` here is an error) and averages over all origins
    and steps. ``season`` repeats that season on every row; ``best`` is True on the row of the model
    with the lowest MASE (the baseline included). ``mase_vs_<baseline>`` is the
    model's MASE over the baseline model's (below 1: better than the baseline); ``baseline=None``
    leaves it out. Columns: ``n_origins, n_forecasts, season, mae, rmse, smape, mase,
    mase_vs_<baseline>, coverageNN, widthNN ..., n_warnings`` (fits with warnings summed over
    origins), ``best``.
    """
    needed = {"model", "origin", "actual", "mean", "mase_scale", "season", "n_warnings"}
    if not isinstance(backtest_df, pd.DataFrame) or not needed <= set(backtest_df.columns):
        missing = sorted(needed - set(getattr(backtest_df, "columns", [])))
        raise ValueError(f"backtest_df: not a backtest() result (missing columns {missing})")
    seasons = sorted(int(v) for v in backtest_df["season"].unique())
    if len(seasons) != 1:
        raise ValueError(f"backtest_df: mixes MASE seasons {seasons}; use one backtest() result")
    if season is not None and _check_int(season, "season") != seasons[0]:
        raise ValueError(f"season={_show(season)}: the backtest scaled MASE with season "
                         f"{seasons[0]}; leave season out, or rerun backtest(..., season={season})")
    cols = set(backtest_df.columns)
    level_tags = [c[2:] for c in backtest_df.columns
                  if c.startswith("lo") and f"hi{c[2:]}" in cols
                  and c[2:].replace(".", "").isdigit()]
    rows = []
    for name, g in backtest_df.groupby("model", sort=False):
        a, f = g["actual"].to_numpy(), g["mean"].to_numpy()
        row = {
            "model": name,
            "n_origins": int(g["origin"].nunique()),
            "n_forecasts": len(g),
            "season": seasons[0],
            "mae": mae(a, f),
            "rmse": rmse(a, f),
            "smape": smape(a, f),
            "mase": mase(a, f, g["mase_scale"].to_numpy()),
        }
        for tag in level_tags:
            row[f"coverage{tag}"] = coverage(a, g[f"lo{tag}"], g[f"hi{tag}"])
            row[f"width{tag}"] = mean_width(g[f"lo{tag}"], g[f"hi{tag}"])
        row["n_warnings"] = int(g.groupby("origin")["n_warnings"].first().sum())
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    if baseline is not None:
        if baseline not in table.index:
            raise ValueError(f"baseline={_show(baseline)}: no such model in the backtest "
                             f"(models: {list(table.index)}); pass baseline=None to skip the ratio")
        table.insert(table.columns.get_loc("mase") + 1, f"mase_vs_{baseline}",
                     table["mase"] / table.loc[baseline, "mase"])
    table["best"] = table.index == table["mase"].idxmin()
    return table
