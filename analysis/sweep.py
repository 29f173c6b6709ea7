"""Parameter sweeps: a grid of parameters x replications of one or several models, on any executor.

``run_sweep(model_fn, grid, replications, seed, executor)`` evaluates ``model_fn(point, seed)`` for every grid
point and replication and returns a tidy DataFrame (one row per model, point, replication and metric).

Seeds: the task (model, point p, replication r) gets the integer seed of
``numpy.random.SeedSequence(seed, spawn_key=(model_key, p, r))`` (63 bits), where ``model_key`` is a fixed hash of
the model's name. So a task's seed depends only on the base seed, the model's name, the point's index in that
model's grid and the replication: not on the executor, the number of workers, the completion order, the other
models of the sweep or the number of replications. Results are therefore identical (to the bit) between
``executor="serial"``, ``"processes"`` and a dask ``distributed.Client``.

Executors: ``None`` or ``"serial"`` (this process), ``"processes"`` (a local process pool), any
``concurrent.futures.Executor`` except thread pools, or a dask ``distributed.Client`` whose workers run one
thread each (checked as in :func:`analysis.simulation.run_trials`: ciw draws from Python's global random
state). On a dask cluster every worker must have the kit installed (``pip install -e .`` of the same commit, or
the same ``requirements.lock``): tasks are pickled references to functions of ``analysis``.

Models shipped here (top-level functions, so they pickle): :func:`mmc_point` (an M/M/c station through
:func:`analysis.simulation.run_trials`, notebook 00) and :func:`pool_point` (a balancer over a pool through
:func:`analysis.dispatch.simulate_pool`, notebook 02). Any ``f(point: dict, seed: int) -> {metric: number}``
defined at module level works.
"""
from __future__ import annotations

import hashlib
import itertools
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from analysis import checks

__all__ = ["run_sweep", "expand_grid", "task_seed", "mmc_point", "pool_point"]

Model = Callable[[dict, int], Mapping[str, float]]


