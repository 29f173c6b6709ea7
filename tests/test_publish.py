"""analysis.publish: only canonical figures reach figures/; committed notebooks are clean in git itself."""
from __future__ import annotations

import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from analysis import figures, paths, provenance  # noqa: E402
from analysis.figures import NotebookOutputs  # noqa: E402
from analysis.publish import PublishReport, publish_notebook  # noqa: E402

NOTEBOOK = "07_demo.ipynb"
DEFAULTS = "quick: bool = False\nseed: int = 3\n"
REAL = "real: test trace (MIT)"
SYNTHETIC = "synthetic default: data/synthetic/trace.csv (no real data found)"


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture
def notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(DEFAULTS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    path = tmp_path / NOTEBOOK
    nbformat.write(nb, str(path))
    return path


def tiny_figure(level: float = 1.0):
    fig, ax = figures.subplots()
    ax.plot([0, 1, 2], [0, level, 2 * level])
    figures.label_axes(ax, x="Time", x_unit="s", y="Rate", y_unit="requests/s")
    return fig


def stage(tmp_path, monkeypatch, notebook, name: str, figs: dict[str, float], *, data_source=REAL,
          parameters=None, per_figure=None):
    """A run's staging folder (KIT_OUTPUT_DIR) with the given figures saved by NotebookOutputs."""
    staging = tmp_path / name
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(staging))
    out = NotebookOutputs(notebook, parameters if parameters is not None else {"quick": False, "seed": 3},
                          seed=3, data_source=data_source)
    for fig_id, level in figs.items():
        out.save(tiny_figure(level), fig_id, f"Caption of {fig_id}.",
                 data_source=(per_figure or {}).get(fig_id))
    return staging


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


def test_canonical_figures_are_copied_indexed_and_listed_in_the_gallery(tmp_path, monkeypatch, notebook):
    staging = stage(tmp_path, monkeypatch, notebook, "run1", {"fig-07-a": 1.0, "fig-07-b": 2.0})
    dest = tmp_path / "figures"
    report = publish_notebook(staging, NOTEBOOK, dest)
    assert report == PublishReport(published=["fig-07-a", "fig-07-b"], kept_back=[], dropped=[])
    assert listing(dest) == ["README.md", "fig-07-a.png", "fig-07-a.svg", "fig-07-b.png", "fig-07-b.svg",
                             "index.json"]
    for fmt in ("png", "svg"):
        assert (dest / f"fig-07-a.{fmt}").read_bytes() == (staging / "figures" / f"fig-07-a.{fmt}").read_bytes()
    index = figures.load_index(dest)
    assert index == figures.load_index(staging / "figures")
    gallery = (dest / "README.md").read_text()
    assert f"`{index['fig-07-a']['cite']}`" in gallery and 'src="fig-07-b.png"' in gallery
    assert not [p for p in dest.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_merge_keeps_other_notebooks_and_drops_figures_no_longer_produced(tmp_path, monkeypatch, notebook):
    dest = tmp_path / "figures"
    publish_notebook(stage(tmp_path, monkeypatch, notebook, "run1", {"fig-07-a": 1.0, "fig-07-old": 2.0}),
                     NOTEBOOK, dest)
    other = tmp_path / "03_other.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), str(other))
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(tmp_path / "run-other"))
    NotebookOutputs(other, {}, None, "no dataset: theory").save(tiny_figure(), "fig-03-x", "Other notebook.")
    publish_notebook(tmp_path / "run-other", "03_other.ipynb", dest)

    report = publish_notebook(stage(tmp_path, monkeypatch, notebook, "run2", {"fig-07-a": 5.0}), NOTEBOOK, dest)
    assert report.published == ["fig-07-a"] and report.dropped == ["fig-07-old"] and report.kept_back == []
    assert list(figures.load_index(dest)) == ["fig-03-x", "fig-07-a"]
    assert not (dest / "fig-07-old.png").exists() and not (dest / "fig-07-old.svg").exists()
    assert (dest / "fig-03-x.png").exists()
    assert "fig-07-old" not in (dest / "README.md").read_text()


