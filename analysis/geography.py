"""Routing users between regions: nearest region, spill-over above a utilisation threshold, and a
latency-aware split that minimises the mean latency a user sees (round trip + M/M/c response).
Units: requests/s, seconds (round-trip times too). Each region is an M/M/c pool; a static random
split of Poisson streams keeps every region's input Poisson, so the closed forms are exact.
"""
from __future__ import annotations

import numpy as np

from analysis import checks, theory

GEO_POLICIES = ("nearest", "spill_over", "latency_aware")


def _check(demand, servers, service_rate, rtt):
    lam = np.asarray(demand, dtype=float)
    c = np.asarray(servers)
    rtt = np.asarray(rtt, dtype=float)
    n = lam.size
    if lam.ndim != 1 or n < 1 or np.any(~np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"demand must be a list of rates >= 0 requests/s, got {demand!r}")
    if c.shape != (n,) or np.any(c < 1) or np.any(c != np.round(c)):
        raise ValueError(f"servers must be one integer >= 1 per region ({n}), got {servers!r}")
    mu = checks.positive("service_rate", service_rate)
    if rtt.shape != (n, n) or np.any(~np.isfinite(rtt)):
        raise ValueError(f"rtt must be a {n}x{n} matrix of round-trip times (s), got shape {rtt.shape}")
    if np.any(rtt < 0):
        raise ValueError(f"rtt must be >= 0 seconds, got min {rtt.min()!r}")
    if lam.sum() >= (c * mu).sum():
        raise ValueError(f"total demand {lam.sum():g} requests/s must be below the total capacity {(c * mu).sum():g}")
    return lam, c.astype(int), mu, rtt


def split(policy: str, demand, servers, service_rate, rtt, *, spill_threshold: float = 0.85, steps: int = 400):
    """Routing matrix F (requests/s from user region i to serving region j) of ``policy``.

    nearest: F = diag(demand). spill_over: each region keeps up to ``spill_threshold`` x its capacity
    and sends the excess to the other regions by increasing round trip, each filled up to the same
    threshold (the remainder, if any, to the region with most spare capacity). latency_aware:
    ``steps`` greedy moves of demand/steps each to the destination with the smallest marginal mean
    latency (round trip + M/M/c mean response)."""
    if policy not in GEO_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(GEO_POLICIES)}, got {policy!r}")
    lam, c, mu, rtt = _check(demand, servers, service_rate, rtt)
    n = lam.size
    cap = c * mu
    if policy == "nearest":
        return np.diag(lam)
    if policy == "spill_over":
        thr = checks.open_unit("spill_threshold", spill_threshold)
        F = np.zeros((n, n))
        load = np.zeros(n)
        for i in range(n):             # home first
            F[i, i] = min(lam[i], thr * cap[i])
            load[i] += F[i, i]
        for i in range(n):
            excess = lam[i] - F[i, i]
            for j in np.argsort(rtt[i]):
                if excess <= 0:
                    break
                if j == i:
                    continue
                room = max(0.0, thr * cap[j] - load[j])
                moved = min(room, excess)
                F[i, j] += moved
                load[j] += moved
                excess -= moved
            if excess > 1e-12:             # everyone at the threshold: the most spare capacity takes it
                j = int(np.argmax(cap - load))
                F[i, j] += excess
                load[j] += excess
        return F
    steps = checks.integer("steps", steps, 10)
    F = np.zeros((n, n))
    load = np.zeros(n)

    def mean_resp(x, j):   # M/M/c mean response (s); no quantiles: each would cost a root search
        return theory.mmc_metrics(x, mu, int(c[j]), quantiles=())["mean_response"] if x < cap[j] else np.inf

    for i in np.argsort(-lam):             # the largest demand first, in small chunks
        chunk = lam[i] / steps
        for _ in range(steps):
            best, best_cost = None, np.inf
            for j in range(n):
                new = load[j] + chunk
                if new >= cap[j] * 0.999:
                    continue
                # marginal total latency: the chunk's own latency + the extra delay it causes to load[j]
                r_new = mean_resp(new, j)
                cost = chunk * (rtt[i, j] + r_new) + load[j] * (r_new - mean_resp(load[j], j)) \
                    if load[j] > 0 else chunk * (rtt[i, j] + r_new)
                if cost < best_cost:
                    best, best_cost = j, cost
            if best is None:
                raise ValueError("no region has room for the demand (total demand near total capacity)")
            F[i, best] += chunk
            load[best] += chunk
    return F


