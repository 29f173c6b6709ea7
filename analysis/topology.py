"""Service graphs described by name, validated, and turned into ciw networks.

A :class:`ServiceGraph` is a set of named :class:`Service` objects (servers, service-time
distribution, optional queue capacity, autoscaling schedule, timeout and retry policy),
external :class:`Arrivals` (a constant rate, a piecewise-constant :class:`RateSchedule`, or a
renewal process), routing by probabilities or through a named :class:`Pool` with a load-balancing
policy, and :class:`CustomerClass` priorities. Everything a user sees is keyed by service name;
ciw's node numbers never leave this module.

Units: times in seconds, rates in requests/s.

Example::

    from analysis.topology import (Arrivals, Exponential, Lognormal, Pool, Retry, Service,
                                   ServiceGraph)
    from analysis.simulation import run_trials

    web = [Service(f"web-{i}", 2, Exponential(rate=40.0)) for i in range(4)]
    graph = ServiceGraph(
        services=web + [Service("checkout", 4, Lognormal(0.08, scv=2.0), timeout=1.0,
                                retry=Retry(2, backoff=0.2, multiplier=2.0))],
        arrivals=[Arrivals("web", rate=200.0)],
        pools=[Pool("web", [s.name for s in web], policy="power_of_d", d=2)],
        routing={s.name: {"checkout": 0.1} for s in web})
    graph.traffic()                        # utilisation per service from the traffic equations
    result = run_trials(graph, replications=10, horizon=600, warmup=60, seed=1)
    result.table()                         # services x metrics; result.summary has the CIs

Model (what the simulation does, so a reader can check it)
---------------------------------------------------------
* Service times are the small frozen specs below (:class:`Exponential`, :class:`Deterministic`,
  :class:`Uniform`, :class:`Gamma`, :class:`Lognormal`, :class:`HyperExponential`,
  :class:`Empirical`, :class:`Mixture` and :func:`two_point`). Every spec is built from its mean
  in seconds (the one positional argument; ``rate``, ``scv``, ``shape`` are keywords:
  ``Exponential(0.05)`` and ``Exponential(rate=20.0)`` are the same); each knows its mean and
  squared coefficient of variation (SCV) so the traffic equations can give every service's
  utilisation before any simulation, samples with a numpy Generator (``sample(rng, size)``)
  and has cdf/sf/ppf/isf for the closed forms.
* Queue capacity: ``queue_capacity`` is the waiting room (requests in service not counted). A
  request that finds the service full -- on external arrival or when routed from another
  service -- is *rejected* there ("blocked" in the summaries; Erlang-loss semantics, no ciw
  blocking-after-service, so no deadlock).
* Timeout: ``timeout`` is the longest a request waits in the queue of that service; when it
  expires before service starts the request leaves (ciw reneging). A request already in service
  is never cut off.
* Retries (:class:`Retry` on a service): a request that times out or is rejected at that service
  goes into a back-off delay (an infinite-server node hidden from the results) and then re-enters
  *the same destination it was sent to* (for a pool: the pool, so the balancer chooses again),
  up to ``max_retries`` times per request and destination. The n-th retry waits
  ``backoff * multiplier**(n-1)`` seconds (``backoff`` may be a distribution: jitter). After the
  last retry the request is dropped with outcome ``timed_out`` or ``rejected``. Back-off time
  counts in the end-to-end response. The traffic equations (stability check) count first
  attempts only: retries can push a stable graph into overload (a retry storm), so every graph
  with retries runs with a cap on the number of requests in the system (``max_in_system``).
* Pools: a pool is a named group of services behind a balancer. ``random`` (uniform),
  ``round_robin`` (cyclic), ``jsq`` (fewest requests per server, ties at random),
  ``power_of_d`` (sample d distinct members, join the one with fewest requests, ties at random)
  and ``capacity_weighted`` (random, probability proportional to servers / mean service time).
  For the stability check the pool's traffic is split equally (random, round_robin) or in
  proportion to capacity (capacity_weighted, jsq, power_of_d: the load-balancing policies keep
  every member busy in proportion to its capacity when the pool as a whole is stable; for
  heterogeneous pools under jsq/power_of_d this is an approximation).
* Classes: lower ``priority`` is served first (non-preemptive by default; ``preemptive=True``
  gives preemptive-resume). Routing is shared by all classes; service times may differ per class.
* Schedules: ``schedule=[(servers, end_time), ...]`` gives ``servers`` until ``end_time`` seconds,
  repeating with period = the last end time (ciw semantics). A server that goes off duty finishes
  its current request first. The stability check uses the time-averaged number of servers.
"""
from __future__ import annotations

import bisect
import functools
import math
import numbers
import random
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import ciw
import numpy as np
import pandas as pd

from analysis import checks
from analysis._lazy import lazy_module

stats = lazy_module("scipy.stats")    # imported on first use (about 1 CPU-s): only for Dist.scipy()
special = lazy_module("scipy.special")    # imported on first use

__all__ = [
    "Dist", "Exponential", "Deterministic", "Uniform", "Gamma", "Lognormal", "HyperExponential",
    "Empirical", "Mixture", "two_point", "as_dist", "RateSchedule", "Service", "Pool", "Arrivals",
    "CustomerClass", "Retry",
    "ServiceGraph", "CompiledModel", "POLICIES", "END_TO_END", "DEFAULT_CLASS",
    "DEFAULT_MAX_IN_SYSTEM", "MAX_SERVERS",
]

POLICIES = ("random", "round_robin", "jsq", "power_of_d", "capacity_weighted")
END_TO_END = "end-to-end"          # name of the end-to-end row in summaries
DEFAULT_CLASS = "request"          # class name when none is given
DEFAULT_MAX_IN_SYSTEM = 10_000     # safety cap for overloaded runs and graphs with retries
MAX_SERVERS = 100_000              # ciw keeps one object per server (10**8 would need ~32 GB)
_EXIT = -1


# ----------------------------------------------------------------------------------------------
# distribution specs
# ----------------------------------------------------------------------------------------------

class Dist:
    """Base of the distribution specs (times in seconds).

    Every spec can be built from its mean (the only positional argument; other parameters such
    as ``rate``, ``scv`` or ``shape`` are keywords), and has ``mean`` (s), ``scv`` (variance /
    mean^2), ``sample(rng, size)`` (a numpy array drawn with a
    numpy.random.Generator), ``to_ciw()`` (a ciw distribution), and ``cdf``/``sf``/``ppf``/``isf``
    for closed forms such as fan-out order statistics. ``scipy()`` gives a frozen scipy.stats
    distribution where one exists; ``cdf``/``sf``/``ppf``/``isf`` give the same numbers without
    importing scipy.stats (about 1 CPU-s per process).
    """

    mean: float
    scv: float

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws (seconds) as a float array, from ``rng`` (a
        numpy.random.Generator, e.g. numpy.random.default_rng(seed))."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator (numpy.random.default_rng("
                             f"seed)), got {type(rng).__name__}")
        size = checks.integer("size", size, 0)
        return np.asarray(self._sample(rng, size), dtype=float).reshape(size)

    def _sample(self, rng, size):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_ciw(self) -> ciw.dists.Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def scipy(self):
        raise ValueError(f"{type(self).__name__} has no frozen scipy.stats equivalent; use its "
                         "cdf/sf/ppf/isf methods")

    # closed-form helpers: scipy.stats for subclasses that define neither these nor a _StandardForm
    def _frozen(self):
        """``self.scipy()``, built once per distinct spec (building a frozen scipy.stats distribution
        costs about 1 ms; root finders call ``sf``/``ppf`` thousands of times)."""
        try:
            return _frozen_scipy(self)
        except TypeError:          # an unhashable spec: build it each time
            return self.scipy()

    def cdf(self, x):
        """P(X <= x), x in seconds (float or array)."""
        return self._frozen().cdf(x)

    def sf(self, x):
        """P(X > x), x in seconds (float or array)."""
        return self._frozen().sf(x)

    def ppf(self, q):
        """Quantile: the least x with P(X <= x) >= q, q in [0, 1]."""
        return self._frozen().ppf(q)

    def isf(self, p):
        """Upper quantile: x with P(X > x) = p (accurate for tiny p)."""
        return self._frozen().isf(p)


@functools.lru_cache(maxsize=1024)
def _frozen_scipy(dist: Dist):
    """The frozen scipy.stats distribution of ``dist`` (specs are frozen dataclasses: equal specs, equal
    distributions; the frozen distribution is only evaluated, never mutated)."""
    return dist.scipy()


