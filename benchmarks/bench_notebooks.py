"""Notebook and test-suite budgets (issue 10): CPU and wall seconds per notebook, against budgets.

Runs every notebook in ``notebooks/`` one after the other with papermill (quick mode by default,
``--full`` for the committed parameters) in a child process, with outputs in a temporary folder
(``KIT_OUTPUT_DIR``: the committed figures are never touched), and reports for each: CPU seconds
of the whole process tree (papermill, the kernel and the kernel's replication workers: getrusage
of the finished children) and wall seconds, next to the budgets: every notebook under 10 CPU-s in
quick mode and 60 CPU-s in full mode; all notebooks together under 2 minutes (quick) or
10 minutes (full) of wall time on 2 idle cores. Notebooks run serially here, so the total wall
time is an upper bound for a parallel run (``make reproduce``). ``--test`` also times the
test-suite (budget: ``make test`` under 8 minutes).

    .venv/bin/python benchmarks/bench_notebooks.py            # quick mode
    .venv/bin/python benchmarks/bench_notebooks.py --full --only 05
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BUDGET_CPU = {"quick": 10.0, "full": 60.0}          # CPU-s per notebook
BUDGET_WALL_TOTAL = {"quick": 120.0, "full": 600.0}  # wall s, all notebooks together
BUDGET_TEST_WALL = 480.0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _env(out: Path) -> dict:
    env = dict(os.environ, KIT_OUTPUT_DIR=str(out))
    shared = ROOT.parent / "shared" / "data"
    if "KIT_DATA_DIR" not in env and shared.is_dir():
        env["KIT_DATA_DIR"] = str(shared)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def run_notebook(nb: Path, mode: str, tmp: Path) -> dict:
    out = tmp / nb.stem
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "papermill", "-k", "cloud-scalability-kit", "--log-level",
           "WARNING", str(nb), str(out / nb.name)]
    if mode == "quick":
        cmd += ["-p", "quick", "True"]
    c0, w0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(out), capture_output=True, text=True)
    wall = time.perf_counter() - w0
    cpu = _children_cpu() - c0
    status = "ok" if proc.returncode == 0 else "FAILED: " + proc.stderr.strip().splitlines()[-1]
    return dict(notebook=nb.name, mode=mode, cpu_s=round(cpu, 1), wall_s=round(wall, 1),
                budget_cpu_s=BUDGET_CPU[mode],
                verdict="met" if cpu < BUDGET_CPU[mode] else "OVER", status=status)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="committed parameters (default: quick)")
    ap.add_argument("--only", default=None, help="notebooks whose name starts with this")
    ap.add_argument("--test", action="store_true", help="also time the whole test-suite")
    args = ap.parse_args(argv)
    mode = "full" if args.full else "quick"
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.name.startswith(args.only)]
    print(f"{len(notebooks)} notebook(s), {mode} mode, serially; {len(os.sched_getaffinity(0))} "
          f"cores, load average {os.getloadavg()[0]:.2f} (other programs inflate wall times)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        for nb in notebooks:
            rows.append(run_notebook(nb, mode, Path(tmp)))
            print(f"  {rows[-1]['notebook']}: {rows[-1]['cpu_s']} CPU-s, {rows[-1]['wall_s']} s",
                  flush=True)
    table = pd.DataFrame(rows)
    print(f"\nPer notebook (budget: < {BUDGET_CPU[mode]:g} CPU-s each in {mode} mode)")
    print(table.to_string(index=False))
    total_wall, total_cpu = float(table["wall_s"].sum()), float(table["cpu_s"].sum())
    budgets = [dict(budget=f"all notebooks, {mode} mode",
                    target=f"< {BUDGET_WALL_TOTAL[mode]:g} s wall on 2 idle cores",
                    measured=f"{total_wall:.0f} s wall serially ({total_cpu:.0f} CPU-s; "
                             f">= {total_cpu / 2:.0f} s on 2 cores)",
                    verdict="met" if total_wall < BUDGET_WALL_TOTAL[mode] else
                    ("met in parallel at best" if total_cpu / 2 < BUDGET_WALL_TOTAL[mode]
                     else "OVER"))]
    if args.test:
        w0, c0 = time.perf_counter(), _children_cpu()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                              cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
        wall, cpu = time.perf_counter() - w0, _children_cpu() - c0
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
        budgets.append(dict(budget="make test", target=f"< {BUDGET_TEST_WALL:g} s wall",
                            measured=f"{wall:.0f} s wall, {cpu:.0f} CPU-s ({last})",
                            verdict="met" if wall < BUDGET_TEST_WALL else "OVER"))
    print("\nBudgets")
    print(pd.DataFrame(budgets).to_string(index=False))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
