"""Benchmark: evaluating the four autoscaling policies over the Black Friday week (issue 4, nb 05).

Times, as medians of ``--repeats`` runs: building the four schedules (static peak, hour of week,
reactive, predictive on ETS forecasts issued 1 h ahead), their analytic (Erlang C) evaluation and
their time-compressed simulation (``--replications`` each; the replay length of each hour follows
from the precision target ``--precision``, by default notebook 05's ``replay_precision``, as the notebook
runs it; ``--segment`` replaces it by a fixed number of simulated seconds per hour; ``--path``: the exact
recursion, chosen automatically, or ciw), against the notebook budget of 60 CPU-s. Wall-clock and CPU seconds (this process
plus its replication workers) side by side: the machine may be shared, and CPU / 2 is what two idle
cores would need at best. Then the cost-vs-SLO frontier of the last run (simulation, with the
analytic attainment beside it) and, with ``--sweep``, how time and the confidence band move with the
precision target.

On the real api-01 series when the data is available (``KIT_DATA_DIR`` or ../shared/data), else
on the kit's synthetic default, saying which.

    .venv/bin/python benchmarks/bench_capacity.py                  # 3 repeats, 5 reps, notebook precision
    .venv/bin/python benchmarks/bench_capacity.py --repeats 1 --sweep 0.25 0.5 0.8
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import capacity as cap  # noqa: E402
from analysis import forecasting, paths, workloads  # noqa: E402

BUDGET_CPU_S = 60.0   # notebook 05's full-mode budget (issue 10), of which this is the largest part
WEEK_START = pd.Timestamp("2017-11-20", tz="UTC")   # a Monday; Black Friday is 2017-11-24
HOURS = 168
WARMUP_S = 300.0                                     # instance warm-up (reactive, predictive)


def _data_dir() -> str:
    env = os.environ.get(paths.DATA_ENV_VAR)
    if env and Path(env).is_dir():
        return env
    shared = paths.ROOT.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else ""


def load() -> tuple[pd.Series, str]:
    """Hourly requests/s (real api-01 with the documented DST repairs, or the synthetic default)."""
    w = workloads.demand("ecommerce-api-rps", _data_dir(), **workloads.REGULAR_GRID)
    return w.series.astype(float), w.label


def build_policies(series: pd.Series, mu: float, slo: cap.SLO):
    """The four schedules for the week starting WEEK_START, trained on the data before it."""
    end = WEEK_START + pd.Timedelta(hours=HOURS)
    week = series[(series.index >= WEEK_START) & (series.index < end)]
    train = series[series.index < WEEK_START]
    fc = cap.issued_forecasts(series, lambda: forecasting.ETSForecaster(), WEEK_START, end,
                              lead_time_h=1, refit_every_h=24)
    policies = {
        "static peak": cap.static_peak_policy(train, week.index, mu, slo),
        "hour of week": cap.scheduled_policy(train, week.index, mu, slo, quantile=0.95),
        "reactive": cap.reactive_policy(week, mu, target_utilisation=0.6, reaction_delay_s=300,
                                        warmup_s=WARMUP_S, cooldown_s=900, step_s=60),
        "predictive": cap.predictive_policy(fc, mu, slo, column="hi95", warmup_s=WARMUP_S,
                                            lead_time_h=1),
    }
    return policies, week


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the replication workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def notebook_default(name: str):
    """Default of parameter ``name`` in notebook 05's parameters cell (the benchmark measures what it runs)."""
    import ast

    from analysis.reproduce import notebook_parameters

    return ast.literal_eval(notebook_parameters(paths.NOTEBOOKS / "05_cost_autoscaling.ipynb")[name].default)


