"""Retries, backoff with jitter, retry budgets and metastable failure (times in seconds, rates in requests/s).

* :func:`backoff_delay` / :func:`backoff_delays`: the five backoff kinds of the AWS Architecture Blog post
  "Exponential Backoff and Jitter" (Marc Brooker, 2015) and its reference simulator
  (github.com/aws-samples/aws-arch-backoff-simulator, ``src/backoff_simulator.py``), with ``n`` the number of
  failures so far (1 before the first retry) and ``expo(n) = min(cap, base * 2**n)``:

  ``"none"`` no backoff (0 s); ``"exponential"`` expo(n) (no jitter); ``"full"`` uniform(0, expo(n));
  ``"equal"`` expo(n)/2 + uniform(0, expo(n)/2); ``"decorrelated"`` min(cap, uniform(base, 3 * previous sleep)),
  the first previous sleep being ``base``.
* :class:`RetryBudget`: the AWS SDK "standard" retry quota, a token bucket (500 tokens, a retry costs 5, a
  retry after a timeout costs 10, a success without retry adds 1, a successful retry refunds its cost).
* :func:`simulate_retries`: an exact event-driven simulation of clients with a timeout and retries in front of
  a FIFO queue with ``servers`` servers (Poisson arrivals of new requests, exponential services), a trigger
  (load spike and/or service slowdown) in a window, optional load shedding of attempts that waited
  longer than a limit. Servers serve timed-out attempts too (wasted work): the metastable mechanism.
* :func:`amplification` and :func:`simulate_amplification`: retries at every layer of a call chain multiply.
* :func:`simulate_contention`: N clients doing optimistic (read, conditional write) updates of one row, the
  model of the blog post's simulator, per backoff kind.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import checks

#: Backoff kinds (AWS Architecture Blog, Brooker 2015): no backoff, exponential without jitter, and three jitters.
BACKOFF_KINDS = ("none", "exponential", "full", "equal", "decorrelated")

#: AWS SDK standard retry mode token bucket (aws-sdk-js-v3 middleware-retry constants.ts).
AWS_INITIAL_RETRY_TOKENS = 500
AWS_RETRY_COST = 5
AWS_TIMEOUT_RETRY_COST = 10
AWS_NO_RETRY_INCREMENT = 1


# ================================================================================================ checks
def check_backoff_kind(kind) -> str:
    """``kind`` if it is one of :data:`BACKOFF_KINDS`; one-line ValueError otherwise."""
    if kind not in BACKOFF_KINDS:
        raise ValueError(f"backoff kind must be one of {', '.join(BACKOFF_KINDS)}, got {checks.show(kind)}")
    return kind


def check_timeout(timeout, name: str = "timeout") -> float:
    """A client timeout in seconds (> 0; ``math.inf`` allowed for no timeout)."""
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout == math.inf:
        return math.inf
    return checks.positive(name, timeout)


def check_budget(name: str, value) -> float:
    """A retry-budget quantity (tokens) >= 0."""
    return checks.nonnegative(name, value)


def check_retry_policy(*, timeout, max_retries, backoff: str = "none", base: float = 0.01, cap: float = 1.0) -> None:
    """All retry-policy parameters at once (the notebook's ``validate`` cell calls this)."""
    check_timeout(timeout)
    checks.integer("max_retries", max_retries, minimum=0)
    check_backoff_kind(backoff)
    checks.nonnegative("base", base)
    checks.nonnegative("cap", cap)


# ================================================================================================ backoff
def _expo(n, base: float, cap: float):
    return np.minimum(cap, base * np.power(2.0, n))


def backoff_delay(kind: str, n: int, base: float, cap: float, rng: np.random.Generator,
                  previous: float | None = None) -> float:
    """Sleep (s) before the retry that follows failure number ``n`` (n >= 1); ``previous``: the last sleep
    (decorrelated jitter only; None means ``base``)."""
    return float(backoff_delays(kind, np.array([n]), base, cap, rng,
                                None if previous is None else np.array([previous]))[0])


def backoff_delays(kind: str, n, base: float, cap: float, rng: np.random.Generator, previous=None) -> np.ndarray:
    """Vectorised :func:`backoff_delay`: ``n`` an array of failure counts, ``previous`` the matching last sleeps."""
    check_backoff_kind(kind)
    base = checks.nonnegative("base", base)
    cap = checks.nonnegative("cap", cap)
    n = np.asarray(n, dtype=float)
    if kind == "none":
        return np.zeros(n.shape)
    u = rng.random(size=n.shape)
    if kind == "decorrelated":
        prev = np.full(n.shape, base) if previous is None else np.asarray(previous, dtype=float)
        return np.minimum(cap, base + u * (3.0 * prev - base))       # min(cap, uniform(base, 3 * previous))
    v = _expo(n, base, cap)
    if kind == "exponential":
        return v
    if kind == "full":
        return u * v                                                  # uniform(0, expo(n))
    return v / 2 + u * v / 2                                          # expo(n)/2 + uniform(0, expo(n)/2)


def _sleep(kind: str, n: int, base: float, cap: float, u: float, previous: float) -> float:
    """Scalar backoff from one uniform ``u`` in [0, 1) (the event loops' fast path; same formulas as above)."""
    if kind == "none":
        return 0.0
    if kind == "decorrelated":
        return min(cap, base + u * (3.0 * previous - base))
    v = min(cap, base * 2.0 ** n)
    if kind == "exponential":
        return v
    return u * v if kind == "full" else v / 2 + u * v / 2


# ================================================================================================ budget
@dataclass
class RetryBudget:
    """AWS SDK standard-mode retry quota: a token bucket shared by the clients of one process.

    A retry needs ``retry_cost`` tokens (``timeout_cost`` after a timeout); without them it is not made. A
    success on the first attempt adds ``success_refund`` tokens (up to ``capacity``); a successful retry
    returns the tokens it took.
    """

    capacity: float = AWS_INITIAL_RETRY_TOKENS
    retry_cost: float = AWS_RETRY_COST
    timeout_cost: float = AWS_TIMEOUT_RETRY_COST
    success_refund: float = AWS_NO_RETRY_INCREMENT
    tokens: float = field(default=None)

    def __post_init__(self):
        for name in ("capacity", "retry_cost", "timeout_cost", "success_refund"):
            setattr(self, name, check_budget(f"budget {name}", getattr(self, name)))
        self.tokens = self.capacity if self.tokens is None else check_budget("budget tokens", self.tokens)

    def acquire(self, timed_out: bool = False) -> float | None:
        """Take the tokens of one retry; returns the amount taken, None when the bucket cannot pay (no retry)."""
        cost = self.timeout_cost if timed_out else self.retry_cost
        if self.tokens < cost:
            return None
        self.tokens -= cost
        return cost

    def success(self, retried: bool = False, refund: float = 0.0) -> None:
        """Record a success: a retried request returns ``refund`` (the cost of its last retry), a first try
        adds ``success_refund``; never above ``capacity``."""
        self.tokens = min(self.capacity, self.tokens + (refund if retried else self.success_refund))


# ================================================================================================ simulation
@dataclass(frozen=True)
class RetryRun:
    """One run of :func:`simulate_retries`.

    ``timeline``: per bin of ``bin_s`` s, columns ``time`` (bin start, s), ``offered`` (new requests/s),
    ``attempts`` (attempts/s arriving at the server), ``goodput`` (requests/s completed within the timeout),
    ``queue`` (attempts present at the bin end, waiting or in service), ``wasted`` (services of attempts whose
    client had given up, per s). ``requests``: per new request ``arrival``, ``attempts``, ``success`` (bool),
    ``done`` (success or give-up time, s; NaN when still pending at the horizon). ``params``: the inputs, and
    per attempt in processing order ``attempt_response`` (departure - arrival, s; a shed attempt departs when
    dropped), ``attempt_wait`` (s before service or drop) and ``attempt_ok`` (finished within the timeout).
    """

    timeline: pd.DataFrame
    requests: pd.DataFrame
    params: dict

    def window(self, start: float, end: float) -> dict:
        """Means over bins in [start, end): goodput and attempts (requests/s), goodput / offered, queue."""
        t = self.timeline
        w = t[(t.time >= start) & (t.time + self.params["bin_s"] <= end + 1e-9)]
        offered = float(w.offered.mean())
        return {"goodput": float(w.goodput.mean()), "attempts": float(w.attempts.mean()),
                "offered": offered, "goodput_fraction": float(w.goodput.mean()) / offered if offered else math.nan,
                "queue": float(w.queue.mean()), "queue_end": float(w.queue.iloc[-1]) if len(w) else math.nan,
                "amplification": float(w.attempts.mean()) / offered if offered else math.nan}

    def backlog_at(self, time: float) -> float:
        """Attempts present (waiting or in service) at the end of the bin that contains ``time``."""
        t = self.timeline
        i = int(np.searchsorted(t.time.to_numpy(), time, side="right")) - 1
        return float(t.queue.iloc[max(i, 0)])

    def recovery_time(self) -> float:
        """Seconds from the trigger's end until the backlog first falls to what the servers finish within
        the timeout (servers x service_rate x timeout attempts), when attempts start succeeding again; measured
        at bin ends, ``math.inf`` if it never does within the run."""
        p = self.params
        edge = p["servers"] * p["service_rate"] * p["timeout"]
        t = self.timeline
        ends = t.time.to_numpy() + p["bin_s"]
        after = ends >= p["trigger_end"]
        hit = np.flatnonzero(after & (t.queue.to_numpy() <= edge))
        return float(ends[hit[0]] - p["trigger_end"]) if len(hit) else math.inf

    def recovered(self, tolerance: float = 0.9) -> bool:
        """Whether the last quarter after the trigger has goodput >= ``tolerance`` x offered load."""
        p = self.params
        start = p["trigger_end"] + 0.75 * (p["horizon"] - p["trigger_end"])
        return self.window(start, p["horizon"])["goodput_fraction"] >= tolerance


def _poisson_times(rate: float, start: float, end: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.poisson(rate * (end - start)) if end > start and rate > 0 else 0
    return np.sort(rng.uniform(start, end, size=n))


def simulate_retries(arrival_rate: float, service_rate: float, servers: int, *, timeout: float,
                     max_retries: int = 0, backoff: str = "none", base: float = 0.01, cap: float = 1.0,
                     budget: RetryBudget | None = None, shed_wait: float = math.inf, horizon: float = 300.0,
                     trigger_start: float = 60.0, trigger_end: float = 90.0, spike: float = 1.0,
                     slowdown: float = 1.0, bin_s: float = 5.0, seed: int = 0) -> RetryRun:
    """Clients with a ``timeout`` (s) and up to ``max_retries`` retries in front of an M/M/c FIFO queue.

    New requests arrive as a Poisson process of ``arrival_rate`` (x ``spike`` during [trigger_start,
    trigger_end)); services are exponential with rate ``service_rate`` per server (times ``slowdown`` longer
    when they start inside the trigger window). An attempt not finished ``timeout`` s after it arrived is a
    failure for its client, which retries after :func:`backoff_delay` if it has retries left and ``budget``
    (a :class:`RetryBudget`, None = unlimited) pays; the server still serves the abandoned attempt (wasted work) unless
    it waited more than ``shed_wait`` s (load shedding: the server drops it at dequeue, at no cost;
    ``shed_wait = timeout`` drops only attempts whose client has already given up). The simulation is
    exact: FIFO with c servers assigns each attempt, in arrival order, the earliest free server.
    """
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers)
    timeout = check_timeout(timeout)
    R = checks.integer("max_retries", max_retries, minimum=0)
    check_backoff_kind(backoff)
    base = checks.nonnegative("base", base)
    cap = checks.nonnegative("cap", cap)
    horizon = checks.positive("horizon", horizon)
    t0 = checks.nonnegative("trigger_start", trigger_start)
    t1 = checks.nonnegative("trigger_end", trigger_end)
    if not t0 <= t1 <= horizon:
        raise ValueError(f"trigger window must satisfy 0 <= trigger_start <= trigger_end <= horizon, got "
                         f"[{t0}, {t1}] with horizon={horizon}")
    spike = checks.positive("spike", spike)
    slowdown = checks.positive("slowdown", slowdown)
    bin_s = checks.positive("bin_s", bin_s)
    shed_wait = math.inf if shed_wait == math.inf else checks.nonnegative("shed_wait", shed_wait)
    if budget is not None and not isinstance(budget, RetryBudget):
        raise ValueError(f"budget must be a RetryBudget or None, got {checks.show(budget)}")

    rng = np.random.default_rng(seed)
    new = np.concatenate([_poisson_times(lam, 0.0, t0, rng), _poisson_times(lam * spike, t0, t1, rng),
                          _poisson_times(lam, t1, horizon, rng)])
    n_new = len(new)
    # The event loop works on Python floats and lists (the same IEEE doubles as numpy's, several times
    # cheaper to index and compare one at a time); arrays are rebuilt at the end.
    new_times = new.tolist()
    new_times.append(math.inf)           # sentinel: no more new requests
    # Random numbers drawn in blocks (exponential services, uniforms for the jitters).
    block = max(1024, 2 * n_new)
    exp_buf = rng.exponential(1.0 / mu, size=block).tolist()
    exp_i = 0
    uni_buf = rng.random(size=block).tolist()
    uni_i = 0

    free = [0.0] * c                     # heap of server free times
    heapq.heapify(free)
    events: list = []                    # (time, kind, request, n_failures, previous_sleep, tokens_held)
    att_arrival, att_leave, att_ok = [], [], []   # per attempt: arrival, departure from the server, useful
    att_wait = []
    req_attempts = [0] * n_new
    req_done = [math.nan] * n_new
    req_success = [False] * n_new
    good_times = []
    wasted_times = []
    add_arrival, add_leave, add_ok, add_wait = att_arrival.append, att_leave.append, att_ok.append, att_wait.append
    add_good, add_wasted = good_times.append, wasted_times.append
    i_new = 0
    has_budget = budget is not None
    slowed = slowdown != 1.0
    shedding = shed_wait != math.inf
    push, pop, replace = heapq.heappush, heapq.heappop, heapq.heapreplace
    ATTEMPT, SUCCESS, FAIL = 0, 1, 2
    while True:
        nxt_new = new_times[i_new]
        if events and events[0][0] < nxt_new:
            t, kind, req, nfail, prev, held = pop(events)
        elif i_new < n_new:
            t, kind, req, nfail, prev, held = nxt_new, ATTEMPT, i_new, 0, base, 0.0
            i_new += 1
        else:
            break
        if t > horizon:
            continue   # outcomes and retries after the horizon are not simulated (their requests stay pending)
        if kind == ATTEMPT:
            req_attempts[req] += 1
            start = free[0]                # the earliest free server (replaced below: heapreplace = pop + push)
            if start < t:
                start = t
            waited = start - t
            add_wait(waited)
            if shedding and waited > shed_wait:
                replace(free, start)       # dropped at dequeue: the server stays free
                add_arrival(t)
                add_leave(start)
                add_ok(False)
                push(events, (t + timeout, FAIL, req, nfail, prev, held))
                continue
            if exp_i == block:
                exp_buf = rng.exponential(1.0 / mu, size=block).tolist()
                exp_i = 0
            s = exp_buf[exp_i]
            exp_i += 1
            if slowed and t0 <= start < t1:
                s *= slowdown
            finish = start + s
            replace(free, finish)
            add_arrival(t)
            add_leave(finish)
            if finish - t <= timeout:
                add_ok(True)
                push(events, (finish, SUCCESS, req, nfail, prev, held))
            else:
                add_ok(False)
                add_wasted(finish)
                push(events, (t + timeout, FAIL, req, nfail, prev, held))
        elif kind == SUCCESS:
            req_success[req] = True
            req_done[req] = t
            add_good(t)
            if has_budget:
                budget.success(nfail > 0, held)
        else:  # FAIL: the client's timeout fired
            nfail += 1
            if nfail > R:
                req_done[req] = t
                continue
            if has_budget:
                held = budget.acquire(timed_out=True)
                if held is None:
                    req_done[req] = t
                    continue
            if backoff == "none":
                sleep = 0.0
            else:
                if uni_i == block:
                    uni_buf = rng.random(size=block).tolist()
                    uni_i = 0
                u = uni_buf[uni_i]
                uni_i += 1
                sleep = _sleep(backoff, nfail, base, cap, u, prev)
                prev = sleep
            push(events, (t + sleep, ATTEMPT, req, nfail, prev, held))
    req_attempts = np.asarray(req_attempts, dtype=np.int64)
    req_done = np.asarray(req_done, dtype=float)
    req_success = np.asarray(req_success, dtype=bool)

    edges = np.arange(0.0, horizon + bin_s / 2, bin_s)
    if edges[-1] < horizon:
        edges = np.append(edges, horizon)
    width = np.diff(edges)
    arr = np.asarray(att_arrival)
    leave = np.asarray(att_leave)
    offered = np.histogram(new, edges)[0] / width
    attempts = np.histogram(arr, edges)[0] / width
    goodput = np.histogram(np.asarray(good_times), edges)[0] / width
    wasted = np.histogram(np.asarray(wasted_times), edges)[0] / width
    ends = edges[1:]
    queue = np.searchsorted(np.sort(arr), ends, side="right") - np.searchsorted(np.sort(leave), ends, side="right")
    timeline = pd.DataFrame({"time": edges[:-1], "offered": offered, "attempts": attempts, "goodput": goodput,
                             "queue": queue, "wasted": wasted})
    requests = pd.DataFrame({"arrival": new, "attempts": req_attempts, "success": req_success, "done": req_done})
    params = dict(arrival_rate=lam, service_rate=mu, servers=c, timeout=timeout, max_retries=R, backoff=backoff,
                  base=base, cap=cap, budget=None if budget is None else budget.capacity, shed_wait=shed_wait,
                  horizon=horizon, trigger_start=t0, trigger_end=t1, spike=spike, slowdown=slowdown, bin_s=bin_s,
                  seed=seed, attempt_response=(leave - arr), attempt_wait=np.asarray(att_wait),
                  attempt_ok=np.asarray(att_ok, dtype=bool))
    return RetryRun(timeline, requests, params)


def metastable_threshold(service_rate: float, servers: int, max_retries: int) -> float:
    """Arrival rate (requests/s) above which the all-fail state sustains itself: lam * (1 + R) > c * mu.

    In that state every attempt times out, so each request makes 1 + ``max_retries`` attempts, all served
    (wasted); if they exceed capacity the backlog cannot drain. Below it the system recovers on its own.
    """
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers)
    R = checks.integer("max_retries", max_retries, minimum=0)
    return c * mu / (1 + R)


