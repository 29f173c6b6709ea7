"""Admission control and throttling: queue caps, a token-bucket rate limiter, load shedding by
priority and client-side adaptive throttling, each an object whose ``decide(t, in_system,
customer_class)`` returns "admitted" or the reason for the rejection (used by
:func:`analysis.station.simulate_station`, which counts every rejected request). Units: seconds,
requests/s; ``in_system`` counts requests (waiting + in service) present at the arrival.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

from analysis import checks
from analysis.station import ADMITTED


class QueueCap:
    """Blocking: reject ("queue_full") an arrival that finds ``max_in_system`` requests present."""

    def __init__(self, max_in_system: int):
        self.max_in_system = checks.integer("max_in_system", max_in_system, 1)

    def decide(self, t: float, in_system: int, customer_class=None) -> str:
        return ADMITTED if in_system < self.max_in_system else "queue_full"


class TokenBucket:
    """Rate limiter: tokens accrue at ``rate`` per second up to ``burst``; a request takes one token
    or is rejected ("rate_limited"). Starts full. Over any interval of length T it admits at most
    burst + rate * T requests."""

    def __init__(self, rate: float, burst: float):
        self.rate = checks.positive("rate", rate)
        self.burst = checks.real("burst", burst)
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1 token (one request), got {burst!r}")
        self.tokens = self.burst
        self.last = -math.inf

    def take(self, t: float) -> bool:
        """Refill to instant ``t`` (s, non-decreasing) and take one token if there is one."""
        if t < self.last:
            raise ValueError(f"token bucket times must not decrease: {t} after {self.last}")
        if self.last > -math.inf:
            self.tokens = min(self.burst, self.tokens + self.rate * (t - self.last))
        self.last = t
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def decide(self, t: float, in_system: int = 0, customer_class=None) -> str:
        return ADMITTED if self.take(t) else "rate_limited"


def token_bucket_admits(times, rate: float, burst: float) -> np.ndarray:
    """Boolean mask: which of the request instants ``times`` (s, sorted) a fresh full bucket admits."""
    bucket = TokenBucket(rate, burst)
    return np.array([bucket.take(float(t)) for t in np.asarray(times, dtype=float)], dtype=bool)


class PriorityShedding:
    """Load shedding by priority: class k is rejected ("shed") when ``in_system`` has reached
    ``thresholds[k]`` (a lower threshold for a less important class: it is shed first). A class
    missing from ``thresholds`` is refused with an error."""

    def __init__(self, thresholds: dict):
        if not thresholds:
            raise ValueError("thresholds must map each customer class to a max_in_system, got an empty mapping")
        self.thresholds = {k: checks.integer(f"thresholds[{k!r}]", v, 1) for k, v in dict(thresholds).items()}

    def decide(self, t: float, in_system: int, customer_class) -> str:
        try:
            limit = self.thresholds[customer_class]
        except KeyError:
            raise ValueError(f"customer_class {customer_class!r} has no shedding threshold "
                             f"(have {sorted(self.thresholds)})") from None
        return ADMITTED if in_system < limit else "shed"


class AdaptiveThrottle:
    """Client-side adaptive throttling (Google SRE book, ch. 21): over the last ``window_s`` seconds
    the client counts its requests and those the backend accepted, and rejects a new request locally
    ("client_throttled") with probability max(0, (requests - k * accepts) / (requests + 1)). Requests
    it sends are decided by ``backend`` (e.g. a :class:`QueueCap`); its rejections count as not
    accepted. ``k`` >= 1: a larger k throttles later."""

    def __init__(self, backend, *, k: float = 2.0, window_s: float = 60.0, seed: int = 0):
        if not hasattr(backend, "decide"):
            raise ValueError(f"backend must have a decide(t, in_system, customer_class) method, got {backend!r}")
        self.backend = backend
        self.k = checks.real("k", k)
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        self.window_s = checks.positive("window_s", window_s)
        self.rng = np.random.default_rng(seed)
        self.history: deque = deque()     # (instant, accepted by the backend)
        self.accepts = 0

    def reject_probability(self) -> float:
        """The current local rejection probability."""
        n = len(self.history)
        return max(0.0, (n - self.k * self.accepts) / (n + 1))

    def decide(self, t: float, in_system: int, customer_class=None) -> str:
        h = self.history
        while h and h[0][0] <= t - self.window_s:
            self.accepts -= h.popleft()[1]
        p = self.reject_probability()
        if p > 0 and self.rng.random() < p:
            h.append((t, 0))
            return "client_throttled"
        verdict = self.backend.decide(t, in_system, customer_class)
        ok = int(verdict == ADMITTED)
        h.append((t, ok))
        self.accepts += ok
        return verdict


def mmck_blocking(arrival_rate, service_rate, servers, max_in_system) -> float:
    """Probability that an arrival finds ``max_in_system`` requests present in an M/M/c/K queue
    (c = servers, K = max_in_system >= c): the fraction of requests a queue cap rejects (PASTA)."""
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers, 1)
    cap = checks.integer("max_in_system", max_in_system, 1)
    if cap < c:
        raise ValueError(f"max_in_system must be >= servers={c}, got {cap}")
    a = lam / mu
    logp = [0.0]
    for n in range(1, cap + 1):   # log of unnormalised stationary probabilities
        logp.append(logp[-1] + math.log(a) - math.log(min(n, c)))
    logp = np.array(logp)
    p = np.exp(logp - logp.max())
    return float(p[-1] / p.sum())