def run_once(series, mu, slo, reps, segment, executor, seed=1, path="auto", precision=0.25):
    wall, cpu = {}, {}

    def mark(name, t_wall, t_cpu):
        wall[name] = time.perf_counter() - t_wall
        cpu[name] = _cpu() - t_cpu
    w0, c0 = time.perf_counter(), _cpu()
    policies, week = build_policies(series, mu, slo)
    mark("schedules + forecasts", w0, c0)
    w, c = time.perf_counter(), _cpu()
    analytic = {k: cap.evaluate_policy(week, s, mu, slo, name=k, warmup_s=WARMUP_S)
                for k, s in policies.items()}
    mark("analytic evaluation (4)", w, c)
    sims = {}
    for i, (k, s) in enumerate(policies.items()):
        w, c = time.perf_counter(), _cpu()
        sims[k] = cap.simulate_policy(week, s, mu, slo, name=k, replications=reps, seed=seed + i,
                                      segment_s=segment, precision=precision, warmup_s=WARMUP_S,
                                      executor=executor, path=path)
        mark(f"simulate {k}", w, c)
    mark("total", w0, c0)
    return wall, cpu, analytic, sims


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--replications", type=int, default=5)
    ap.add_argument("--precision", type=float, default=None,
                    help="relative precision target of each hour's P(exceed) (default: notebook 05's)")
    ap.add_argument("--segment", type=float, default=None,
                    help="fixed simulated s per hour of demand instead of the precision rule")
    ap.add_argument("--service-rate", type=float, default=5.0, help="requests/s per server")
    ap.add_argument("--executor", default="auto", choices=["auto", "processes", "serial"])
    ap.add_argument("--path", default="auto", choices=["auto", "recursion", "ciw"],
                    help="simulation engine: the exact recursion (auto) or ciw")
    ap.add_argument("--sweep", type=float, nargs="*", default=[],
                    help="also time these precision targets on the hour-of-week policy")
    args = ap.parse_args(argv)

    series, label = load()
    slo = cap.SLO.wait_exceeds(0.1, 0.05)
    mu = args.service_rate
    precision = notebook_default("replay_precision") if args.precision is None else args.precision
    replay = f"{args.segment:g} s simulated per hour" if args.segment else f"precision target {precision:g}"
    print(f"data: {label}")
    print(f"week {WEEK_START:%Y-%m-%d} + {HOURS} h; service rate {mu:g}/s (mean {1 / mu:g} s); "
          f"SLO {slo.label()}; {args.replications} replications, {replay}, executor "
          f"{args.executor}, path {args.path}, {os.cpu_count()} CPUs visible")

    walls, cpus = [], []
    for _ in range(args.repeats):
        wall, cpu, analytic, sims = run_once(series, mu, slo, args.replications, args.segment,
                                             args.executor, path=args.path, precision=precision)
        walls.append(wall)
        cpus.append(cpu)
    wt, ct = pd.DataFrame(walls), pd.DataFrame(cpus)
    out = pd.DataFrame({"wall_median_s": wt.median(), "wall_min_s": wt.min(),
                        "wall_max_s": wt.max(), "cpu_median_s": ct.median()})
    out["cpu_per_core_s"] = out["cpu_median_s"] / 2
    out["cpu_share_of_budget"] = out["cpu_median_s"] / BUDGET_CPU_S
    print(f"\nSeconds, {args.repeats} repeat(s) (notebook 05's budget: {BUDGET_CPU_S:.0f} CPU-s in full mode):")
    print(out.round(2).to_string())
    total = out.loc["total"]
    verdict = "within" if total["cpu_median_s"] < BUDGET_CPU_S else "OVER"
    print(f"total: median cpu {total['cpu_median_s']:.1f} s ({verdict} the {BUDGET_CPU_S:.0f} CPU-s "
          f"budget), wall {total['wall_median_s']:.1f} s; load average now {os.getloadavg()[0]:.2f}")

    frontier = cap.policy_frontier(sims)
    frontier["simulated_requests"] = [int(sims[k].summary["simulated_requests"])
                                      for k in frontier.index]
    cols = ["server_hours", "idle_server_hours", "attainment", "attainment_lo", "attainment_hi",
            "attainment_analytic", "p99_response_s", "p99_response_s_lo", "p99_response_s_hi",
            "overloaded_intervals", "worst_interval", "simulated_requests"]
    print("\nFrontier of the last run (simulation; attainment band: hours shown to meet .. "
          "hours not shown to violate):")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(frontier[cols].to_string(float_format=lambda v: f"{v:.3f}"))

    if args.sweep:
        rows = []
        policies, week = build_policies(series, mu, slo)
        s = policies["hour of week"]
        for target in args.sweep:
            t, c = time.perf_counter(), _cpu()
            r = cap.simulate_policy(week, s, mu, slo, replications=args.replications, seed=7,
                                    precision=target, executor=args.executor, path=args.path).summary
            rows.append({"precision": target, "cpu_s": _cpu() - c, "wall_s": time.perf_counter() - t,
                         "precision_worst": r["replay_precision_max"],
                         "simulated_requests": int(r["simulated_requests"]),
                         "attainment": r["attainment"],
                         "band_width": r["attainment_hi"] - r["attainment_lo"],
                         "analytic": r["attainment_analytic"],
                         "analytic_in_ci": r["analytic_in_ci"],
                         "p99_s": r["p99_response_s"],
                         "p99_ci_half": (r["p99_response_s_hi"] - r["p99_response_s_lo"]) / 2})
        print(f"\nPrecision sweep, policy 'hour of week', {args.replications} replications "
              "(one run each):")
        print(pd.DataFrame(rows).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