def _model_key(name: str) -> int:
    """A fixed 32-bit key for a model name (sha256), the first element of its tasks' spawn keys."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big")


def task_seed(seed: int, model: str, point: int, replication: int) -> int:
    """Seed of one task: ``SeedSequence(seed, spawn_key=(model key, point, replication))``, a 63-bit int."""
    seq = np.random.SeedSequence(seed, spawn_key=(_model_key(model), point, replication))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def expand_grid(grid: Mapping[str, Sequence] | Sequence[Mapping[str, Any]], name: str = "grid") -> list[dict]:
    """Grid points: the cartesian product of a mapping ``{parameter: [values]}`` (in the mapping's order), or an
    explicit list of point dicts. ValueError naming ``name`` for an empty or malformed grid."""
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError(f"{name}: empty grid (give {{parameter: [values, ...]}})")
        values = []
        for key, vals in grid.items():
            if not isinstance(key, str):
                raise ValueError(f"{name}: parameter names must be strings, got {key!r}")
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or len(vals) == 0:
                raise ValueError(f"{name}[{key!r}]: expected a non-empty list of values, got {vals!r}")
            values.append(list(vals))
        return [dict(zip(grid, combo)) for combo in itertools.product(*values)]
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or not grid:
        raise ValueError(f"{name}: expected {{parameter: [values]}} or a non-empty list of point dicts, got {grid!r}")
    points = []
    for i, point in enumerate(grid):
        if not isinstance(point, Mapping) or not all(isinstance(k, str) for k in point):
            raise ValueError(f"{name}[{i}]: expected a dict of parameter -> value, got {point!r}")
        points.append(dict(point))
    return points


def _models(model_fn, grid) -> list[tuple[str, Model, list[dict]]]:
    if callable(model_fn):
        name = getattr(model_fn, "__qualname__", None) or type(model_fn).__name__
        if "<" in name:  # a lambda or a local function: it would not pickle to a worker
            raise ValueError(f"model_fn: {name} cannot be sent to a worker; define it at module level")
        return [(name, model_fn, expand_grid(grid))]
    if not isinstance(model_fn, Mapping) or not model_fn:
        raise ValueError(f"model_fn: expected a function f(point, seed) or a mapping name -> function, got {model_fn!r}")
    if not isinstance(grid, Mapping) or set(grid) != set(model_fn):
        raise ValueError(f"grid: with several models give one grid per model name ({sorted(model_fn)}), got "
                         f"{sorted(grid) if isinstance(grid, Mapping) else type(grid).__name__}")
    out = []
    for name, fn in model_fn.items():
        if not isinstance(name, str) or not callable(fn):
            raise ValueError(f"model_fn[{name!r}]: expected a function f(point, seed), got {fn!r}")
        if "<" in getattr(fn, "__qualname__", ""):
            raise ValueError(f"model_fn[{name!r}]: {fn.__qualname__} cannot be sent to a worker; define it at "
                             "module level")
        out.append((name, fn, expand_grid(grid[name], f"grid[{name!r}]")))
    return out


def _evaluate(task: tuple) -> list[tuple[str, float]]:
    """Run one task in a worker: ``model_fn(point, seed)`` -> sorted (metric, value) pairs."""
    index, name, fn, point, seed = task
    values = fn(dict(point), seed)
    if not isinstance(values, Mapping):
        raise ValueError(f"model {name!r} at {point}: must return a mapping metric -> number, got "
                         f"{type(values).__name__}")
    pairs = []
    for metric, value in values.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"model {name!r} at {point}: metric {metric!r} = {value!r} is not a number")
        pairs.append((str(metric), float(value)))
    return sorted(pairs)


def _check_progress(progress) -> bool | None:
    """tqdm's ``disable``: True (default) shows a bar only when stderr is a terminal; "always" forces it."""
    if progress is True:
        return None
    if progress is False:
        return True
    if progress == "always":
        return False
    raise ValueError(f"progress must be True (on a terminal), False or 'always', got {progress!r}")


def _executor(executor):
    from analysis import simulation

    if executor is None:
        return "serial"
    if isinstance(executor, str) and executor not in ("serial", "processes"):
        raise ValueError(f"executor must be None, 'serial', 'processes', a concurrent.futures.Executor or a dask "
                         f"distributed.Client, got {executor!r}")
    simulation._check_executor(executor, None)  # thread pools and multi-threaded dask workers are refused
    return executor


def run_sweep(model_fn: Model | Mapping[str, Model], grid, replications: int, seed: int, executor=None,
              progress: bool | str = True):
    """Evaluate every (model, grid point, replication) and return a tidy DataFrame.

    model_fn: ``f(point: dict, seed: int) -> {metric: number}`` defined at module level, or a mapping model name ->
    such a function (then ``grid`` maps each model name to its grid). grid: ``{parameter: [values]}`` (cartesian
    product) or a list of point dicts. replications (>= 1) per point; seed (>= 0): base seed, see
    :func:`task_seed`. executor: None/"serial", "processes", a concurrent.futures.Executor (not threads) or a
    dask distributed.Client (one thread per worker). progress: True: a tqdm bar on stderr when it is a terminal;
    "always"; False.

    Columns: model, point (index in the model's grid), one column per grid parameter (union over models, None
    where a model lacks it), replication, seed, metric, value; sorted by model, point, replication, metric.
    Identical whatever the executor.
    """
    import pandas as pd
    from tqdm import tqdm

    from analysis import simulation

    replications = checks.integer("replications", replications, 1)
    seed = checks.integer("seed", seed, 0)
    disable = _check_progress(progress)
    models = _models(model_fn, grid)
    executor = _executor(executor)

    tasks, meta = [], []
    for name, fn, points in models:
        for p, point in enumerate(points):
            for r in range(replications):
                s = task_seed(seed, name, p, r)
                tasks.append((len(tasks), name, fn, point, s))
                meta.append((name, p, point, r, s))
    class _Bar(tqdm):
        monitor_interval = 0  # no monitor thread (forking a process pool must not copy one)

    bar = _Bar(total=len(tasks), desc="sweep", unit="task", disable=disable, file=sys.stderr, leave=False)
    try:
        outputs = simulation.map_tasks(_evaluate, tasks, executor, bar)
    finally:
        bar.close()

    params: list[str] = []
    for _, _, points in models:
        for point in points:
            params += [k for k in point if k not in params]
    reserved = {"model", "point", "replication", "seed", "metric", "value"} & set(params)
    if reserved:
        raise ValueError(f"grid: parameter name(s) {sorted(reserved)} clash with the result columns")
    rows = []
    for (name, p, point, r, s), pairs in zip(meta, outputs):
        for metric, value in pairs:
            rows.append({"model": name, "point": p, **{k: point.get(k) for k in params}, "replication": r,
                         "seed": s, "metric": metric, "value": value})
    frame = pd.DataFrame(rows, columns=["model", "point", *params, "replication", "seed", "metric", "value"])
    return frame.sort_values(["model", "point", "replication", "metric"], kind="mergesort").reset_index(drop=True)


# ---------------------------------------------------------------------------------------- models

def mmc_point(point: Mapping[str, Any], seed: int) -> dict[str, float]:
    """One replication of an M/M/c station (notebook 00's model) through ``run_trials`` (serial, exact path
    when available). point: arrival_rate (requests/s), service_rate (requests/s per server), servers,
    horizon (s; default 1000). Returns mean_wait, mean_response, p99_response (s) and utilisation."""
    from analysis.simulation import run_trials
    from analysis.topology import Exponential, Service, ServiceGraph

    servers = checks.integer("servers", point["servers"], 1)
    graph = ServiceGraph(services=[Service("api", servers=servers,
                                           service_time=Exponential(rate=float(point["service_rate"])))],
                         arrivals={"api": float(point["arrival_rate"])})
    res = run_trials(graph, replications=1, horizon=float(point.get("horizon", 1000.0)), seed=seed,
                     executor="serial", progress=False)
    return {m: float(res.estimate("api", m).estimate)
            for m in ("mean_wait", "mean_response", "p99_response", "utilisation")}


def pool_point(point: Mapping[str, Any], seed: int) -> dict[str, float]:
    """A balancer in front of a pool (notebook 02's model) through ``dispatch.simulate_pool``. point: policy,
    servers, service_rate (requests/s per server), utilisation, horizon (s; default 200), d (default 2).
    Returns mean_response and p99_response (s)."""
    from analysis import dispatch

    servers = checks.integer("servers", point["servers"], 1)
    mu = float(point["service_rate"])
    lam = float(point["utilisation"]) * servers * mu
    run = dispatch.simulate_pool(lam, np.full(servers, mu), point["policy"], float(point.get("horizon", 200.0)),
                                 seed=seed, d=int(point.get("d", 2)))
    summary = run.summary()
    return {"mean_response": summary["mean_response"], "p99_response": summary["p99_response"]}
