"""analysis.figures / analysis.provenance: house style, byte-stable atomic saves, figure index, results JSON."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402

from analysis import figures, paths, provenance  # noqa: E402
from analysis.figures import NotebookOutputs  # noqa: E402

OKABE_ITO = {"#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}


def write_notebook(path: Path, source: str = "x = 1", parameters: str | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


DEFAULTS = "quick: bool = False  # small sizes\nseed: int = 3\nrate: float = 2.5  # requests/s\n"


@pytest.fixture
def out_dir(tmp_path, monkeypatch) -> Path:
    out = tmp_path / "out"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(out))
    return out


@pytest.fixture
def notebook(tmp_path) -> Path:
    return write_notebook(tmp_path / "07_demo.ipynb", parameters=DEFAULTS)


@pytest.fixture
def outputs(notebook, out_dir) -> NotebookOutputs:
    return NotebookOutputs(notebook, {"quick": False, "seed": 3, "rate": np.float64(2.5)}, seed=3,
                           data_source="synthetic default (no real data found)")


@pytest.fixture(autouse=True)
def _house_style():
    with matplotlib.rc_context():
        figures.use_house_style()
        yield
    plt.close("all")


def knee_figure(scale: float = 1.0):
    fig, ax = figures.subplots()
    rho = np.linspace(0, 0.95, 40)
    ax.plot(rho, scale / (1 - rho), label="M/M/1")
    ax.plot(rho, scale / (1 - rho ** 2), label="M/M/2")
    figures.label_axes(ax, x="Utilisation ρ", x_unit="", y="Mean response", y_unit="s")
    ax.legend()
    return fig


def saved_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def temp_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


# ---------------------------------------------------------------------------------------- style

def test_house_style_is_readable_and_colour_blind_safe():
    rc = matplotlib.rcParams
    for key in ("font.size", "axes.labelsize", "axes.titlesize", "xtick.labelsize", "ytick.labelsize",
                "legend.fontsize"):
        size = FontProperties(size=rc[key]).get_size_in_points() if isinstance(rc[key], str) else rc[key]
        assert size >= 8, f"{key} = {rc[key]} is below 8 pt"
    assert rc["figure.figsize"][0] == pytest.approx(figures.SINGLE_COLUMN)
    assert rc["figure.constrained_layout.use"] and rc["axes.grid"]
    cycle = [c.upper() for c in rc["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [c.upper() for c in figures.PALETTE]
    assert {c.upper() for c in figures.PALETTE} == OKABE_ITO
    assert figures.PALETTE["blue"] == figures.PALETTE[0] == figures.PALETTE.blue == "#0072B2"
    with pytest.raises(KeyError, match="teal"):
        figures.PALETTE["teal"]


def test_subplots_sizes_and_label_axes_units():
    fig, ax = figures.subplots(width="full", aspect=0.5)
    assert tuple(fig.get_size_inches()) == pytest.approx((7.0, 3.5))
    figures.label_axes(ax, x="Utilisation ρ", x_unit="", y="Mean response", y_unit="s")
    assert ax.get_xlabel() == "Utilisation ρ" and ax.get_ylabel() == "Mean response (s)"
    with pytest.raises(ValueError, match="y_unit"):
        figures.label_axes(ax, y="Mean response")
    with pytest.raises(ValueError, match="width"):
        figures.subplots(width="huge")


# ------------------------------------------------------------------------------- byte stability

def test_saving_twice_gives_identical_bytes_and_consistent_index(outputs, out_dir, notebook):
    fig = knee_figure()
    texts_before = list(fig.texts)
    assert outputs.save(fig, "fig-07-knee", "Mean response against utilisation.") is None
    entry = outputs.saved["fig-07-knee"]
    assert fig.texts == texts_before, "the provenance footer must not stay in the figure"
    figdir = out_dir / "figures"
    first = saved_files(figdir)
    assert set(first) == {"fig-07-knee.png", "fig-07-knee.svg", "index.json", "README.md"}
    assert first["fig-07-knee.png"].startswith(b"\x89PNG") and b"<svg" in first["fig-07-knee.svg"]

    outputs.save(fig, "fig-07-knee", "Mean response against utilisation.")
    assert saved_files(figdir) == first  # png, svg, index and gallery all byte-identical
    assert b"Software" not in first["fig-07-knee.png"]
    assert b"<dc:date>" not in first["fig-07-knee.svg"]

    index = json.loads(first["index.json"])
    recorded = index["fig-07-knee"]
    assert entry == recorded
    assert recorded["notebook_sha256"] == provenance.notebook_sha256(notebook)
    assert recorded["files"]["png"]["sha256"] == provenance.sha256_bytes(first["fig-07-knee.png"])
    assert recorded["files"]["svg"]["sha256"] == provenance.sha256_bytes(first["fig-07-knee.svg"])
    assert recorded["parameters"] == {"quick": False, "seed": 3, "rate": 2.5}
    assert recorded["non_default_parameters"] == {}
    assert recorded["seed"] == 3 and recorded["data_source"].startswith("synthetic")
    assert recorded["data_kind"] == "synthetic"
    assert set(recorded["packages"]) == {"python", "numpy", "pandas", "matplotlib", "ciw", "statsmodels",
                                         "scipy"}
    assert recorded["packages"]["matplotlib"] == matplotlib.__version__
    assert recorded["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", recorded["git_commit"])


def test_index_records_citable_content_hash_head_commit_and_command(outputs, out_dir):
    outputs.save(knee_figure(), "fig-07-knee", "Mean response against utilisation.")
    figdir = out_dir / "figures"
    entry = figures.load_index(figdir)["fig-07-knee"]
    both = (figdir / "fig-07-knee.png").read_bytes() + (figdir / "fig-07-knee.svg").read_bytes()
    assert entry["content_sha256"] == provenance.sha256_bytes(both)  # = cat png svg | sha256sum
    assert entry["cite"] == f"fig-07-knee@{entry['content_sha256'][:12]}"
    head = subprocess.run(["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert entry["git_commit"] == (head or None), "the commit is HEAD when the figure was built"
    assert isinstance(entry["git_dirty"], bool)
    assert entry["command"] == "make reproduce ARGS='--only 07_demo'"
    gallery = (figdir / "README.md").read_text()
    assert f"`{entry['cite']}`" in gallery and (head[:12] in gallery if head else True)
    # another picture under the same id gets another key
    outputs.save(knee_figure(2.0), "fig-07-knee", "Mean response against utilisation.")
    assert figures.load_index(figdir)["fig-07-knee"]["cite"] != entry["cite"]


def test_non_default_parameters_and_data_are_marked_in_footer_and_index(notebook, out_dir):
    out = NotebookOutputs(notebook, {"quick": False, "seed": 7, "rate": 2.0}, seed=7,
                          data_source="real: api-01 (MIT)")
    assert out.non_default_parameters == {"rate": {"value": 2.0, "default": 2.5},
                                          "seed": {"value": 7, "default": 3}}
    out.save(knee_figure(), "fig-07-changed", "Changed parameters.")
    out.save(knee_figure(), "fig-07-usl", "Per-figure data source.", data_source="measured: usl package data")
    figdir = out_dir / "figures"
    svg = (figdir / "fig-07-changed.svg").read_text()
    assert "QUICK RUN" not in svg and "PARAMETERS: rate=2.0, seed=7" in svg and "NON-DEFAULT" in svg
    index = figures.load_index(figdir)
    entry = index["fig-07-changed"]
    assert entry["non_default_parameters"]["seed"] == {"value": 7, "default": 3}
    assert entry["command"] == "make reproduce ARGS='--only 07_demo -p rate 2.0 -p seed 7'"
    assert entry["data_kind"] == "real"
    usl = index["fig-07-usl"]
    assert usl["data_source"] == "measured: usl package data" and usl["data_kind"] == "none"
    assert "data: measured: usl package data" in (figdir / "fig-07-usl.svg").read_text()
    # defaults given as other numeric types (1000 vs 1000.0) are not "changed"
    same = NotebookOutputs(notebook, {"quick": False, "seed": 3, "rate": 2.5, "derived": 9}, seed=3,
                           data_source="synthetic default: x.csv (no real data found)")
    assert same.non_default_parameters == {}
    same.save(knee_figure(), "fig-07-syn", "Synthetic.")
    assert "synthetic default" in (figdir / "fig-07-syn.svg").read_text()
    assert index["fig-07-changed"]["data_source"] == "real: api-01 (MIT)"
    with pytest.raises(ValueError, match="data_source"):
        same.save(knee_figure(), "fig-07-bad", "Bad label.", data_source=" ")


def test_save_refuses_the_committed_figures_folder(notebook, monkeypatch):
    monkeypatch.setattr(paths, "figures_dir", lambda: paths.COMMITTED_FIGURES)
    before = sorted(p.name for p in paths.COMMITTED_FIGURES.iterdir())
    out = NotebookOutputs(notebook, {}, 3, "no dataset: theory")
    with pytest.raises(ValueError, match="analysis.publish"):
        out.save(knee_figure(), "fig-07-knee", "Caption.")
    assert sorted(p.name for p in paths.COMMITTED_FIGURES.iterdir()) == before


SUBPROCESS_SCRIPT = textwrap.dedent("""
    import os, sys
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np
    import matplotlib.patches as mpatches
    from analysis import figures
    garbage = [object() for _ in range(int(os.environ.get("GARBAGE", "0")))]  # other object addresses
    noise = float(os.environ.get("LAYOUT_NOISE", "0"))  # invisible float noise in the axes position
    figures.use_house_style()
    out = figures.NotebookOutputs(sys.argv[1], {"seed": 3}, seed=3, data_source="synthetic test")
    for name in sys.argv[2:]:
        fig, axes = figures.subplots(1, 2, layout=None)
        for i, ax in enumerate(axes):
            ax.set_position([0.12 + 0.48 * i + noise, 0.2, 0.36 + noise, 0.7])
            rho = np.linspace(0, 0.95, 40)
            ax.plot(rho, 1 / (1 - rho), marker="o"); ax.imshow(np.arange(12.0).reshape(3, 4), extent=(0, .3, 5, 8))
            ax.fill_between(rho, 0, 2, hatch="//", alpha=0.3)
            circle = mpatches.Circle((0.5, 5), 3, transform=ax.transData, visible=False)
            ax.add_patch(circle)
            ax.plot(rho, 2 / (1 - rho))[0].set_clip_path(circle)
            figures.label_axes(ax, x="Utilisation ρ", x_unit="", y="Mean response", y_unit="s")
        out.save(fig, name, "Caption of " + name)
