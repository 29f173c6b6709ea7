"""Simulation engine benchmarks (prints tables; run by `make bench`).

Every timing is CPU seconds (this process: time.process_time; worker processes: getrusage of the
finished children) and wall seconds, the median over ``--repeats`` repeats, the competitors run
side by side in the same loop (alternating, so machine load hits both alike), with the cyclic
garbage collector paused on both sides (the engine pauses it while ciw runs), sorting and
printing outside the timed regions.

1. Engine on ciw vs hand-written ciw on the same model and random stream (create_network,
   ciw.seed, simulate_until_max_time, get_all_records -> DataFrame -> per-node mean wait and p95
   response): M/M/1 and a 5-service tandem. Ratio = engine / hand-written CPU (target <= 1.10).
   (A join-shortest-queue pool is not in this table: a hand-written ciw JSQ needs a dispatcher
   node in front of the servers, which is not the same model.)
2. Exact fast path (path="recursion") vs ciw (path="ciw"): per replication (simulate and reduce
   to per-replication statistics: the work that grows with the run) and through run_trials
   (adding validation and the cross-replication summary, shared by both paths); and the same
   M/M/1 as a plain numpy Lindley recursion, as hand-written ciw and, if installed, as SimPy:
   M/M/1, M/M/8, a 100-leaf fork-join and the capacity replay shape (server schedule, rate
   schedule, admission cap). Target: fast path >= 30x ciw per replication on M/M/1 and on the
   100-leaf fork-join.
3. Speed-up of executor="processes" over "serial" for 8 replications on ciw (target >= 1.7 on
   2 cores), CPU counted in the workers too.
4. Peak memory of a run with about one million service visits, summary only
   (keep_records=False) versus full records, each in a fresh process, on both paths.
5. The issue's budgets beside the values measured here (notebook and test-suite budgets: see
   benchmarks/bench_notebooks.py).

Usage: python benchmarks/bench_simulation.py [--quick] [--only SECTION] [--repeats N]
"""
from __future__ import annotations

import argparse
import gc
import heapq
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ciw  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.fanout import FanOut  # noqa: E402
from analysis.simulation import replication_seeds, run_trials  # noqa: E402
from analysis.topology import (  # noqa: E402
    Arrivals, Exponential, RateSchedule, Service, ServiceGraph,
)

SEED = 2024
TARGET_ENGINE_RATIO = 1.10
TARGET_FAST = 30.0
TARGET_SPEEDUP = 1.7


# ----------------------------------------------------------------------------------------------
# measuring
# ----------------------------------------------------------------------------------------------

