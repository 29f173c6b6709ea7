"""Load-balancer dispatch to a pool of single-server FIFO queues: the routing policies, a fast
simulation of the pool, and the closed forms that check it.

Units: rates in requests/s, times in seconds. Each request is sent at its arrival instant to one
server (no jockeying) and served there first-in first-out, so every server is a Lindley recursion
and the pool is simulated in one pass over the arrivals (the ciw ``Pool`` of
:mod:`analysis.topology` runs the same model about 10x slower; ``tests/test_dispatch.py`` checks
that both agree). The balancer's view of the queue lengths may be stale: with
``info_period_s > 0`` it is a board refreshed every ``info_period_s`` seconds (Mitzenmacher 2000,
"How useful is old information?"), otherwise exact.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import checks

POLICIES = ("random", "round_robin", "jsq", "power_of_d", "capacity_weighted")


def check_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`POLICIES`, else a ValueError naming it."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy


def sample_distinct(rng: np.random.Generator, servers: int, d: int, size: int | None = None) -> np.ndarray:
    """``d`` distinct server indices drawn uniformly from ``range(servers)`` (power-of-d's sample);
    with ``size``, an array of ``size`` such rows (what :func:`simulate_pool` uses)."""
    servers = checks.integer("servers", servers, 1)
    d = checks.integer("d", d, 1)
    if d > servers:
        raise ValueError(f"d must be at most servers={servers}, got {d}")
    if size is None:
        return _distinct_rows(rng, 1, servers, d)[0]
    return _distinct_rows(rng, checks.integer("size", size, 0), servers, d)


def _distinct_rows(rng: np.random.Generator, rows: int, servers: int, d: int) -> np.ndarray:
    """``rows`` samples of ``d`` distinct servers each, uniform (rows with a repeat are redrawn)."""
    out = rng.integers(servers, size=(rows, d))
    while True:
        s = np.sort(out, axis=1)
        bad = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1)) if d > 1 else np.empty(0, dtype=int)
        if bad.size == 0:
            return out
        out[bad] = rng.integers(servers, size=(bad.size, d))


def shortest(lengths, candidates, rng: np.random.Generator) -> int:
    """The candidate with the fewest requests in ``lengths``; ties broken uniformly at random."""
    best = min(lengths[i] for i in candidates)
    ties = [i for i in candidates if lengths[i] == best]
    return int(ties[0] if len(ties) == 1 else ties[int(rng.integers(len(ties)))])


@dataclass(frozen=True)
class Stall:
    """A server that does no work for ``duration_s`` seconds at the start of every ``period_s``
    seconds (an intermittently stalled server: GC pauses, a noisy co-tenant, a flapping disk)."""
    period_s: float
    duration_s: float

    def __post_init__(self):
        p = checks.positive("Stall period_s", self.period_s)
        d = checks.positive("Stall duration_s", self.duration_s)
        if d >= p:
            raise ValueError(f"Stall duration_s must be < period_s={p}, got {d}")

    @property
    def available(self) -> float:
        """Fraction of time the server works."""
        return 1.0 - self.duration_s / self.period_s

    def finish(self, start: float, work_s: float) -> float:
        """Completion time of ``work_s`` seconds of work begun at ``start`` (s), skipping stalls."""
        p, d = self.period_s, self.duration_s
        t, left = start, work_s
        while True:
            k = math.floor(t / p)
            phase = t - k * p
            if phase < d:                 # stalled: wait for the end of the stall
                t = k * p + d
                phase = d
            room = p - phase
            if left <= room:
                return t + left
            left -= room
            t = (k + 1) * p


@dataclass
class PoolRun:
    """One simulated run: ``requests`` (DataFrame: arrival, server, response in s) after the
    warm-up, and the inputs."""
    requests: pd.DataFrame
    policy: str
    arrival_rate: float
    service_rates: np.ndarray

    @property
    def utilisation(self) -> float:
        """Offered load per unit of pool capacity."""
        return self.arrival_rate / float(self.service_rates.sum())

    def summary(self) -> dict:
        """mean_response, p99_response (s), requests, and the largest share of any one server."""
        r = self.requests["response"].to_numpy()
        share = self.requests["server"].value_counts(normalize=True)
        return {"policy": self.policy, "utilisation": self.utilisation, "requests": int(len(r)),
                "mean_response": float(r.mean()), "p99_response": float(np.quantile(r, 0.99)),
                "max_server_share": float(share.max())}


def simulate_pool(arrival_rate, service_rates, policy: str, horizon: float, *, warmup: float | None = None,
                  seed: int = 0, d: int = 2, info_period_s: float = 0.0, stalls: dict | None = None) -> PoolRun:
    """Poisson arrivals at ``arrival_rate`` (requests/s) dispatched by ``policy`` to servers with
    exponential service at ``service_rates`` (requests/s, one per server), for ``horizon`` s.

    ``warmup`` (s; default 10% of the horizon) drops requests arriving before it. ``d``: sample size
    of power_of_d. ``info_period_s``: the balancer sees queue lengths refreshed every this many
    seconds (0: exact). ``stalls``: {server index: :class:`Stall`}. capacity_weighted sends to server i
    with probability proportional to its service rate (times its available fraction when stalled).
    """
    lam = checks.positive("arrival_rate", arrival_rate)
    mus = np.atleast_1d(np.asarray(service_rates, dtype=float))
    if mus.ndim != 1 or mus.size == 0 or not np.all(np.isfinite(mus)) or np.any(mus <= 0):
        raise ValueError(f"service_rates must be a non-empty list of rates > 0 requests/s, got {service_rates!r}")
    policy = check_policy(policy)
    horizon = checks.positive("horizon", horizon)
    warmup = 0.1 * horizon if warmup is None else checks.nonnegative("warmup", warmup)
    if warmup >= horizon:
        raise ValueError(f"warmup must be < horizon={horizon}, got {warmup}")
    n = mus.size
    d = checks.integer("d", d, 1)
    if policy == "power_of_d" and d > n:
        raise ValueError(f"d must be at most the number of servers ({n}), got {d}")
    info = checks.nonnegative("info_period_s", info_period_s)
    stalls = dict(stalls or {})
    for i, s in stalls.items():
        if not (isinstance(i, (int, np.integer)) and 0 <= i < n) or not isinstance(s, Stall):
            raise ValueError(f"stalls must map a server index in [0, {n}) to a Stall, got {i!r}: {s!r}")
    rng = np.random.default_rng(seed)
    count = int(lam * horizon + 6 * math.sqrt(lam * horizon) + 10)
    t_arr = np.cumsum(rng.exponential(1.0 / lam, count))
    t_arr = t_arr[t_arr < horizon]
    m = t_arr.size
    work = rng.exponential(1.0, m)                  # service time = work / service rate of the server
    weights = mus * np.array([stalls[i].available if i in stalls else 1.0 for i in range(n)])
    if policy == "random":
        fixed = rng.integers(n, size=m)
    elif policy == "capacity_weighted":
        fixed = rng.choice(n, size=m, p=weights / weights.sum())
    elif policy == "round_robin":
        fixed = (np.arange(m) + int(rng.integers(n))) % n
    else:
        fixed = None
    samples = None
    if policy == "power_of_d":
        samples = sample_distinct(rng, n, d, size=m)
    # The loop runs on Python floats and lists (numpy scalar indexing costs several times more); the
    # arithmetic is the same IEEE double arithmetic, so the results do not depend on it.
    ta = t_arr.tolist()
    if fixed is not None:
        server, response = _serve_fixed(ta, work.tolist(), fixed.tolist(), mus.tolist(), stalls)
    else:
        server, response = _serve_queue_aware(ta, work.tolist(), mus.tolist(), stalls, policy == "jsq",
                                              None if samples is None else samples.tolist(), info, rng)
    server = np.asarray(server, dtype=np.int64)
    response = np.asarray(response, dtype=float)
    keep = t_arr >= warmup
    frame = pd.DataFrame({"arrival": t_arr[keep], "server": server[keep], "response": response[keep]})
    return PoolRun(frame, policy, lam, mus)


def _serve_fixed(ta: list, work: list, fixed: list, mus: list, stalls: dict) -> tuple[list, list]:
    """FIFO service when the server of every request is known in advance (random, round-robin,
    capacity-weighted): per server the Lindley recursion done = max(last, t) + work / mu."""
    last = [0.0] * len(mus)
    stall_of = [stalls.get(i) for i in range(len(mus))]
    response = [0.0] * len(ta)
    for j, i in enumerate(fixed):
        t = ta[j]
        start = last[i] if last[i] > t else t
        st = stall_of[i]
        done = st.finish(start, work[j] / mus[i]) if st is not None else start + work[j] / mus[i]
        last[i] = done
        response[j] = done - t
    return fixed, response


def _uniform_below(rng: np.random.Generator):
    """A function k -> integer uniform in [0, k) giving the same numbers, in the same order, as successive
    ``int(rng.integers(k))`` calls (numpy's Lemire method on the generator's 32-bit outputs, which a PCG64
    generator serves as the low, then the high half of each 64-bit output), at a tenth of the cost of a
    ``rng.integers`` call. Other bit generators get ``rng.integers`` itself. After the first call, ``rng``
    must not be used elsewhere (the function reads ahead from its bit generator)."""
    bitgen = rng.bit_generator
    if type(bitgen).__name__ != "PCG64":
        return lambda k: int(rng.integers(k))
    state = bitgen.state
    pending = [state["uinteger"]] if state["has_uint32"] else []
    buf: list = []
    pos = 0

    def next32() -> int:
        nonlocal buf, pos
        if pos == len(buf):
            raw = bitgen.random_raw(1024)
            halves = np.empty((raw.size, 2), dtype=np.uint64)
            halves[:, 0] = raw & np.uint64(0xFFFFFFFF)
            halves[:, 1] = raw >> np.uint64(32)
            buf = pending + halves.ravel().tolist()
            pending.clear()
            pos = 0
        pos += 1
        return buf[pos - 1]

    def below(k: int) -> int:
        if k <= 1:
            return 0                     # numpy draws nothing for a range of one value
        m = next32() * k
        leftover = m & 0xFFFFFFFF
        if leftover < k:
            threshold = (0x100000000 - k) % k
            while leftover < threshold:
                m = next32() * k
                leftover = m & 0xFFFFFFFF
        return m >> 32

    return below


def _serve_queue_aware(ta: list, work: list, mus: list, stalls: dict, jsq: bool, samples, info: float,
                       rng: np.random.Generator) -> tuple[list, list]:
    """FIFO service when the balancer picks a shortest queue among all servers (``jsq``) or among the
    sampled ones (``samples``, power-of-d), seeing exact queue lengths or (``info`` > 0) a board refreshed
    every ``info`` seconds; ties are broken as :func:`shortest` breaks them. The number present at each
    server is kept from one heap of (departure instant, server) of the requests present."""
    n = len(mus)
    below = _uniform_below(rng)
    last = [0.0] * n
    stall_of = [stalls.get(i) for i in range(n)]
    counts = [0] * n                  # requests present at each server
    present: list = []                # heap of (departure instant, server)
    board = counts
    next_refresh = 0.0
    everyone = range(n)
    m = len(ta)
    server = [0] * m
    response = [0.0] * m
    pop, push = heapq.heappop, heapq.heappush
    for j in range(m):
        t = ta[j]
        if info > 0:
            if t >= next_refresh:
                while present and present[0][0] <= t:
                    counts[pop(present)[1]] -= 1
                board = counts[:]
                next_refresh = (math.floor(t / info) + 1) * info
        else:
            while present and present[0][0] <= t:
                counts[pop(present)[1]] -= 1
            board = counts
        if jsq:
            best = min(board)
            ties = board.count(best)
            if ties == 1:
                i = board.index(best)
            else:
                i = [k for k in everyone if board[k] == best][below(ties)]
        else:
            cand = samples[j]
            if len(cand) == 2:
                a, b = cand
                la, lb = board[a], board[b]
                i = a if la < lb else b if lb < la else (a, b)[below(2)]
            else:
                best = min(board[k] for k in cand)
                tied = [k for k in cand if board[k] == best]
                i = tied[0] if len(tied) == 1 else tied[below(len(tied))]
        start = last[i] if last[i] > t else t
        st = stall_of[i]
        done = st.finish(start, work[j] / mus[i]) if st is not None else start + work[j] / mus[i]
        last[i] = done
        counts[i] += 1
        push(present, (done, i))
        server[j] = i
        response[j] = done - t
    return server, response


def sweep(loads, servers: int, service_rate: float, policies=POLICIES, *, horizon_requests: int, seed: int = 0,
          degrade=None, **kwargs) -> pd.DataFrame:
    """Mean and p99 response of each policy at each utilisation in ``loads`` on ``servers`` servers of
    ``service_rate`` (requests/s); ``degrade``: (server index, speed factor) slows one server
    (e.g. (0, 0.5) = half speed). The arrival rate is load x total capacity; each run lasts long
    enough for about ``horizon_requests`` requests. Returns one row per (policy, load)."""
    servers = checks.integer("servers", servers, 1)
    mu = checks.positive("service_rate", service_rate)
    horizon_requests = checks.integer("horizon_requests", horizon_requests, 100)
    mus = np.full(servers, mu)
    if degrade is not None:
        idx, factor = degrade
        if not (0 <= idx < servers) or not 0 < factor <= 1:
            raise ValueError(f"degrade must be (server index in [0, {servers}), speed factor in (0, 1]), got {degrade!r}")
        mus[idx] = mu * factor
    rows = []
    for p_i, policy in enumerate(policies):
        for l_i, load in enumerate(loads):
            load = checks.open_unit("load", load)
            lam = load * mus.sum()
            run = simulate_pool(lam, mus, policy, horizon_requests / lam, seed=seed + 1000 * p_i + l_i, **kwargs)
            rows.append(run.summary() | {"load": load})
    return pd.DataFrame(rows)


def relaxation_time(utilisation, service_rate) -> float:
    """Relaxation time (s) of an M/M/1 queue at ``utilisation``: 1 / (mu (1 - sqrt(rho))^2) (Morse
    1955). A run needs several of them to reach steady state: 156 s at rho = 0.95, mu = 10/s."""
    rho = checks.open_unit("utilisation", utilisation)
    mu = checks.positive("service_rate", service_rate)
    return 1.0 / (mu * (1.0 - math.sqrt(rho)) ** 2)


def run_length(utilisation, arrival_rate, service_rate, *, requests, relaxation_times) -> float:
    """Seconds to simulate a pool at ``utilisation`` (fraction) and ``arrival_rate`` (requests/s):
    ``requests`` arrivals or ``relaxation_times`` M/M/1 relaxation times (relaxation_time at
    ``service_rate`` requests/s per server), whichever is longer."""
    lam = checks.positive("arrival_rate", arrival_rate)
    n = checks.integer("requests", requests, 1)
    k = checks.nonnegative("relaxation_times", relaxation_times)
    return max(n / lam, k * relaxation_time(utilisation, service_rate))


def random_mean_response(arrival_rate, service_rate, servers) -> float:
    """Random dispatch to ``servers`` equal servers: each is an M/M/1 at arrival_rate/servers (s)."""
    lam, mu = checks.positive("arrival_rate", arrival_rate), checks.positive("service_rate", service_rate)
    n = checks.integer("servers", servers, 1)
    if lam / n >= mu:
        raise ValueError(f"arrival_rate={lam} overloads {n} servers of {mu} requests/s")
    return 1.0 / (mu - lam / n)


def round_robin_decay(arrival_rate, service_rate, servers) -> float:
    """sigma of the E_n/M/1 queue each server is under round-robin: the root in (0, 1) of
    sigma = (lambda / (lambda + mu (1 - sigma)))**n; the response time is exponential with rate
    mu (1 - sigma) (GI/M/1, Kleinrock 1975 sec. 6.4)."""
    lam, mu = checks.positive("arrival_rate", arrival_rate), checks.positive("service_rate", service_rate)
    n = checks.integer("servers", servers, 1)
    if lam / n >= mu:
        raise ValueError(f"arrival_rate={lam} overloads {n} servers of {mu} requests/s")
    lo, hi = 0.0, 1.0 - 1e-15
    for _ in range(200):   # g(s) = (lam/(lam+mu(1-s)))^n - s is > 0 at 0 and < 0 just below 1
        mid = 0.5 * (lo + hi)
        if (lam / (lam + mu * (1 - mid))) ** n - mid > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def round_robin_response_quantile(arrival_rate, service_rate, servers, q) -> float:
    """q-quantile of the response time under round-robin to equal servers (s): exponential with
    rate mu (1 - sigma) (q=0.5 gives the median; 1/(mu(1-sigma)) is the mean)."""
    q = checks.open_unit("q", q)
    sigma = round_robin_decay(arrival_rate, service_rate, servers)
    return -math.log(1 - q) / (float(service_rate) * (1 - sigma))