""")


def run_saver(tmp_path: Path, out: Path, notebook: Path, ids: list[str], hashseed: str, **extra_env: str):
    script = tmp_path / "saver.py"
    script.write_text(SUBPROCESS_SCRIPT)
    env = dict(os.environ, PYTHONHASHSEED=hashseed, **{paths.OUTPUT_ENV_VAR: str(out)}, **extra_env)
    return subprocess.Popen([sys.executable, str(script), str(notebook), *ids], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_fresh_processes_write_identical_bytes(tmp_path, notebook):
    """Other object addresses, hash seeds and last-bit float noise in the layout: same bytes."""
    procs = [run_saver(tmp_path, tmp_path / f"out{i}", notebook, ["fig-07-image"], seed, GARBAGE=garbage,
                       LAYOUT_NOISE=noise)
             for i, (seed, garbage, noise) in enumerate([("1", "0", "0"), ("98765", "200003", "1e-13")])]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    first, second = (saved_files(tmp_path / f"out{i}" / "figures") for i in range(2))
    assert set(first) == {"fig-07-image.png", "fig-07-image.svg", "index.json", "README.md"}
    assert first == second


def test_concurrent_saves_keep_every_index_entry(tmp_path, notebook, out_dir):
    ids = [[f"fig-07-a{i}" for i in range(3)], [f"fig-07-b{i}" for i in range(3)]]
    procs = [run_saver(tmp_path, out_dir, notebook, group, "0") for group in ids]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    index = figures.load_index(out_dir / "figures")
    assert list(index) == sorted(ids[0] + ids[1])
    assert temp_leftovers(out_dir / "figures") == []


def test_footer_names_figure_and_data_source(notebook, out_dir):
    fig = knee_figure()
    real = NotebookOutputs(notebook, {"quick": False}, seed=None, data_source="real: api-01 (MIT)")
    real.save(fig, "fig-07-foot", "Footer test.")
    svg = (out_dir / "figures" / "fig-07-foot.svg").read_text()
    # matplotlib writes each text drawn as paths with the string as an XML comment
    assert "fig-07-foot · data: real: api-01 (MIT) -->" in svg
    assert "NON-DEFAULT" not in svg and "QUICK RUN" not in svg  # this scratch notebook declares no parameters
    png_real = (out_dir / "figures" / "fig-07-foot.png").read_bytes()
    quick = NotebookOutputs(notebook, {"quick": True}, seed=None, data_source="synthetic default")
    assert quick._footer_text("fig-07-foot") == "fig-07-foot · data: synthetic default · QUICK RUN (reduced sizes)"
    quick.save(fig, "fig-07-foot", "Footer test.")
    assert (out_dir / "figures" / "fig-07-foot.png").read_bytes() != png_real


def test_quick_runs_write_png_previews_only(notebook, out_dir):
    full = NotebookOutputs(notebook, {"quick": False}, seed=None, data_source="synthetic default")
    quick = NotebookOutputs(notebook, {"quick": True}, seed=None, data_source="synthetic default")
    assert full.formats == ("png", "svg") and quick.formats == ("png",)
    full.save(knee_figure(), "fig-07-q", "Full run.")
    assert (out_dir / "figures" / "fig-07-q.svg").exists()
    quick.save(knee_figure(), "fig-07-q", "Quick run.")
    entry = figures.load_index(out_dir / "figures")["fig-07-q"]
    assert sorted(entry["files"]) == ["png"]
    assert entry["content_sha256"] == figures.sha256_bytes((out_dir / "figures" / "fig-07-q.png").read_bytes())
    assert not (out_dir / "figures" / "fig-07-q.svg").exists(), "the full run's SVG must not outlive it"


def test_quick_previews_are_saved_at_display_resolution(notebook, out_dir):
    from PIL import Image

    sizes = {}
    for quick in (False, True):
        out = NotebookOutputs(notebook, {"quick": quick}, seed=None, data_source="synthetic default")
        fig = knee_figure()
        inches = fig.get_size_inches()
        out.save(fig, f"fig-07-dpi-{str(quick).lower()}", "Resolution.")
        with Image.open(out_dir / "figures" / f"fig-07-dpi-{str(quick).lower()}.png") as image:
            sizes[quick] = image.size
        assert out.png_dpi == (figures.PREVIEW_PNG_DPI if quick else figures.PNG_DPI)
        assert sizes[quick][0] == pytest.approx(inches[0] * out.png_dpi, abs=2)
    assert figures.HOUSE_RC["figure.dpi"] == figures.PREVIEW_PNG_DPI     # the size the notebook shows them at


@pytest.mark.parametrize("layout", ["none", "tight", "compressed"])
def test_footer_with_other_layout_engines(outputs, out_dir, layout):
    fig, ax = plt.subplots(figsize=(3.5, 2.5), layout=layout)
    engine = fig.get_layout_engine()
    settings = dict(engine.get()) if engine is not None else None
    ax.plot([0, 1], [1, 2])
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Rate (requests/s)")
    outputs.save(fig, "fig-07-plain", "No layout engine.")
    svg = (out_dir / "figures" / "fig-07-plain.svg").read_text()
    assert "fig-07-plain · data: synthetic default" in svg
    assert fig.texts == []
    assert (dict(engine.get()) if engine is not None else None) == settings, "layout must be restored"
    if engine is not None:  # (with layout="none", matplotlib itself installs the rcParams engine on draw)
        assert fig.get_layout_engine() is engine, "the layout engine frozen for the SVG must be put back"


# ---------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("fig_id", ["fig-7-knee", "fig-07-Knee", "fig-07-", "figure-07-knee", "fig-07_knee",
                                    "fig-07-knee.png", "", None])
def test_malformed_fig_id_is_rejected(outputs, out_dir, fig_id):
    with pytest.raises(ValueError, match="fig_id"):
        outputs.save(knee_figure(), fig_id, "Caption.")
    assert not (out_dir / "figures").exists() or not any((out_dir / "figures").iterdir())


def test_fig_id_number_must_match_notebook(outputs):
    with pytest.raises(ValueError, match=r"fig-08-knee.*07_demo\.ipynb.*fig-07-"):
        outputs.save(knee_figure(), "fig-08-knee", "Caption.")


def test_bad_constructor_arguments_name_the_argument(tmp_path, notebook, out_dir):
    scratch = write_notebook(tmp_path / "scratch.ipynb")
    with pytest.raises(ValueError, match="notebook="):
        NotebookOutputs(scratch, {}, 1, "synthetic")
    with pytest.raises(ValueError, match="no such notebook"):
        NotebookOutputs(tmp_path / "09_missing.ipynb", {}, 1, "synthetic")
    with pytest.raises(ValueError, match="data_source"):
        NotebookOutputs(notebook, {}, 1, "  ")
    with pytest.raises(ValueError, match="seed"):
        NotebookOutputs(notebook, {}, 1.5, "synthetic")
    with pytest.raises(ValueError, match="missing.csv"):
        NotebookOutputs(notebook, {}, 1, "real", data_files=[tmp_path / "missing.csv"])
    with pytest.raises(ValueError, match=r"parameters\['rate'\] is NaN"):
        NotebookOutputs(notebook, {"rate": float("nan")}, 1, "synthetic")
    with pytest.raises(ValueError, match="caption"):
        NotebookOutputs(notebook, {}, 1, "synthetic").save(knee_figure(), "fig-07-x", "")


def test_data_files_are_hashed(tmp_path, notebook, out_dir):
    data = tmp_path / "trace.csv"
    data.write_text("timestamp,value\n2024-01-01T00:00:00,1.5\n")
    out = NotebookOutputs(notebook, {}, 1, "real: test trace", data_files=[data])
    out.save(knee_figure(), "fig-07-data", "With data.")
    assert out.saved["fig-07-data"]["data_files"] == [{"path": provenance.portable_path(data),
                                    "sha256": provenance.sha256_file(data)}]


# --------------------------------------------------------------------------------------- index

def test_index_keeps_other_entries_sorted_and_gallery_lists_them(tmp_path, outputs, out_dir):
    other = NotebookOutputs(write_notebook(tmp_path / "03_other.ipynb"), {}, None, "real: api-01 | MIT")
    outputs.save(knee_figure(), "fig-07-zeta", "Last | one.")
    other.save(knee_figure(2.0), "fig-03-alpha", "First one.")
    outputs.save(knee_figure(), "fig-07-beta", "Middle one.")
    outputs.save(knee_figure(), "fig-07-zeta", "Last one, new caption.")
    figdir = out_dir / "figures"
    index = figures.load_index(figdir)
    assert list(index) == ["fig-03-alpha", "fig-07-beta", "fig-07-zeta"]
    raw = (figdir / "index.json").read_text()
    assert raw.index("fig-03-alpha") < raw.index("fig-07-beta") < raw.index("fig-07-zeta")
    assert index["fig-07-zeta"]["caption"] == "Last one, new caption."
    assert index["fig-03-alpha"]["notebook"].endswith("03_other.ipynb")

    gallery = (figdir / "README.md").read_text()
    rows = [line for line in gallery.splitlines() if line.startswith("| `fig-")]
    assert [re.match(r"\| `([^`]+)`", r).group(1) for r in rows] == list(index)
    for fig_id, row in zip(index, rows):
        assert f'src="{fig_id}.png"' in row and f"({fig_id}.svg)" in row
    assert "real: api-01 \\| MIT" in rows[0] and "`03_other.ipynb`" in rows[0]
    assert "Last one, new caption." in rows[2]


def test_corrupt_index_is_reported_and_not_overwritten(outputs, out_dir):
    figdir = out_dir / "figures"
    figdir.mkdir(parents=True)
    (figdir / "index.json").write_text("{not json")
    with pytest.raises(ValueError, match="index.json"):
        outputs.save(knee_figure(), "fig-07-knee", "Caption.")
    assert (figdir / "index.json").read_text() == "{not json"
    assert sorted(p.name for p in figdir.iterdir()) == ["index.json"]


# ----------------------------------------------------------------------------------- atomicity

def test_failed_replace_leaves_previous_files_intact(outputs, out_dir, monkeypatch):
    outputs.save(knee_figure(), "fig-07-knee", "Caption.")
    figdir = out_dir / "figures"
    before = saved_files(figdir)

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        outputs.save(knee_figure(3.0), "fig-07-knee", "Changed caption.")
    monkeypatch.undo()
    assert saved_files(figdir) == before
    assert temp_leftovers(figdir) == []


def test_interrupt_while_rendering_writes_nothing(outputs, out_dir, monkeypatch):
    outputs.save(knee_figure(), "fig-07-knee", "Caption.")
    figdir = out_dir / "figures"
    before = saved_files(figdir)
    real_render = figures._render

    def interrupted(fig, fmt, extra, *args):
        if fmt == "svg":
            raise KeyboardInterrupt
        return real_render(fig, fmt, extra, *args)

    monkeypatch.setattr(figures, "_render", interrupted)
    fig = knee_figure(3.0)
    with pytest.raises(KeyboardInterrupt):
        outputs.save(fig, "fig-07-knee", "Changed caption.")
    assert saved_files(figdir) == before and temp_leftovers(figdir) == []
    assert fig.texts == []


def test_ctrl_c_while_writing_is_held_until_files_and_index_agree(outputs, out_dir, monkeypatch):
    # Python's own Ctrl-C handler, whatever an earlier test in this process left installed (an asyncio
    # runner's handler, for one, cancels its task instead of raising KeyboardInterrupt)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_while_writing(outputs, out_dir, monkeypatch)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_while_writing(outputs, out_dir, monkeypatch):
    outputs.save(knee_figure(), "fig-07-knee", "Caption.")
    real_write_json = figures.atomic_write_json

    def write_json_after_sigint(path, obj):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the image files and the index
        return real_write_json(path, obj)

    monkeypatch.setattr(figures, "atomic_write_json", write_json_after_sigint)
    with pytest.raises(KeyboardInterrupt):
        outputs.save(knee_figure(3.0), "fig-07-knee", "Changed caption.")
    figdir = out_dir / "figures"
    entry = figures.load_index(figdir)["fig-07-knee"]
    assert entry["caption"] == "Changed caption."
    for fmt in ("png", "svg"):
        assert provenance.sha256_file(figdir / f"fig-07-knee.{fmt}") == entry["files"][fmt]["sha256"]
    assert "Changed caption." in (figdir / "README.md").read_text()


# ------------------------------------------------------------------------------------- results

def test_write_results_converts_numpy_and_adds_provenance(outputs, out_dir):
    assert outputs.write_results({"p_wait": np.float64(0.25), "servers": np.int64(4), "ok": np.bool_(True),
                                  "waits": np.array([0.5, 1.5]), "nested": {"n": np.int32(2)},
                                  "none": None}) is None
    path = outputs.results_path
    assert path == out_dir / "results" / "07_demo.json"
    text = path.read_text()
    data = json.loads(text)
    assert data["p_wait"] == 0.25 and data["servers"] == 4 and data["ok"] is True
    assert data["waits"] == [0.5, 1.5] and data["nested"] == {"n": 2} and data["none"] is None
    assert data["provenance"]["notebook"] == "07_demo.ipynb"
    assert data["provenance"]["parameters"] == {"quick": False, "seed": 3, "rate": 2.5}
    assert data["provenance"]["seed"] == 3
    assert data["provenance"]["data_source"] == "synthetic default (no real data found)"
    assert list(data) == sorted(data)
    outputs.write_results({"p_wait": np.float64(0.25), "servers": np.int64(4), "ok": np.bool_(True),
                           "waits": np.array([0.5, 1.5]), "nested": {"n": np.int32(2)}, "none": None})
    assert path.read_text() == text
    assert temp_leftovers(path.parent) == []


@pytest.mark.parametrize("bad, pattern", [
    ({"mmc": {"p_wait": np.float64("nan")}}, r"results\['mmc'\]\['p_wait'\] is NaN"),
    ({"waits": [1.0, float("inf")]}, r"results\['waits'\]\[1\] is infinite"),
    ({"table": object()}, r"results\['table'\] has unsupported type object"),
    ({"provenance": 1}, "reserved"),
    ({1: 2.0}, "key 1"),
])
def test_write_results_rejects_bad_values_naming_the_key(outputs, out_dir, bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        outputs.write_results(bad)
    assert not (out_dir / "results" / "07_demo.json").exists()


def test_finite_or_none_records_no_value_only_when_asked(outputs):
    for missing in (float("nan"), float("inf"), -float("inf"), np.float64("nan"), np.float32("inf")):
        assert figures.finite_or_none(missing) is None
    for kept in (0.25, np.float64(1.5), 0, np.int64(3), True, "x", None, [float("nan")]):
        value = figures.finite_or_none(kept)
        assert value is kept
    assert figures.finite_or_none is provenance.finite_or_none
    outputs.write_results({"p99_s": figures.finite_or_none(float("inf")), "cost": figures.finite_or_none(2.5)})
    data = json.loads(outputs.results_path.read_text())
    assert data["p99_s"] is None and data["cost"] == 2.5
    with pytest.raises(ValueError, match=r"results\['p99_s'\] is infinite"):    # not asked: still an error
        outputs.write_results({"p99_s": float("inf")})


# ---------------------------------------------------------------------------------- provenance

def _git_repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "analysis").mkdir(parents=True)
    (repo / "figures").mkdir()

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
                               *args], check=True, capture_output=True, text=True).stdout.strip()

    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"git not usable here: {exc}")
    return repo, git


def test_git_info_is_head_and_dirty_ignores_published_figures(tmp_path, monkeypatch):
    repo, git = _git_repo(tmp_path)
    (repo / "analysis" / "m.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "code")
    (repo / "figures" / "fig.png").write_bytes(b"png")
    git("add", ".")
    git("commit", "-qm", "figures")
    head = git("rev-parse", "HEAD")
    monkeypatch.setattr(paths, "ROOT", repo)
    assert provenance.git_info() == {"commit": head, "dirty": False}
    (repo / "figures" / "fig.png").write_bytes(b"png, republished")
    assert provenance.git_info() == {"commit": head, "dirty": False}, "figures/ is output, not code"
    (repo / "analysis" / "m.py").write_text("x = 2\n")
    assert provenance.git_info() == {"commit": head, "dirty": True}
    monkeypatch.setattr(paths, "ROOT", tmp_path / "not-a-repo")
    (tmp_path / "not-a-repo").mkdir()
    assert provenance.git_info() == {"commit": None, "dirty": None}


def test_notebook_hash_ignores_outputs_but_not_sources(tmp_path):
    path = write_notebook(tmp_path / "07_demo.ipynb", "print(1)", parameters=DEFAULTS)
    clean = provenance.notebook_sha256(path)
    assert clean == provenance.sha256_file(path), "a clean notebook hashes as its own bytes"
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[0].execution_count = 4
    nb.metadata["language_info"] = {"name": "python", "version": "3.99.1"}
    nb.metadata["kernelspec"] = {"name": "x", "display_name": "x", "language": "python"}
    nbformat.write(nb, str(path))
    autosaved = provenance.notebook_sha256(path)
    nb.metadata["language_info"]["version"] = "3.11.0"
    nbformat.write(nb, str(path))
    assert provenance.notebook_sha256(path) == autosaved, "the interpreter's patch version is stripped"
    nb.cells[0].source = "print(2)"
    nbformat.write(nb, str(path))
    assert provenance.notebook_sha256(path) != autosaved
    with pytest.raises(ValueError, match="missing.ipynb"):
        provenance.notebook_sha256(tmp_path / "missing.ipynb")


def test_notebook_hash_equals_what_the_git_filter_stores(tmp_path):
    """provenance.stripped_notebook is byte-for-byte the blob git stores through the kit's filter."""
    repo, git = _git_repo(tmp_path)
    provenance.install_notebook_filter(sys.executable, repo)
    (repo / ".gitattributes").write_text((paths.ROOT / ".gitattributes").read_text())
    path = write_notebook(repo / "07_demo.ipynb", "print(1)", parameters=DEFAULTS)
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[0].execution_count = 1
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7", "pygments_lexer": "ipython3"}
    nbformat.write(nb, str(path))
    git("add", ".")
    git("commit", "-qm", "notebook")
    blob = subprocess.run(["git", "-C", str(repo), "show", "HEAD:07_demo.ipynb"], capture_output=True,
                          check=True).stdout
    assert blob == provenance.stripped_notebook(path)
    stored = json.loads(blob)
    assert stored["cells"][0]["outputs"] == [] and stored["cells"][0]["execution_count"] is None
    assert stored["metadata"]["language_info"] == {"name": "python", "pygments_lexer": "ipython3"}
    # JupyterLab autosave with new outputs and another interpreter version: git sees no change
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nb.cells[0].execution_count = 9
    nb.metadata["language_info"]["version"] = "3.13.1"
    nbformat.write(nb, str(path))
    assert git("status", "--porcelain") == ""