def user_latency(F, servers, service_rate, rtt, q: float = 0.99) -> dict:
    """Mean and q-quantile (s) of the latency a user sees under routing matrix ``F``: round trip
    rtt[i, j] plus the M/M/c response at j, mixed over the flows. ``inf`` when a region is
    overloaded. Also the utilisation of every region."""
    F = np.asarray(F, dtype=float)
    lam_in = F.sum(axis=0)
    c = np.asarray(servers, dtype=int)
    mu = checks.positive("service_rate", service_rate)
    rtt = np.asarray(rtt, dtype=float)
    q = checks.open_unit("q", q)
    util = lam_in / (c * mu)
    out = {"utilisation": util.tolist()}
    if np.any(util >= 1):
        return out | {"mean": np.inf, "quantile": np.inf}
    w = F / F.sum()
    mean_r = np.array([theory.mmc_metrics(lam_in[j], mu, int(c[j]), quantiles=())["mean_response"]
                       if lam_in[j] > 0 else 1 / mu for j in range(c.size)])
    out["mean"] = float((w * (rtt + mean_r[None, :])).sum())

    def sf(t):
        total = 0.0
        for i, j in zip(*np.nonzero(w)):
            x = t - rtt[i, j]
            surv = 1.0 if x <= 0 else (theory.mmc_response_survival(lam_in[j], mu, int(c[j]), x) if lam_in[j] > 0
                                       else float(np.exp(-mu * x)))
            total += w[i, j] * surv
        return total - (1 - q)

    hi = float(rtt.max() + 50 * mean_r.max() + 1.0)
    out["quantile"] = float(_brentq(sf, 0.0, hi, xtol=1e-6))
    return out


def _brentq(f, a: float, b: float, xtol: float, rtol: float = 4 * 2.220446049250313e-16, maxiter: int = 100):
    """Root of ``f`` in [a, b] by Brent's method: scipy.optimize.brentq's algorithm step for step (its C
    code, ``scipy/optimize/Zeros/brentq.c``), so the same root to the last bit (tested), without importing
    scipy.optimize (about 0.3 CPU-s, the only part of it this module needs)."""
    xpre, xcur = float(a), float(b)
    xblk = fblk = spre = scur = 0.0
    fpre, fcur = float(f(xpre)), float(f(xcur))
    if fpre != fpre or fcur != fcur:
        raise ValueError(f"the function is NaN at an end of the bracket [{a}, {b}]")
    if fpre == 0:
        return xpre
    if fcur == 0:
        return xcur
    if (fpre < 0) == (fcur < 0):
        raise ValueError(f"f(a) and f(b) must have different signs, got f({a})={fpre}, f({b})={fcur}")
    for _ in range(maxiter):
        if fpre != 0 and fcur != 0 and (fpre < 0) != (fcur < 0):
            xblk, fblk = xpre, fpre
            spre = scur = xcur - xpre
        if abs(fblk) < abs(fcur):
            xpre, xcur, xblk = xcur, xblk, xcur
            fpre, fcur, fblk = fcur, fblk, fcur
        delta = (xtol + rtol * abs(xcur)) / 2
        sbis = (xblk - xcur) / 2
        if fcur == 0 or abs(sbis) < delta:
            return xcur
        if abs(spre) > delta and abs(fcur) < abs(fpre):
            if xpre == xblk:            # interpolate
                stry = -fcur * (xcur - xpre) / (fcur - fpre)
            else:                       # extrapolate
                dpre = (fpre - fcur) / (xpre - xcur)
                dblk = (fblk - fcur) / (xblk - xcur)
                stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            bound = 3 * abs(sbis) - delta
            if 2 * abs(stry) < (abs(spre) if abs(spre) < bound else bound):   # good short step
                spre, scur = scur, stry
            else:                                                            # bisect
                spre = scur = sbis
        else:
            spre = scur = sbis
        xpre, fpre = xcur, fcur
        xcur += scur if abs(scur) > delta else (delta if sbis > 0 else -delta)
        fcur = float(f(xcur))
        if fcur != fcur:
            raise ValueError(f"the function is NaN at {xcur}")
    raise RuntimeError(f"Brent's method did not converge in {maxiter} iterations (last {xcur})")
