"""Notebook budgets (issues 10 and 19): CPU and wall seconds per notebook and for the whole kit, quick and full.

Runs every notebook in ``notebooks/`` through the kit's runner (``analysis.reproduce.run``: the path
``make quick`` and ``make reproduce`` take, several notebooks at once), into a temporary build folder
(the committed figures are never touched: the full-mode run passes ``-p quick false``, which makes it a
non-canonical run that publishes nothing). For each notebook: CPU seconds of its whole process tree
(papermill, the kernel and the kernel's replication workers, measured by the runner's worker; the HTML
export is switched off) and wall seconds; for the whole kit: wall seconds of the parallel run and its CPU.
Budgets: every notebook under 10 CPU-s in quick mode and 60 CPU-s in full mode (notebook 07, which scores
the whole NAB corpus, 120 CPU-s); all notebooks together under 2 minutes (quick) and 10 minutes (full) of
wall time on 2 idle cores. ``--test`` also times the test-suite (budget: ``make test`` under 8 minutes).

The machine, its core count and its load average are printed first, with the CPU seconds of a fixed
pure-Python reference loop before and after: on a shared machine other programs inflate wall times and, when
the host is busy, CPU seconds too (by 20-40% here at times); the reference loop shows how fast the host was.
``--repeats N`` runs every notebook N times, interleaved, and judges the median (min and max beside it).

    .venv/bin/python benchmarks/bench_notebooks.py                 # quick and full (make bench)
    .venv/bin/python benchmarks/bench_notebooks.py --mode quick --only 05
    .venv/bin/python benchmarks/bench_notebooks.py --mode quick --jobs 1 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import reproduce  # noqa: E402

BUDGET_CPU = {"quick": 10.0, "full": 60.0}          # CPU-s per notebook
BUDGET_CPU_EXCEPTIONS = {("full", "07"): 120.0}     # issue 17: the whole NAB corpus
BUDGET_WALL_TOTAL = {"quick": 120.0, "full": 600.0}  # wall s, all notebooks together
BUDGET_TEST_WALL = 480.0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine() -> str:
    """'<CPU model>, N cores available, load average L, Python X' (what the numbers were measured on)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{model}, {cores} cores available, load average {os.getloadavg()[0]:.2f}, "
            f"Python {platform.python_version()}")


def reference_cpu_s(n: int = 3_000_000) -> float:
    """CPU seconds of a fixed pure-Python loop (a yardstick of how fast the host runs right now)."""
    t0 = time.process_time()
    sum(i * i for i in range(n))
    return round(time.process_time() - t0, 3)


