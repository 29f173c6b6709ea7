"""Benchmark: the vectorised WARS Monte Carlo of analysis.consistency (issue 14: a million trials in
seconds), against a one-trial-at-a-time loop of the same model.

Prints CPU and wall seconds per million trials (median of ``--repeats``) for N = 3 and N = 5 with the
PBS LNKD-DISK fit, and the loop's rate measured on ``--loop-trials`` trials.

    .venv/bin/python benchmarks/bench_consistency.py
    .venv/bin/python benchmarks/bench_consistency.py --repeats 5 --loop-trials 20000
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import consistency as c

BUDGET_CPU_S = 5.0  # per million trials: "seconds, not minutes"


def _loop(n, r, w, delays, trials, seed):
    """The same model one trial at a time (the reference a vectorised engine replaces)."""
    rng = np.random.default_rng(seed)
    out = np.empty(trials)
    for k in range(trials):
        W, A = delays.write.sample(rng, n), delays.ack.sample(rng, n)
        R, S = delays.read.sample(rng, n), delays.response.sample(rng, n)
        commit = sorted(W + A)[w - 1]
        first = sorted(range(n), key=lambda i: R[i] + S[i])[:r]
        out[k] = min(max(W[i] - commit - R[i], 0.0) for i in first)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-trials", type=int, default=10_000)
    args = ap.parse_args(argv)
    fit = c.PBS_FITS["LNKD-DISK"]
    print(f"{'engine':<28}{'N':>3}{'trials':>11}{'cpu_s':>8}{'wall_s':>8}{'cpu_s/1M':>10}  verdict")
    for n, r, w in [(3, 1, 1), (5, 2, 2)]:
        cpu, wall = [], []
        for i in range(args.repeats):
            t0, w0 = time.process_time(), time.perf_counter()
            c.quorum_trials(n, r, w, fit, trials=1_000_000, seed=i)
            cpu.append(time.process_time() - t0)
            wall.append(time.perf_counter() - w0)
        m = statistics.median(cpu)
        print(f"{'vectorised quorum_trials':<28}{n:>3}{1_000_000:>11,}{m:>8.2f}{statistics.median(wall):>8.2f}"
              f"{m:>10.2f}  {'met' if m < BUDGET_CPU_S else 'OVER'} (< {BUDGET_CPU_S:g} CPU-s per 1M)")
        t0 = time.process_time()
        _loop(n, r, w, fit, args.loop_trials, 0)
        lc = time.process_time() - t0
        print(f"{'one trial at a time':<28}{n:>3}{args.loop_trials:>11,}{lc:>8.2f}{'':>8}"
              f"{lc * 1e6 / args.loop_trials:>10.1f}  ({lc * 1e6 / args.loop_trials / m:.0f}x slower)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
