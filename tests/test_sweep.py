"""analysis.sweep: deterministic seeds per (model, point, replication), identical results on every executor."""
from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pandas as pd
import pytest

from analysis import sweep

MODELS = {"mmc": sweep.mmc_point, "pool": sweep.pool_point}
GRID = {"mmc": {"arrival_rate": [10.0, 16.0], "service_rate": [10.0], "servers": [2], "horizon": [200.0]},
        "pool": {"policy": ["random", "power_of_d"], "servers": [10], "service_rate": [10.0], "utilisation": [0.8],
                 "horizon": [50.0]}}


@pytest.fixture(scope="module")
def serial():
    return sweep.run_sweep(MODELS, GRID, replications=2, seed=7, progress=False)


def test_tidy_frame_has_a_row_per_model_point_replication_metric(serial):
    assert list(serial.columns) == ["model", "point", "arrival_rate", "service_rate", "servers", "horizon", "policy",
                                    "utilisation", "replication", "seed", "metric", "value"]
    assert len(serial) == 2 * 2 * 4 + 2 * 2 * 2
    mmc = serial[(serial.model == "mmc") & (serial.metric == "utilisation")]
    assert mmc.groupby("arrival_rate").value.mean().to_numpy() == pytest.approx([0.5, 0.8], abs=0.05)
    pool = serial[(serial.model == "pool") & (serial.metric == "mean_response")].groupby("policy").value.mean()
    assert pool["power_of_d"] < pool["random"]  # power-of-2 beats random at utilisation 0.8 (notebook 02)
    row = serial.iloc[0]
    assert row.seed == sweep.task_seed(7, "mmc", 0, 0)


def test_seeds_depend_only_on_model_point_and_replication(serial):
    alone = sweep.run_sweep({"pool": sweep.pool_point}, {"pool": GRID["pool"]}, replications=1, seed=7,
                            progress=False)
    both = serial[(serial.model == "pool") & (serial.replication == 0)]
    both = both.dropna(axis=1, how="all")[list(alone.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, both, check_exact=True, check_dtype=False)
    seeds = {sweep.task_seed(7, m, p, r) for m in ("mmc", "pool") for p in range(2) for r in range(2)}
    assert len(seeds) == 8
    assert sweep.task_seed(8, "mmc", 0, 0) != sweep.task_seed(7, "mmc", 0, 0)


def test_process_pool_gives_the_serial_frame(serial):
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        pd.testing.assert_frame_equal(sweep.run_sweep(MODELS, GRID, 2, 7, executor=pool, progress=False), serial,
                                      check_exact=True)


def test_dask_local_cluster_gives_the_serial_frame(serial):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        on_dask = sweep.run_sweep(MODELS, GRID, 2, 7, executor=client, progress=False)
    pd.testing.assert_frame_equal(on_dask, serial, check_exact=True)


def test_progress_bar_only_on_a_terminal_unless_asked(capsys):
    grid = {"policy": ["random"], "servers": [2], "service_rate": [10.0], "utilisation": [0.5], "horizon": [5.0]}
    sweep.run_sweep(sweep.pool_point, grid, 2, 1)  # pytest's stderr is not a terminal
    assert capsys.readouterr().err == ""
    sweep.run_sweep(sweep.pool_point, grid, 2, 1, progress="always")
    assert "sweep:" in capsys.readouterr().err


def _local(point, seed):
    return {"x": 1.0}


@pytest.mark.parametrize("kwargs, message", [
    (dict(model_fn=lambda p, s: {}), "model_fn: <lambda> cannot be sent to a worker; define it at module level"),
    (dict(grid={"a": []}), "grid['a']: expected a non-empty list of values, got []"),
    (dict(grid={}), "grid: empty grid"),
    (dict(replications=0), "replications"),
    (dict(seed=-1), "seed"),
    (dict(progress="yes"), "progress must be True (on a terminal), False or 'always', got 'yes'"),
    (dict(executor="threads"), "executor must be None, 'serial', 'processes'"),
    (dict(executor=cf.ThreadPoolExecutor(1)), "executor: a ThreadPoolExecutor cannot run"),
    (dict(model_fn=MODELS), "grid: with several models give one grid per model name"),
    (dict(grid={"replication": [1]}), "grid: parameter name(s) ['replication'] clash with the result columns"),
])
def test_bad_arguments_are_one_line_errors_naming_them(kwargs, message):
    args = dict(model_fn=sweep.pool_point, grid={"policy": ["random"], "servers": [2], "service_rate": [10.0],
                                                 "utilisation": [0.5], "horizon": [5.0]},
                replications=1, seed=0, progress=False)
    args.update(kwargs)
    if args["model_fn"] is sweep.pool_point and "replication" in args["grid"]:
        args["model_fn"] = _module_level_constant
    with pytest.raises(ValueError) as info:
        sweep.run_sweep(**args)
    assert message in str(info.value) and "\n" not in str(info.value)


def _module_level_constant(point, seed):
    return {"x": float(np.random.default_rng(seed).random())}
