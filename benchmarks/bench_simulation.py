"""Simulation engine benchmarks (prints tables; run by `make bench`).

1. Throughput (customers/s) of analysis.simulation on an M/M/1, a 5-service tandem and a
   4-server join-shortest-queue pool, next to a hand-written ciw loop on the same model and
   seeds (create_network, ciw.seed, simulate_until_max_time, get_all_records -> DataFrame ->
   per-node mean wait and p95 response). Ratio = engine time / hand-written time (target <= 1.10).
   For the M/M/1 and the tandem both follow the same random stream (the script checks that the
   first records agree). A hand-written ciw JSQ pool needs a zero-time dispatcher node in front
   of the servers (ciw routes only after a service), the engine dispatches on arrival.
2. Speed-up of executor="processes" over "serial" for 8 replications (target >= 1.7 on 2 cores).
3. Peak memory of a run with about one million service visits, summary only
   (keep_records=False) versus full records, each in a fresh process: the parent's peak RSS and
   tracemalloc peak, and the largest worker's peak RSS.

Medians over repeats; engine and hand-written runs alternate so machine load hits both alike.
Usage: python benchmarks/bench_simulation.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
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
import pandas as pd  # noqa: E402

from analysis.simulation import replication_seeds, run_trials  # noqa: E402
from analysis.topology import Arrivals, Exponential, Pool, Service, ServiceGraph  # noqa: E402

SEED = 2024


# ----------------------------------------------------------------------------------------------
# models: engine description and the hand-written ciw equivalent
# ----------------------------------------------------------------------------------------------

def mm1():
    graph = ServiceGraph([Service("web", 1, Exponential(1.0))], {"web": 0.8})

    def network():
        return ciw.create_network(arrival_distributions=[ciw.dists.Exponential(0.8)],
                                  service_distributions=[ciw.dists.Exponential(1.0)],
                                  number_of_servers=[1])
    return graph, network


def tandem(n=5):
    names = [f"tier{i}" for i in range(n)]
    graph = ServiceGraph([Service(x, 1, Exponential(1.0)) for x in names], {names[0]: 0.8},
                         routing={names[i]: {names[i + 1]: 1.0} for i in range(n - 1)})

    def network():
        routing = [[1.0 if j == i + 1 else 0.0 for j in range(n)] for i in range(n)]
        return ciw.create_network(
            arrival_distributions=[ciw.dists.Exponential(0.8)] + [None] * (n - 1),
            service_distributions=[ciw.dists.Exponential(1.0)] * n,
            number_of_servers=[1] * n, routing=routing)
    return graph, network


def jsq_pool(n=4):
    names = [f"web-{i}" for i in range(n)]
    graph = ServiceGraph([Service(x, 1, Exponential(1.0)) for x in names],
                         [Arrivals("web", rate=0.8 * n)], pools=[Pool("web", names, "jsq")])

    def network():
        routers = [ciw.routing.LoadBalancing(destinations=list(range(2, n + 2)))]
        routers += [ciw.routing.Leave() for _ in range(n)]
        return ciw.create_network(
            arrival_distributions=[ciw.dists.Exponential(0.8 * n)] + [None] * n,
            service_distributions=[ciw.dists.Deterministic(0.0)] + [ciw.dists.Exponential(1.0)] * n,
            number_of_servers=[float("inf")] + [1] * n,
            routing=ciw.routing.NetworkRouting(routers=routers))
    return graph, network


def hand_written(network, horizon, seed):
    """What a user would write with ciw directly."""
    ciw.seed(seed)
    sim = ciw.Simulation(network())
    sim.simulate_until_max_time(horizon)
    df = pd.DataFrame(sim.get_all_records())
    df["response"] = df["exit_date"] - df["arrival_date"]
    summary = df.groupby("node").agg(wait=("waiting_time", "mean"),
                                     p95=("response", lambda x: x.quantile(0.95)))
    customers = df["id_number"].nunique()
    return customers, df.sort_values(["arrival_date", "node"]).head(50), summary


def engine(graph, horizon):
    r = run_trials(graph, 1, horizon=horizon, seed=SEED, executor="serial", progress=False)
    customers = int(r.estimate("end-to-end", "completed")["estimate"])
    return customers, r


# ----------------------------------------------------------------------------------------------
# benchmarks
# ----------------------------------------------------------------------------------------------

def bench_throughput(quick: bool):
    repeats = 3 if quick else 5
    horizons = {"M/M/1 (rho 0.8)": 5000 if quick else 40000,
                "tandem of 5 (rho 0.8 each)": 2000 if quick else 10000,
                "JSQ pool of 4 (rho 0.8)": 2000 if quick else 10000}
    models = {"M/M/1 (rho 0.8)": mm1(), "tandem of 5 (rho 0.8 each)": tandem(),
              "JSQ pool of 4 (rho 0.8)": jsq_pool()}
    seed = replication_seeds(SEED, 1)[0]
    rows = []
    for label, (graph, network) in models.items():
        h = horizons[label]
        t_eng, t_hand = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            n_hand, head, _ = hand_written(network, h, seed)
            t_hand.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n_eng, result = engine(graph, h)
            t_eng.append(time.perf_counter() - t0)
        same = "-"
        if "JSQ" not in label:
            rec = result.records.sort_values(["arrival", "service"]).head(50)
            same = "yes" if list(rec["arrival"]) == list(head["arrival_date"]) else "NO"
        me, mh = statistics.median(t_eng), statistics.median(t_hand)
        rows.append(dict(model=label, horizon_s=h, customers=n_eng,
                         engine_customers_per_s=round(n_eng / me),
                         ciw_customers_per_s=round(n_hand / mh),
                         engine_s=round(me, 3), ciw_s=round(mh, 3), ratio=round(me / mh, 3),
                         same_stream=same))
    return pd.DataFrame(rows)


def bench_speedup(quick: bool):
    graph, _ = mm1()
    horizon = 4000 if quick else 25000
    repeats = 2 if quick else 3
    def cpu():
        self_ = os.times()
        return self_.user + self_.system + self_.children_user + self_.children_system

    ts, tp, cs, cp = [], [], [], []
    for _ in range(repeats):
        c0, t0 = cpu(), time.perf_counter()
        a = run_trials(graph, 8, horizon=horizon, seed=SEED, executor="serial", progress=False,
                       keep_records=False)
        ts.append(time.perf_counter() - t0)
        cs.append(cpu() - c0)
        c0, t0 = cpu(), time.perf_counter()
        b = run_trials(graph, 8, horizon=horizon, seed=SEED, executor="processes", progress=False,
                       keep_records=False)
        tp.append(time.perf_counter() - t0)
        cp.append(cpu() - c0)
        assert a.summary.to_csv() == b.summary.to_csv()
    ms, mp = statistics.median(ts), statistics.median(tp)
    workers = len(os.sched_getaffinity(0))
    # cores_used = CPU seconds / wall seconds: ~1 serial, ~2 with two free cores; lower values
    # mean other programs were using the cores during the measurement
    return pd.DataFrame([dict(replications=8, horizon_s=horizon, workers=workers,
                              serial_s=round(ms, 2), processes_s=round(mp, 2),
                              speedup=round(ms / mp, 2),
                              cores_used_serial=round(statistics.median(cs) / ms, 2),
                              cores_used_processes=round(statistics.median(cp) / mp, 2),
                              identical_summary="yes")])


def memory_child(mode: str, horizon: float) -> None:
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
                   keep_records=(mode == "records"))
    wall = time.perf_counter() - t0
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pool.shutdown()
    pt = r.per_trial
    visits = pt[(pt["service"] != "end-to-end") & (pt["metric"] == "arrivals")
                & (pt["customer_class"] == "all")]["value"].sum()
    print(json.dumps(dict(
        mode=mode, visits=int(visits), wall_s=round(wall, 1),
        parent_base_rss_mb=round(base / 1024, 1),
        parent_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        parent_tracemalloc_peak_mb=round(peak_traced / 2**20, 1),
        worker_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    )))


def bench_memory(quick: bool):
    # tandem of 5 at 0.8 req/s: 4 visits/s; 4 replications x 62,500 s = 1,000,000 visits
    horizon = 5000 if quick else 62500
    rows = []
    for mode in ("summary", "records"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", mode, str(horizon)],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--only", choices=["throughput", "speedup", "memory"],
                        help="run one section only")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], float(args.memory_child[1]))
        return
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(f"ciw {ciw.__version__}, python {sys.version.split()[0]}, "
          f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f} "
          "(other programs on the machine distort the speed-up)")
    if args.only in (None, "throughput"):
        print("\n1. Throughput: engine vs hand-written ciw (median of repeats; target ratio <= 1.10)")
        print(bench_throughput(args.quick).to_string(index=False))
    if args.only in (None, "speedup"):
        print("\n2. Replications in processes vs serial (median of repeats; target speed-up >= 1.7)")
        print(bench_speedup(args.quick).to_string(index=False))
    if args.only in (None, "memory"):
        print("\n3. Peak memory, ~1M service visits (5-service tandem, 4 replications, 2 processes)")
        print(bench_memory(args.quick).to_string(index=False))


if __name__ == "__main__":
    main()
