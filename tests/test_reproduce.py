"""analysis.reproduce and `python -m analysis reproduce`: parameter checks, failures, quick mode, interrupts."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from analysis import paths, reproduce
from analysis.__main__ import main

PARAMETERS = (
    'quick: bool = False  # small sizes for tests\n'
    'seed: int = 1  # base random seed\n'
    'rate: float = 2.0  # arrivals, requests/s\n'
    'label: str = "base"\n'
    'limit: int | None = None  # optional cap\n'
    'data_dir: str = ""  # empty: default lookup'
)


def make_notebook(path: Path, *cells: str, parameters: str | None = PARAMETERS) -> Path:
    """Notebook with an import cell, a tagged parameters cell (if given), then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": paths.KERNEL_NAME, "display_name": "kit", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import os\nimport json")]
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


WRITE_RESULTS_AND_FIGURE = """
import matplotlib
matplotlib.use("Agg")
from analysis import figures
out = figures.NotebookOutputs("{name}", {{"quick": quick, "seed": seed, "rate": rate}}, seed=seed,
                              data_source="synthetic test")
fig, ax = figures.subplots()
ax.plot([0, 1], [0, rate])
figures.label_axes(ax, x="Time", x_unit="s", y="Rate", y_unit="requests/s")
out.save(fig, "fig-{nn}-line", "A line.")
out.write_results({{"quick": quick, "seed": seed, "rate": rate, "label": label, "limit": limit,
                    "cwd": os.getcwd(), "output_dir": os.environ.get("KIT_OUTPUT_DIR", "")}})
"""