# ------------------------------------------------------------------------------------ svg ids

def test_canonical_svg_renumbers_hashed_ids_and_merges_equal_clips():
    def doc(a, b, c):
        return (f'<g clip-path="url(#{a})"><use xlink:href="#m0123456789" /></g>'
                f'<g clip-path="url(#{b})"/><g clip-path="url(#{c})"/><g id="axes_1"/>'
                f'<defs><path id="m0123456789" d="M 0 0"/></defs><defs>'
                f'<clipPath id="{a}">\n <rect x="1" y="2" width="3" height="4"/>\n</clipPath>\n'
                f'<clipPath id="{b}">\n <rect x="1" y="2" width="3" height="4"/>\n</clipPath>\n'
                f'<clipPath id="{c}">\n <rect x="5" y="2" width="3" height="4"/>\n</clipPath>\n</defs>')

    one = figures.canonical_svg(doc("p1111111111", "p2222222222", "p3333333333"))
    other = figures.canonical_svg(doc("pabcdefabcd", "p9999999999", "p0000000000"))
    assert one == other
    assert one.count("<clipPath") == 2 and 'url(#p-k1)' in one and 'url(#p-k2)' in one
    assert one.count('url(#p-k1)') == 2, "equal clip geometry shares one definition"
    assert 'href="#m-k1"' in one and 'id="m-k1"' in one and 'id="axes_1"' in one
    assert not re.search(r"[0-9a-f]{10}", one)


