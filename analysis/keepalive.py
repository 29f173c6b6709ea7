"""Keep-alive policies over a population of serverless applications (Shahrad et al., ATC 2020).

A population of applications whose invocation rates, execution times and memory follow the
distributions published for Azure Functions in "Serverless in the Wild: Characterizing and
Optimizing the Serverless Workload at a Large Cloud Provider" (Shahrad et al., USENIX ATC 2020),
and two per-application keep-alive policies simulated over it, vectorised across applications:

* fixed keep-alive ``k``: after an execution the application stays loaded for ``k`` seconds;
* the hybrid histogram policy: per application, a histogram of idle times (time from the end of
  one execution to the next invocation) in 1-minute bins over a 4-hour range gives a pre-warm
  point (the head percentile less a margin) and an unload point (the tail percentile plus a
  margin); a histogram that is not representative (CV of the bin counts below a threshold, or no
  data yet) falls back to a plain keep-alive of the whole range; too many idle times beyond the
  range (out of bounds) switch to a time-series forecast of the next idle time.

Model (one loaded image per application, as Azure Functions allocates memory per application and
an instance runs concurrent invocations): an invocation is warm iff the application image is
loaded when it arrives. With loaded window [head_cut, tail_cut] after the end of an execution
(``head_cut = 0``: kept loaded from the end), an idle time g is warm iff head_cut <= g <= tail_cut
and wastes (min(g, tail_cut) - head_cut)^+ seconds of loaded-but-idle memory. The fixed policy
is head_cut = 0, tail_cut = k, so for Poisson arrivals at rate r and negligible execution time
P(cold) = exp(-r k) (:func:`analysis.serverless.p_cold_single_instance`) and the mean waste per
idle period is (1 - exp(-r k)) / r.

Where each number comes from is in :data:`SOURCES`. Units: rates in invocations/s, times in
seconds, memory in MB, memory-time in MB-seconds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import checks
from .serverless import KEEP_ALIVE_AWS_S

# ----------------------------------------------------------------------------------------------
# published parameters (and the few that are not published: said so)
# ----------------------------------------------------------------------------------------------

#: fraction of applications invoked at most once per hour / once per minute on average (Fig. 5a)
FRACTION_AT_MOST_HOURLY = 0.45
FRACTION_AT_MOST_PER_MINUTE = 0.81
#: log-normal MLE fit of the functions' average execution times (Fig. 7): log mean, sigma (ln s)
EXEC_LOG_MEAN = -0.38
EXEC_LOG_SIGMA = 2.36
#: Burr (type XII) fit of the applications' average allocated memory (Fig. 8), MB
MEMORY_BURR_C = 11.652
MEMORY_BURR_K = 0.221
MEMORY_BURR_LAMBDA_MB = 107.083
#: fraction of applications whose inter-arrival times have a CV above 1 (section 3, takeaways)
FRACTION_IAT_CV_ABOVE_1 = 0.40
#: fraction of applications with only timer triggers (Fig. 3b), and of timer-triggered functions
#: invoked at most once per minute (section 3.2)
FRACTION_TIMER_ONLY = 0.13
TIMER_AT_MOST_PER_MINUTE = 0.95
#: facts used only as out-of-sample checks of the generated population
FRACTION_ABOVE_ONE_PER_SECOND = 0.03          # "only about 3%" (review of the paper, see SOURCES)
INVOCATION_SHARE_OF_PER_MINUTE_APPS = 0.996   # the 18.6% invoked >= 1/min carry 99.6% (Fig. 5b)
DAILY_INVOCATION_DECADES = 8.0                # "varies by over 8 orders of magnitude" (Fig. 5a)
#: hybrid histogram policy (section 4)
HISTOGRAM_RANGE_S = 4 * 3600.0                # 4-hour histogram range
HISTOGRAM_BIN_S = 60.0                        # 1-minute bins
HEAD_QUANTILE = 0.05                          # pre-warm from the 5th percentile of idle times
TAIL_QUANTILE = 0.99                          # unload at the 99th percentile (see SOURCES)
HISTOGRAM_MARGIN = 0.10                       # head - 10%, tail + 10%
CV_THRESHOLD = 2.0                            # histogram representative iff CV of bin counts >= 2
OOB_THRESHOLD = 0.5                           # NOT verified in the paper (re-implementation value)
FORECAST_MARGIN = 0.15                        # NOT verified in the paper (re-implementation value)
FORECAST_SMOOTHING = 0.5                      # ours: ARIMA(0,1,1) = exponential smoothing, alpha
#: the fixed keep-alive that wasted memory is normalised to here: 10 minutes (AWS Lambda's fixed keep-alive)
FIXED_BASELINE_S = KEEP_ALIVE_AWS_S

SOURCES = {
    "FRACTION_AT_MOST_HOURLY, FRACTION_AT_MOST_PER_MINUTE, INVOCATION_SHARE_OF_PER_MINUTE_APPS, "
    "DAILY_INVOCATION_DECADES, EXEC_LOG_MEAN, EXEC_LOG_SIGMA, MEMORY_BURR_*, FRACTION_IAT_CV_ABOVE_1, "
    "FRACTION_TIMER_ONLY, TIMER_AT_MOST_PER_MINUTE":
        "the paper's section 3 text as quoted in github.com/mikhailshilkov/mikhailio-hugo "
        "content/2020/04/serverless-in-the-wild/index.md (a draft review quoting arXiv 2003.03423)",
    "FRACTION_ABOVE_ONE_PER_SECOND, HISTOGRAM_RANGE_S, HISTOGRAM_BIN_S, HEAD_QUANTILE, HISTOGRAM_MARGIN":
        "M. Shilkov's reviews of the paper, mikhailio-hugo content/2020/05/serverless-in-the-wild-"
        "azure-functions-usage-stats/index.md and content/2020/06/eliminate-cold-starts-by-predicting-"
        "invocations-of-serverless-functions/index.md",
    "TAIL_QUANTILE": "99th percentile in two re-implementations (OpenDC serverless HybridHistogramPolicy "
                     "doc comment; osukhoroslov/dslab hybrid_histogram.rs TAIL = 0.99); Shilkov's review "
                     "says 95th: not verified against the paper's own text",
    "CV_THRESHOLD": "2.0 in both re-implementations (OpenDC isRepresentative(2.0); dslab cv_thr); not "
                    "verified against the paper's text",
    "OOB_THRESHOLD, FORECAST_MARGIN": "dslab defaults (oob_thr 0.5, arima_margin 0.15); not verified",
    "FORECAST_SMOOTHING": "ours: the paper uses ARIMA (order not read); ARIMA(0,1,1) forecasts are "
                          "exponential smoothing, used here with a fixed alpha",
    "FIXED_BASELINE_S": "10-minute fixed keep-alive of AWS Lambda (Azure: 20 minutes), per both reviews; "
                        "normalising to it is our choice (the paper's own normalisation was not read)",
}

MODES = ("histogram", "default", "forecast")   # codes 0, 1, 2 of HybridWindows.mode


# ----------------------------------------------------------------------------------------------
# the population
# ----------------------------------------------------------------------------------------------

def _z(q: float) -> float:
    from scipy.special import ndtri
    return float(ndtri(q))


def rate_lognormal_from_quantiles(p_hourly: float = FRACTION_AT_MOST_HOURLY,
                                  p_minute: float = FRACTION_AT_MOST_PER_MINUTE) -> tuple[float, float]:
    """(mu, sigma) of log10(average invocations per day) for the log-normal through the two published
    points P(rate <= 1/hour) = p_hourly and P(rate <= 1/minute) = p_minute."""
    p_hourly = checks.open_unit("p_hourly", p_hourly)
    p_minute = checks.open_unit("p_minute", p_minute)
    if not p_minute > p_hourly:
        raise ValueError(f"p_minute must exceed p_hourly, got p_hourly={p_hourly:g}, p_minute={p_minute:g}")
    x1, x2 = math.log10(24.0), math.log10(1440.0)
    z1, z2 = _z(p_hourly), _z(p_minute)
    sigma = (x2 - x1) / (z2 - z1)
    return x1 - z1 * sigma, sigma


def burr_quantile(q, c: float = MEMORY_BURR_C, k: float = MEMORY_BURR_K,
                  lam: float = MEMORY_BURR_LAMBDA_MB):
    """Quantile of the Burr XII law F(x) = 1 - (1 + (x/lam)^c)^-k (MB for the memory fit)."""
    q = np.asarray(q, dtype=float)
    return lam * ((1.0 - q) ** (-1.0 / k) - 1.0) ** (1.0 / c)


@dataclass(frozen=True)
class Population:
    """Applications: invocation rate (1/s), execution time (s), memory (MB), inter-arrival CV and
    kind ("timer", "poisson", "bursty"), one entry per application."""
    rate: np.ndarray
    exec_s: np.ndarray
    memory_mb: np.ndarray
    iat_cv: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return int(self.rate.size)

    def summary(self) -> dict:
        """Fractions and quantiles to compare with the published facts."""
        day = self.rate * 86400.0
        order = np.argsort(-self.rate)
        share = np.cumsum(self.rate[order]) / self.rate.sum()
        per_min = self.rate >= 1 / 60.0
        lo, hi = np.quantile(np.log10(day), [0.01, 0.99])
        return dict(
            applications=len(self),
            fraction_at_most_hourly=float(np.mean(self.rate <= 1 / 3600.0)),
            fraction_at_most_per_minute=float(np.mean(self.rate <= 1 / 60.0)),
            fraction_above_one_per_second=float(np.mean(self.rate > 1.0)),
            invocation_share_of_per_minute_apps=float(share[int(per_min.sum()) - 1]) if per_min.any() else 0.0,
            daily_invocation_decades_p1_p99=float(hi - lo),
            exec_log_mean=float(np.mean(np.log(self.exec_s))),
            exec_log_sigma=float(np.std(np.log(self.exec_s), ddof=1)),
            fraction_exec_below_1s=float(np.mean(self.exec_s < 1.0)),
            memory_median_mb=float(np.median(self.memory_mb)),
            fraction_iat_cv_above_1=float(np.mean(self.iat_cv > 1.0)),
            fraction_timer=float(np.mean(self.kind == "timer")),
        )


def generate_population(n_apps: int, seed=0, *, p_hourly: float = FRACTION_AT_MOST_HOURLY,
                        p_minute: float = FRACTION_AT_MOST_PER_MINUTE,
                        exec_log_mean: float = EXEC_LOG_MEAN, exec_log_sigma: float = EXEC_LOG_SIGMA,
                        timer_fraction: float = FRACTION_TIMER_ONLY,
                        timer_at_most_per_minute: float = TIMER_AT_MOST_PER_MINUTE,
                        cv_above_1_fraction: float = FRACTION_IAT_CV_ABOVE_1,
                        timer_cv: float = 0.05, bursty_cv: tuple[float, float] = (1.25, 4.0)) -> Population:
    """Draw ``n_apps`` applications.

    Rates: log-normal in invocations/day through the two published fractions
    (:func:`rate_lognormal_from_quantiles`). Execution time: log-normal(exec_log_mean,
    exec_log_sigma) seconds, the published fit of average execution times, used per application.
    Memory: the published Burr fit (MB). Arrival kinds (ours, calibrated to published fractions):
    ``timer_fraction`` of applications are timers (near-periodic, inter-arrival CV ``timer_cv``),
    a share ``timer_at_most_per_minute`` of them drawn among applications invoked at most once per
    minute; ``cv_above_1_fraction`` of all applications are bursty with a CV log-uniform in
    ``bursty_cv``; the rest are Poisson (CV 1).
    """
    n = checks.integer("n_apps", n_apps, 1)
    for name, v in dict(timer_fraction=timer_fraction, timer_at_most_per_minute=timer_at_most_per_minute,
                        cv_above_1_fraction=cv_above_1_fraction).items():
        checks.unit_interval(name, v)
    if timer_fraction + cv_above_1_fraction > 1:
        raise ValueError(f"timer_fraction + cv_above_1_fraction must be <= 1, got "
                         f"{timer_fraction:g} + {cv_above_1_fraction:g}")
    checks.positive("exec_log_sigma", exec_log_sigma)
    checks.real("exec_log_mean", exec_log_mean)
    checks.positive("timer_cv", timer_cv)
    if not (len(bursty_cv) == 2 and 1.0 <= bursty_cv[0] <= bursty_cv[1]):
        raise ValueError(f"bursty_cv must be (low, high) with 1 <= low <= high, got {bursty_cv!r}")
    mu, sigma = rate_lognormal_from_quantiles(p_hourly, p_minute)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    day = 10.0 ** rng.normal(mu, sigma, n)
    rate = day / 86400.0
    exec_s = np.exp(rng.normal(exec_log_mean, exec_log_sigma, n))
    memory = burr_quantile(rng.random(n))
    # kinds: timers mostly among the rarely invoked, bursty among the others
    slow = rate <= 1 / 60.0
    p_slow, p_fast = max(slow.mean(), 1e-12), max(1 - slow.mean(), 1e-12)
    p_timer = np.where(slow, min(1.0, timer_fraction * timer_at_most_per_minute / p_slow),
                       min(1.0, timer_fraction * (1 - timer_at_most_per_minute) / p_fast))
    u = rng.random(n)
    timer = u < p_timer
    p_bursty = min(1.0, cv_above_1_fraction / max(1 - timer_fraction, 1e-12))
    bursty = ~timer & (rng.random(n) < p_bursty)
    cv = np.ones(n)
    cv[timer] = timer_cv
    lo, hi = math.log(bursty_cv[0]), math.log(bursty_cv[1])
    cv[bursty] = np.exp(rng.uniform(lo, hi, int(bursty.sum())))
    kind = np.where(timer, "timer", np.where(bursty, "bursty", "poisson"))
    return Population(rate, exec_s, memory, cv, kind)


@dataclass(frozen=True)
class Invocations:
    """Per application (rows), its first ``count`` invocations (columns, padded): ``idle`` is the
    idle time before invocation j+1 (s: inter-arrival time less the execution time, >= 0),
    ``valid`` marks real idle periods; ``span`` the seconds from the first to the last invocation."""
    idle: np.ndarray
    valid: np.ndarray
    count: np.ndarray
    span: np.ndarray


def invocations(pop: Population, horizon: float, *, max_invocations: int = 400, seed=0) -> Invocations:
    """Renewal arrivals per application over ``horizon`` seconds: gamma inter-arrival times with the
    application's mean 1/rate and CV, at most ``max_invocations`` per application (a stationary
    process: a frequent application is observed over its first ``max_invocations`` only)."""
    horizon = checks.positive("horizon", horizon)
    cap = checks.integer("max_invocations", max_invocations, 2)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = len(pop)
    shape = 1.0 / pop.iat_cv ** 2
    scale = 1.0 / (pop.rate * shape)
    iat = rng.gamma(shape[:, None], scale[:, None], size=(n, cap))
    # the first arrival: uniform over one mean gap (a stationary start for the Poisson case)
    first = rng.uniform(0.0, 1.0, n) / pop.rate
    times = first[:, None] + np.cumsum(iat, axis=1) - iat[:, :1]
    inside = times < horizon
    count = inside.sum(axis=1)
    gaps = iat[:, 1:]
    valid = inside[:, 1:]
    idle = np.maximum(gaps - pop.exec_s[:, None], 0.0)
    span = np.where(count > 0, np.where(valid, gaps, 0.0).sum(axis=1), 0.0)
    return Invocations(np.where(valid, idle, 0.0), valid, count, span)


# ----------------------------------------------------------------------------------------------
# policies
# ----------------------------------------------------------------------------------------------

def loaded_window_outcome(idle, head_cut, tail_cut):
    """For idle times g and loaded windows [head_cut, tail_cut] after an execution: (warm, waste_s)
    with warm = head_cut <= g <= tail_cut and waste_s = (min(g, tail_cut) - head_cut)^+ (s)."""
    g = np.asarray(idle, dtype=float)
    h = np.asarray(head_cut, dtype=float)
    t = np.asarray(tail_cut, dtype=float)
    warm = (g >= h) & (g <= t)
    waste = np.maximum(np.minimum(g, t) - h, 0.0)
    return warm, waste


@dataclass(frozen=True)
class HybridWindows:
    """Per idle period: pre-warm point ``head_cut`` and unload point ``tail_cut`` (s after the end of
    the previous execution) and the branch taken, ``mode`` (index into :data:`MODES`)."""
    head_cut: np.ndarray
    tail_cut: np.ndarray
    mode: np.ndarray


def check_hybrid(range_s, bin_s, head_q, tail_q, margin, cv_threshold, oob_threshold, forecast_margin,
                 smoothing) -> int:
    """Check the hybrid policy's parameters (ValueError naming the culprit); returns the bin count."""
    range_s = checks.positive("range_s", range_s)
    bin_s = checks.positive("bin_s", bin_s)
    bins = int(round(range_s / bin_s))
    if bins < 1 or abs(bins * bin_s - range_s) > 1e-9 * range_s:
        raise ValueError(f"range_s must be a whole number of bins of bin_s, got range_s={range_s:g}, bin_s={bin_s:g}")
    checks.open_unit("head_q", head_q)
    checks.open_unit("tail_q", tail_q)
    if not head_q < tail_q:
        raise ValueError(f"head_q must be < tail_q, got head_q={head_q:g}, tail_q={tail_q:g}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    checks.nonnegative("cv_threshold", cv_threshold)
    checks.unit_interval("oob_threshold", oob_threshold)
    if not 0 <= forecast_margin < 1:
        raise ValueError(f"forecast_margin must be in [0, 1), got {forecast_margin}")
    if not 0 < smoothing <= 1:
        raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
    return bins


def hybrid_windows(idle, valid=None, *, range_s: float = HISTOGRAM_RANGE_S, bin_s: float = HISTOGRAM_BIN_S,
                   head_q: float = HEAD_QUANTILE, tail_q: float = TAIL_QUANTILE,
                   margin: float = HISTOGRAM_MARGIN, cv_threshold: float = CV_THRESHOLD,
                   oob_threshold: float = OOB_THRESHOLD, forecast_margin: float = FORECAST_MARGIN,
                   smoothing: float = FORECAST_SMOOTHING) -> HybridWindows:
    """Windows of the hybrid histogram policy for every idle period, learned online per application.

    idle: (apps, periods) idle times (s) or one sequence; valid: mask of real periods (default all).
    The window of period j uses periods 0..j-1 of the same application only:

    * histogram: bin b = floor(g / bin_s) for g < range_s, else out of bounds (OOB);
    * OOB share of the history >= ``oob_threshold``: forecast f of the next idle time
      (exponential smoothing of the past idle times, ``smoothing`` = alpha, the ARIMA(0,1,1)
      forecast), window [f (1 - forecast_margin), f (1 + forecast_margin)] (mode "forecast");
    * no history, or CV of the bin counts (population std / mean over the bins) < ``cv_threshold``:
      keep loaded for the whole range, window [0, range_s] (mode "default");
    * otherwise (mode "histogram"): head bin h = first bin whose cumulative share reaches head_q,
      tail bin t likewise for tail_q; window [h bin_s (1 - margin), (t + 1) bin_s (1 + margin)].
    """
    bins = check_hybrid(range_s, bin_s, head_q, tail_q, margin, cv_threshold, oob_threshold,
                        forecast_margin, smoothing)
    g = np.asarray(idle, dtype=float)
    one = g.ndim == 1
    g = np.atleast_2d(g)
    v = np.ones_like(g, dtype=bool) if valid is None else np.atleast_2d(np.asarray(valid, dtype=bool))
    if v.shape != g.shape:
        raise ValueError(f"valid must have the shape of idle {g.shape}, got {v.shape}")
    if np.any(g[v] < 0) or not np.all(np.isfinite(g[v])):
        raise ValueError("idle times must be finite and >= 0 s")
    n, m = g.shape
    # applications in decreasing order of their last real period, so those still learning at period j
    # are a prefix of the rows (windows of periods after an application's last one stay the default)
    last = np.where(v.any(axis=1), m - np.argmax(v[:, ::-1], axis=1), 0)
    order = np.argsort(-last, kind="stable")
    g, v = g[order], v[order]
    neg_last = -last[order]
    # two-level histogram (blocks of w bins) so a quantile costs O(sqrt(bins)) per application
    w = max(1, int(math.ceil(math.sqrt(bins))))
    nblocks = -(-bins // w)
    hist = np.zeros((n, nblocks * w))
    block = np.zeros((n, nblocks))
    in_range = np.zeros(n)
    oob = np.zeros(n)
    sumsq = np.zeros(n)              # sum of squared bin counts
    level = np.zeros(n)              # smoothed idle time (s)
    head = np.zeros((n, m))
    tail = np.full((n, m), float(range_s))
    mode = np.ones((n, m), dtype=np.int8)
    def quantile_bin(idx, q):
        # first bin whose cumulative count reaches q x (in-range count)
        target = q * in_range[idx] - 1e-9
        cb = np.cumsum(block[idx], axis=1)
        k = np.argmax(cb >= target[:, None], axis=1)
        before = cb[np.arange(idx.size), k] - block[idx, k]
        inner = hist.reshape(n, nblocks, w)[idx, k]
        kk = np.argmax(before[:, None] + np.cumsum(inner, axis=1) >= target[:, None], axis=1)
        return k * w + kk

    for j in range(m):
        k = int(np.searchsorted(neg_last, -j, side="left"))   # applications with a period >= j to come
        if k == 0:
            break
        total = in_range[:k] + oob[:k]
        seen = total > 0
        # forecast branch: too many idle times beyond the range
        f_mode = seen & (oob[:k] > 0) & (oob[:k] >= oob_threshold * total)
        # histogram branch: representative iff the CV of the bin counts reaches the threshold
        mean = in_range[:k] / bins
        var = np.maximum(sumsq[:k] / bins - mean ** 2, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            cv = np.where(mean > 0, np.sqrt(var) / mean, 0.0)
        h_mode = seen & ~f_mode & (in_range[:k] > 0) & (cv >= cv_threshold)
        if h_mode.any():
            idx = np.flatnonzero(h_mode)
            head[idx, j] = quantile_bin(idx, head_q) * bin_s * (1 - margin)
            tail[idx, j] = (quantile_bin(idx, tail_q) + 1) * bin_s * (1 + margin)
            mode[idx, j] = 0
        if f_mode.any():
            idx = np.flatnonzero(f_mode)
            head[idx, j] = level[idx] * (1 - forecast_margin)
            tail[idx, j] = level[idx] * (1 + forecast_margin)
            mode[idx, j] = 2
        # learn period j
        act = v[:k, j]
        if act.any():
            x = g[:k, j]
            inr = act & (x < range_s)
            r = np.flatnonzero(inr)
            bb = np.floor(x[r] / bin_s).astype(np.int64)
            sumsq[r] += 2 * hist[r, bb] + 1
            hist[r, bb] += 1
            block[r, bb // w] += 1
            in_range[r] += 1
            oob[np.flatnonzero(act & ~inr)] += 1
            first = np.flatnonzero(act & ~seen)
            level[first] = x[first]
            upd = np.flatnonzero(act & seen)
            level[upd] = smoothing * x[upd] + (1 - smoothing) * level[upd]
    back = np.empty_like(order)
    back[order] = np.arange(n)
    head, tail, mode = head[back], tail[back], mode[back]
    if one:
        return HybridWindows(head[0], tail[0], mode[0])
    return HybridWindows(head, tail, mode)


# ----------------------------------------------------------------------------------------------
# evaluation over a population
# ----------------------------------------------------------------------------------------------

def policy_outcome(inv: Invocations, pop: Population, head_cut, tail_cut) -> dict:
    """Per application: cold fraction of its invocations (the first is cold) and wasted memory-time
    rate (MB-s of loaded-but-idle image per second observed), for windows of the shape of inv.idle."""
    warm, waste = loaded_window_outcome(inv.idle, head_cut, tail_cut)
    warm &= inv.valid
    count = inv.count
    cold = np.where(count > 0, count - warm.sum(axis=1), 0)
    waste_s = np.where(inv.valid, waste, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_cold = np.where(count > 0, cold / np.maximum(count, 1), np.nan)
        waste_rate = np.where(inv.span > 0, waste_s * pop.memory_mb / inv.span, 0.0)
    return dict(p_cold=p_cold, waste_mb=waste_rate, cold=cold, invocations=count)


def fixed_outcome(inv: Invocations, pop: Population, keep_alive: float) -> dict:
    """:func:`policy_outcome` of a fixed keep-alive of ``keep_alive`` seconds."""
    k = checks.nonnegative("keep_alive", keep_alive)
    return policy_outcome(inv, pop, 0.0, k)


def hybrid_outcome(inv: Invocations, pop: Population, **params) -> dict:
    """:func:`policy_outcome` of the hybrid histogram policy (parameters of :func:`hybrid_windows`);
    adds ``mode_share``: the share of idle periods decided by each branch."""
    w = hybrid_windows(inv.idle, inv.valid, **params)
    out = policy_outcome(inv, pop, w.head_cut, w.tail_cut)
    modes = w.mode[inv.valid]
    out["mode_share"] = {name: float(np.mean(modes == i)) if modes.size else math.nan
                         for i, name in enumerate(MODES)}
    return out


def summarise(outcome: dict, quantile: float = 0.75) -> dict:
    """Application cold-start percentage at ``quantile`` across applications invoked at least once
    (default the third quartile), mean and median, and the total wasted memory rate (MB)."""
    q = checks.unit_interval("quantile", quantile)
    p = outcome["p_cold"][np.isfinite(outcome["p_cold"])]
    return dict(cold_pct_q=100 * float(np.quantile(p, q)), cold_pct_mean=100 * float(p.mean()),
                cold_pct_median=100 * float(np.median(p)),
                cold_invocation_pct=100 * float(outcome["cold"].sum() / max(outcome["invocations"].sum(), 1)),
                waste_mb=float(outcome["waste_mb"].sum()))


def pareto_front(x, y) -> np.ndarray:
    """Mask of the points not dominated by another (lower x and lower y are better)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be one-dimensional of equal length, got {x.shape} and {y.shape}")
    keep = np.ones(x.size, dtype=bool)
    for i in range(x.size):
        better = (x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i]))
        keep[i] = not better.any()
    return keep


def cold_at_equal_memory(fixed_waste, fixed_cold, waste) -> float:
    """Cold-start percentage of the fixed policy at wasted memory ``waste``, linear between the fixed
    keep-alives' (waste, cold) points; NaN outside their waste range (no extrapolation)."""
    w = np.asarray(fixed_waste, dtype=float)
    c = np.asarray(fixed_cold, dtype=float)
    if w.shape != c.shape or w.ndim != 1 or w.size < 2:
        raise ValueError(f"fixed_waste and fixed_cold must be one-dimensional with >= 2 points, got {w.shape} and {c.shape}")
    order = np.argsort(w)
    w, c = w[order], c[order]
    waste = checks.real("waste", waste)
    if not w[0] <= waste <= w[-1]:
        return math.nan
    return float(np.interp(waste, w, c))


def t_interval(values, confidence: float = 0.95, low: float = -math.inf, high: float = math.inf) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean of replications, clipped to the quantity's range
    [low, high] (a percentage: 0 and 100)."""
    from scipy.special import stdtrit    # the t quantile without importing scipy.stats
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"values must hold >= 2 replications, got shape {v.shape}")
    q = float(stdtrit(v.size - 1, 0.5 + checks.open_unit("confidence", confidence) / 2))
    mean = float(v.mean())
    half = q * float(v.std(ddof=1)) / math.sqrt(v.size)
    return mean, max(low, mean - half), min(high, mean + half)