@pytest.fixture
def nbdir(tmp_path) -> Path:
    d = tmp_path / "notebooks"
    make_notebook(d / "01_first.ipynb", "x = 1")
    return d


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["reproduce", "--no-progress", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------ parameter checks

def test_parameters_cell_is_parsed_with_types_defaults_and_help(nbdir):
    params = reproduce.notebook_parameters(nbdir / "01_first.ipynb")
    assert list(params) == ["quick", "seed", "rate", "label", "limit", "data_dir"]
    assert params["seed"] == reproduce.NotebookParameter("seed", "int", "1", "base random seed")
    assert params["rate"].base_type == "float" and params["label"].default == "'base'"
    assert params["limit"].base_type == "int" and params["limit"].optional
    assert reproduce.notebook_parameters(make_notebook(nbdir / "02_none.ipynb", parameters=None)) == {}


@pytest.mark.parametrize("name, raw, expected", [
    ("seed", "7", 7), ("seed", "-3", -3), ("rate", "2.5", 2.5), ("rate", "3", 3.0), ("quick", "true", True),
    ("quick", "False", False), ("quick", "1", True), ("quick", "0", False), ("label", "peak hour", "peak hour"),
    ("limit", "none", None), ("limit", "12", 12), ("data_dir", "", ""),
])
def test_values_are_converted_to_the_declared_type(nbdir, name, raw, expected):
    converted = reproduce.validate_parameters([nbdir / "01_first.ipynb"], [(name, raw)])
    value = converted[nbdir / "01_first.ipynb"][name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("name, raw, pattern", [
    ("seed", "abc", "'seed' expects int, got 'abc'"), ("seed", "1.5", "'seed' expects int"),
    ("rate", "fast", "'rate' expects float"), ("rate", "nan", "'rate' expects a finite float"),
    ("quick", "maybe", r"'quick' expects bool \(true/false/1/0\)"), ("limit", "lots", "'limit' expects int"),
])
def test_wrong_type_is_rejected(nbdir, name, raw, pattern):
    with pytest.raises(reproduce.ParameterError, match=pattern):
        reproduce.validate_parameters([nbdir / "01_first.ipynb"], [(name, raw)])


def test_parameter_goes_only_to_notebooks_declaring_it(nbdir):
    other = make_notebook(nbdir / "02_other.ipynb", parameters='seed: int = 1\nhorizon: float = 10.0  # s')
    first = nbdir / "01_first.ipynb"
    converted = reproduce.validate_parameters([first, other], [("horizon", "5"), ("seed", "9")])
    assert converted == {first: {"seed": 9}, other: {"horizon": 5.0, "seed": 9}}


def test_unknown_parameter_is_one_line_error_listing_valid_ones(capsys, nbdir, tmp_path):
    code, out, err = run_cli(capsys, "--notebooks-dir", nbdir, "--build-dir", tmp_path / "build",
                             "-p", "no_such_param", "1")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: unknown parameter 'no_such_param'")
    for listed in ("quick (bool)", "seed (int)", "rate (float)", "label (str)", "data_dir (str)"):
        assert listed in lines[0]
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "build").exists(), "nothing may run before the parameters are validated"


@pytest.mark.parametrize("args, pattern", [
    (["-p", "seed", "abc"], "error: parameter 'seed' expects int, got 'abc'"),
    (["-p", "quick", "yes"], "error: parameter 'quick' expects bool"),
    (["-p", "seed", "1", "-p", "seed", "2"], "error: parameter 'seed' given more than once"),
    (["--only", "99"], "error: no notebooks matching --only '99'"),
])
def test_bad_usage_exits_2_with_one_line(capsys, nbdir, tmp_path, args, pattern):
    code, _, err = run_cli(capsys, "--notebooks-dir", nbdir, "--build-dir", tmp_path / "build", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith(pattern), err
    assert not (tmp_path / "build").exists()


def test_unregistered_kernel_is_a_setup_error(nbdir, tmp_path):
    with pytest.raises(reproduce.SetupError, match="not registered"):
        reproduce.run(nbdir, tmp_path / "build", kernel_name="no-such-kernel-xyz", progress=False)


def test_discover_orders_and_filters(tmp_path):
    for name in ("10_late.ipynb", "02_b.ipynb", "01_a.ipynb", "scratch.ipynb", "1_bad.ipynb"):
        make_notebook(tmp_path / name, "x = 1")
    assert [p.name for p in reproduce.discover(tmp_path)] == ["01_a.ipynb", "02_b.ipynb", "10_late.ipynb"]
    assert [p.name for p in reproduce.discover(tmp_path, ["late", "0[1]_*"])] == ["01_a.ipynb",
                                                                                 "10_late.ipynb"]


def test_real_notebooks_reject_unknown_parameter():
    if not reproduce.discover(paths.NOTEBOOKS):
        pytest.skip("notebooks/ has no NN_*.ipynb notebook yet: nothing to validate parameters against")
    done = subprocess.run([sys.executable, "-m", "analysis", "reproduce", "-p", "no_such_param", "1"],
                          cwd=paths.ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: unknown parameter 'no_such_param'")
    assert len(done.stderr.strip().splitlines()) == 1 and "seed (int)" in done.stderr
    assert done.stdout == ""


# ------------------------------------------------------------------------- execution (kernels)

FAIL_AFTER_FIGURE = WRITE_RESULTS_AND_FIGURE + "\nraise ValueError('utilisation must be < 1')\n"


def table_of(stdout: str) -> dict[str, list[str]]:
    rows = [line.split() for line in stdout.splitlines()]
    start = next(i for i, row in enumerate(rows) if row[:1] == ["notebook"]) + 2
    return {row[0]: row[1:] for row in rows[start:] if row and row[0].endswith(".ipynb")}


@pytest.mark.notebook
def test_failing_notebook_is_reported_and_the_next_still_runs(capsys, tmp_path, monkeypatch):
    elsewhere = tmp_path / "out"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(elsewhere))
    nbdir = tmp_path / "notebooks"
    make_notebook(nbdir / "01_fail.ipynb", "y = 2", "raise ValueError('utilisation must be < 1')", "z = 3")
    make_notebook(nbdir / "02_ok.ipynb", WRITE_RESULTS_AND_FIGURE.format(name="02_ok.ipynb", nn="02"))
    build = tmp_path / "build"
    code, stdout, err = run_cli(capsys, "--notebooks-dir", nbdir, "--build-dir", build, "-p", "rate", "4")
    assert code == 1
    # the failing cell is the 4th of the source notebook (0-based index 3: imports, parameters, y = 2, raise)
    assert "01_fail.ipynb: cell index 3: ValueError: utilisation must be < 1" in err
    assert "02_ok.ipynb" not in err
    table = table_of(stdout)
    assert table["01_fail.ipynb"][0] == "failed" and table["01_fail.ipynb"][3] == "0"
    assert table["02_ok.ipynb"][0] == "ok" and table["02_ok.ipynb"][3] == "1"

    out = build / "runs" / "rate-4"  # a parametrised run keeps its outputs in a folder named after them
    assert f"outputs of this run (figures/ untouched): {out}/" in stdout
    results = json.loads((out / "results" / "02_ok.json").read_text())
    assert results["rate"] == 4.0 and results["quick"] is False
    assert Path(results["cwd"]) == nbdir.resolve()
    assert (out / "notebooks" / "02_ok.ipynb").is_file() and (out / "html" / "02_ok.html").is_file()
    assert (out / "failed" / "01_fail.ipynb").is_file() and (out / "failed" / "01_fail.html").is_file()
    assert not (out / "notebooks" / "01_fail.ipynb").exists()
    assert (out / "html" / "02_ok.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert (out / "figures" / "fig-02-line.png").exists()
    assert set(json.loads((out / "figures" / "index.json").read_text())) == {"fig-02-line"}
    assert not elsewhere.exists(), "the runner gives every notebook its own KIT_OUTPUT_DIR"
    assert not (out / ".staging").exists() and not (out / ".lock").exists()


@pytest.mark.notebook
def test_quick_mode_sets_quick_and_keeps_outputs_under_build_quick(tmp_path, monkeypatch):
    elsewhere = tmp_path / "committed"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(elsewhere))
    nbdir = tmp_path / "notebooks"
    make_notebook(nbdir / "03_ok.ipynb", WRITE_RESULTS_AND_FIGURE.format(name="03_ok.ipynb", nn="03"))
    build = tmp_path / "build"
    results = reproduce.run(nbdir, build, quick=True, progress=False, html=False)
    assert [(r.notebook, r.status, r.figures) for r in results] == [("03_ok.ipynb", "ok", 1)]
    # CPU of the execution (papermill and the kernel, which alone takes a fraction of a second to start)
    assert 0.2 < results[0].cpu_seconds < 60
    data = json.loads((build / "quick" / "results" / "03_ok.json").read_text())
    assert data["quick"] is True and data["seed"] == 1 and data["label"] == "base" and data["limit"] is None
    # the kernel wrote into its staging folder, which is gone once its outputs were moved into place
    assert Path(data["output_dir"]) == (build / "quick" / ".staging" / "03_ok").resolve()
    assert not (build / "quick" / ".staging").exists()
    assert (build / "quick" / "figures" / "fig-03-line.png").exists()
    assert not (build / "quick" / "figures" / "fig-03-line.svg").exists(), "quick runs write PNG previews only"
    assert (build / "quick" / "notebooks" / "03_ok.ipynb").exists()
    assert not (build / "notebooks").exists() and not elsewhere.exists()
    assert os.environ[paths.OUTPUT_ENV_VAR] == str(elsewhere), "KIT_OUTPUT_DIR must be untouched"


class FakeReport:
    def __init__(self, published, kept_back):
        self.published, self.kept_back = published, kept_back


@pytest.mark.notebook
def test_canonical_run_publishes_only_notebooks_that_succeeded(capsys, tmp_path, monkeypatch):
    calls = []

    def publish_notebook(staging, notebook, destination=None):
        if notebook == "03_corrupt.ipynb":
            raise ValueError("figures/index.json: not a valid figure index")
        staging = Path(staging)
        index = json.loads((staging / "figures" / "index.json").read_text())
        calls.append((notebook, sorted(p.name for p in (staging / "figures").glob("fig-*")), sorted(index)))
        return FakeReport(["fig-02-line"], [("fig-02-other", "made from the synthetic default data")])

    fake_module(monkeypatch, "publish", publish_notebook=publish_notebook)
    nbdir = tmp_path / "notebooks"
    make_notebook(nbdir / "01_fail.ipynb", FAIL_AFTER_FIGURE.format(name="01_fail.ipynb", nn="01"))
    make_notebook(nbdir / "02_ok.ipynb", WRITE_RESULTS_AND_FIGURE.format(name="02_ok.ipynb", nn="02"))
    make_notebook(nbdir / "03_corrupt.ipynb", WRITE_RESULTS_AND_FIGURE.format(name="03_corrupt.ipynb", nn="03"))
    build = tmp_path / "build"
    code, stdout, err = run_cli(capsys, "--notebooks-dir", nbdir, "--build-dir", build)
    assert code == 1
    assert ("03_corrupt.ipynb: outside the cells: publishing its figures failed: ValueError: "
            "figures/index.json: not a valid figure index") in err
    # the failing notebook saved a figure before it failed: nothing of it is published
    assert calls == [("02_ok.ipynb", ["fig-02-line.png", "fig-02-line.svg"], ["fig-02-line"])]
    assert "02_ok.ipynb: published to figures/: fig-02-line" in stdout
    assert "02_ok.ipynb: kept back fig-02-other: made from the synthetic default data" in stdout
    assert "outputs of this run" not in stdout
    assert sorted(p.name for p in (build / "results").iterdir()) == ["02_ok.json", "03_corrupt.json"]
    assert not (build / "figures").exists()
    assert (build / "failed" / "01_fail.ipynb").is_file()


@pytest.mark.notebook
def test_failed_rerun_keeps_the_last_good_build_and_files_have_normal_modes(capsys, tmp_path, monkeypatch):
    old_mask = os.umask(0o022)
    try:
        nbdir = tmp_path / "notebooks"
        good = make_notebook(nbdir / "01_x.ipynb", "print('good run')")
        build = tmp_path / "build"
        assert [r.status for r in reproduce.run(nbdir, build, quick=True, progress=False)] == ["ok"]
        out = build / "quick"
        executed, html = out / "notebooks" / "01_x.ipynb", out / "html" / "01_x.html"
        good_bytes = executed.read_bytes(), html.read_bytes()
        for path in (executed, html, out / "results"):
            if path.is_file():
                assert path.stat().st_mode & 0o777 == 0o644, path

        make_notebook(good, "raise RuntimeError('broken')")
        [result] = reproduce.run(nbdir, build, quick=True, progress=False)
        assert result.status == "failed" and result.executed == out / "failed" / "01_x.ipynb"
        assert (executed.read_bytes(), html.read_bytes()) == good_bytes, "the last good build stays"
        assert (out / "failed" / "01_x.html").is_file()
        assert (out / "failed" / "01_x.ipynb").stat().st_mode & 0o777 == 0o644

        make_notebook(good, "print('fixed')")
        assert [r.status for r in reproduce.run(nbdir, build, quick=True, progress=False)] == ["ok"]
        assert sorted(p.name for p in (out / "failed").iterdir()) == [], "a success clears its failure"
    finally:
        os.umask(old_mask)


@pytest.mark.notebook
def test_parallel_run_gives_the_same_bytes_and_order_as_a_serial_run(tmp_path):
    nbdir = tmp_path / "notebooks"
    # no paths in the results: they would differ between the two build folders
    slow = WRITE_RESULTS_AND_FIGURE.replace(
        '"cwd": os.getcwd(), "output_dir": os.environ.get("KIT_OUTPUT_DIR", "")', '"n": 1')
    make_notebook(nbdir / "01_slow.ipynb", "import time; time.sleep(4)",
                  slow.format(name="01_slow.ipynb", nn="01"))
    make_notebook(nbdir / "02_fast.ipynb", slow.format(name="02_fast.ipynb", nn="02"))
    outputs = {}
    for jobs in (1, 2):
        build = tmp_path / f"build-{jobs}"
        start = time.monotonic()
        results = reproduce.run(nbdir, build, parameters=[("seed", "5")], progress=False, html=False, jobs=jobs)
        assert [r.notebook for r in results] == ["01_slow.ipynb", "02_fast.ipynb"]  # notebook order
        assert [r.status for r in results] == ["ok", "ok"]
        out = build / "runs" / "seed-5"
        outputs[jobs] = {str(p.relative_to(out)): p.read_bytes() for sub in ("results", "figures")
                         for p in sorted((out / sub).iterdir())}
        outputs[jobs, "seconds"] = time.monotonic() - start
    assert sorted(outputs[1]) == ["figures/README.md", "figures/fig-01-line.png", "figures/fig-01-line.svg",
                                  "figures/fig-02-line.png", "figures/fig-02-line.svg", "figures/index.json",
                                  "results/01_slow.json", "results/02_fast.json"]
    assert outputs[1] == outputs[2]


@pytest.mark.notebook
def test_a_notebook_reading_the_others_results_runs_after_them_whatever_jobs(tmp_path):
    """A notebook declaring results_dir (09_synthesis) starts only when the others' results are in place."""
    nbdir = tmp_path / "notebooks"
    writer = WRITE_RESULTS_AND_FIGURE.replace(
        '"cwd": os.getcwd(), "output_dir": os.environ.get("KIT_OUTPUT_DIR", "")', '"n": 1')
    make_notebook(nbdir / "00_reader.ipynb",
                  "from pathlib import Path\n"
                  "run = Path(os.environ['KIT_OUTPUT_DIR']).parents[1]  # <out>/.staging/<notebook>\n"
                  "assert Path(results_dir) == run / 'results', (results_dir, run)  # this run's results\n"
                  "found = sorted(p.name for p in Path(results_dir).glob('*.json'))\n"
                  "assert found == ['01_slow.json', '02_fast.json'], found",
                  parameters=PARAMETERS + '\nresults_dir: str = ""  # the others\' results')
    make_notebook(nbdir / "01_slow.ipynb", "import time; time.sleep(3)", writer.format(name="01_slow.ipynb", nn="01"))
    make_notebook(nbdir / "02_fast.ipynb", writer.format(name="02_fast.ipynb", nn="02"))
    assert [reproduce.runs_last(p) for p in sorted(nbdir.iterdir())] == [True, False, False]
    results = reproduce.run(nbdir, tmp_path / "build", parameters=[("seed", "5")], progress=False, html=False,
                            jobs=3)
    assert [(r.notebook, r.status) for r in results] == [
        ("01_slow.ipynb", "ok"), ("02_fast.ipynb", "ok"), ("00_reader.ipynb", "ok")], results[-1].error


def test_a_reader_of_results_is_pointed_at_its_run_only_away_from_its_default(tmp_path):
    reader = make_notebook(tmp_path / "nb" / "09_reader.ipynb", "x = 1",
                           parameters=PARAMETERS + '\nresults_dir: str = ""  # results to read')
    other = make_notebook(tmp_path / "nb" / "01_other.ipynb", "x = 1")

    def injected_for(out_root, quick, given=None):
        injected = {reader: dict(given or {}), other: {}}
        reproduce._point_readers_at_this_run([other, reader], injected, out_root, quick)
        return injected

    assert injected_for(paths.BUILD, False) == {reader: {}, other: {}}            # canonical: default kept
    assert injected_for(paths.BUILD / "quick", True) == {reader: {}, other: {}}   # quick build: its default
    run = tmp_path / "build" / "runs" / "seed-5"
    assert injected_for(run, False) == {reader: {"results_dir": str(run / "results")}, other: {}}
    assert (run / "results").is_dir()
    assert injected_for(run, False, {"results_dir": "/x"})[reader] == {"results_dir": "/x"}


# ------------------------------------------------------------------------ validation before side effects

VALIDATE = """
if seed < 0:
    raise ValueError(f"seed must be >= 0, got {seed}")
if not 0 < rate <= 100:
    raise ValueError(f"rate must be in (0, 100] requests/s, got {rate}")
"""


def make_validated_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.read(str(make_notebook(path, *cells)), as_version=4)
    cell = nbformat.v4.new_code_cell(VALIDATE)
    cell.metadata["tags"] = ["validate"]
    nb.cells.insert(2, cell)
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("args, message", [
    (["-p", "seed", "-1"], "error: 01_v.ipynb: invalid parameters (ValueError: seed must be >= 0, got -1)"),
    (["-p", "rate", "500"], "error: 01_v.ipynb: invalid parameters (ValueError: rate must be in (0, 100] "
                            "requests/s, got 500.0)"),
])
def test_validate_cell_rejects_out_of_range_values_before_anything_is_written(capsys, tmp_path, args, message):
    nbdir = tmp_path / "notebooks"
    make_validated_notebook(nbdir / "01_v.ipynb", "open('side-effect', 'w').close()")
    build = tmp_path / "build"
    figures_before = {p.name: p.stat().st_mtime_ns for p in paths.COMMITTED_FIGURES.iterdir()}
    code, out, err = run_cli(capsys, "--notebooks-dir", nbdir, "--build-dir", build, *args)
    assert (code, out) == (2, "")
    assert err.strip() == message
    assert not build.exists() and not (nbdir / "side-effect").exists()
    assert {p.name: p.stat().st_mtime_ns for p in paths.COMMITTED_FIGURES.iterdir()} == figures_before


def test_validate_cell_accepts_values_in_range(tmp_path):
    nb = make_validated_notebook(tmp_path / "01_v.ipynb")
    reproduce.preflight([nb], {nb: {"seed": 0, "rate": 100.0}})  # no error
    reproduce.preflight([nb], {nb: {}})  # nothing given: nothing to check


def test_validate_cell_that_needs_other_cells_is_named(tmp_path):
    nb = make_notebook(tmp_path / "01_v.ipynb")
    raw = json.loads(nb.read_text())
    raw["cells"].insert(2, {"cell_type": "code", "metadata": {"tags": ["validate"]}, "outputs": [],
                            "execution_count": None, "source": "if np.isnan(rate):\n    raise ValueError"})
    nb.write_text(json.dumps(raw))
    with pytest.raises(reproduce.ParameterError, match=r"^01_v.ipynb: its 'validate' cell must use only the "
                       r"parameters and its own imports \(NameError: name 'np' is not defined\)"):
        reproduce.preflight([nb], {nb: {"rate": 1.0}})


def test_real_notebooks_reject_a_negative_seed_before_any_output():
    notebooks = [nb for nb in reproduce.discover(paths.NOTEBOOKS)
                 if reproduce.tagged_cell(reproduce.read_notebook_json(nb), "validate")[1] is not None]
    if not notebooks:
        pytest.skip("no notebook in notebooks/ has a cell tagged 'validate' yet")
    watched = [paths.COMMITTED_FIGURES, paths.BUILD / "results", paths.BUILD / "notebooks"]
    before = {d: sorted((p.name, p.stat().st_mtime_ns) for p in d.iterdir()) if d.is_dir() else None
              for d in watched}
    for nb in notebooks:
        done = subprocess.run([sys.executable, "-m", "analysis", "reproduce", "--only", nb.name,
                               "-p", "seed", "-1"], cwd=paths.ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: {nb.name}: invalid parameters") and "seed" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
    after = {d: sorted((p.name, p.stat().st_mtime_ns) for p in d.iterdir()) if d.is_dir() else None
             for d in watched}
    assert after == before


def test_parameter_check_reads_json_without_importing_nbformat(nbdir):
    code = ("import sys, time; t = time.perf_counter(); from analysis import reproduce; "
            f"reproduce.validate_parameters([__import__('pathlib').Path({str(nbdir / '01_first.ipynb')!r})], "
            "[('seed', '3')]); print(time.perf_counter() - t, 'nbformat' in sys.modules, "
            "'jsonschema' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    seconds, nbformat_loaded, jsonschema_loaded = done.stdout.split()
    assert (nbformat_loaded, jsonschema_loaded) == ("False", "False")


# --------------------------------------------------------------------------- locks and leftovers

def test_second_run_on_the_same_output_folder_is_refused(capsys, nbdir, tmp_path):
    build = tmp_path / "build"
    with reproduce.OutputLock(build / "quick"):
        code, out, err = run_cli(capsys, "--notebooks-dir", nbdir, "--build-dir", build, "--quick")
    assert code == 2 and out == ""
    assert err.startswith(f"error: another `python -m analysis reproduce` run (pid {os.getpid()}, started ")
    assert f"is writing to {build / 'quick'}; wait for it to finish or stop it" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (build / "quick").iterdir()) == [], "the lock is released and removed"


def test_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "started": "yesterday", "argv": []}))
    with reproduce.OutputLock(folder):
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
    assert not (folder / ".lock").exists()


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
    out = tmp_path / "build"
    stale = [out / ".staging" / "01_x" / "figures" / "fig-01-a.png", out / "notebooks" / ".01_x.k2j3.tmp.ipynb",
             out / "figures" / ".fig-01-a.svg.abcd.tmp", out / "results" / ".01_x.json.ab12.tmp"]
    kept = [out / "notebooks" / "01_x.ipynb", out / "figures" / "fig-01-a.svg", out / "results" / "01_x.json"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    reproduce.remove_stale_temporaries([out])
    assert [p for p in stale if p.exists()] == [] and not (out / ".staging").exists()
    assert all(p.exists() for p in kept)


def test_index_is_checked_against_the_figure_files(tmp_path):
    import hashlib

    good, bad = b"png bytes", b"svg bytes"
    (tmp_path / "fig-01-a.png").write_bytes(good)
    (tmp_path / "fig-01-a.svg").write_bytes(b"half-written svg")
    (tmp_path / "fig-01-orphan.png").write_bytes(b"x")
    index = {"fig-01-a": {"files": {"png": {"path": "fig-01-a.png", "sha256": hashlib.sha256(good).hexdigest()},
                                    "svg": {"path": "fig-01-a.svg", "sha256": hashlib.sha256(bad).hexdigest()}}},
             "fig-01-gone": {"files": {"png": {"path": "fig-01-gone.png", "sha256": "0" * 64}}}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert reproduce.check_index(tmp_path) == [
        f"{tmp_path / 'fig-01-a.svg'}: sha256 differs from index.json (a run killed while saving?)",
        f"{tmp_path / 'fig-01-gone.png'}: listed for fig-01-gone in index.json but missing",
        f"{tmp_path / 'fig-01-orphan.png'}: not listed in index.json"]
    (tmp_path / "index.json").write_text("{broken")
    assert reproduce.check_index(tmp_path)[0].startswith(f"{tmp_path / 'index.json'}: not a valid figure index")


def test_committed_index_matches_the_committed_figures():
    assert reproduce.check_index(paths.COMMITTED_FIGURES) == []


# ------------------------------------------------------------------------------------ progress

@pytest.mark.notebook
def test_progress_on_a_non_terminal_is_plain_lines_with_cell_counts(capsys, nbdir, tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "PROGRESS_INTERVAL_S", 0.0)
    make_notebook(nbdir / "01_first.ipynb", "import time; time.sleep(1.5)", "x = 2")
    code = main(["reproduce", "--notebooks-dir", str(nbdir), "--build-dir", str(tmp_path / "b"), "--quick",
                 "--no-html"])
    err = capsys.readouterr().err
    assert code == 0
    assert "\r" not in err and "\x1b" not in err, "no progress-bar frames on a non-terminal"
    lines = err.splitlines()
    assert lines[0] == "running 01_first.ipynb"
    assert any(re.fullmatch(r"01_first\.ipynb: cell [1-5]/5 \(\d+ s\)", line) for line in lines), err
    assert re.fullmatch(r"01_first\.ipynb: ok in [\d.]+ s \([\d.]+ CPU-s\), 0 figure\(s\)", lines[-1])


def test_progress_on_a_terminal_is_one_rewritten_status_line():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = reproduce._Progress(True, stream)
    job = reproduce._Job(0, Path("05_x.ipynb"), {}, Path("/nonexistent"), started=100.0, cell=(12, 40))
    progress.running([job], now=130.0)
    progress.line("01_a.ipynb: ok in 3.0 s, 1 figure(s)")
    progress.close()
    assert stream.getvalue() == ("\r\x1b[Krunning 05_x: cell 12/40 30 s"
                                 "\r\x1b[K01_a.ipynb: ok in 3.0 s, 1 figure(s)\nrunning 05_x: cell 12/40 30 s"
                                 "\r\x1b[K")


# ------------------------------------------------------------------------------------ paths

def test_notebooks_outside_the_runner_write_under_build_never_figures(monkeypatch):
    monkeypatch.delenv(paths.OUTPUT_ENV_VAR)
    assert paths.figures_dir() == paths.BUILD / "interactive" / "figures"
    assert paths.results_dir() == paths.BUILD / "interactive" / "results"
    for directory in (paths.figures_dir(), paths.results_dir()):
        assert directory != paths.COMMITTED_FIGURES and paths.COMMITTED_FIGURES not in directory.parents


def test_output_folder_names_a_parametrised_run(tmp_path):
    assert reproduce.output_root(tmp_path, False, []) == tmp_path
    assert reproduce.output_root(tmp_path, True, []) == tmp_path / "quick"
    assert reproduce.output_root(tmp_path, False, [("seed", "7"), ("replications", "20")]) == (
        tmp_path / "runs" / "seed-7_replications-20")
    assert reproduce.output_root(tmp_path, True, [("data_dir", "/x/y z")]) == (
        tmp_path / "runs" / "quick_data_dir-_x_y_z")


def test_missing_parameter_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "-p", "seed"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("error: -p needs a NAME and a VALUE, e.g. -p seed 7 "
                   "(see `python -m analysis reproduce --help`)\n")


def test_format_table_lists_notebook_status_seconds_cpu_figures():
    table = reproduce.format_table([reproduce.NotebookResult("00_foundations.ipynb", "ok", 12.345, 5,
                                                             cpu_seconds=7.25),
                                    reproduce.NotebookResult("01_x.ipynb", "failed", 1.0, 0, 4, "E: v")])
    lines = table.splitlines()
    assert lines[0].split() == ["notebook", "status", "seconds", "CPU-s", "figures"]
    assert lines[2].split() == ["00_foundations.ipynb", "ok", "12.3", "7.2", "5"]
    assert lines[3].split() == ["01_x.ipynb", "failed", "1.0", "-", "0"]


# ---------------------------------------------------------------------------- other subcommands

def fake_module(monkeypatch, name: str, **functions):
    """Stand-in for analysis.<name> (written by another developer): records how the CLI calls it."""
    import types

    import analysis

    module = types.ModuleType(f"analysis.{name}")
    for attr, func in functions.items():
        setattr(module, attr, func)
    monkeypatch.setitem(sys.modules, f"analysis.{name}", module)
    monkeypatch.setattr(analysis, name, module, raising=False)
    return module


def test_data_command_delegates_to_datasets_fetch(capsys, monkeypatch):
    import pandas as pd

    calls = []

    def fetch(best_effort=False):
        calls.append(best_effort)
        return pd.DataFrame({"name": ["ecommerce-api-rps"], "status": ["present"], "path": ["x.csv"]})

    fake_module(monkeypatch, "datasets", fetch=fetch)
    assert main(["data", "--best-effort"]) == 0
    assert main(["data"]) == 0
    assert calls == [True, False]
    assert "ecommerce-api-rps" in capsys.readouterr().out


def test_data_command_reports_a_bad_download_in_one_line(capsys, monkeypatch):
    def fetch(best_effort=False):
        raise ValueError("api-01.csv: sha256 mismatch, file removed")

    fake_module(monkeypatch, "datasets", fetch=fetch)
    assert main(["data"]) == 1
    err = capsys.readouterr().err
    assert err == "error: api-01.csv: sha256 mismatch, file removed\n"


def test_synthetic_command_delegates_to_workloads(capsys, monkeypatch, tmp_path):
    written = [tmp_path / "ecommerce_demand.csv", tmp_path / "SHA256SUMS"]
    fake_module(monkeypatch, "workloads", write_synthetic_defaults=lambda: written)
    assert main(["synthetic"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(p) for p in written]


def test_html_export_is_delegated_to_html_report(monkeypatch, tmp_path):
    calls = []
    fake_module(monkeypatch, "html_report", export_html=lambda executed, target: calls.append((executed, target)))
    reproduce.export_html(tmp_path / "01_x.ipynb", tmp_path / "01_x.html")
    assert calls == [(tmp_path / "01_x.ipynb", tmp_path / "01_x.html")]


def test_without_the_publish_module_nothing_is_published_and_the_run_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "analysis.publish", None)  # import fails as if not merged yet
    job = reproduce._Job(0, Path("01_x.ipynb"), {}, tmp_path)
    result = reproduce.NotebookResult("01_x.ipynb", "ok", 1.0, 1, figure_ids=["fig-01-a"])
    reproduce._publish(job, result)
    assert result.published == [] and result.kept_back == [
        ("fig-01-a", "analysis.publish is not available: nothing written to figures/")]
    assert reproduce.outputs_summary([result]) == [
        "01_x.ipynb: kept back fig-01-a: analysis.publish is not available: nothing written to figures/"]


def test_summary_names_figures_a_canonical_run_reproduced_to_the_byte():
    from analysis.reproduce import NotebookResult, outputs_summary

    r = NotebookResult("00_x.ipynb", "ok", 1.0)
    r.published, r.unchanged = ["fig-00-a"], ["fig-00-b", "fig-00-c"]
    lines = outputs_summary([r])
    assert "00_x.ipynb: published to figures/: fig-00-a" in lines
    assert "00_x.ipynb: reproduced to the byte, figures/ left as it was: fig-00-b, fig-00-c" in lines


def test_notebook_00_rejects_an_unreachable_p99_target_up_front():
    # below the service time's own p99 (ln(100) x its mean) no utilisation meets the target: a one-line error
    nb = paths.NOTEBOOKS / "00_foundations.ipynb"
    with pytest.raises(reproduce.ParameterError, match=r"p99_target_x must exceed ln\(100\) = 4.61.*got 3.0"):
        reproduce.preflight([nb], {nb: {"p99_target_x": 3.0}})
    reproduce.preflight([nb], {nb: {"p99_target_x": 5.0}})