def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(fn):
    """(result, cpu seconds incl. finished child processes, wall seconds), GC paused."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        c0, k0, w0 = time.process_time(), _children_cpu(), time.perf_counter()
        out = fn()
        wall = time.perf_counter() - w0
        cpu = time.process_time() - c0 + _children_cpu() - k0
    finally:
        if was:
            gc.enable()
    return out, cpu, wall


def side_by_side(contenders: dict, repeats: int, inner: dict | None = None) -> dict:
    """{name: (last result, median cpu, median wall)}, contenders alternating in each repeat,
    after one untimed warm-up run of each. ``inner[name]``: calls per timing for a contender
    too fast to time once (times are per call)."""
    inner = inner or {}
    cpu = {k: [] for k in contenders}
    wall = {k: [] for k in contenders}
    last = {}
    for fn in contenders.values():         # warm-up: imports and first-use caches, untimed
        fn()
    for _ in range(repeats):
        for name, fn in contenders.items():
            k = inner.get(name, 1)
            last[name], c, w = timed(fn if k == 1 else lambda: [fn() for _ in range(k)][-1])
            cpu[name].append(c / k)
            wall[name].append(w / k)
    return {k: (last[k], statistics.median(cpu[k]), statistics.median(wall[k])) for k in contenders}


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------

def mm1():
    graph = ServiceGraph([Service("web", 1, Exponential(rate=1.0))], {"web": 0.8})

    def network():
        return ciw.create_network(arrival_distributions=[ciw.dists.Exponential(0.8)],
                                  service_distributions=[ciw.dists.Exponential(1.0)],
                                  number_of_servers=[1])
    return graph, network


def tandem(n=5):
    names = [f"tier{i}" for i in range(n)]
    graph = ServiceGraph([Service(x, 1, Exponential(rate=1.0)) for x in names], {names[0]: 0.8},
                         routing={names[i]: {names[i + 1]: 1.0} for i in range(n - 1)})

    def network():
        routing = [[1.0 if j == i + 1 else 0.0 for j in range(n)] for i in range(n)]
        return ciw.create_network(
            arrival_distributions=[ciw.dists.Exponential(0.8)] + [None] * (n - 1),
            service_distributions=[ciw.dists.Exponential(1.0)] * n,
            number_of_servers=[1] * n, routing=routing)
    return graph, network


def mmc(c=8):
    return ServiceGraph([Service("pool", c, Exponential(rate=1.0))], {"pool": 0.8 * c})


def fork_join(k=100):
    return FanOut([Service(f"leaf-{i}", 1, Exponential(rate=1.0)) for i in range(k)], rate=0.5)


def replay():
    """The shape capacity.simulate_policy builds: one station, a server schedule, a rate
    schedule with an overloaded phase, an admission cap."""
    rates = RateSchedule((0.0, 20.0, 25.0, 45.0), (40.0, 90.0, 55.0, 30.0), period=60.0)
    s = Service("capacity", 12, Exponential(rate=5.0), schedule=[(10, 20.0), (14, 45.0), (8, 60.0)])
    return ServiceGraph([s], [Arrivals("capacity", rate=rates)], max_in_system=200)


# ----------------------------------------------------------------------------------------------
# 1. engine vs hand-written ciw
# ----------------------------------------------------------------------------------------------

def hand_written(network, horizon, seed):
    """What a user would write with ciw directly (records kept for the stream check)."""
    ciw.seed(seed)
    sim = ciw.Simulation(network())
    sim.simulate_until_max_time(horizon)
    df = pd.DataFrame(sim.get_all_records())
    df["response"] = df["exit_date"] - df["arrival_date"]
    summary = df.groupby("node").agg(wait=("waiting_time", "mean"),
                                     p95=("response", lambda x: x.quantile(0.95)))
    return df["id_number"].nunique(), df, summary


def one_replication(model, horizon, path):
    """Only the per-replication work of run_trials (simulate and reduce to per-replication
    statistics, what a worker does), without the validation and the cross-replication summary
    that both paths share."""
    from analysis import simulation
    traffic = model.check(horizon, False)
    task = simulation._Task(model=model, trial=0, seed=replication_seeds(SEED, 1)[0],
                            horizon=float(horizon), warmup=0.0, drain=float(horizon),
                            keep_records=True, overloaded=bool((traffic["utilisation"] >= 1).any()),
                            service_names=None, path=path)
    out = simulation._replicate(task)
    visits = sum(v for s, c, m, v in out["stats"] if m == "arrivals" and c == "all"
                 and s != "end-to-end")
    return int(visits), out


def engine(graph, horizon, path="ciw"):
    r = run_trials(graph, 1, horizon=horizon, seed=SEED, executor="serial", progress=False,
                   path=path)
    return int(r.estimate("end-to-end", "arrivals")["estimate"]), r


def bench_engine(quick: bool, repeats: int):
    horizons = {"M/M/1 (rho 0.8)": 5000 if quick else 40000,
                "tandem of 5 (rho 0.8 each)": 2000 if quick else 10000}
    models = {"M/M/1 (rho 0.8)": mm1(), "tandem of 5 (rho 0.8 each)": tandem()}
    seed = replication_seeds(SEED, 1)[0]
    rows = []
    for label, (graph, network) in models.items():
        h = horizons[label]
        res = side_by_side({"ciw": lambda: hand_written(network, h, seed),
                            "engine": lambda: engine(graph, h)}, repeats)
        (n_hand, df, _), c_hand, w_hand = res["ciw"]
        (n_eng, result), c_eng, w_eng = res["engine"]
        head = df.sort_values(["arrival_date", "node"]).head(50)          # untimed
        rec = result.records.sort_values(["arrival", "service"]).head(50)
        same = "yes" if list(rec["arrival"]) == list(head["arrival_date"]) else "NO"
        rows.append(dict(model=label, horizon_s=h, customers=n_eng,
                         engine_cpu_s=round(c_eng, 3), ciw_cpu_s=round(c_hand, 3),
                         ratio_cpu=round(c_eng / c_hand, 3), engine_wall_s=round(w_eng, 3),
                         ciw_wall_s=round(w_hand, 3), same_stream=same,
                         target=f"<= {TARGET_ENGINE_RATIO}"))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# 2. fast paths
# ----------------------------------------------------------------------------------------------

def numpy_mm1(horizon, lam=0.8, mu=1.0, seed=SEED):
    """The bare recursion: Poisson arrivals, exponential services, Lindley, mean wait."""
    rng = np.random.default_rng(seed)
    n = int(lam * horizon * 1.1 + 100)
    a = np.cumsum(rng.exponential(1.0 / lam, n))
    a = a[a < horizon]
    s = rng.exponential(1.0 / mu, a.size)
    csum = np.cumsum(s)
    end = csum + np.maximum.accumulate(a - np.r_[0.0, csum[:-1]])
    start = np.maximum(a, np.r_[-np.inf, end[:-1]])
    return a.size, float((start - a).mean())


def simpy_mm1(horizon, lam=0.8, mu=1.0, seed=SEED):
    """The same M/M/1 as a SimPy process model (waits collected in a list)."""
    import simpy
    rnd = random.Random(seed)
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    waits = []

    def customer(env):
        arrive = env.now
        with server.request() as req:
            yield req
            waits.append(env.now - arrive)
            yield env.timeout(rnd.expovariate(mu))

    def source(env):
        while True:
            yield env.timeout(rnd.expovariate(lam))
            env.process(customer(env))

    env.process(source(env))
    env.run(until=horizon)
    return len(waits), float(np.mean(waits))


def bench_fast(quick: bool, repeats: int):
    try:
        import simpy  # noqa: F401
        have_simpy = True
    except ImportError:
        have_simpy = False
    scale = 0.1 if quick else 1.0
    cases = [
        ("M/M/1 (rho 0.8)", mm1()[0], 40000 * scale, True),
        ("M/M/8 (rho 0.8)", mmc(8), 5000 * scale, False),
        ("fork-join, 100 M/M/1 leaves (rho 0.5)", fork_join(100), 2000 * scale, True),
        ("capacity replay (schedules + cap)", replay(), 600 * scale, False),
    ]
    rows = []
    seed = replication_seeds(SEED, 1)[0]
    for label, model, h, targeted in cases:
        contenders = {"recursion": lambda: engine(model, h, "recursion"),
                      "ciw": lambda: engine(model, h, "ciw"),
                      "recursion replication": lambda: one_replication(model, h, "recursion"),
                      "ciw replication": lambda: one_replication(model, h, "ciw")}
        if label.startswith("M/M/1"):
            contenders["numpy"] = lambda: numpy_mm1(h)
            contenders["hand-written ciw"] = lambda: hand_written(mm1()[1], h, seed)[:1]
            if have_simpy:
                contenders["simpy"] = lambda: simpy_mm1(h)
        fast_calls = 3 if quick else 10
        res = side_by_side(contenders, repeats, inner={
            "recursion": fast_calls, "recursion replication": fast_calls,
            "numpy": 10 * fast_calls})
        (n_fast, r_fast), c_fast, w_fast = res["recursion"]
        (n_ciw, r_ciw), c_ciw, w_ciw = res["ciw"]
        assert r_fast.path == "recursion" and r_ciw.path == "ciw"
        (visits, _), c_fast_rep, w_fast_rep = res["recursion replication"]
        _, c_ciw_rep, _ = res["ciw replication"]
        row = dict(model=label, horizon_s=h, visits=visits,
                   replication_speedup_cpu=round(c_ciw_rep / c_fast_rep, 1),
                   recursion_cpu_s=round(c_fast, 4), ciw_cpu_s=round(c_ciw, 3),
                   speedup_cpu=round(c_ciw / c_fast, 1),
                   recursion_visits_per_cpu_s=round(visits / c_fast_rep),
                   ciw_visits_per_cpu_s=round(visits / c_ciw_rep),
                   recursion_wall_s=round(w_fast, 4), ciw_wall_s=round(w_ciw, 3),
                   target=f">= {TARGET_FAST:g}x" if targeted else "-")
        rows.append(row)
        if label.startswith("M/M/1"):
            for name in ("numpy", "hand-written ciw", "simpy"):
                if name not in res:
                    continue
                (n, *_), c, w = res[name]
                n = n if isinstance(n, int) else int(n)
                rows.append(dict(model=f"  same M/M/1: {name}", horizon_s=h, visits=n,
                                 replication_speedup_cpu=round(c_ciw_rep / c, 1),
                                 recursion_cpu_s=round(c, 4), ciw_cpu_s=None,
                                 speedup_cpu=round(c_ciw / c, 1),
                                 recursion_visits_per_cpu_s=round(n / c),
                                 ciw_visits_per_cpu_s=None, recursion_wall_s=round(w, 4),
                                 ciw_wall_s=None, target="-"))
            if not have_simpy:
                rows.append(dict(model="  same M/M/1: simpy (not installed)", horizon_s=h))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# 3. processes vs serial
# ----------------------------------------------------------------------------------------------

def bench_speedup(quick: bool, repeats: int):
    graph, _ = mm1()
    horizon = 4000 if quick else 25000
    kw = dict(horizon=horizon, seed=SEED, progress=False, keep_records=False, path="ciw")
    res = side_by_side({"serial": lambda: run_trials(graph, 8, executor="serial", **kw),
                        "processes": lambda: run_trials(graph, 8, executor="processes", **kw)},
                       repeats)
    (a, cs, ws), (b, cp, wp) = res["serial"], res["processes"]
    assert a.summary.to_csv() == b.summary.to_csv()
    workers = len(os.sched_getaffinity(0))
    # cores used = CPU seconds / wall seconds: ~1 serial, ~2 with two free cores
    return pd.DataFrame([dict(replications=8, horizon_s=horizon, workers=workers,
                              serial_wall_s=round(ws, 2), processes_wall_s=round(wp, 2),
                              speedup_wall=round(ws / wp, 2), serial_cpu_s=round(cs, 2),
                              processes_cpu_s=round(cp, 2),
                              cores_used_processes=round(cp / wp, 2),
                              identical_summary="yes", target=f">= {TARGET_SPEEDUP}")])


# ----------------------------------------------------------------------------------------------
# 4. memory
# ----------------------------------------------------------------------------------------------

def memory_child(mode: str, horizon: float, path: str) -> None:
    """Runs in a fresh process: one memory measurement, printed as JSON. The two worker
    processes are forked before tracemalloc starts (forked children would inherit the tracing
    and run several times slower); run_trials gets them as a ProcessPoolExecutor."""
    import concurrent.futures as cf
    import multiprocessing

    graph, _ = tandem()
    pool = cf.ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork"))
    list(pool.map(abs, range(4)))                         # fork both workers now
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    r = run_trials(graph, 4, horizon=horizon, seed=SEED, executor=pool, progress=False,
                   keep_records=(mode == "records"), path=path)
    wall = time.perf_counter() - t0
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pool.shutdown()
    pt = r.per_trial
    visits = pt[(pt["service"] != "end-to-end") & (pt["metric"] == "arrivals")
                & (pt["customer_class"] == "all")]["value"].sum()
    print(json.dumps(dict(
        path=path, mode=mode, visits=int(visits), wall_s=round(wall, 1),
        parent_base_rss_mb=round(base / 1024, 1),
        parent_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        parent_tracemalloc_peak_mb=round(peak_traced / 2**20, 1),
        worker_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    )))


def bench_memory(quick: bool):
    # tandem of 5 at 0.8 req/s: 4 visits/s; 4 replications x 62,500 s = 1,000,000 visits
    horizon = 5000 if quick else 62500
    rows = []
    for path in ("recursion", "ciw"):
        for mode in ("summary", "records"):
            out = subprocess.run([sys.executable, __file__, "--memory-child", mode, str(horizon),
                                  path], check=True, capture_output=True, text=True, cwd=ROOT)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# 5. budgets
# ----------------------------------------------------------------------------------------------

BUDGETS = [
    ("every notebook, full mode", "< 60 CPU-s each", "benchmarks/bench_notebooks.py --full"),
    ("every notebook, quick mode", "< 10 CPU-s each", "benchmarks/bench_notebooks.py"),
    ("all notebooks, full mode", "< 10 min wall (2 idle cores)", "benchmarks/bench_notebooks.py --full"),
    ("all notebooks, quick mode", "< 2 min wall (2 idle cores)", "benchmarks/bench_notebooks.py"),
    ("make test", "< 8 min wall (2 idle cores)", "benchmarks/bench_notebooks.py --test"),
]


TARGET_LEAF_VISITS = 50_000   # issue 12: 100-leaf fan-out, leaf visits per CPU-second


def budget_table(fast: pd.DataFrame | None) -> pd.DataFrame:
    rows = []
    if fast is not None:
        for _, r in fast[fast["target"].fillna("-") != "-"].iterrows():
            best = r["replication_speedup_cpu"]
            rows.append(dict(budget=f"fast path vs ciw: {r['model']}", target=r["target"],
                             measured=f"{best:g}x CPU per replication ({r['speedup_cpu']:g}x "
                                      "through run_trials)",
                             verdict="met" if best >= TARGET_FAST else "MISSED"))
        fj = fast[fast["model"].str.startswith("fork-join, 100")]
        for _, r in fj.iterrows():          # issue 12: leaf visits per CPU-second at 100 leaves
            rate = r["recursion_visits_per_cpu_s"]
            rows.append(dict(budget="fork-join, 100 leaves: leaf visits per CPU-second "
                                    "(one replication, exact recursion)",
                             target=f">= {TARGET_LEAF_VISITS:,}", measured=f"{rate:,.0f}",
                             verdict="met" if rate >= TARGET_LEAF_VISITS else "MISSED"))
    for what, target, where in BUDGETS:
        rows.append(dict(budget=what, target=target, measured=f"see {where}", verdict=""))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per timing (median)")
    parser.add_argument("--only", choices=["engine", "fast", "speedup", "memory"],
                        help="run one section only")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], float(args.memory_child[1]), args.memory_child[2])
        return
    repeats = args.repeats or (3 if args.quick else 5)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print(f"ciw {ciw.__version__}, python {sys.version.split()[0]}, "
          f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f} "
          f"(other programs on the machine distort wall times; CPU seconds less so); "
          f"median of {repeats} repeats, GC paused on both sides")
    fast = None
    if args.only in (None, "engine"):
        print(f"\n1. Engine on ciw vs hand-written ciw, same model and stream "
              f"(target CPU ratio <= {TARGET_ENGINE_RATIO})")
        print(bench_engine(args.quick, repeats).to_string(index=False))
    if args.only in (None, "fast"):
        print(f"\n2. Exact fast path (path='recursion') vs ciw through run_trials, 1 replication "
              f"(target >= {TARGET_FAST:g}x on M/M/1 and the 100-leaf fork-join)")
        fast = bench_fast(args.quick, repeats)
        print(fast.to_string(index=False, na_rep=""))
    if args.only in (None, "speedup"):
        print(f"\n3. 8 replications on ciw in processes vs serial (target speed-up >= "
              f"{TARGET_SPEEDUP} on 2 cores)")
        print(bench_speedup(args.quick, max(2, repeats // 2)).to_string(index=False))
    if args.only in (None, "memory"):
        print("\n4. Peak memory, ~1M service visits (5-service tandem, 4 replications, "
              "2 processes)")
        print(bench_memory(args.quick).to_string(index=False))
    print("\n5. Budgets (issue 10) beside what this run measured")
    print(budget_table(fast).to_string(index=False))


if __name__ == "__main__":
    main()