def test_synthetic_or_non_default_figures_are_kept_back_and_the_published_ones_untouched(
        tmp_path, monkeypatch, notebook):
    dest = tmp_path / "figures"
    publish_notebook(stage(tmp_path, monkeypatch, notebook, "run1", {"fig-07-a": 1.0, "fig-07-b": 1.0}),
                     NOTEBOOK, dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    synthetic = stage(tmp_path, monkeypatch, notebook, "run-syn", {"fig-07-a": 3.0, "fig-07-b": 3.0},
                      data_source=SYNTHETIC)
    report = publish_notebook(synthetic, NOTEBOOK, dest)
    assert report.published == [] and report.dropped == []
    assert [fig_id for fig_id, _ in report.kept_back] == ["fig-07-a", "fig-07-b"]
    assert all("synthetic" in reason for _, reason in report.kept_back)

    changed = stage(tmp_path, monkeypatch, notebook, "run-seed", {"fig-07-a": 3.0, "fig-07-b": 3.0},
                    parameters={"quick": True, "seed": 7})
    report = publish_notebook(changed, NOTEBOOK, dest)
    assert report.published == []
    reason = dict(report.kept_back)["fig-07-a"]
    assert "non-default parameters" in reason and "seed=7 (default 3)" in reason and "quick=True" in reason
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before, "kept-back figures change nothing"
    assert any("kept back fig-07-a" in line for line in report.lines())


def test_per_figure_data_source_decides_for_that_figure(tmp_path, monkeypatch, notebook):
    staging = stage(tmp_path, monkeypatch, notebook, "run1", {"fig-07-real": 1.0, "fig-07-usl": 2.0},
                    data_source=SYNTHETIC, per_figure={"fig-07-usl": "measured: usl package reference data"})
    report = publish_notebook(staging, NOTEBOOK, tmp_path / "figures")
    assert report.published == ["fig-07-usl"] and [f for f, _ in report.kept_back] == ["fig-07-real"]


def test_tampered_or_missing_staged_files_are_kept_back(tmp_path, monkeypatch, notebook):
    staging = stage(tmp_path, monkeypatch, notebook, "run1", {"fig-07-a": 1.0, "fig-07-b": 2.0})
    (staging / "figures" / "fig-07-a.svg").write_text("<svg/>")
    (staging / "figures" / "fig-07-b.png").unlink()
    dest = tmp_path / "figures"
    report = publish_notebook(staging, NOTEBOOK, dest)
    reasons = dict(report.kept_back)
    assert report.published == [] and "sha256" in reasons["fig-07-a"] and "missing" in reasons["fig-07-b"]
    assert not dest.exists() or listing(dest) == []


def test_bad_arguments_and_corrupt_destination_index(tmp_path, monkeypatch, notebook):
    with pytest.raises(ValueError, match="staging="):
        publish_notebook(tmp_path / "nowhere", NOTEBOOK, tmp_path / "figures")
    staging = stage(tmp_path, monkeypatch, notebook, "run1", {"fig-07-a": 1.0})
    with pytest.raises(ValueError, match="notebook="):
        publish_notebook(staging, "demo.ipynb", tmp_path / "figures")
    dest = tmp_path / "figures"
    dest.mkdir()
    (dest / "index.json").write_text("{broken")
    with pytest.raises(ValueError, match="index.json"):
        publish_notebook(staging, NOTEBOOK, dest)
    assert listing(dest) == ["index.json"]


def test_a_notebook_that_produced_no_figure_drops_its_entries(tmp_path, monkeypatch, notebook):
    dest = tmp_path / "figures"
    publish_notebook(stage(tmp_path, monkeypatch, notebook, "run1", {"fig-07-a": 1.0}), NOTEBOOK, dest)
    empty = tmp_path / "run-empty"
    empty.mkdir()
    report = publish_notebook(empty, NOTEBOOK, dest)
    assert report.dropped == ["fig-07-a"] and figures.load_index(dest) == {}


# ------------------------------------------------------------------------- notebooks as git has them

COMMITTED = sorted(p.name for p in paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _git_show(name: str) -> bytes | None:
    done = subprocess.run(["git", "-C", str(paths.ROOT), "show", f"HEAD:notebooks/{name}"], capture_output=True)
    return done.stdout if done.returncode == 0 else None


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_notebook_has_no_outputs_and_the_kernel_metadata(name):
    """What git has at HEAD (not the working file, which JupyterLab may have autosaved)."""
    blob = _git_show(name)
    if blob is None:
        pytest.skip(f"notebooks/{name} is not committed yet (or this is not a git checkout)")
    nb = json.loads(blob)
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert dirty == [], f"{name}: cells {dirty} were committed with outputs; run `make setup` (nbstripout filter)"
    kernelspec = nb["metadata"].get("kernelspec", {})
    assert kernelspec == {"display_name": "Python (cloud-scalability-kit)", "language": "python",
                          "name": paths.KERNEL_NAME}
    language = nb["metadata"].get("language_info", {})
    expected = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                "pygments_lexer": "ipython3"}
    assert language == expected, (f"{name}: language_info should be what the kernel writes (minus the "
                                  "interpreter version, which the filter strips), so opening it changes nothing")
    assert blob == provenance.stripped_notebook_bytes(blob), f"{name}: committed without the nbstripout filter"


def test_jupyterlab_saves_source_notebooks_as_git_stores_them(tmp_path, monkeypatch):
    """The save hook `make setup` registers: outputs stay in the browser, the file stays as committed."""
    from jupyter_server.services.contents.largefilemanager import LargeFileManager
    from traitlets.config import Config

    config_file = provenance.install_jupyter_save_hook(tmp_path / "venv")
    assert config_file.name == "jupyter_server_config.json"
    root = tmp_path / "kit"
    (root / "notebooks").mkdir(parents=True)
    (root / "build").mkdir()
    monkeypatch.setattr(paths, "NOTEBOOKS", root / "notebooks")
    source = paths.ROOT / "notebooks" / COMMITTED[0] if COMMITTED else None
    if source is None:
        pytest.skip("no notebook in notebooks/")
    committed = source.read_bytes()
    manager = LargeFileManager(root_dir=str(root), config=Config(json.loads(config_file.read_text())))
    for folder in ("notebooks", "build"):
        nb = nbformat.reads(committed.decode(), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.execution_count = 5
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
        nb.metadata.setdefault("language_info", {})["version"] = "3.12.4"  # what the kernel adds on open
        manager.save({"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))},
                     f"{folder}/{source.name}")
    assert (root / "notebooks" / source.name).read_bytes() == provenance.stripped_notebook(source)
    assert b'"ran' in (root / "build" / source.name).read_bytes(), "other folders keep their outputs"


def test_a_rebuild_that_reproduces_a_figure_leaves_figures_byte_identical(tmp_path, monkeypatch, notebook):
    dest = tmp_path / "figures"
    publish_notebook(stage(tmp_path, monkeypatch, notebook, "run1", {"fig-07-a": 1.0}), NOTEBOOK, dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    first_commit = figures.load_index(dest)["fig-07-a"]["git_commit"]
    # the same figure rebuilt at a later commit: same bytes, entry differs only in the build commit
    staging = stage(tmp_path, monkeypatch, notebook, "run2", {"fig-07-a": 1.0})
    staged_index = json.loads((staging / "figures" / "index.json").read_text())
    staged_index["fig-07-a"]["git_commit"] = "0" * 40
    (staging / "figures" / "index.json").write_text(json.dumps(staged_index))
    report = publish_notebook(staging, NOTEBOOK, dest)
    assert report.unchanged == ["fig-07-a"] and report.published == [] and report.kept_back == []
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert figures.load_index(dest)["fig-07-a"]["git_commit"] == first_commit
    # a different figure under the same id is published with its own commit
    staging = stage(tmp_path, monkeypatch, notebook, "run3", {"fig-07-a": 3.0})
    assert publish_notebook(staging, NOTEBOOK, dest).published == ["fig-07-a"]


def test_hashing_a_notebook_does_not_compile_jsonschema_iri_grammars(tmp_path):
    # nbformat -> jsonschema -> rfc3987_syntax compiles ~40 lark grammars (3-5 CPU-s per notebook run);
    # the kit's notebook hash, HTML export and runner worker import nbformat without it.
    code = ("import sys; from analysis import provenance; "
            f"provenance.notebook_sha256({str(paths.NOTEBOOKS / '00_foundations.ipynb')!r}); "
            "print('lark' in sys.modules, 'jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
