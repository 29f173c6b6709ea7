"""The notebook benchmark's summary of repeated runs (benchmarks/bench_notebooks.py; the runs themselves are
measured by `make bench`, never in tests)."""
from __future__ import annotations

import importlib.util

import pandas as pd

from analysis import paths

_spec = importlib.util.spec_from_file_location("bench_notebooks", paths.ROOT / "benchmarks" / "bench_notebooks.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _row(name, cpu, status="ok"):
    return dict(notebook=name, mode="quick", cpu_s=cpu, wall_s=(cpu or 0.0) + 0.5, budget_cpu_s=10.0, verdict="",
                status=status)


def test_repeats_are_judged_by_their_median():
    runs = pd.DataFrame([_row("01_a.ipynb", 9.0), _row("02_b.ipynb", 12.0), _row("01_a.ipynb", 11.5),
                         _row("02_b.ipynb", 9.5), _row("01_a.ipynb", 8.0), _row("02_b.ipynb", 10.5)])
    out = bench.summarise_repeats(runs).set_index("notebook")
    assert out.loc["01_a.ipynb", ["runs", "cpu_s_median", "cpu_s_min", "cpu_s_max"]].tolist() == [3, 9.0, 8.0, 11.5]
    assert out.loc["01_a.ipynb", "verdict"] == "met"          # one run over the budget, the median under it
    assert out.loc["02_b.ipynb", "verdict"] == "OVER"          # median 10.5
    assert out.loc["02_b.ipynb", "wall_s_median"] == 11.0


def test_a_failed_repeat_is_reported():
    runs = pd.DataFrame([_row("01_a.ipynb", 5.0), _row("01_a.ipynb", None, status="cell 3: ValueError: x")])
    out = bench.summarise_repeats(runs).iloc[0]
    assert out["status"] == "cell 3: ValueError: x" and out["cpu_s_median"] == 5.0


def test_reference_loop_costs_cpu_time():
    assert bench.reference_cpu_s(200_000) > 0