def test_sparse_log_minor_ticks_thins_wide_log_axes_only():
    fig, ax = plt.subplots()
    ax.plot([1.0, 1000.0], [10.0, 30.0])
    ax.set_xscale("log"); ax.set_yscale("log")
    before_y = list(ax.yaxis.get_minorticklocs())
    assert len([t for t in ax.xaxis.get_minorticklocs() if 1 < t < 1000]) == 24   # default: 2..9 per decade
    figures.sparse_log_minor_ticks(fig)
    assert [round(t) for t in ax.xaxis.get_minorticklocs() if 1 < t < 1000] == [2, 5, 20, 50, 200, 500]
    assert ax.xaxis.get_minor_formatter()(20.0) == ""
    assert list(ax.yaxis.get_minorticklocs()) == before_y     # under two decades: left as it is
    plt.close(fig)


def test_log_axis_sets_log_scale_without_minor_labels():
    from matplotlib.ticker import NullFormatter

    fig, ax = plt.subplots()
    ax.plot([1, 10, 100], [1, 2, 3])
    figures.log_axis(ax, "xy")
    for axis in (ax.xaxis, ax.yaxis):
        assert axis.get_scale() == "log" and isinstance(axis.get_minor_formatter(), NullFormatter)
    with pytest.raises(ValueError, match="which"):
        figures.log_axis(ax, "z")
    plt.close(fig)


