"""Ctrl-C, SIGTERM and SIGKILL of a real `python -m analysis reproduce` run while a notebook cell runs.

Each test starts the runner as a subprocess in its own session (as a shell does), on a notebook that starts a
multiprocessing forkserver pool whose workers sleep, records the pids of the kernel and of its helpers, and
then sleeps in the cell. Every process of the run carries a unique environment variable, so "no process of
the run is left" is checked over every process on the machine, not only over the pids we know.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil  # installed with ipykernel (requirements.lock)
import pytest

from analysis import paths

from test_reproduce import make_notebook

pytestmark = pytest.mark.notebook

SLEEPING_POOL = """
import multiprocessing, os, time, json
from multiprocessing import resource_tracker
ctx = multiprocessing.get_context("forkserver")
pool = ctx.Pool(2)
busy = pool.map_async(time.sleep, [120, 120])
time.sleep(0.5)
tracker = resource_tracker._resource_tracker._pid
marker = {"kernel": os.getpid(), "pool": [p.pid for p in pool._pool], "tracker": tracker}
with open(os.environ["KIT_TEST_MARKER"] + ".part", "w") as f:
    json.dump(marker, f)
os.replace(os.environ["KIT_TEST_MARKER"] + ".part", os.environ["KIT_TEST_MARKER"])
time.sleep(120)
"""


def snapshot(directory: Path) -> dict[str, str]:
    """name -> sha256 of every file directly in ``directory`` (hidden temporaries included)."""
    if not directory.is_dir():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir() if p.is_file()}


def processes_with(token: str) -> list[int]:
    """Pids of live (non-zombie) processes whose environment carries ``KIT_TEST_TOKEN=token``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("KIT_TEST_TOKEN") == token:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def leftovers(build: Path) -> list[str]:
    """Temporaries and staging folders anywhere below ``build``."""
    return sorted(str(p.relative_to(build)) for p in build.rglob("*")
                  if ".staging" in p.parts or p.name.endswith(".tmp") or ".tmp." in p.name)


@pytest.fixture
def sleeping_run(tmp_path):
    """Start `reproduce` on a notebook that sleeps in a pool cell; yields (process, marker, build, token)."""
    nbdir = tmp_path / "notebooks"
    make_notebook(nbdir / "01_sleep.ipynb", "x = 1", SLEEPING_POOL)
    build = tmp_path / "build"
    marker = tmp_path / "pids.json"
    token = uuid.uuid4().hex
    env = dict(os.environ, KIT_TEST_TOKEN=token, KIT_TEST_MARKER=str(marker), PYTHONUNBUFFERED="1")
    env.pop(paths.OUTPUT_ENV_VAR, None)  # the runner must set it for its workers itself
    started = []

    def start(*extra: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "analysis", "reproduce", "--notebooks-dir", str(nbdir), "--build-dir",
             str(build), "--no-html", *extra],
            cwd=paths.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        started.append(proc)
        deadline = time.monotonic() + 120
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before the cell started: {proc.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("the notebook cell did not start within 120 s")
            time.sleep(0.1)
        return proc

    yield start, marker, build, token
    for proc in started:  # never leave anything behind, even when an assertion failed
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in processes_with(token):
        os.kill(pid, signal.SIGKILL)


def wait_exit(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str, float]:
    start = time.monotonic()
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err, time.monotonic() - start


@pytest.mark.parametrize("signum, code", [pytest.param(signal.SIGINT, 130, id="SIGINT"),
                                          pytest.param(signal.SIGTERM, 143, id="SIGTERM")])
def test_signal_stops_the_run_kills_every_process_and_removes_temporaries(sleeping_run, signum, code):
    start, marker, build, token = sleeping_run
    figures_before = snapshot(paths.COMMITTED_FIGURES)
    proc = start()
    pids = json.loads(marker.read_text())
    known = [pid for pid in [pids["kernel"], pids["tracker"], *pids["pool"]] if pid]
    assert len(known) == 4 and all(alive(pid) for pid in known)
    assert processes_with(token), "the token must mark the run's processes"

    # Ctrl-C in a terminal signals the foreground process group: the runner's
    os.killpg(proc.pid, signum)
    returncode, out, err, seconds = wait_exit(proc, timeout=10)
    assert returncode == code, err
    assert seconds < 10
    assert "interrupted" in err and "rerun to finish" in err
    assert "01_sleep.ipynb  interrupted" in out  # the table so far
    time.sleep(0.5)  # orphans are reparented and reaped
    assert [pid for pid in known if alive(pid)] == []
    assert processes_with(token) == []
    assert leftovers(build) == []
    assert not (build / "notebooks").exists(), "no executed copy of an interrupted notebook"
    assert snapshot(paths.COMMITTED_FIGURES) == figures_before


def test_killed_runner_takes_its_kernel_processes_along_and_the_next_run_cleans_up(sleeping_run, tmp_path):
    start, marker, build, token = sleeping_run
    proc = start()
    pids = json.loads(marker.read_text())
    proc.send_signal(signal.SIGKILL)  # only the runner: the worker notices and kills the kernel's group
    proc.wait()
    deadline = time.monotonic() + 10
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(token) == []
    assert not any(alive(pid) for pid in [pids["kernel"], *pids["pool"]])
    assert (build / ".staging").exists(), "SIGKILL leaves the staging folder (nothing can clean it then)"
    stale = build / "notebooks" / ".01_sleep.abc123.tmp.ipynb"  # the old runner's temporaries too
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("{}")

    from analysis import reproduce

    nbdir = tmp_path / "quick-notebooks"
    make_notebook(nbdir / "01_sleep.ipynb", "x = 1")
    results = reproduce.run(nbdir, build, progress=False, html=False)
    assert [r.status for r in results] == ["ok"]
    assert leftovers(build) == []
