"""Every notebook in notebooks/: parameters cell, clean source, runs in quick mode; committed figures are fresh.

Parametrized over what is in notebooks/ and figures/index.json, so each notebook and each figure is its own
test id (``-k 00_foundations``, ``-k fig-00-knee``).
"""
from __future__ import annotations

import ast
import json

import nbformat
import pytest

from analysis import figures, paths, reproduce
from analysis.provenance import notebook_sha256, sha256_file

REBUILD = "make reproduce"
NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))
NOTEBOOK_PARAMS = [pytest.param(p, id=p.name) for p in NOTEBOOKS] or [
    pytest.param(None, marks=pytest.mark.skip(reason="notebooks/ has no .ipynb file yet"), id="no-notebooks")]
REQUIRED = {"quick": "bool", "seed": "int", "data_dir": "str"}


def _committed_index() -> tuple[dict, str | None]:
    try:
        return figures.load_index(paths.COMMITTED_FIGURES), None
    except ValueError as exc:
        return {}, str(exc)


INDEX, INDEX_ERROR = _committed_index()
FIGURE_PARAMS = [pytest.param(fig_id, id=fig_id) for fig_id in INDEX] or [
    pytest.param(None, marks=pytest.mark.skip(reason="figures/index.json lists no figure yet"), id="no-figures")]


@pytest.mark.parametrize("notebook", NOTEBOOK_PARAMS)
def test_parameters_cell_declares_quick_seed_data_dir(notebook):
    assert figures.NOTEBOOK_PATTERN.match(notebook.name), (
        f"{notebook.name}: name it NN_short_name.ipynb so `make reproduce` runs it in order")
    nb = nbformat.read(str(notebook), as_version=4)
    index, cell = reproduce.parameters_cell(nb)
    assert cell is not None, f"{notebook.name}: no cell tagged 'parameters'"
    assert cell.cell_type == "code"
    params = reproduce.notebook_parameters(notebook)
    for name, type_name in REQUIRED.items():
        assert name in params, f"{notebook.name}: parameters cell lacks `{name}: {type_name} = ...`"
        assert params[name].type_name == type_name, (
            f"{notebook.name}: `{name}` is annotated {params[name].type_name!r}, expected {type_name!r}")
    for param in params.values():
        assert param.type_name != "None", f"{notebook.name}: parameter {param.name!r} has no type annotation"
        try:
            ast.literal_eval(param.default)
        except (ValueError, SyntaxError):
            pytest.fail(f"{notebook.name}: parameter {param.name!r} = {param.default} is not a literal "
                        "(derive values in the next cell: papermill does not recompute them)")


@pytest.mark.parametrize("notebook", NOTEBOOK_PARAMS)
def test_papermill_sees_every_parameter(notebook):
    # `papermill --help-notebook` and papermill's "Passed unknown parameter" check parse the cell themselves;
    # a line with a second "=" (e.g. in its comment) hides that parameter from them
    from papermill.inspection import inspect_notebook

    ours = set(reproduce.notebook_parameters(notebook))
    theirs = set(inspect_notebook(str(notebook)))
    assert ours == theirs, (f"{notebook.name}: papermill does not see {sorted(ours - theirs)}; keep '=' out of "
                            "those lines' comments")

@pytest.mark.parametrize("notebook", NOTEBOOK_PARAMS)
def test_source_notebook_has_no_outputs_and_uses_the_kit_kernel(notebook):
    nb = nbformat.read(str(notebook), as_version=4)
    stored = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not stored, (f"{notebook.name}: cells {stored} have stored outputs or execution counts; clear them "
                        "(e.g. `jupyter nbconvert --clear-output --inplace`) before committing")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    assert kernel == paths.KERNEL_NAME, (
        f"{notebook.name}: kernelspec is {kernel!r}; select the {paths.KERNEL_NAME!r} kernel in JupyterLab")


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOK_PARAMS)
def test_notebook_runs_in_quick_mode_and_writes_results(notebook, tmp_path, monkeypatch):
    import papermill as pm

    if reproduce.runs_last(notebook):
        pytest.skip(f"{notebook.name} reads the other notebooks' results: tests/test_synthesis.py runs it on "
                    "prepared results")

    out = tmp_path / "out"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(out))
    pm.execute_notebook(str(notebook), str(tmp_path / notebook.name), parameters={"quick": True},
                        kernel_name=paths.KERNEL_NAME, cwd=str(paths.NOTEBOOKS), progress_bar=False,
                        log_output=False)
    results_file = out / "results" / f"{notebook.stem}.json"
    assert results_file.is_file(), (
        f"{notebook.name} did not write {results_file.name} (call NotebookOutputs.write_results)")
    results = json.loads(results_file.read_text())
    assert results["provenance"]["notebook"] == notebook.name
    assert results["provenance"]["parameters"].get("quick") is True, (
        f"{notebook.name}: pass the parameters (including quick) to NotebookOutputs")
    index = figures.load_index(out / "figures")
    number = notebook.name[:2]
    for fig_id, entry in index.items():
        assert fig_id.startswith(f"fig-{number}-")
        assert sorted(entry["files"]) == ["png"], f"{fig_id}: a quick run writes the PNG preview only"
        assert not (out / "figures" / f"{fig_id}.svg").exists()
        for fmt in entry["files"]:
            assert sha256_file(out / "figures" / entry["files"][fmt]["path"]) == entry["files"][fmt]["sha256"]


def test_committed_index_is_readable():
    assert INDEX_ERROR is None, INDEX_ERROR