def test_plain_log_ticks_labels_decades_as_plain_numbers():
    fig, (ax, fixed) = plt.subplots(1, 2, figsize=(8, 3))
    ax.plot([0.1, 1000.0], [1.0, 2.0])
    ax.set_xscale("log")
    fixed.plot([1.0, 100.0], [1.0, 2.0])
    fixed.set_xscale("log")
    fixed.set_xticks([1.0, 100.0], ["one", "hundred"])
    figures.plain_log_ticks(fig)
    fmt = ax.xaxis.get_major_formatter()
    assert [fmt(v) for v in (0.1, 1.0, 1000.0)] == ["0.1", "1", "1,000"]
    assert [round(t) for t in ax.xaxis.get_minorticklocs() if 1 < t < 100] == [2, 5, 20, 50]
    assert [t.get_text() for t in fixed.get_xticklabels()] == ["one", "hundred"]    # fixed labels kept
    assert ax.xaxis.get_minor_formatter()(20.0) == ""                   # four labelled decades: enough
    assert ax.yaxis.get_scale() == "linear"
    plt.close(fig)
    fig, ax = plt.subplots()
    ax.plot([20.0, 70.0], [1.0, 2.0])
    ax.set_xscale("log")                                 # under one decade: matplotlib labels minor ticks
    figures.plain_log_ticks(fig)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    assert labels and all("$" not in t for t in labels), labels
    plt.close(fig)
    fig, ax = plt.subplots()
    ax.plot([0.2, 6.0], [1.0, 2.0])
    ax.set_xscale("log")                                 # 1.5 decades, one labelled decade: 2x and 5x labelled
    figures.plain_log_ticks(fig)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    assert {"0.2", "0.5", "2", "5"} <= set(labels), labels
    plt.close(fig)