def summarise_repeats(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per notebook from ``runs`` (rows of :func:`run_mode`, one per notebook and repeat): median,
    min and max CPU-s, median wall s, and the verdict on the median."""
    rows = []
    for name, g in runs.groupby("notebook", sort=True):
        cpu = g["cpu_s"].dropna()
        median = float(cpu.median()) if len(cpu) else None
        budget = float(g["budget_cpu_s"].iloc[0])
        failed = g[g["status"] != "ok"]["status"]
        rows.append(dict(notebook=name, mode=g["mode"].iloc[0], runs=len(g),
                         cpu_s_median=None if median is None else round(median, 2),
                         cpu_s_min=None if median is None else round(float(cpu.min()), 2),
                         cpu_s_max=None if median is None else round(float(cpu.max()), 2),
                         wall_s_median=round(float(g["wall_s"].median()), 1), budget_cpu_s=budget,
                         verdict="-" if median is None else ("met" if median < budget else "OVER"),
                         status="ok" if failed.empty else str(failed.iloc[0])))
    return pd.DataFrame(rows)


def _prepare_env() -> None:
    shared = ROOT.parent / "shared" / "data"
    if "KIT_DATA_DIR" not in os.environ and shared.is_dir():
        os.environ["KIT_DATA_DIR"] = str(shared)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def run_mode(mode: str, only: list[str] | None, jobs: int | None, build: Path) -> tuple[pd.DataFrame, dict]:
    """Run the notebooks once in ``mode``; per-notebook rows and the whole-kit totals."""
    c0, w0 = _children_cpu(), time.perf_counter()
    results = reproduce.run(ROOT / "notebooks", build, quick=mode == "quick", only=only,
                            parameters=[("quick", False)] if mode == "full" else (),
                            html=False, progress=False, jobs=jobs)
    wall, cpu = time.perf_counter() - w0, _children_cpu() - c0
    rows = []
    for r in results:
        budget = BUDGET_CPU_EXCEPTIONS.get((mode, r.notebook[:2]), BUDGET_CPU[mode])
        rows.append(dict(notebook=r.notebook, mode=mode, cpu_s=r.cpu_seconds, wall_s=round(r.seconds, 1),
                         budget_cpu_s=budget,
                         verdict="-" if r.cpu_seconds is None else ("met" if r.cpu_seconds < budget else "OVER"),
                         status=r.status if r.ok else r.failure_line(with_name=False)[:80]))
    total = dict(mode=mode, notebooks=len(results), wall_s=round(wall, 1), cpu_s=round(cpu, 1),
                 jobs=jobs or reproduce.default_jobs(), ok=all(r.ok for r in results))
    return pd.DataFrame(rows), total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["quick", "full", "both"], default="both")
    ap.add_argument("--full", action="store_true", help="same as --mode full")
    ap.add_argument("--only", action="append", default=None,
                    help="notebooks whose name contains this (repeatable), as in `reproduce --only`")
    ap.add_argument("-j", "--jobs", type=int, default=None, help="notebooks at once (default: one per core)")
    ap.add_argument("--test", action="store_true", help="also time the whole test-suite")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run every notebook this many times and judge the median (default 1)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    modes = ["full"] if args.full else (["quick", "full"] if args.mode == "both" else [args.mode])
    _prepare_env()
    print(f"machine: {machine()}")
    print(f"data: {os.environ.get('KIT_DATA_DIR') or 'embedded synthetic default'}")
    print(f"reference loop before: {reference_cpu_s():.3f} CPU-s", flush=True)
    tables, totals = [], []
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        for mode in modes:
            runs = []
            for k in range(args.repeats):
                table, total = run_mode(mode, args.only, args.jobs, Path(tmp) / f"{mode}-{k}")
                runs.append(table)
                totals.append(total)
            table = pd.concat(runs, ignore_index=True)
            tables.append(table)
            print(f"\nPer notebook, {mode} mode (CPU-s: papermill + kernel + its workers; "
                  f"budget {BUDGET_CPU[mode]:g} CPU-s each)")
            shown = table if args.repeats == 1 else summarise_repeats(table)
            print(shown.to_string(index=False), flush=True)
    budgets = [dict(budget=f"all notebooks, {t['mode']} mode",
                    target=f"< {BUDGET_WALL_TOTAL[t['mode']]:g} s wall on 2 idle cores",
                    measured=f"{t['wall_s']:.0f} s wall, {t['cpu_s']:.0f} CPU-s, {t['notebooks']} notebooks, "
                             f"{t['jobs']} at once",
                    verdict="met" if t["wall_s"] < BUDGET_WALL_TOTAL[t["mode"]] else "OVER")
               for t in totals]
    if args.test:
        w0, c0 = time.perf_counter(), _children_cpu()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",   # as make test
                               "-n", str(cores), "--dist", "loadfile"],
                              cwd=ROOT, env=dict(os.environ), capture_output=True, text=True)
        wall, cpu = time.perf_counter() - w0, _children_cpu() - c0
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
        budgets.append(dict(budget="make test", target=f"< {BUDGET_TEST_WALL:g} s wall",
                            measured=f"{wall:.0f} s wall, {cpu:.0f} CPU-s ({last})",
                            verdict="met" if wall < BUDGET_TEST_WALL else "OVER"))
    print(f"\nreference loop after: {reference_cpu_s():.3f} CPU-s")
    print(f"\nBudgets (load average now {os.getloadavg()[0]:.2f})")
    print(pd.DataFrame(budgets).to_string(index=False))
    return 0 if all(t["ok"] for t in totals) else 1


if __name__ == "__main__":
    raise SystemExit(main())