@pytest.mark.parametrize("fig_id", FIGURE_PARAMS)
def test_figure_is_not_stale(fig_id):
    entry = INDEX[fig_id]
    notebook = paths.ROOT / entry["notebook"]
    assert notebook.is_file(), (f"{fig_id} was drawn by {entry['notebook']}, which no longer exists: remove the "
                                f"figure from figures/ or rebuild with `{REBUILD}`")
    current = notebook_sha256(notebook)  # as git stores it: autosaved outputs do not count
    assert current == entry["notebook_sha256"], (
        f"{fig_id} is stale: {entry['notebook']} changed since the figure was drawn (recorded sha256 "
        f"{entry['notebook_sha256'][:12]}, now {current[:12]}); rebuild with `{REBUILD}`")


@pytest.mark.parametrize("fig_id", FIGURE_PARAMS)
def test_figure_files_match_the_index(fig_id):
    for fmt in ("png", "svg"):
        record = INDEX[fig_id]["files"][fmt]
        path = paths.COMMITTED_FIGURES / record["path"]
        assert path.is_file(), f"{fig_id}: {path.name} is missing; rebuild with `{REBUILD}`"
        assert sha256_file(path) == record["sha256"], (
            f"{fig_id}: {path.name} does not match its sha256 in figures/index.json; rebuild with `{REBUILD}`")


def test_every_figure_file_is_indexed():
    on_disk = {p.stem for p in paths.COMMITTED_FIGURES.glob("fig-*") if p.suffix in (".png", ".svg")}
    unindexed = sorted(on_disk - set(INDEX))
    assert not unindexed, f"figures without provenance in figures/index.json: {unindexed}; rebuild with `{REBUILD}`"


def _run_stopped_by_empty_data_dir(name: str, tmp_path, monkeypatch):
    """Run notebook ``name`` in quick mode with an empty ``data_dir``; returns (the papermill error, the empty
    folder, the output folder) after checking it stopped."""
    import papermill as pm

    notebook = paths.NOTEBOOKS / name
    if not notebook.is_file():
        pytest.skip(f"{name} is not in notebooks/")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(out))
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(notebook), str(tmp_path / notebook.name),
                            parameters={"quick": True, "data_dir": str(empty)}, kernel_name=paths.KERNEL_NAME,
                            cwd=str(paths.NOTEBOOKS), progress_bar=False, log_output=False)
    return info.value, empty, out


@pytest.mark.notebook
def test_named_data_dir_without_the_data_stops_the_notebook(tmp_path, monkeypatch):
    """An explicit data_dir that lacks the dataset is an error naming the expected file, not synthetic data."""
    from analysis import datasets

    error, empty, out = _run_stopped_by_empty_data_dir("05_cost_autoscaling.ipynb", tmp_path, monkeypatch)
    assert error.ename == "FileNotFoundError"
    assert str(empty / datasets.get("ecommerce-api-rps").relpath) in error.evalue
    assert not list(out.glob("figures/*.png")), "no figure may be drawn from a replaced dataset"


@pytest.mark.notebook
def test_07_runs_on_the_synthetic_nab_corpus_without_real_data(no_real_data, tmp_path, monkeypatch):
    """Without NAB data (fresh machine) notebook 07 scores the kit's detectors on the synthetic corpus, skips
    the parts that need numenta's published detections or the real AWS series, and labels everything synthetic."""
    import papermill as pm

    if (paths.ROOT / "data" / "external" / "nab").is_dir():
        pytest.skip("data/external/nab exists: the notebook's kernel would find the real corpus")
    notebook = paths.NOTEBOOKS / "07_observability_alerting.ipynb"
    out = tmp_path / "out"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(out))
    pm.execute_notebook(str(notebook), str(tmp_path / notebook.name), parameters={"quick": True},
                        kernel_name=paths.KERNEL_NAME, cwd=str(paths.NOTEBOOKS), progress_bar=False,
                        log_output=False)
    results = json.loads((out / "results" / "07_observability_alerting.json").read_text())
    assert results["nab_corpus"].startswith("synthetic") and results["data_source"].startswith("synthetic")
    assert results["numenta_rescoring"].startswith("skipped") and results["alert_fatigue"].startswith("skipped")
    assert results["aggregation_interval"].startswith("skipped")
    assert "numenta (rescored, swept)" not in results["nab_scores"]
    assert set(results["nab_scores"]) == {"rolling Gaussian", "STL residual", "STL residual (robust z, uncalibrated)",
                                          "STL residual (sd scale)"}
    assert results["slo_burn_rate"]["real"] is False and results["slo_burn_rate"]["data"].startswith("synthetic")
    one_minute = results["aggregation_interval_1min"]   # on the committed synthetic 1-min default
    assert one_minute["real_background"] is False and one_minute["data"].startswith("synthetic default")
    assert results["headline"]["figure"] == "fig-07-burn-rate"
    index = figures.load_index(out / "figures")
    assert "fig-07-nab-scoreboard" in index and "fig-07-alert-fatigue" not in index
    for fig_id, entry in index.items():
        assert "synthetic" in entry["caption"], fig_id


@pytest.mark.notebook
def test_07_named_data_dir_without_nab_stops_the_notebook(tmp_path, monkeypatch):
    error, _, out = _run_stopped_by_empty_data_dir("07_observability_alerting.ipynb", tmp_path, monkeypatch)
    assert error.ename == "FileNotFoundError" and "no NAB corpus" in error.evalue
    assert not list(out.glob("figures/*.png"))