class _StandardForm:
    """cdf/sf/ppf/isf of a distribution on [0, inf) with a scale, computed exactly as scipy.stats
    computes them (the same scipy.special function of x / scale, the same values outside the
    support: cdf 0 and sf 1 at x <= 0, ppf(0) = 0, ppf(1) = inf, nan for q outside [0, 1]), so that
    closed forms do not need scipy.stats. Subclasses define ``_standard()``: (scale, cdf, sf, ppf,
    isf) of the standardised variable X / scale."""

    def _standard(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, x, inner, at_or_below_zero: float):
        scale = self._standard()[0]
        z = np.asarray(x, dtype=float) / scale
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(z > 0, inner(np.where(z > 0, z, 1.0)), at_or_below_zero)
        return np.where(np.isnan(z), np.nan, out)[()]

    def cdf(self, x):
        """P(X <= x), x in seconds (float or array)."""
        return self._forward(x, self._standard()[1], 0.0)

    def sf(self, x):
        """P(X > x), x in seconds (float or array)."""
        return self._forward(x, self._standard()[2], 1.0)

    def _inverse(self, p, inner, at_zero: float, at_one: float):
        scale = self._standard()[0]
        p = np.asarray(p, dtype=float)
        inside = (p > 0) & (p < 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(inside, inner(np.where(inside, p, 0.5)) * scale, np.nan)
        return np.where(p == 0, at_zero, np.where(p == 1, at_one, out))[()]

    def ppf(self, q):
        """Quantile: the least x with P(X <= x) >= q, q in [0, 1]."""
        return self._inverse(q, self._standard()[3], 0.0, math.inf)

    def isf(self, p):
        """Upper quantile: x with P(X > x) = p (accurate for tiny p)."""
        return self._inverse(p, self._standard()[4], math.inf, 0.0)


def _one_of(cls: str, **given) -> None:
    named = [k for k, v in given.items() if v is not None]
    if len(named) != 1:
        raise ValueError(f"{cls}: give exactly one of {', '.join(given)} "
                         f"(got {', '.join(named) or 'none'})")


@dataclass(frozen=True, init=False)
class Exponential(_StandardForm, Dist):
    """Exponential: ``Exponential(mean)`` seconds or ``Exponential(rate=r)`` (1/s); SCV 1."""
    rate: float

    def __init__(self, mean=None, *, rate=None):
        _one_of("Exponential", mean=mean, rate=rate)
        r = (1.0 / checks.positive("Exponential mean", mean) if mean is not None
             else checks.positive("Exponential rate", rate))
        object.__setattr__(self, "rate", r)

    @property
    def mean(self) -> float:
        return 1.0 / self.rate

    @property
    def scv(self) -> float:
        return 1.0

    def _sample(self, rng, size):
        return rng.exponential(1.0 / self.rate, size)

    def to_ciw(self):
        return ciw.dists.Exponential(self.rate)

    def scipy(self):
        return stats.expon(scale=1.0 / self.rate)

    def _standard(self):   # scipy.stats.expon's formulas
        return (1.0 / self.rate, lambda z: -special.expm1(-z), lambda z: np.exp(-z),
                lambda q: -special.log1p(-q), lambda q: -np.log(q))


@dataclass(frozen=True, init=False)
class Deterministic(Dist):
    """Constant ``Deterministic(mean)`` seconds (>= 0): SCV 0."""
    mean: float

    def __init__(self, mean):
        object.__setattr__(self, "mean", checks.nonnegative("Deterministic mean", mean))

    @property
    def scv(self) -> float:
        return 0.0

    def _sample(self, rng, size):
        return np.full(size, self.mean)

    def to_ciw(self):
        return ciw.dists.Deterministic(self.mean)

    def cdf(self, x):
        return np.where(np.asarray(x, dtype=float) >= self.mean, 1.0, 0.0)[()]

    def sf(self, x):
        return 1.0 - self.cdf(x)

    def ppf(self, q):
        return np.full(np.shape(q), self.mean)[()]

    def isf(self, p):
        return self.ppf(p)


@dataclass(frozen=True, init=False)
class Uniform(Dist):
    """Uniform on [low, high] seconds: ``Uniform(mean, scv=s)`` (s <= 1/3) or
    ``Uniform(low=a, high=b)`` (0 <= a < b)."""
    low: float
    high: float

    def __init__(self, mean=None, *, scv=None, low=None, high=None):
        if mean is not None:
            if low is not None or high is not None or scv is None:
                raise ValueError("Uniform: give mean with scv, or low and high")
            m = checks.positive("Uniform mean", mean)
            s = checks.positive("Uniform scv", scv)
            if s > 1.0 / 3.0:
                raise ValueError(f"Uniform scv must be <= 1/3 (low >= 0), got {scv!r}")
            h = m * math.sqrt(3.0 * s)
            low, high = max(0.0, m - h), m + h
        elif low is None or high is None or scv is not None:
            raise ValueError("Uniform: give mean with scv, or low and high")
        low = checks.nonnegative("Uniform low", low)
        high = checks.real("Uniform high", high)
        if high <= low:
            raise ValueError(f"Uniform high must be > low, got low={low!r}, high={high!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def mean(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def scv(self) -> float:
        return ((self.high - self.low) ** 2 / 12.0) / self.mean**2

    def _sample(self, rng, size):
        return rng.uniform(self.low, self.high, size)

    def to_ciw(self):
        return ciw.dists.Uniform(self.low, self.high)

    def scipy(self):
        return stats.uniform(loc=self.low, scale=self.high - self.low)


@dataclass(frozen=True, init=False)
class Gamma(_StandardForm, Dist):
    """Gamma from its ``mean`` (s) and one of ``scv`` (default 1), ``shape`` (k = 1/scv;
    integer k is Erlang-k); or from ``shape`` and ``rate`` (1/s, mean = shape/rate)."""
    mean: float
    scv: float

    def __init__(self, mean=None, *, scv=None, shape=None, rate=None):
        if mean is None:
            if shape is None or rate is None or scv is not None:
                raise ValueError("Gamma: give mean (with scv or shape), or shape and rate")
            k = checks.positive("Gamma shape", shape)
            m = k / checks.positive("Gamma rate", rate)
            s = 1.0 / k
        else:
            m = checks.positive("Gamma mean", mean)
            if rate is not None:
                raise ValueError("Gamma: rate goes with shape, not with mean")
            if scv is not None and shape is not None:
                raise ValueError("Gamma: give scv or shape, not both")
            s = (1.0 / checks.positive("Gamma shape", shape) if shape is not None
                 else checks.positive("Gamma scv", 1.0 if scv is None else scv))
        object.__setattr__(self, "mean", m)
        object.__setattr__(self, "scv", s)

    @property
    def shape(self) -> float:
        return 1.0 / self.scv

    def _sample(self, rng, size):
        return rng.gamma(1.0 / self.scv, self.mean * self.scv, size)

    def to_ciw(self):
        return ciw.dists.Gamma(1.0 / self.scv, self.mean * self.scv)

    def scipy(self):
        return stats.gamma(1.0 / self.scv, scale=self.mean * self.scv)

    def _standard(self):   # scipy.stats.gamma's formulas
        a = 1.0 / self.scv
        return (self.mean * self.scv, lambda z: special.gammainc(a, z), lambda z: special.gammaincc(a, z),
                lambda q: special.gammaincinv(a, q), lambda q: special.gammainccinv(a, q))


@dataclass(frozen=True, init=False)
class Lognormal(_StandardForm, Dist):
    """Lognormal from its ``mean`` (s) and ``scv`` (> 0, default 1) of the latency itself, or
    ``sigma`` (the standard deviation of its logarithm: scv = exp(sigma^2) - 1)."""
    mean: float
    scv: float

    def __init__(self, mean, *, scv=None, sigma=None):
        m = checks.positive("Lognormal mean", mean)
        if scv is not None and sigma is not None:
            raise ValueError("Lognormal: give scv or sigma, not both")
        s = (math.expm1(checks.positive("Lognormal sigma", sigma) ** 2) if sigma is not None
             else checks.positive("Lognormal scv", 1.0 if scv is None else scv))
        object.__setattr__(self, "mean", m)
        object.__setattr__(self, "scv", s)

    @property
    def _params(self) -> tuple[float, float]:
        s2 = math.log1p(self.scv)
        return math.log(self.mean) - 0.5 * s2, math.sqrt(s2)

    def _sample(self, rng, size):
        mu, sigma = self._params
        return rng.lognormal(mu, sigma, size)

    def to_ciw(self):
        mu, sigma = self._params
        return ciw.dists.Lognormal(mu, sigma)

    def scipy(self):
        mu, sigma = self._params
        return stats.lognorm(sigma, scale=math.exp(mu))

    def _standard(self):   # scipy.stats.lognorm's formulas
        mu, s = self._params
        return (math.exp(mu), lambda z: special.ndtr(np.log(z) / s), lambda z: special.ndtr(-(np.log(z) / s)),
                lambda q: np.exp(s * special.ndtri(q)), lambda q: np.exp(s * -special.ndtri(q)))


class _H2(ciw.dists.Distribution):
    """Two-phase hyper-exponential sampled with Python's ``random`` (seeded by ciw.seed)."""

    def __init__(self, p: float, rate1: float, rate2: float):
        self.p, self.rate1, self.rate2 = p, rate1, rate2

    def __repr__(self):
        return f"H2(p={self.p:.4g}, rates=({self.rate1:.4g}, {self.rate2:.4g}))"

    def sample(self, t=None, ind=None):
        if random.random() < self.p:
            return random.expovariate(self.rate1)
        return random.expovariate(self.rate2)


class _CiwMixture(ciw.dists.Distribution):
    """A weighted mixture for ciw: pick a component with Python's ``random`` (seeded by
    ciw.seed), then draw from that component's ciw distribution."""

    def __init__(self, cumulative, components):
        self.cumulative, self.components = list(cumulative), list(components)

    def __repr__(self):
        return f"Mixture({len(self.components)} components)"

    def sample(self, t=None, ind=None):
        i = bisect.bisect_right(self.cumulative, random.random())
        return self.components[min(i, len(self.components) - 1)].sample(t, ind)


class _MixtureMath:
    """cdf/sf/ppf/isf of a weighted mixture (components with cdf/sf/isf), for Mixture and
    HyperExponential."""

    def _parts(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def cdf(self, x):
        comps, w = self._parts()
        return sum(wi * np.asarray(c.cdf(x), dtype=float) for c, wi in zip(comps, w))[()]

    def sf(self, x):
        comps, w = self._parts()
        return sum(wi * np.asarray(c.sf(x), dtype=float) for c, wi in zip(comps, w))[()]

    def _invert(self, p: float) -> float:
        """x with sf(x) = p (the least x with sf(x) <= p at an atom)."""
        comps, _ = self._parts()
        if p <= 0.0:
            return max(float(c.isf(0.0)) for c in comps)
        if p >= 1.0:
            return 0.0
        ends = [float(c.isf(p)) for c in comps]
        lo, hi = min(ends), max(ends)         # sf > p below every component's isf(p), <= p above
        if hi <= lo:
            return hi

        if float(self.sf(lo)) <= p:
            return lo
        # bisection keeping sf(lo) > p >= sf(hi): exact at atoms (Deterministic components),
        # to a few ulps elsewhere
        for _ in range(2000):
            mid = 0.5 * (lo + hi)
            if not lo < mid < hi:
                break
            if float(self.sf(mid)) > p:
                lo = mid
            else:
                hi = mid
        return hi

    def isf(self, p):
        arr = np.asarray(p, dtype=float)
        return np.vectorize(self._invert, otypes=[float])(arr)[()]

    def ppf(self, q):
        arr = np.asarray(q, dtype=float)
        return np.vectorize(lambda v: self._invert(1.0 - v), otypes=[float])(arr)[()]


@dataclass(frozen=True, init=False)
class HyperExponential(_MixtureMath, Dist):
    """Two-phase hyper-exponential with balanced means: ``HyperExponential(mean, scv=4.0)``
    (mean in s, scv >= 1: bursty)."""
    mean: float
    scv: float

    def __init__(self, mean, *, scv=4.0):
        object.__setattr__(self, "mean", checks.positive("HyperExponential mean", mean))
        s = checks.real("HyperExponential scv", scv)
        if s < 1:
            raise ValueError(f"HyperExponential scv must be >= 1, got {scv!r} "
                             "(use Gamma or Lognormal for scv < 1)")
        object.__setattr__(self, "scv", s)

    @property
    def _params(self) -> tuple[float, float, float]:
        p = 0.5 * (1.0 + math.sqrt((self.scv - 1.0) / (self.scv + 1.0)))
        return p, 2.0 * p / self.mean, 2.0 * (1.0 - p) / self.mean

    def _parts(self):
        p, r1, r2 = self._params
        return (Exponential(rate=r1), Exponential(rate=r2)), (p, 1.0 - p)

    def _sample(self, rng, size):
        p, r1, r2 = self._params
        first = rng.random(size) < p
        return rng.exponential(1.0, size) / np.where(first, r1, r2)

    def to_ciw(self):
        p, r1, r2 = self._params
        if r2 <= 0:   # scv = 1 exactly gives p = 0.5, never 0; guard anyway
            return ciw.dists.Exponential(1.0 / self.mean)
        return _H2(p, r1, r2)

    def scipy(self):
        raise ValueError("HyperExponential has no scipy.stats equivalent; use its cdf/sf/ppf/isf")


@dataclass(frozen=True)
class Empirical(Dist):
    """Resample uniformly from observed ``values`` (seconds, >= 0, at least one > 0)."""
    values: tuple

    def __post_init__(self):
        try:
            vals = tuple(float(v) for v in self.values)
        except (TypeError, ValueError):
            raise ValueError(f"Empirical values must be numbers, got {self.values!r}") from None
        if not vals:
            raise ValueError("Empirical values must not be empty")
        bad = [v for v in vals if not math.isfinite(v) or v < 0]
        if bad:
            raise ValueError(f"Empirical values must be finite and >= 0, got {bad[0]!r}")
        if max(vals) <= 0:
            raise ValueError("Empirical values must not all be zero")
        object.__setattr__(self, "values", vals)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def scv(self) -> float:
        return float(np.var(self.values)) / self.mean**2

    def _sample(self, rng, size):
        return rng.choice(np.asarray(self.values), size)

    def to_ciw(self):
        return ciw.dists.Empirical(list(self.values))

    def cdf(self, x):
        v = np.sort(self.values)
        return (np.searchsorted(v, np.asarray(x, dtype=float), side="right") / v.size)[()]

    def sf(self, x):
        return 1.0 - self.cdf(x)

    def ppf(self, q):
        v = np.sort(self.values)
        k = np.ceil(np.asarray(q, dtype=float) * v.size).astype(np.int64) - 1
        return v[np.clip(k, 0, v.size - 1)][()]

    def isf(self, p):
        return self.ppf(1.0 - np.asarray(p, dtype=float))


@dataclass(frozen=True, init=False)
class Mixture(_MixtureMath, Dist):
    """Weighted mixture: with probability ``weights[i]`` a draw comes from ``components[i]``
    (distribution specs, or numbers taken as Deterministic seconds). ``weights`` default to
    equal; they must be >= 0 and are normalised to sum to 1 (a sum off by more than 1e-9 is an
    error). Mean, SCV, sampling, ciw and cdf/sf/ppf/isf follow from the components.
    Example: a leaf that is slow 1 time in 10,000: ``two_point(0.01, 1.0, p_high=1e-4)``."""
    components: tuple
    weights: tuple

    def __init__(self, components, weights=None):
        if isinstance(components, (Dist, numbers.Real, str, bytes)):
            raise ValueError(f"Mixture components must be a sequence of distribution specs, "
                             f"got {components!r}")
        comps = tuple(as_dist(f"Mixture components[{i}]", c, allow_number=True)
                      for i, c in enumerate(components))
        if not comps:
            raise ValueError("Mixture needs at least one component")
        if weights is None:
            w = [1.0 / len(comps)] * len(comps)
        else:
            if isinstance(weights, (numbers.Real, str, bytes)):
                raise ValueError(f"Mixture weights must be a sequence, got {weights!r}")
            w = [checks.nonnegative(f"Mixture weights[{i}]", x) for i, x in enumerate(weights)]
            if len(w) != len(comps):
                raise ValueError(f"Mixture weights has {len(w)} entries for {len(comps)} "
                                 "components")
            total = math.fsum(w)
            if abs(total - 1.0) > 1e-9:
                raise ValueError(f"Mixture weights must sum to 1, got {total!r}")
            w = [x / total for x in w]
        keep = [i for i, x in enumerate(w) if x > 0]
        comps, w = tuple(comps[i] for i in keep), tuple(w[i] for i in keep)
        if math.fsum(c.mean * x for c, x in zip(comps, w)) <= 0:
            raise ValueError("Mixture mean must be > 0 (every weighted component is zero)")
        object.__setattr__(self, "components", comps)
        object.__setattr__(self, "weights", w)

    def _parts(self):
        return self.components, self.weights

    @property
    def mean(self) -> float:
        return math.fsum(c.mean * w for c, w in zip(self.components, self.weights))

    @property
    def scv(self) -> float:
        second = math.fsum(w * c.mean**2 * (1.0 + c.scv)
                           for c, w in zip(self.components, self.weights))
        return max(second / self.mean**2 - 1.0, 0.0)

    def _sample(self, rng, size):
        out = np.empty(size)
        which = rng.choice(len(self.components), size=size, p=np.asarray(self.weights))
        for i, c in enumerate(self.components):
            at = which == i
            n = int(np.count_nonzero(at))
            if n:
                out[at] = c.sample(rng, n)
        return out

    def to_ciw(self):
        return _CiwMixture(np.cumsum(self.weights), [c.to_ciw() for c in self.components])


def two_point(low, high, p_high) -> Mixture:
    """A two-point mixture: ``high`` with probability ``p_high`` (in [0, 1]), else ``low``.
    ``low``/``high`` are seconds (Deterministic) or distribution specs, e.g.
    ``two_point(0.01, 1.0, p_high=0.01)`` for a leaf that takes 1 s one time in a hundred."""
    p = checks.unit_interval("p_high", p_high)
    return Mixture((low, high), (1.0 - p, p))


def as_dist(what: str, value, allow_number: bool = False) -> Dist:
    """Check that ``value`` is a distribution spec (or, if ``allow_number``, a number of seconds
    taken as Deterministic); ValueError naming ``what`` otherwise."""
    if isinstance(value, Dist):
        return value
    if allow_number and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return Deterministic(checks.nonnegative(what, value))
    hint = ("; a plain number means Deterministic seconds here" if allow_number else
            "; e.g. Exponential(rate=20.0) or Lognormal(0.05, scv=2.0)")
    raise ValueError(f"{what} must be a distribution spec from analysis.topology "
                     f"(Exponential, Deterministic, Uniform, Gamma, Lognormal, HyperExponential, "
                     f"Empirical, Mixture), got {value!r}{hint}")


# ----------------------------------------------------------------------------------------------
# time-varying Poisson arrivals
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RateSchedule:
    """Piecewise-constant Poisson rate: ``rates[i]`` requests/s from ``starts[i]`` seconds until
    the next start. ``starts[0]`` must be 0. After the last start the last rate holds, unless
    ``period`` (s) is given: then the schedule repeats every ``period`` seconds.

    Build it from a pandas Series with :meth:`from_series`. Sampling is exact (inversion of the
    integrated rate), so the count in any interval is Poisson with mean = integral of the rate.
    """
    starts: tuple
    rates: tuple
    period: float | None = None

    def __post_init__(self):
        try:
            starts = tuple(float(s) for s in self.starts)
            rates = tuple(float(r) for r in self.rates)
        except (TypeError, ValueError):
            raise ValueError("RateSchedule starts and rates must be numbers") from None
        if not starts or len(starts) != len(rates):
            raise ValueError(f"RateSchedule needs as many starts as rates (>= 1), got "
                             f"{len(starts)} starts and {len(rates)} rates")
        if starts[0] != 0.0:
            raise ValueError(f"RateSchedule starts[0] must be 0 seconds, got {starts[0]!r}")
        for i in range(1, len(starts)):
            if not starts[i] > starts[i - 1]:
                raise ValueError(f"RateSchedule starts must be strictly increasing: starts[{i}]="
                                 f"{starts[i]!r} after {starts[i - 1]!r}")
        for i, r in enumerate(rates):
            if not math.isfinite(r) or r < 0:
                raise ValueError(f"RateSchedule rates[{i}] must be finite and >= 0 requests/s, "
                                 f"got {r!r}")
        if max(rates) <= 0:
            raise ValueError("RateSchedule rates must not all be zero")
        if self.period is not None:
            period = checks.positive("RateSchedule period", self.period)
            if period <= starts[-1]:
                raise ValueError(f"RateSchedule period must be > the last start "
                                 f"({starts[-1]!r} s), got {period!r}")
            object.__setattr__(self, "period", period)
        object.__setattr__(self, "starts", starts)
        object.__setattr__(self, "rates", rates)

    @classmethod
    def from_series(cls, series: pd.Series, *, time_scale: float = 1.0, rate_scale: float = 1.0,
                    period: float | None = None) -> "RateSchedule":
        """From a Series of rates (requests/s) indexed by time: numbers (seconds from the first
        value), a DatetimeIndex or a TimedeltaIndex (converted to seconds since the first stamp).
        ``time_scale`` multiplies the times (e.g. 1/3600 to replay an hour per simulated second),
        ``rate_scale`` multiplies the rates (e.g. to scale a trace down)."""
        if not isinstance(series, pd.Series):
            raise ValueError(f"RateSchedule.from_series needs a pandas Series, got "
                             f"{type(series).__name__}")
        if series.empty:
            raise ValueError("RateSchedule.from_series: the series is empty")
        time_scale = checks.positive("time_scale", time_scale)
        rate_scale = checks.positive("rate_scale", rate_scale)
        idx = series.index
        if isinstance(idx, pd.DatetimeIndex):
            t = (idx - idx[0]).total_seconds().to_numpy(dtype=float)
        elif isinstance(idx, pd.TimedeltaIndex):
            t = (idx - idx[0]).total_seconds().to_numpy(dtype=float)
        else:
            try:
                t = np.asarray(idx, dtype=float)
            except (TypeError, ValueError):
                raise ValueError("RateSchedule.from_series: the index must be times (numbers of "
                                 "seconds, DatetimeIndex or TimedeltaIndex)") from None
            t = t - t[0]
        values = np.asarray(series.to_numpy(), dtype=float)
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"RateSchedule.from_series: rate at {series.index[i]!r} must be "
                             f"finite and >= 0 requests/s, got {values[i]!r}")
        return cls(tuple(t * time_scale), tuple(values * rate_scale), period)

    def rate_at(self, t: float) -> float:
        """Rate (requests/s) at time ``t`` seconds."""
        if self.period is not None:
            t = t % self.period
        return self.rates[bisect.bisect_right(self.starts, t) - 1]

    def integral(self, t0: float, t1: float) -> float:
        """Expected number of arrivals in [t0, t1] (integral of the rate)."""
        return self._cumulative(t1) - self._cumulative(t0)

    def mean_rate(self, t0: float, t1: float) -> float:
        """Average rate over [t0, t1] seconds (requests/s)."""
        if t1 <= t0:
            raise ValueError(f"mean_rate needs t1 > t0, got [{t0}, {t1}]")
        return self.integral(t0, t1) / (t1 - t0)

    def _cumulative(self, t: float) -> float:
        starts, rates = self.starts, self.rates
        ends = starts[1:] + ((self.period,) if self.period is not None else (math.inf,))
        full = 0.0
        if self.period is not None:
            cycles, t = divmod(t, self.period)
            per_cycle = sum(r * (e - s) for s, e, r in zip(starts, ends, rates))
            full = cycles * per_cycle
        total = 0.0
        for s, e, r in zip(starts, ends, rates):
            if t <= s:
                break
            total += r * (min(t, e) - s)
        return full + total

    def to_ciw(self):
        return _PiecewisePoisson(self.starts, self.rates, self.period)


class _PiecewisePoisson(ciw.dists.Distribution):
    """Inter-arrival time of a non-homogeneous Poisson process with piecewise-constant rate,
    by inversion: from the current time t draw E ~ Exp(1) and walk the segments until the
    integrated rate reaches E. Returns inf when no further arrival can happen."""

    def __init__(self, starts, rates, period):
        self.starts = list(starts)
        self.rates = list(rates)
        self.period = period
        self.ends = self.starts[1:] + [period if period is not None else math.inf]

    def __repr__(self):
        return f"PiecewisePoisson({len(self.rates)} intervals)"

    @property
    def mean(self):   # not a renewal process; ciw only uses this for display
        return float("nan")

    def sample(self, t=None, ind=None):
        t = 0.0 if t is None else float(t)
        need = random.expovariate(1.0)
        starts, rates, ends, period = self.starts, self.rates, self.ends, self.period
        if period is not None:
            base = period * math.floor(t / period)
            local = t - base
        else:
            base, local = 0.0, t
        i = bisect.bisect_right(starts, local) - 1
        cur = local
        n = len(rates)
        empty_segments = 0
        while True:
            r = rates[i]
            avail = r * (ends[i] - cur)
            if r > 0 and need <= avail:
                return base + cur + need / r - t
            if r > 0:
                need -= avail
                empty_segments = 0
            else:
                empty_segments += 1
            if ends[i] == math.inf:
                return math.inf      # last rate is zero and holds forever
            cur = ends[i]
            i += 1
            if i == n:               # periodic: wrap to the next cycle
                i, cur, base = 0, 0.0, base + period
            if empty_segments > n:   # a whole period without rate (cannot happen: rates not all 0)
                return math.inf


# ----------------------------------------------------------------------------------------------
# graph elements
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Retry:
    """Retry policy of a service: up to ``max_retries`` retries per request after a timeout or a
    rejection (``on``), each after a back-off of ``backoff * multiplier**(n-1)`` seconds
    (``backoff``: seconds or a distribution spec for jitter)."""
    max_retries: int = 2
    backoff: object = 0.0
    multiplier: float = 1.0
    on: tuple = ("timeout", "rejected")

    def __post_init__(self):
        checks.integer("Retry max_retries", self.max_retries, 0)
        object.__setattr__(self, "backoff", as_dist("Retry backoff", self.backoff, True))
        mult = checks.real("Retry multiplier", self.multiplier)
        if mult < 1:
            raise ValueError(f"Retry multiplier must be >= 1, got {mult!r}")
        object.__setattr__(self, "multiplier", mult)
        on = (self.on,) if isinstance(self.on, str) else tuple(self.on)
        bad = [o for o in on if o not in ("timeout", "rejected")]
        if bad or not on:
            raise ValueError(f"Retry on must be a subset of ('timeout', 'rejected'), "
                             f"got {self.on!r}")
        object.__setattr__(self, "on", on)


@dataclass(frozen=True)
class Service:
    """A named service: ``servers`` (integer >= 1, or math.inf for a pure delay),
    ``service_time`` (a distribution spec, or a mapping class name -> spec), ``queue_capacity``
    (waiting room; None = unlimited), ``schedule`` ([(servers, end_time_s), ...], repeating),
    ``timeout`` (max seconds waiting in queue; a number or a spec), ``retry`` (a :class:`Retry`)."""
    name: str
    servers: object = 1
    service_time: object = None
    queue_capacity: int | None = None
    schedule: tuple | None = None
    timeout: object = None
    retry: Retry | None = None

    def __post_init__(self):
        name = checks.nonempty_string("Service name", self.name)
        where = f"service {name!r}"
        servers = self.servers
        real = isinstance(servers, numbers.Real) and not isinstance(servers, bool)
        if real and servers == math.inf:
            servers = math.inf
        else:
            servers = checks.integer(f"{where}: servers", servers, 1)
            _check_server_limit(f"{where}: servers", servers)
        object.__setattr__(self, "servers", servers)
        st = self.service_time
        if st is None:
            raise ValueError(f"{where}: service_time is required, e.g. Exponential(rate=20.0)")
        if isinstance(st, Mapping):
            if not st:
                raise ValueError(f"{where}: service_time mapping is empty")
            st = {checks.nonempty_string(f"{where}: service_time class", k):
                  as_dist(f"{where}: service_time[{k!r}]", v) for k, v in st.items()}
            st = tuple(sorted(st.items()))
        else:
            st = as_dist(f"{where}: service_time", st)
        object.__setattr__(self, "service_time", st)
        if self.queue_capacity is not None:
            checks.integer(f"{where}: queue_capacity", self.queue_capacity, 0)
            object.__setattr__(self, "queue_capacity", int(self.queue_capacity))
        if self.schedule is not None:
            object.__setattr__(self, "schedule", _check_schedule(where, self.schedule))
            if servers == math.inf:
                raise ValueError(f"{where}: a schedule needs finite servers")
        if self.timeout is not None:
            t = as_dist(f"{where}: timeout", self.timeout, allow_number=True)
            if t.mean <= 0:
                raise ValueError(f"{where}: timeout must be > 0 seconds, got {self.timeout!r}")
            object.__setattr__(self, "timeout", t)
        if self.retry is not None and not isinstance(self.retry, Retry):
            raise ValueError(f"{where}: retry must be a Retry(...), got {self.retry!r}")

    def service_dist(self, customer_class: str) -> Dist:
        """The service-time spec for ``customer_class``."""
        if isinstance(self.service_time, Dist):
            return self.service_time
        table = dict(self.service_time)
        if customer_class not in table:
            raise ValueError(f"service {self.name!r}: no service_time for class {customer_class!r} "
                             f"(has {sorted(table)})")
        return table[customer_class]

    @property
    def mean_servers(self) -> float:
        """Time-averaged number of servers (the schedule's average over one cycle)."""
        if self.schedule is None:
            return float(self.servers)
        start, total = 0.0, 0.0
        for c, end in self.schedule:
            total += c * (end - start)
            start = end
        return total / start

    @property
    def server_spec(self):
        """The servers as CompiledModel records them: the schedule tuple, or the count."""
        return self.schedule if self.schedule else self.servers

    def _ciw_servers(self):
        """ciw's number_of_servers entry: a ciw.Schedule for a schedule, else the count."""
        if self.schedule:
            return ciw.Schedule([c for c, _ in self.schedule], [e for _, e in self.schedule])
        return self.servers

    def _capacity_weight(self) -> float:
        if isinstance(self.service_time, Dist):
            m = self.service_time.mean
        else:
            m = float(np.mean([d.mean for _, d in self.service_time]))
        if self.servers == math.inf:
            return math.inf
        return self.mean_servers / m if m > 0 else math.inf


def _check_server_limit(what: str, count: int) -> None:
    if count > MAX_SERVERS:
        raise ValueError(f"{what} must be at most {MAX_SERVERS} (the simulation keeps one object "
                         f"per server), got {count!r}; for a pure delay without queueing use "
                         "servers=math.inf")


def _check_schedule(where: str, schedule) -> tuple:
    try:
        items = [tuple(x) for x in schedule]
    except TypeError:
        raise ValueError(f"{where}: schedule must be a list of (servers, end_time) pairs, "
                         f"got {schedule!r}") from None
    if not items:
        raise ValueError(f"{where}: schedule must not be empty")
    out, prev = [], 0.0
    for i, item in enumerate(items):
        if len(item) != 2:
            raise ValueError(f"{where}: schedule[{i}] must be (servers, end_time), got {item!r}")
        c = checks.integer(f"{where}: schedule[{i}] servers", item[0], 0)
        _check_server_limit(f"{where}: schedule[{i}] servers", c)
        end = checks.positive(f"{where}: schedule[{i}] end_time", item[1])
        if end <= prev:
            raise ValueError(f"{where}: schedule end times must increase, schedule[{i}] ends at "
                             f"{end!r} after {prev!r}")
        out.append((c, end))
        prev = end
    if max(c for c, _ in out) == 0:
        raise ValueError(f"{where}: schedule never has a server on duty")
    return tuple(out)


@dataclass(frozen=True)
class Pool:
    """A named group of services behind a load balancer (``policy`` in :data:`POLICIES`;
    ``d`` = number of sampled members for power_of_d)."""
    name: str
    members: tuple
    policy: str = "random"
    d: int = 2

    def __post_init__(self):
        name = checks.nonempty_string("Pool name", self.name)
        members = (self.members,) if isinstance(self.members, str) else tuple(self.members)
        if not members:
            raise ValueError(f"pool {name!r}: members must not be empty")
        for m in members:
            checks.nonempty_string(f"pool {name!r}: member", m)
        if len(set(members)) != len(members):
            raise ValueError(f"pool {name!r}: duplicate members in {list(members)}")
        object.__setattr__(self, "members", members)
        if self.policy not in POLICIES:
            raise ValueError(f"pool {name!r}: unknown policy {self.policy!r}; choose one of "
                             f"{', '.join(POLICIES)}")
        if self.policy == "power_of_d":
            checks.integer(f"pool {name!r}: d", self.d, 1)
            if self.d > len(members):
                raise ValueError(f"pool {name!r}: d={self.d} is larger than the pool "
                                 f"({len(members)} members)")


class _ArrivalStream:
    """What an arrival stream (:class:`Arrivals`, :class:`~analysis.fanout.FanOut`) has: Poisson
    with ``rate`` (requests/s; a number or a :class:`RateSchedule`) or a renewal process with
    ``interarrival`` (a distribution spec)."""
    rate: object
    interarrival: Dist | None

    def _check_stream(self, where: str, prefix: str) -> None:
        """Validate and normalise ``rate`` / ``interarrival`` in place: exactly one is given; a
        pandas Series of rates becomes a RateSchedule; a number must be > 0; an interarrival spec
        must have mean > 0. ``where`` starts the exactly-one message, ``prefix`` the others."""
        if (self.rate is None) == (self.interarrival is None):
            raise ValueError(f"{where}: give exactly one of rate (requests/s) and interarrival")
        if self.rate is not None:
            rate = self.rate
            if isinstance(rate, pd.Series):
                rate = RateSchedule.from_series(rate)
            if not isinstance(rate, RateSchedule):
                rate = checks.positive(f"{prefix}rate", rate)
            object.__setattr__(self, "rate", rate)
        else:
            d = as_dist(f"{prefix}interarrival", self.interarrival)
            if d.mean <= 0:
                raise ValueError(f"{prefix}interarrival mean must be > 0 seconds")
            object.__setattr__(self, "interarrival", d)

    def mean_rate(self, horizon: float | None = None) -> float:
        """Average rate (requests/s), over [0, horizon] for a schedule (its long-run mean when
        horizon is None: the period average, or the last rate)."""
        if isinstance(self.rate, RateSchedule):
            if horizon is not None:
                return self.rate.mean_rate(0.0, horizon)
            if self.rate.period is not None:
                return self.rate.mean_rate(0.0, self.rate.period)
            return self.rate.rates[-1]
        if self.rate is not None:
            return float(self.rate)
        return 1.0 / self.interarrival.mean

    def _arrival_dist(self):
        """The ciw inter-arrival distribution of the stream."""
        if isinstance(self.rate, RateSchedule):
            return self.rate.to_ciw()
        if self.rate is not None:
            return ciw.dists.Exponential(float(self.rate))
        return self.interarrival.to_ciw()


@dataclass(frozen=True, eq=False)
class Arrivals(_ArrivalStream):
    """External requests of ``customer_class`` entering at ``target`` (a service or pool name):
    Poisson with ``rate`` (requests/s; a number, a :class:`RateSchedule` or a pandas Series of
    rates indexed by time), or a renewal process with ``interarrival`` (a distribution spec)."""
    target: str
    rate: object = None
    customer_class: str = DEFAULT_CLASS
    interarrival: Dist | None = None

    def __post_init__(self):
        target = checks.nonempty_string("Arrivals target", self.target)
        checks.nonempty_string(f"arrivals at {target!r}: customer_class", self.customer_class)
        where = f"arrivals at {target!r} (class {self.customer_class!r})"
        self._check_stream(where, f"{where}: ")

    def to_ciw(self):
        return self._arrival_dist()


@dataclass(frozen=True)
class CustomerClass:
    """A request class: ``priority`` (lower is served first; any integers)."""
    name: str
    priority: int = 0

    def __post_init__(self):
        checks.nonempty_string("CustomerClass name", self.name)
        if isinstance(self.priority, bool) or not isinstance(self.priority, numbers.Integral):
            raise ValueError(f"class {self.name!r}: priority must be an integer, "
                             f"got {self.priority!r}")


# ----------------------------------------------------------------------------------------------
# the graph
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ServiceGraph:
    """Named services, arrivals, routing, pools and classes (see the module docstring).

    ``arrivals``: a list of :class:`Arrivals`, or a mapping target -> rate (default class).
    ``routing``: mapping source service -> {destination service or pool: probability} (the rest
    leaves the graph), or source -> destination name (probability 1).
    ``classes``: a list of :class:`CustomerClass` or a mapping name -> priority (default: the
    arrival classes, all priority 0). ``preemptive``: preemptive-resume priorities.
    ``max_in_system``: admission cap on requests in the graph (arrivals beyond it are rejected);
    None: unlimited, except for overloaded runs and graphs with retries, which get
    :data:`DEFAULT_MAX_IN_SYSTEM`.

    Structure is validated on construction; stability (utilisation < 1 from the traffic
    equations) by :meth:`check` before every simulation.
    """
    services: Sequence[Service]
    arrivals: object
    routing: Mapping = field(default_factory=dict)
    pools: Sequence[Pool] = ()
    classes: object = None
    preemptive: bool = False
    max_in_system: int | None = None

    def __post_init__(self):
        services = (self.services,) if isinstance(self.services, Service) else tuple(self.services)
        if not services:
            raise ValueError("ServiceGraph needs at least one service")
        for s in services:
            if not isinstance(s, Service):
                raise ValueError(f"services must be Service(...) objects, got {s!r}")
        names = [s.name for s in services]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate service name(s): {dup}")
        object.__setattr__(self, "services", services)
        pools = tuple(self.pools)
        for p in pools:
            if not isinstance(p, Pool):
                raise ValueError(f"pools must be Pool(...) objects, got {p!r}")
            if p.name in names:
                raise ValueError(f"pool {p.name!r} has the same name as a service")
            missing = [m for m in p.members if m not in names]
            if missing:
                raise ValueError(f"pool {p.name!r}: member(s) {missing} are not services "
                                 f"(known services: {names})")
        pnames = [p.name for p in pools]
        dup = sorted({n for n in pnames if pnames.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate pool name(s): {dup}")
        object.__setattr__(self, "pools", pools)
        destinations = set(names) | set(pnames)

        # arrivals
        arr = self.arrivals
        if isinstance(arr, Arrivals):
            arr = (arr,)
        elif isinstance(arr, Mapping):
            arr = tuple(Arrivals(t, rate=r) for t, r in arr.items())
        else:
            try:
                arr = tuple(arr)
            except TypeError:
                raise ValueError(f"arrivals must be Arrivals(...) objects or a mapping "
                                 f"target -> rate, got {self.arrivals!r}") from None
        if not arr:
            raise ValueError("ServiceGraph needs at least one arrival stream")
        seen = {}
        for a in arr:
            if not isinstance(a, Arrivals):
                raise ValueError(f"arrivals must be Arrivals(...) objects, got {a!r}")
            if a.target not in destinations:
                raise ValueError(f"arrivals target {a.target!r} is not a service or pool "
                                 f"(known: {sorted(destinations)})")
            entry = self._pool(a.target).members if a.target in pnames else (a.target,)
            key = (a.target, a.customer_class)
            if key in seen:
                raise ValueError(f"two arrival streams for class {a.customer_class!r} at "
                                 f"{a.target!r}; merge them into one")
            seen[key] = entry
        # a class may not enter both a pool and one of its members (same ciw entry slot)
        by_class: dict = {}
        for (target, cls), entry in seen.items():
            first = entry[0]
            other = by_class.setdefault((first, cls), target)
            if other != target:
                raise ValueError(f"class {cls!r} enters both {other!r} and {target!r}, which share "
                                 f"the entry service {first!r}; use one stream or another class")
        object.__setattr__(self, "arrivals", arr)

        # classes
        arrival_classes = sorted({a.customer_class for a in arr})
        cls = self.classes
        if cls is None:
            cls = tuple(CustomerClass(c) for c in arrival_classes)
        elif isinstance(cls, Mapping):
            cls = tuple(CustomerClass(k, v) for k, v in cls.items())
        else:
            cls = tuple(cls)
        for c in cls:
            if not isinstance(c, CustomerClass):
                raise ValueError(f"classes must be CustomerClass(...) objects, got {c!r}")
        cnames = [c.name for c in cls]
        if len(set(cnames)) != len(cnames):
            raise ValueError(f"duplicate class names in {cnames}")
        undeclared = [c for c in arrival_classes if c not in cnames]
        if undeclared:
            raise ValueError(f"arrivals use undeclared class(es) {undeclared} (classes: {cnames})")
        cls = tuple(c for c in cls if c.name in arrival_classes)   # classes without traffic: drop
        object.__setattr__(self, "classes", cls)
        for s in services:
            if not isinstance(s.service_time, Dist):
                have = [k for k, _ in s.service_time]
                missing = [c for c in arrival_classes if c not in have]
                if missing:
                    raise ValueError(f"service {s.name!r}: no service_time for class(es) {missing}")

        # routing
        if not isinstance(self.routing, Mapping):
            raise ValueError(f"routing must be a mapping source -> {{destination: probability}}, "
                             f"got {self.routing!r}")
        routing = {}
        for src, row in self.routing.items():
            if src not in names:
                hint = " (pools route through their members' rows)" if src in pnames else ""
                raise ValueError(f"routing source {src!r} is not a service{hint} "
                                 f"(known services: {names})")
            if isinstance(row, str):
                row = {row: 1.0}
            if not isinstance(row, Mapping):
                raise ValueError(f"routing from {src!r} must map destination -> probability, "
                                 f"got {row!r}")
            clean = {}
            for dst, p in row.items():
                if dst not in destinations:
                    raise ValueError(f"routing from {src!r}: unknown destination {dst!r} "
                                     f"(known services and pools: {sorted(destinations)})")
                p = checks.real(f"routing probability {src!r} -> {dst!r}", p)
                if p < 0 or p > 1:
                    raise ValueError(f"routing probability {src!r} -> {dst!r} must be in [0, 1], "
                                     f"got {p!r}")
                if p > 0:
                    clean[dst] = p
            total = math.fsum(clean.values())
            if total > 1.0 + 1e-9:
                raise ValueError(f"routing from {src!r}: probabilities sum to {total:.6g} > 1 "
                                 f"({clean}); the remainder 1 - sum leaves the graph")
            routing[src] = clean
        object.__setattr__(self, "routing", routing)
        if not isinstance(self.preemptive, bool):
            raise ValueError(f"preemptive must be True or False, got {self.preemptive!r}")
        if self.max_in_system is not None:
            checks.integer("max_in_system", self.max_in_system, 1)
        self._check_exits()

    # -- helpers ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Service names in declaration order."""
        return [s.name for s in self.services]

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise ValueError(f"unknown service {name!r} (known: {self.names})")

    def _pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise ValueError(f"unknown pool {name!r}")

    def _split(self, dest: str) -> dict[str, float]:
        """Expected share of traffic sent to ``dest`` that reaches each service."""
        names = self.names
        if dest in names:
            return {dest: 1.0}
        pool = self._pool(dest)
        if pool.policy in ("random", "round_robin"):
            return {m: 1.0 / len(pool.members) for m in pool.members}
        w = [self.service(m)._capacity_weight() for m in pool.members]
        if any(math.isinf(x) for x in w):
            inf = [m for m, x in zip(pool.members, w) if math.isinf(x)]
            return {m: (1.0 / len(inf) if m in inf else 0.0) for m in pool.members}
        total = sum(w)
        return {m: x / total for m, x in zip(pool.members, w)}

    def routing_matrix(self) -> np.ndarray:
        """Expected service-to-service routing matrix P (pools expanded), in declaration order."""
        names = self.names
        index = {n: i for i, n in enumerate(names)}
        p = np.zeros((len(names), len(names)))
        for src, row in self.routing.items():
            for dst, prob in row.items():
                for member, share in self._split(dst).items():
                    p[index[src], index[member]] += prob * share
        return p

    def _check_exits(self) -> None:
        """Every service must be able to reach the exit (else requests circulate for ever)."""
        names = self.names
        can_exit = {s for s in names if math.fsum(self.routing.get(s, {}).values()) < 1.0 - 1e-12}
        changed = True
        while changed:
            changed = False
            for s in names:
                if s in can_exit:
                    continue
                for dst in self.routing.get(s, {}):
                    members = self._pool(dst).members if dst not in names else (dst,)
                    if any(m in can_exit for m in members):
                        can_exit.add(s)
                        changed = True
                        break
        trapped = [s for s in names if s not in can_exit]
        if trapped:
            raise ValueError(f"routing traps requests: from service(s) {trapped} no path leads out "
                             "of the graph (some routing row must sum to < 1)")

    def external_rates(self, horizon: float | None = None) -> pd.DataFrame:
        """External arrival rate (requests/s) per service (rows) and class (columns), pools
        split as in the traffic equations; schedules averaged over [0, horizon]."""
        out = pd.DataFrame(0.0, index=pd.Index(self.names, name="service"),
                           columns=[c.name for c in self.classes])
        for a in self.arrivals:
            rate = a.mean_rate(horizon)
            for member, share in self._split(a.target).items():
                out.loc[member, a.customer_class] += rate * share
        return out

    def traffic(self, horizon: float | None = None) -> pd.DataFrame:
        """Per-service traffic from the traffic equations (analysis.theory.jackson_traffic):
        arrival_rate (requests/s), mean_service (s), servers (time-averaged), capacity
        (requests/s) and utilisation; first attempts only (no retries)."""
        from analysis import theory
        ext = self.external_rates(horizon)
        p = self.routing_matrix()
        lam = pd.DataFrame(0.0, index=ext.index, columns=ext.columns)
        for c in ext.columns:
            gamma = ext[c].to_numpy()
            if gamma.sum() > 0:
                lam[c] = theory.jackson_traffic(gamma, p)
        rows = []
        for s in self.services:
            arrival = float(lam.loc[s.name].sum())
            work = float(sum(lam.loc[s.name, c] * s.service_dist(c).mean for c in lam.columns))
            mean_service = work / arrival if arrival > 0 else float(
                np.mean([s.service_dist(c).mean for c in lam.columns]))
            rows.append(_traffic_row(s, arrival, mean_service, work))
        return pd.DataFrame(rows).set_index("service")

    def check(self, horizon: float | None = None, allow_overload: bool = False) -> pd.DataFrame:
        """Raise ValueError naming the first service with utilisation >= 1 (unless
        ``allow_overload``); return :meth:`traffic`."""
        return _check_load(self.traffic(horizon), allow_overload)

    @property
    def has_retries(self) -> bool:
        return any(s.retry is not None and s.retry.max_retries > 0 for s in self.services)

    # -- ciw ------------------------------------------------------------------------------------
    def compile(self, *, overloaded: bool = False) -> "CompiledModel":
        """Build the ciw network (fresh objects each call: build one per replication)."""
        names = self.names
        node_of = {n: i + 1 for i, n in enumerate(names)}
        pool_token = {p.name: -2 - i for i, p in enumerate(self.pools)}
        has_retry = self.has_retries
        n = len(names)
        backoff_id = n + 1 if has_retry else None
        n_nodes = n + (1 if has_retry else 0)
        class_names = [c.name for c in self.classes]

        def token(dest: str) -> int:
            return node_of[dest] if dest in node_of else pool_token[dest]

        rows = []
        for s in names:
            row = self.routing.get(s, {})
            # ciw order: services in declaration order, then pools, then the exit
            items = sorted(row.items(), key=lambda kv: (0, node_of[kv[0]]) if kv[0] in node_of
                           else (1, -pool_token[kv[0]]))
            dests = [token(d) for d, _ in items]
            probs = [float(p) for _, p in items]
            rows.append((dests + [_EXIT], probs + [1.0 - sum(probs)]) if dests else None)
        pools = {}
        for p in self.pools:
            members = [node_of[m] for m in p.members]
            weights = [self.service(m)._capacity_weight() for m in p.members]
            pools[pool_token[p.name]] = _PoolState(p.policy, members, p.d, weights)
        entry_pool = {}
        arrival = {c: [None] * n_nodes for c in class_names}
        for a in self.arrivals:
            if a.target in pool_token:
                first = node_of[self._pool(a.target).members[0]]
                entry_pool[(first, a.customer_class)] = pool_token[a.target]
                arrival[a.customer_class][first - 1] = a.to_ciw()
            else:
                arrival[a.customer_class][node_of[a.target] - 1] = a.to_ciw()
        retry = {}
        for s in self.services:
            if s.retry is not None and s.retry.max_retries > 0:
                retry[node_of[s.name]] = (s.retry.max_retries, s.retry.backoff.to_ciw(),
                                          s.retry.multiplier, s.retry.on)
        router = _GraphRouter(rows, pools, entry_pool, retry, backoff_id)
        service = {c: [s.service_dist(c).to_ciw() for s in self.services] for c in class_names}
        servers = [s._ciw_servers() for s in self.services]
        queues = [s.queue_capacity if s.queue_capacity is not None else math.inf
                  for s in self.services]
        reneging = {c: [s.timeout.to_ciw() if s.timeout is not None else None
                        for s in self.services] for c in class_names}
        if has_retry:
            for c in class_names:
                service[c].append(_BackoffTime())
                reneging[c].append(None)
            servers.append(math.inf)
            queues.append(math.inf)
        prios = sorted({c.priority for c in self.classes})
        rank = {c.name: prios.index(c.priority) for c in self.classes}
        priority = (rank, ["resume"] * n_nodes) if self.preemptive else rank
        network = ciw.create_network(
            arrival_distributions=arrival,
            service_distributions=service,
            number_of_servers=servers,
            queue_capacities=queues,
            routing={c: router for c in class_names},
            priority_classes=priority,
            reneging_time_distributions=reneging,
            system_capacity=_system_capacity(self.max_in_system, overloaded or has_retry),
        )
        node_names = names + ([None] if has_retry else [])
        server_specs = [s.server_spec for s in self.services]
        return CompiledModel(network=network, node_names=node_names, class_names=class_names,
                             servers=server_specs + ([math.inf] if has_retry else []),
                             backoff_node=backoff_id,
                             # ciw's own arrival node when the graph needs nothing else
                             arrival_node_class=(_KitArrivalNode if (entry_pool or has_retry)
                                                 else None))

    def simulation(self, *, allow_overload: bool = False) -> ciw.Simulation:
        """A ready ciw.Simulation of this graph (seed with ciw.seed first), for direct ciw use."""
        table = self.check(None, allow_overload)
        return self.compile(overloaded=bool((table["utilisation"] >= 1).any())).simulation()


def _traffic_row(service: Service, arrival: float, mean_service: float, work: float) -> dict:
    """One row of a traffic table (ServiceGraph.traffic, FanOut.traffic): ``work`` is the offered
    load arrival x mean service (Erlangs), spread over the service's time-averaged servers."""
    servers = service.mean_servers
    capacity = servers / mean_service if mean_service > 0 else math.inf
    util = work / servers if servers not in (0.0, math.inf) else 0.0
    return dict(service=service.name, arrival_rate=arrival, mean_service=mean_service,
                servers=servers, capacity=capacity, utilisation=util)


def _check_load(table: pd.DataFrame, allow_overload: bool) -> pd.DataFrame:
    """``table`` (a traffic table), or ValueError naming its first row with utilisation >= 1
    unless ``allow_overload``."""
    if not allow_overload:
        for name, row in table.iterrows():
            if row["utilisation"] >= 1.0:
                raise ValueError(
                    f"service {name!r}: utilisation {row['utilisation']:.3g} >= 1 (arrival "
                    f"{row['arrival_rate']:.4g} req/s, capacity {row['capacity']:.4g} req/s); "
                    "pass allow_overload=True with a bounded horizon for a transient study")
    return table


def _system_capacity(max_in_system: int | None, bounded: bool) -> float:
    """ciw's system_capacity: ``max_in_system``; when None, DEFAULT_MAX_IN_SYSTEM if the run
    must be bounded (overload, retries), else unlimited."""
    if max_in_system is not None:
        return max_in_system
    return DEFAULT_MAX_IN_SYSTEM if bounded else math.inf


# ----------------------------------------------------------------------------------------------
# compiled model and ciw runtime classes
# ----------------------------------------------------------------------------------------------

@dataclass
class CompiledModel:
    """A ciw network plus what is needed to name its nodes and run it. ``node_names[i]`` is the
    name of ciw node i+1 (None for hidden nodes such as the retry back-off). ``servers[i]`` is an
    int, math.inf or a tuple of (servers, end_time) (for utilisation)."""
    network: object
    node_names: list
    class_names: list
    servers: list
    backoff_node: int | None = None
    fanout: object = None          # analysis.fanout._FanoutPlan for fork-join models
    arrival_node_class: type | None = None

    def simulation(self) -> ciw.Simulation:
        return _KitSimulation(self.network, arrival_node_class=self.arrival_node_class)


class _PoolState:
    """Run-time state of a pool's balancer (one per replication)."""

    def __init__(self, policy, members, d, weights):
        self.policy = policy
        self.members = list(members)
        self.d = d
        self.next = 0
        finite = [w for w in weights if not math.isinf(w)]
        if len(finite) == len(weights) and finite:
            total = sum(weights)
            self.probs = [w / total for w in weights]
            self.scale = [1.0 / w for w in weights]
        else:
            self.probs = [1.0 / len(members)] * len(members)
            self.scale = [1.0] * len(members)
        self.uniform = len(set(round(w, 12) for w in weights)) <= 1
        self.nodes = None

    def bind(self, simulation):
        self.nodes = simulation.nodes

    def choose(self):
        nodes, members = self.nodes, self.members
        policy = self.policy
        if policy == "random":
            return nodes[members[int(random.random() * len(members))]]
        if policy == "round_robin":
            i = self.next
            self.next = (i + 1) % len(members)
            return nodes[members[i]]
        if policy == "capacity_weighted":
            return nodes[ciw.random_choice(members, self.probs)]
        if policy == "power_of_d":
            candidates = random.sample(range(len(members)), self.d)
        else:   # jsq
            candidates = range(len(members))
        best, best_load = [], math.inf
        uniform, scale = self.uniform, self.scale
        for i in candidates:
            load = nodes[members[i]].number_of_individuals
            if not uniform:
                load *= scale[i]
            if load < best_load:
                best, best_load = [i], load
            elif load == best_load:
                best.append(i)
        i = best[0] if len(best) == 1 else best[int(random.random() * len(best))]
        return nodes[members[i]]


class _GraphRouter(ciw.routing.NetworkRouting):
    """Routing of a ServiceGraph: probabilistic rows (drawn exactly as ciw's TransitionMatrix
    does, so a graph without pools follows the same random stream as a hand-written ciw
    model), pools, entry dispatch, and the retry back-off loop."""

    def __init__(self, rows, pools, entry_pool, retry, backoff_id):
        self.rows = rows
        self.pools = pools
        self.entry_pool = entry_pool
        self.retry = retry
        self.backoff_id = backoff_id
        self.track = bool(retry)

    def initialise(self, simulation):
        self.simulation = simulation
        self.nodes = simulation.nodes
        for pool in self.pools.values():
            pool.bind(simulation)

    def initialise_individual(self, ind):
        pass

    def _resolve(self, tok, ind):
        if tok == _EXIT:
            return self.nodes[-1]
        if self.track:
            ind._kit_via = tok
        if tok > 0:
            return self.nodes[tok]
        return self.pools[tok].choose()

    def next_node(self, ind, node_id):
        if node_id == self.backoff_id:
            return self._resolve(ind._kit_retry, ind)
        row = self.rows[node_id - 1]
        if row is None:
            return self.nodes[-1]
        return self._resolve(ciw.random_choice(row[0], row[1]), ind)

    def next_node_for_rerouting(self, ind, node_id):
        return self.next_node(ind, node_id)

    def next_node_for_jockeying(self, ind, node_id):
        return self.after_failure(ind, node_id, "timeout")

    def entry(self, node, ind, customer_class):
        """Where an external arrival attached to ``node`` goes (pool dispatch)."""
        tok = self.entry_pool.get((node.id_number, customer_class))
        if tok is None:
            if self.track:
                ind._kit_via = node.id_number
            return node
        return self._resolve(tok, ind)

    def after_failure(self, ind, node_id, kind):
        """Back-off node if ``ind`` may retry after a ``kind`` failure at ``node_id``, else exit."""
        policy = self.retry.get(node_id)
        if policy is not None:
            max_retries, backoff, multiplier, on = policy
            if kind in on:
                tok = getattr(ind, "_kit_via", node_id)
                tries = ind.__dict__.setdefault("_kit_tries", {})
                used = tries.get(tok, 0)
                if used < max_retries:
                    tries[tok] = used + 1
                    ind._kit_retry = tok
                    ind._kit_backoff = backoff.sample() * multiplier**used
                    return self.nodes[self.backoff_id]
        return self.nodes[-1]


class _BackoffTime(ciw.dists.Distribution):
    """Service time of the hidden back-off node: the delay chosen by the router."""

    def sample(self, t=None, ind=None):
        return ind._kit_backoff


class _KitSimulation(ciw.Simulation):
    """ciw.Simulation that, after each event, refreshes the next-event date of only the nodes
    whose state can have changed: the node that had the event and every node that accepted a
    request during it (ciw refreshes all nodes, O(nodes) per event: slow for pools of 50-100
    services). A node's next event (service end, timeout, shift change) depends only on its own
    requests and servers, which change only through its own events and arrivals, so the
    trajectory is identical to ciw's (tests/test_simulation.py checks this against a
    hand-written ciw model). Requires _KitNode (rejection instead of ciw's blocking)."""

    def __init__(self, network, arrival_node_class=None):
        self._touched = []
        super().__init__(network, node_class=_KitNode, arrival_node_class=arrival_node_class)

    def event_and_return_nextnode(self, next_active_node):
        next_active_node.have_event()
        touched = self._touched
        if next_active_node is not self.nodes[0]:
            next_active_node.update_next_event_date()
        if touched:
            for node in touched:
                if node is not next_active_node:
                    node.update_next_event_date()
            touched.clear()
        return self.find_next_active_node()


class _KitNode(ciw.Node):
    """ciw node whose requests are *rejected* (and maybe retried) when the next service is full,
    instead of ciw's blocking-after-service; reports arrivals to _KitSimulation."""

    def accept(self, next_individual, completed=False):
        ciw.Node.accept(self, next_individual, completed)
        self.simulation._touched.append(self)

    def choose_next_customer(self):
        """The next request to serve. FIFO: the first request of the highest priority without a
        server -- ciw's own choice, found without building the list of every waiting request
        (ciw's scan made each request cost O(queue length): 20-40x slower in overload)."""
        if self.service_discipline is not ciw.disciplines.FIFO:
            return ciw.Node.choose_next_customer(self)
        for priority_individuals in self.individuals:
            for ind in priority_individuals:
                if not ind.server:
                    return ind
        return None

    def finish_service(self):
        ind = self.decide_between_simultaneous_individuals()
        self.change_customer_class(ind)
        next_node = self.next_node(ind)
        ind.destination = next_node.id_number
        if not math.isinf(self.c) and self.c > 0:
            ind.server.next_end_service_date = math.inf
        if next_node.number_of_individuals < next_node.node_capacity:
            self.release(ind, next_node)
            return
        router = self.simulation.routers[ind.customer_class]
        dest = router.after_failure(ind, next_node.id_number, "rejected")
        self.release(ind, dest)
        next_node.write_baulking_or_rejection_record(ind, record_type="rejection")


class _KitArrivalNode(ciw.ArrivalNode):
    """ciw arrival node with pool dispatch and retry after rejection (no baulking); used only
    with a _GraphRouter."""

    def release_individual(self, next_node, next_individual):
        sim = self.simulation
        router = sim.routers[next_individual.customer_class]
        next_node = router.entry(next_node, next_individual, self.next_class)
        full = next_node.number_of_individuals >= next_node.node_capacity
        if full or sim.number_of_individuals >= self.system_capacity:
            self.record_rejection(next_node, next_individual)
            dest = router.after_failure(next_individual, next_node.id_number, "rejected")
            if dest is sim.nodes[-1]:
                sim.nodes[-1].accept(next_individual, completed=False)
            else:
                self.send_individual(dest, next_individual)
        else:
            self.decide_baulk(next_node, next_individual)
