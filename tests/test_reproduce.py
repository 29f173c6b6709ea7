"""analysis.reproduce and `python -m analysis reproduce`: parameter checks, failures, quick mode, interrupts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
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

@pytest.mark.notebook
def test_failing_notebook_is_reported_and_the_next_still_runs(capsys, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(out))
    nbdir = tmp_path / "notebooks"
    make_notebook(nbdir / "01_fail.ipynb", "y = 2", "raise ValueError('utilisation must be < 1')", "z = 3")
    make_notebook(nbdir / "02_ok.ipynb", WRITE_RESULTS_AND_FIGURE.format(name="02_ok.ipynb", nn="02"))
    build = tmp_path / "build"
    code, stdout, err = run_cli(capsys, "--notebooks-dir", nbdir, "--build-dir", build, "-p", "rate", "4")
    assert code == 1
    # the failing cell is the 4th of the source notebook (0-based index 3: imports, parameters, y = 2, raise)
    assert "01_fail.ipynb: cell index 3: ValueError: utilisation must be < 1" in err
    assert "02_ok.ipynb" not in err
    table = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[2:]}
    assert table["01_fail.ipynb"][0] == "failed" and table["01_fail.ipynb"][2] == "0"
    assert table["02_ok.ipynb"][0] == "ok" and table["02_ok.ipynb"][2] == "1"

    results = json.loads((out / "results" / "02_ok.json").read_text())
    assert results["rate"] == 4.0 and results["quick"] is False
    assert Path(results["cwd"]) == nbdir.resolve()
    for name in ("01_fail", "02_ok"):
        assert nbformat.read(str(build / "notebooks" / f"{name}.ipynb"), as_version=4).cells
        assert (build / "html" / f"{name}.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert sorted(p.name for p in (build / "notebooks").iterdir()) == ["01_fail.ipynb", "02_ok.ipynb"]
    assert (out / "figures" / "fig-02-line.png").exists()


@pytest.mark.notebook
def test_quick_mode_sets_quick_and_keeps_outputs_under_build_quick(tmp_path, monkeypatch):
    elsewhere = tmp_path / "committed"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(elsewhere))
    nbdir = tmp_path / "notebooks"
    make_notebook(nbdir / "03_ok.ipynb", WRITE_RESULTS_AND_FIGURE.format(name="03_ok.ipynb", nn="03"))
    build = tmp_path / "build"
    results = reproduce.run(nbdir, build, quick=True, parameters=[("seed", "7"), ("label", "q")],
                            progress=False, html=False)
    assert [(r.notebook, r.status, r.figures) for r in results] == [("03_ok.ipynb", "ok", 1)]
    data = json.loads((build / "quick" / "results" / "03_ok.json").read_text())
    assert data["quick"] is True and data["seed"] == 7 and data["label"] == "q" and data["limit"] is None
    assert Path(data["output_dir"]) == (build / "quick").resolve()
    assert (build / "quick" / "figures" / "fig-03-line.svg").exists()
    assert (build / "quick" / "notebooks" / "03_ok.ipynb").exists()
    assert not (build / "notebooks").exists() and not elsewhere.exists()
    assert os.environ[paths.OUTPUT_ENV_VAR] == str(elsewhere), "KIT_OUTPUT_DIR must be restored"


# ------------------------------------------------------------------------------- interruption

def test_interrupt_keeps_previous_executed_notebook_and_leaves_no_partial_file(capsys, nbdir, tmp_path,
                                                                                monkeypatch):
    import papermill

    build = tmp_path / "build"
    previous = build / "notebooks" / "01_first.ipynb"
    previous.parent.mkdir(parents=True)
    previous.write_text('{"complete": "previous run"}')

    def interrupted(input_path, output_path, **kwargs):
        Path(output_path).write_text('{"cells": [ {"truncat')  # papermill writes as cells finish
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    monkeypatch.setattr(reproduce, "check_kernel", lambda name: None)
    code, _, err = run_cli(capsys, "--notebooks-dir", nbdir, "--build-dir", build)
    assert code == 130 and "interrupted" in err
    assert previous.read_text() == '{"complete": "previous run"}'
    assert sorted(p.name for p in previous.parent.iterdir()) == ["01_first.ipynb"]
    assert not (build / "html").exists()


def test_format_table_lists_notebook_status_seconds_figures():
    table = reproduce.format_table([reproduce.NotebookResult("00_foundations.ipynb", "ok", 12.345, 5),
                                    reproduce.NotebookResult("01_x.ipynb", "failed", 1.0, 0, 4, "E: v")])
    lines = table.splitlines()
    assert lines[0].split() == ["notebook", "status", "seconds", "figures"]
    assert lines[2].split() == ["00_foundations.ipynb", "ok", "12.3", "5"]
    assert lines[3].split() == ["01_x.ipynb", "failed", "1.0", "0"]


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