def fluid_recovery_time(backlog: float, arrival_rate: float, service_rate: float, servers: int, *,
                        timeout: float, max_retries: int) -> float:
    """Seconds after the trigger until a retrying population's ``backlog`` (attempts present) falls to c mu T,
    what the servers finish within the timeout, so that attempts succeed again; ``math.inf`` if it never does.

    Fluid model: while the backlog exceeds c mu T every attempt fails, each request makes 1 + R attempts,
    arrivals are lam (1 + R) and the backlog changes at lam (1 + R) - c mu: it drains only below the
    threshold of :func:`metastable_threshold`.
    """
    b = checks.nonnegative("backlog", backlog)
    lam = checks.positive("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers)
    T = check_timeout(timeout)
    R = checks.integer("max_retries", max_retries, minimum=0)
    edge = c * mu * T
    if b <= edge:
        return 0.0
    rate = c * mu - lam * (1 + R)
    return (b - edge) / rate if rate > 0 else math.inf


# ================================================================================================ amplification
def amplification(depth: int, max_retries: int, p_fail: float = 1.0) -> float:
    """Expected calls reaching the bottom of a chain of ``depth`` retrying layers per top-level call.

    Each layer makes up to 1 + ``max_retries`` attempts to the layer below and stops at the first success;
    the bottom dependency fails each call independently with ``p_fail``. With p_fail = 1: (1 + r)**depth.
    """
    d = checks.integer("depth", depth, minimum=0)
    r = checks.integer("max_retries", max_retries, minimum=0)
    f = checks.unit_interval("p_fail", p_fail)
    calls = 1.0
    for _ in range(d):
        calls *= (r + 1) if f == 1.0 else (1 - f ** (r + 1)) / (1 - f)
        f = f ** (r + 1)
    return calls


def simulate_amplification(depth: int, max_retries: int, p_fail: float = 1.0, calls: int = 2000,
                           seed: int = 0) -> tuple[float, float]:
    """Monte Carlo of :func:`amplification`: (mean bottom calls per top call, its standard error)."""
    d = checks.integer("depth", depth, minimum=0)
    r = checks.integer("max_retries", max_retries, minimum=0)
    f = checks.unit_interval("p_fail", p_fail)
    n = checks.integer("calls", calls, minimum=2)
    rng = np.random.default_rng(seed)

    def layer(k: int, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calls at layer k (owner = top-call index): success mask, bottom calls counted per top call."""
        if k == d:
            return rng.random(len(owner)) >= f, np.bincount(owner, minlength=n)
        ok = np.zeros(len(owner), dtype=bool)
        count = np.zeros(n, dtype=np.int64)
        pending = np.arange(len(owner))
        for _ in range(r + 1):
            if not len(pending):
                break
            s, c = layer(k + 1, owner[pending])
            count += c
            ok[pending[s]] = True
            pending = pending[~s]
        return ok, count

    _, per_call = layer(0, np.arange(n))
    return float(per_call.mean()), float(per_call.std(ddof=1) / math.sqrt(n))


# ================================================================================================ contention
def simulate_contention(clients: int, kind: str, *, base: float = 0.005, cap: float = 2.0,
                        net_mean: float = 0.010, net_sd: float = 0.002, replications: int = 20,
                        seed: int = 0) -> dict:
    """N clients each update one row once by optimistic concurrency (read version, write if unchanged).

    The model of the blog post's simulator: every message takes |Normal(net_mean, net_sd)| s; a failed write
    sleeps :func:`backoff_delay` (failure count n) then reads again. Returns the mean over ``replications`` of
    ``calls`` (writes attempted) and ``time`` (s until the last client succeeded), with standard errors.
    """
    N = checks.integer("clients", clients)
    check_backoff_kind(kind)
    base = checks.nonnegative("base", base)
    cap = checks.nonnegative("cap", cap)
    reps = checks.integer("replications", replications, minimum=2)
    rng = np.random.default_rng(seed)
    calls_all, time_all = [], []
    pop, push = heapq.heappop, heapq.heappush
    for _ in range(reps):
        net = np.abs(rng.normal(net_mean, net_sd, size=64 * N + 256)).tolist()
        uni = rng.random(size=32 * N + 64).tolist()
        ni = ui = 0
        version = 0
        calls = 0
        fails = [0] * N
        prev = [base] * N
        # event: (time, type, client, version_read); type 0 = read arrives at server, 1 = write arrives
        ev = []
        for k in range(N):
            ev.append((net[ni], 0, k, 0))
            ni += 1
        heapq.heapify(ev)
        t_done = 0.0
        while ev:
            if ni + 4 >= len(net):
                net = np.abs(rng.normal(net_mean, net_sd, size=len(net))).tolist()
                ni = 0
            if ui + 2 >= len(uni):
                uni = rng.random(size=len(uni)).tolist()
                ui = 0
            t, typ, k, v = pop(ev)
            if typ == 0:   # read served: reply, then the client sends the write
                push(ev, (t + net[ni] + net[ni + 1], 1, k, version))
                ni += 2
                continue
            calls += 1
            if v == version:
                version += 1
                t_done = max(t_done, t + net[ni])
                ni += 1
                continue
            fails[k] += 1
            n = fails[k]
            u = uni[ui]
            ui += 1
            sleep = _sleep(kind, n, base, cap, u, prev[k])
            prev[k] = sleep
            push(ev, (t + net[ni] + sleep + net[ni + 1], 0, k, 0))   # reply, sleep, next read
            ni += 2
        calls_all.append(calls)
        time_all.append(t_done)
    ca, ta = np.asarray(calls_all, float), np.asarray(time_all, float)
    return {"clients": N, "kind": kind, "calls": ca.mean(), "calls_se": ca.std(ddof=1) / math.sqrt(reps),
            "time": ta.mean(), "time_se": ta.std(ddof=1) / math.sqrt(reps)}
