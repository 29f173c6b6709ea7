"""House style for figures, and saving them with their provenance, atomically and byte-stable.

In a notebook::

    from analysis import figures
    figures.use_house_style()
    out = figures.NotebookOutputs("00_foundations.ipynb", parameters={"quick": quick, "seed": seed},
                                  seed=seed, data_source="synthetic default (no real data found)")
    fig, ax = figures.subplots()                      # 3.5 in wide: one report column
    ax.plot(rho, response)
    figures.label_axes(ax, x="Utilisation ρ", x_unit="", y="Mean response", y_unit="s")
    out.save(fig, "fig-00-knee", "Mean response time of M/M/1 against utilisation.")
    out.write_results({"knee_utilisation": 0.8})

``save`` writes ``<id>.png`` (200 dpi) and ``<id>.svg`` into :func:`analysis.paths.figures_dir` (a folder
under ``build/``, or the runner's staging folder), records provenance in ``index.json`` there and regenerates
the gallery ``README.md``. It never writes the committed ``figures/``: only
:func:`analysis.publish.publish_notebook` does, for figures of the canonical build (the notebook's default
parameters, no synthetic data). No timestamps are recorded and SVG ids are renumbered from the drawing
itself, so saving the same figure from the same inputs leaves every file byte-identical, on any machine.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from cycler import cycler
from matplotlib.figure import Figure

from analysis import paths
from analysis.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from analysis.provenance import (finite_or_none, git_info, notebook_sha256, package_versions, portable_path,
                                 sha256_bytes, sha256_file, to_jsonable)

__all__ = [
    "PALETTE", "SINGLE_COLUMN", "FULL_WIDTH", "PNG_DPI", "PREVIEW_PNG_DPI", "FIG_ID_PATTERN", "INDEX_NAME",
    "GALLERY_NAME", "use_house_style", "subplots", "label_axes", "log_axis", "sparse_log_minor_ticks",
    "plain_log_ticks", "NotebookOutputs", "load_index", "render_gallery",
    "data_kind", "citation_key", "canonical_svg", "regenerate_command", "finite_or_none",
]

SINGLE_COLUMN = 3.5  #: width of one report column, inches
FULL_WIDTH = 7.0  #: width of a full report page, inches
PNG_DPI = 200  #: resolution of saved PNGs, dots per inch
PREVIEW_PNG_DPI = 110  #: resolution of a quick run's PNG previews (= figure.dpi: their size on screen)
MIN_FONT_PT = 8  #: smallest font size used anywhere, points
SVG_HASH_SALT = "cloud-scalability-kit"  #: fixed salt so SVG element ids are the same on every run
FIG_ID_PATTERN = re.compile(r"^fig-(\d\d)-[a-z0-9-]+$")
NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[A-Za-z0-9_.-]*\.ipynb$")
INDEX_NAME = "index.json"
GALLERY_NAME = "README.md"
FOOTER_GID = "kit-footer"


class _Palette(tuple):
    """Okabe-Ito colours: index by position (``PALETTE[0]``), by name (``PALETTE["blue"]``) or attribute."""

    _names: tuple[str, ...] = ()

    def __new__(cls, named: Mapping[str, str]):
        self = super().__new__(cls, named.values())
        self._names = tuple(named)
        return self

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise KeyError(f"no colour {key!r} in PALETTE; names: {', '.join(self._names)}") from None
        return tuple.__getitem__(self, key)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self._names, self))


#: Okabe & Ito (2008) colour-blind-safe palette, in the order used by the colour cycle
#: (yellow late because it is faint on white; black last).
PALETTE = _Palette({
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "sky": "#56B4E9",
    "yellow": "#F0E442",
    "black": "#000000",
})

HOUSE_RC: dict[str, Any] = {
    "figure.figsize": (SINGLE_COLUMN, 2.6),
    "figure.dpi": PREVIEW_PNG_DPI,   # inline display; a quick run saves its previews at this resolution
    "figure.constrained_layout.use": True,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.dpi": PNG_DPI,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # ships with matplotlib: same glyphs on every machine
    "mathtext.fontset": "dejavusans",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 10,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "legend.frameon": False,
    "image.cmap": "cividis",  # perceptually uniform and colour-blind-safe
    "svg.hashsalt": SVG_HASH_SALT,
    "svg.fonttype": "path",
}


def use_house_style() -> None:
    """Apply the kit's matplotlib style: one-column size, fonts >= 8 pt, Okabe-Ito cycle, grid, constrained layout."""
    matplotlib.rcParams.update(HOUSE_RC)


def _width_inches(width: str | float) -> float:
    if isinstance(width, str):
        choices = {"single": SINGLE_COLUMN, "column": SINGLE_COLUMN, "full": FULL_WIDTH}
        if width not in choices:
            raise ValueError(f"width={width!r}: use 'single', 'full' or a number of inches")
        return choices[width]
    width = float(width)
    if not 0 < width <= 20:
        raise ValueError(f"width={width}: expected inches in (0, 20]")
    return width


def subplots(nrows: int = 1, ncols: int = 1, *, width: str | float = "single", aspect: float = 0.75,
             height: float | None = None, **kwargs):
    """``plt.subplots`` sized for a report: ``width`` 'single' (3.5 in), 'full' (7 in) or inches.

    ``height`` in inches defaults to ``aspect`` x the width of one panel, times the number of rows.
    Uses constrained layout. Returns ``(fig, ax_or_axes)``.
    """
    import matplotlib.pyplot as plt

    w = _width_inches(width)
    if height is None:
        height = nrows * (w / ncols) * aspect
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(w, height), **kwargs)


def _axis_label(name: str, unit: str | None, which: str) -> str:
    if unit is None:
        raise ValueError(f"{which}_unit is required with {which}={name!r} (use '' for a dimensionless quantity)")
    return f"{name} ({unit})" if unit else name


def log_axis(ax, which: str = "y") -> None:
    """Log scale on the axes named in ``which`` ("x", "y" or "xy") without minor tick labels (mathtext
    labels the layout engine measures: most of such a figure's rendering time)."""
    import matplotlib.ticker as mticker

    for w in which:
        if w not in "xy":
            raise ValueError(f"which={which!r}: use 'x', 'y' or 'xy'")
        getattr(ax, f"set_{w}scale")("log")
        getattr(ax, f"{w}axis").set_minor_formatter(mticker.NullFormatter())


def sparse_log_minor_ticks(fig: Figure, min_decades: float = 2.0) -> None:
    """On every log axis of ``fig`` spanning at least ``min_decades`` decades, keep unlabelled minor ticks
    at 2x and 5x each power of ten only (matplotlib's default puts eight per decade; each tick is a set of
    artists measured by the layout engine: about 0.3 CPU-s per figure). Such axes carry no minor labels
    anyway (matplotlib labels minor ticks only below one decade); narrower axes are left as they are.
    Call after plotting (the view limits decide)."""
    import matplotlib.ticker as mticker

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() != "log":
                continue
            lo, hi = sorted(axis.get_view_interval())
            if lo > 0 and hi / lo >= 10.0 ** min_decades:
                axis.set_minor_locator(mticker.LogLocator(subs=(2.0, 5.0)))
                axis.set_minor_formatter(mticker.NullFormatter())


def plain_log_ticks(fig: Figure, min_decades: float = 2.0) -> None:
    """On every log axis of ``fig``: tick labels as plain numbers (0.1, 10, 1,000; on a narrow axis the
    labelled minor ticks too, 20, 30, 60) instead of mathtext powers of ten (their layout is most of such a
    figure's rendering time), and :func:`sparse_log_minor_ticks`. An axis that shows fewer than three
    labelled decades gets its 2x and 5x ticks labelled too (0.2, 0.5, 2, 5), so that it can be read. Only
    matplotlib's own log formatters are replaced (labels set by hand stay). Call after plotting (the view
    limits decide)."""
    import matplotlib.ticker as mticker

    sparse_log_minor_ticks(fig, min_decades)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() != "log" or not isinstance(axis.get_major_formatter(), mticker.LogFormatter):
                continue
            axis.set_major_formatter("{x:,g}")
            lo, hi = sorted(axis.get_view_interval())
            decades = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
            if len(decades) < 3 and lo > 0 and hi / lo >= 10.0:
                axis.set_minor_locator(mticker.LogLocator(subs=(2.0, 5.0)))
                axis.set_minor_formatter("{x:,g}")
            elif isinstance(axis.get_minor_formatter(), mticker.LogFormatterSciNotation):
                axis.set_minor_formatter(mticker.LogFormatter(labelOnlyBase=False))   # same ticks, plain text


def label_axes(ax, x: str | None = None, x_unit: str | None = None, y: str | None = None,
               y_unit: str | None = None, title: str | None = None) -> None:
    """Label axes with quantity and unit, e.g. ``y="Mean response", y_unit="s"`` -> "Mean response (s)".

    A unit is required for every label given; pass ``""`` for a dimensionless quantity.
    """
    if x is not None:
        ax.set_xlabel(_axis_label(x, x_unit, "x"))
    if y is not None:
        ax.set_ylabel(_axis_label(y, y_unit, "y"))
    if title is not None:
        ax.set_title(title)


# --------------------------------------------------------------------------------------- index files

def load_index(directory: str | os.PathLike | None = None) -> dict[str, dict]:
    """The figure index (fig id -> provenance entry) in ``directory`` (default :func:`paths.figures_dir`).

    Empty when there is no index yet; ValueError naming the file when it is not a valid index.
    """
    path = Path(directory or paths.figures_dir()) / INDEX_NAME
    if not path.exists():
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a valid figure index ({exc}); fix or delete it and rerun "
                         "`make reproduce`") from None
    if not isinstance(index, dict) or not all(isinstance(v, dict) for v in index.values()):
        raise ValueError(f"{path}: not a valid figure index (expected an object of fig id -> entry)")
    return index


def _md_cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def data_kind(label: str) -> str:
    """'real', 'synthetic' or 'none' for a data-source label.

    Labels start with ``real:`` (a verified public dataset), ``synthetic`` (the embedded default that stands
    in when the real data is missing) or anything else (no dataset: theory, simulation, published
    measurements shipped with a package).
    """
    head = label.strip().lower()
    if head.startswith("real"):
        return "real"
    if head.startswith("synthetic"):
        return "synthetic"
    return "none"


def citation_key(fig_id: str, content_sha256: str) -> str:
    """Short citable key ``fig-NN-name@<first 12 hex of the content sha256>``."""
    return f"{fig_id}@{content_sha256[:12]}"


def render_gallery(index: Mapping[str, Mapping]) -> str:
    """Markdown gallery of the figures in ``index``: id, preview, caption, data, citable key and commit."""
    lines = [
        "# Figures",
        "",
        "Generated from [`index.json`](index.json) by `make reproduce` (only the canonical build, with each "
        "notebook's committed parameters and no synthetic data, publishes here); do not edit by hand.",
        "Each figure has a PNG (200 dpi) and an SVG (vector, for papers). Cite a figure by its key "
        "`fig-NN-name@<12 hex>`: the hex digits start the sha256 of its PNG bytes followed by its SVG bytes "
        "(check with `cat fig-NN-name.png fig-NN-name.svg | sha256sum`), so the key names exactly one "
        "picture. `index.json` also records the commit of the code that drew it, the parameters, the data "
        "and its sha256, package versions and the command that regenerates it.",
        "",
        "| Figure | Preview | Caption | Data | Cite as | Code |",
        "|---|---|---|---|---|---|",
    ]
    for fig_id in sorted(index):
        entry = index[fig_id]
        files = entry.get("files", {})
        png = files.get("png", {}).get("path", f"{fig_id}.png")
        svg = files.get("svg", {}).get("path", f"{fig_id}.svg")
        notebook = Path(str(entry.get("notebook", ""))).name
        commit = entry.get("git_commit") or "unknown"
        code = f"`{notebook}` at `{commit[:12]}`" + (" (uncommitted changes)" if entry.get("git_dirty") else "")
        lines.append(
            f"| `{fig_id}` ([svg]({svg})) | <a href=\"{png}\"><img src=\"{png}\" width=\"240\" "
            f"alt=\"{fig_id}\"></a> | {_md_cell(entry.get('caption', ''))} | "
            f"{_md_cell(entry.get('data_source', ''))} | `{_md_cell(entry.get('cite', fig_id))}` | "
            f"{_md_cell(code)} |")
    if not index:
        lines.append("| _none yet_ | | | | | |")
    return "\n".join(lines) + "\n"


def write_index(directory: Path, index: Mapping[str, Mapping]) -> None:
    """Write ``index.json`` (sorted) and the gallery ``README.md`` into ``directory``, each atomically."""
    index = dict(sorted(index.items()))
    atomic_write_json(directory / INDEX_NAME, index)
    atomic_write_text(directory / GALLERY_NAME, render_gallery(index))


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Exclusive lock on ``directory`` (POSIX flock) so concurrent saves never lose index entries."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, so figure files and index are updated together.

    Only possible in the main thread (where notebooks run their cells); elsewhere a no-op.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(*received[0])
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


# ------------------------------------------------------------------------------------- rendering

def _footer_lines(text: str, fig: Figure, fontsize: float) -> str:
    """Wrap ``text`` to the figure width, measured with a fixed Agg renderer (same result on any backend)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.text import Text

    width_in, height_in = fig.get_size_inches()
    renderer = RendererAgg(int(width_in * 72), int(height_in * 72), 72)
    probe = Text(0, 0, text, fontsize=fontsize)
    probe.set_figure(fig)
    measured = probe.get_window_extent(renderer=renderer, dpi=72).width / 72  # inches
    available = width_in - 0.1
    if measured <= available:
        return text
    chars = max(20, int(len(text) * available / measured))
    return textwrap.fill(text, width=chars, break_on_hyphens=False)


@contextlib.contextmanager
def _with_footer(fig: Figure, text: str) -> Iterator[dict]:
    """Temporarily draw a footer line at the bottom of ``fig``, reserving room for it in the layout.

    Yields extra ``savefig`` keyword arguments. The figure is restored afterwards (no footer left behind).
    """
    from matplotlib.layout_engine import ConstrainedLayoutEngine, TightLayoutEngine

    fontsize = MIN_FONT_PT
    wrapped = _footer_lines(text, fig, fontsize)
    nlines = wrapped.count("\n") + 1
    band_in = (nlines * fontsize * 1.25 + 5) / 72  # inches
    height_in = fig.get_size_inches()[1]
    band = min(0.4, band_in / height_in)
    engine = fig.get_layout_engine()
    savefig_kwargs: dict[str, Any] = {}
    restore = None
    if isinstance(engine, (ConstrainedLayoutEngine, TightLayoutEngine)):
        old_rect = engine.get().get("rect")
        old_rect = tuple(old_rect) if old_rect is not None else (0, 0, 1, 1)
        left, bottom, width, height = old_rect
        if isinstance(engine, TightLayoutEngine):  # tight layout's rect is (left, bottom, right, top)
            new_rect = (left, max(bottom, band), width, height)
        else:
            new_bottom = max(bottom, band)
            new_rect = (left, new_bottom, width, height - (new_bottom - bottom))
        engine.set(rect=new_rect)
        restore = lambda: engine.set(rect=old_rect)  # noqa: E731
        y, va = 2 / 72 / height_in, "bottom"
    else:
        # No layout engine: put the footer under whatever is drawn and let the tight bbox include it.
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
        bbox = fig.get_tightbbox(canvas.get_renderer())
        y, va = (bbox.y0 - 0.03) / height_in, "top"
        savefig_kwargs = {"bbox_inches": "tight", "pad_inches": 0.05}
    artist = fig.text(0.01, y, wrapped, ha="left", va=va, fontsize=fontsize, color="#555555",
                      gid=FOOTER_GID, transform=fig.transFigure)
    # Layout engines must not move the axes to make room (the rect does that); the tight bbox must see it.
    artist.set_in_layout(restore is None)
    try:
        yield savefig_kwargs
    finally:
        artist.remove()
        if restore is not None:
            restore()


#: ids matplotlib derives from a hash (clip paths ``p``, markers ``m``, hatches ``h``, images, collection
#: paths ``C<n>_<i>_``): the hash covers full-precision floats and object state that the written SVG does
#: not show, so they can differ between machines for the same picture.
_HASHED_ID = re.compile(r"(?:p|m|h|image|Im_image|C[0-9a-f]+_[0-9a-f]+_)[0-9a-f]{10}")
_ID_ATTR = re.compile(r'(\bid="|url\(#|href="#)(' + _HASHED_ID.pattern + r')(?=[")])')
_CLIP_DEF = re.compile(r'<clipPath id="(' + _HASHED_ID.pattern + r')">(.*?)</clipPath>\s*', re.S)


def canonical_svg(svg: str) -> str:
    """Renumber matplotlib's hashed SVG ids so that they depend only on what is drawn.

    Clip paths with identical geometry (as written) are merged into one definition; then every hashed id
    (``id="..."``, ``url(#...)``, ``href="#..."``) is replaced by its prefix and its order of first
    appearance (``p1``, ``p2``, ``m1``, ...). Ids that are counters (``axes_1``) or glyph names are kept.
    """
    # 1. one definition per distinct clip geometry
    first_with: dict[str, str] = {}
    alias: dict[str, str] = {}
    for match in _CLIP_DEF.finditer(svg):
        oid, body = match.group(1), match.group(2).strip()
        if body in first_with:
            alias[oid] = first_with[body]
        else:
            first_with[body] = oid
    if alias:
        svg = _CLIP_DEF.sub(lambda m: "" if m.group(1) in alias else m.group(0), svg)
    # 2. number the ids in order of first appearance, per prefix
    renamed: dict[str, str] = {}
    counters: dict[str, int] = {}

    def rename(match: re.Match) -> str:
        oid = alias.get(match.group(2), match.group(2))
        if oid not in renamed:
            prefix = oid[:-10].rstrip("_") or "id"
            prefix = "C" if prefix.startswith("C") else prefix
            counters[prefix] = counters.get(prefix, 0) + 1
            renamed[oid] = f"{prefix}-k{counters[prefix]}"
        return match.group(1) + renamed[oid]

    return _ID_ATTR.sub(rename, svg)


@contextlib.contextmanager
def _layout_frozen(fig: Figure) -> Iterator[None]:
    """Keep the axes where the last draw's layout engine (constrained or tight) put them.

    The layout engine runs on every ``savefig``; its text measurements are about half of a figure's
    rendering cost. Positions are fractions of the figure and the fonts are sized in points, so the
    layout computed for the PNG holds for the SVG too. The engine is restored afterwards.
    """
    engine = fig.get_layout_engine()
    if engine is None or not hasattr(engine, "execute") or type(engine).__name__ == "PlaceHolderLayoutEngine":
        yield
        return
    fig.set_layout_engine("none")
    try:
        yield
    finally:
        fig.set_layout_engine(engine)


def _render(fig: Figure, fmt: str, extra: Mapping[str, Any], png_dpi: float = PNG_DPI) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        metadata = {"Software": None}
        kwargs = {"dpi": png_dpi}
    else:
        metadata = {"Date": None, "Creator": None}
        kwargs = {}
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT, "svg.fonttype": "path"}):
        fig.savefig(buffer, format=fmt, metadata=metadata, **kwargs, **extra)
    data = buffer.getvalue()
    if fmt == "svg":
        data = canonical_svg(data.decode("utf-8")).encode("utf-8")
    return data


# --------------------------------------------------------------------------------- NotebookOutputs

def _resolve_notebook(notebook: str | os.PathLike) -> tuple[str, Path]:
    given = Path(notebook)
    name = given.name if given.suffix == ".ipynb" else given.name + ".ipynb"
    if not NOTEBOOK_PATTERN.match(name):
        raise ValueError(f"notebook={str(notebook)!r}: expected a name like '00_foundations.ipynb' "
                         "(two-digit number, underscore)")
    if given.is_absolute():
        candidates = [given.with_name(name)]
    else:
        # the working directory first: papermill and JupyterLab run a notebook from its own folder
        candidates = [Path.cwd() / given.with_name(name), paths.NOTEBOOKS / given.with_name(name)]
    for candidate in candidates:
        if candidate.is_file():
            return name, candidate.resolve()
    raise ValueError(f"notebook={str(notebook)!r}: no such notebook file (looked for "
                     f"{', '.join(str(c) for c in candidates)}); figures must record their notebook's hash")


def _declared_defaults(notebook_path: Path) -> dict[str, Any]:
    """Literal defaults of the notebook's ``parameters`` cell (name -> value); {} when there is none."""
    import ast

    from analysis.reproduce import notebook_parameters

    defaults = {}
    for name, param in notebook_parameters(notebook_path).items():
        try:
            defaults[name] = ast.literal_eval(param.default)
        except (ValueError, SyntaxError):
            continue  # not a literal: cannot be compared
    return defaults


def _same_value(value: Any, default: Any) -> bool:
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return float(value) == float(default)
    return value == default


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def regenerate_command(notebook: str, non_default: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Shell command that regenerates a notebook's figures: ``make reproduce ARGS='--only NN_name ...'``.

    ``non_default``: name -> {"value", "default"} of parameters that differ from the notebook's defaults,
    passed as ``-p NAME VALUE``. Run it in a checkout of the recorded commit.
    """
    import shlex

    args = ["--only", Path(notebook).stem]
    for name, change in sorted((non_default or {}).items()):
        args += ["-p", name, _cli_value(change["value"])]
    return "make reproduce ARGS=" + shlex.quote(" ".join(shlex.quote(a) for a in args))


def _ipython_shell():
    """The running IPython shell (a Jupyter kernel, papermill) or None in a plain Python process."""
    module = sys.modules.get("IPython")
    if module is None:
        return None
    try:
        return module.get_ipython()
    except Exception:  # noqa: BLE001 - a half-imported IPython is not a shell
        return None


class NotebookOutputs:
    """Figures and results of one notebook run, saved with their provenance.

    notebook: file name of the notebook in ``notebooks/`` (e.g. "00_foundations.ipynb"; an absolute path
    is also accepted). parameters: the values of the notebook's parameters cell; those that differ from
    the notebook's declared defaults are marked in every footer and index entry (such figures are never
    published to ``figures/``). seed: base random seed (or None). data_source: human label of the input
    data, "real: ..." or "synthetic default ..." (never published) or e.g. "no dataset: theory".
    data_files: input files whose sha256 is recorded with every figure.
    """

    def __init__(self, notebook: str | os.PathLike, parameters: Mapping[str, Any] | None = None,
                 seed: int | None = None, data_source: str = "", data_files: Sequence[str | os.PathLike] = ()):
        self.notebook, self.notebook_path = _resolve_notebook(notebook)
        self.number = NOTEBOOK_PATTERN.match(self.notebook).group(1)
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, Mapping):
            raise ValueError(f"parameters must be a mapping of name -> value, got {type(parameters).__name__}")
        self.parameters = to_jsonable(dict(parameters), "parameters")
        if seed is not None:
            try:
                import numpy as np
                integral = isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_))
            except ImportError:  # pragma: no cover
                integral = isinstance(seed, int) and not isinstance(seed, bool)
            if not integral:
                raise ValueError(f"seed={seed!r}: expected an integer or None")
            seed = int(seed)
        self.seed = seed
        self.data_source = self._check_label(data_source, "data_source")
        if isinstance(data_files, (str, os.PathLike)):
            data_files = [data_files]
        files = []
        for item in data_files:
            path = Path(item)
            if not path.is_file():
                raise ValueError(f"data_files: {str(path)!r} does not exist")
            files.append({"path": portable_path(path), "sha256": sha256_file(path)})
        self.data_files = sorted(files, key=lambda f: f["path"])
        defaults = _declared_defaults(self.notebook_path)
        #: parameters whose value differs from the notebook's declared default: name -> {value, default}
        self.non_default_parameters = {
            name: {"value": value, "default": defaults[name]}
            for name, value in sorted(self.parameters.items())
            if name in defaults and not _same_value(value, defaults[name])}
        #: index entries written by :meth:`save` in this run, by figure id
        self.saved: dict[str, dict[str, Any]] = {}
        #: where :meth:`write_results` wrote, or None
        self.results_path: Path | None = None
        self._git: dict | None = None

    @staticmethod
    def _check_label(label: Any, name: str) -> str:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"{name}={label!r}: give a label such as 'real: <dataset> (<license>)', "
                             "'synthetic default (no real data found)' or 'no dataset: closed-form theory'")
        return " ".join(label.split())

    # -- provenance -------------------------------------------------------------------------------
    def _git_info(self) -> dict:
        if self._git is None:
            self._git = git_info()
        return self._git

    def provenance(self) -> dict[str, Any]:
        """Notebook, parameters, seed and data source (also the results file's "provenance" block)."""
        return {"notebook": self.notebook, "parameters": self.parameters, "seed": self.seed,
                "data_source": self.data_source, "data_kind": data_kind(self.data_source),
                "data_files": self.data_files, "non_default_parameters": self.non_default_parameters}

    def _footer_text(self, fig_id: str, data_source: str | None = None) -> str:
        text = f"{fig_id} · data: {data_source or self.data_source}"
        if self.parameters.get("quick") is True:
            text += " · QUICK RUN (reduced sizes)"
        changed = {k: v for k, v in self.non_default_parameters.items() if k != "quick"}
        if changed:
            text += " · NON-DEFAULT PARAMETERS: " + ", ".join(
                f"{name}={_cli_value(change['value'])}" for name, change in changed.items())
        return text

    # -- figures -----------------------------------------------------------------------------------
    def check_fig_id(self, fig_id: str) -> None:
        """ValueError unless ``fig_id`` looks like ``fig-NN-short-name`` with NN this notebook's number."""
        match = FIG_ID_PATTERN.match(fig_id) if isinstance(fig_id, str) else None
        if match is None:
            raise ValueError(f"fig_id={fig_id!r}: expected 'fig-{self.number}-short-name' "
                             "(lower-case letters, digits and hyphens)")
        if match.group(1) != self.number:
            raise ValueError(f"fig_id={fig_id!r}: number {match.group(1)} does not match notebook "
                             f"{self.notebook} (use 'fig-{self.number}-...')")

    @property
    def formats(self) -> tuple[str, ...]:
        """File formats :meth:`save` writes: PNG and SVG; a quick run (``quick=True`` among the parameters)
        writes the PNG preview only (the vector format is for the published figures, which only a full
        canonical run makes; an SVG costs about as much to draw as the PNG)."""
        return ("png",) if self.parameters.get("quick") is True else ("png", "svg")

    @property
    def png_dpi(self) -> int:
        """Resolution of the PNG :meth:`save` writes: :data:`PNG_DPI` (print quality), or for a quick run's
        preview :data:`PREVIEW_PNG_DPI`, the notebook's own display resolution (about 0.1 CPU-s less per
        figure: a quarter of the pixels to rasterise and compress)."""
        return PREVIEW_PNG_DPI if self.parameters.get("quick") is True else PNG_DPI

    def save(self, fig: Figure, fig_id: str, caption: str, *, data_source: str | None = None) -> None:
        """Write ``<fig_id>.png`` and ``.svg`` atomically into ``paths.figures_dir()`` and index them
        (a quick run: the PNG only, see :attr:`formats`).

        A footer naming the figure id, the data source and any non-default parameter is drawn into the
        saved files. ``data_source`` overrides the notebook's label for this figure only (e.g. a figure
        drawn from a package's published measurements). Inside IPython/Jupyter the saved picture is
        shown with its id and caption (and the pyplot figure closed, so it is not shown twice).
        Returns None; the index entry is in ``self.saved[fig_id]``.
        """
        self.check_fig_id(fig_id)
        if not isinstance(fig, Figure):
            raise ValueError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"caption for {fig_id}: give a one-sentence description of the figure")
        label = self.data_source if data_source is None else self._check_label(data_source, "data_source")
        directory = paths.figures_dir()
        if directory.resolve() == paths.COMMITTED_FIGURES.resolve():
            raise ValueError(f"{portable_path(directory)} holds the published figures and is written only by "
                             "analysis.publish (make reproduce); set KIT_OUTPUT_DIR to save elsewhere")
        directory.mkdir(parents=True, exist_ok=True)

        # Render in memory first: an interruption here leaves every file untouched.
        rendered: dict[str, bytes] = {}
        with _with_footer(fig, self._footer_text(fig_id, label)) as extra:
            rendered["png"] = _render(fig, "png", extra, self.png_dpi)
            if "svg" in self.formats:
                with _layout_frozen(fig):  # the SVG reuses the layout the PNG computed
                    rendered["svg"] = _render(fig, "svg", extra)
        png = rendered["png"]

        git = self._git_info()
        content = sha256_bytes(b"".join(rendered.values()))
        entry = {
            "caption": " ".join(caption.split()),
            "notebook": portable_path(self.notebook_path),
            "notebook_sha256": notebook_sha256(self.notebook_path),
            "parameters": self.parameters,
            "non_default_parameters": self.non_default_parameters,
            "seed": self.seed,
            "data_source": label,
            "data_kind": data_kind(label),
            "data_files": self.data_files,
            "git_commit": git["commit"],
            "git_dirty": git["dirty"],
            "command": regenerate_command(self.notebook, self.non_default_parameters),
            "content_sha256": content,
            "cite": citation_key(fig_id, content),
            "packages": package_versions(),
            "files": {fmt: {"path": f"{fig_id}.{fmt}", "sha256": sha256_bytes(data)}
                      for fmt, data in rendered.items()},
        }
        with _locked(directory), _sigint_deferred():
            index = load_index(directory)  # fails before writing anything if the index is corrupt
            for fmt, data in rendered.items():
                atomic_write_bytes(directory / f"{fig_id}.{fmt}", data)
            stale = directory / f"{fig_id}.svg"   # a full run's SVG must not sit beside a quick PNG
            if "svg" not in rendered and stale.exists():
                stale.unlink()
            index[fig_id] = entry
            write_index(directory, index)
        self.saved[fig_id] = entry
        self._show(fig, fig_id, entry, png, directory)

    def _show(self, fig: Figure, fig_id: str, entry: Mapping[str, Any], png: bytes, directory: Path) -> None:
        """In IPython: display the saved PNG with its id, caption and where it went (a plain process: no-op)."""
        if _ipython_shell() is None:
            return
        import base64
        import html

        from IPython.display import display

        width = round(float(fig.get_size_inches()[0]) * float(fig.get_dpi()))
        where = portable_path(directory / f"{fig_id}.png")
        reasons = []
        if entry["data_kind"] == "synthetic":
            reasons.append("synthetic data")
        if entry["non_default_parameters"]:
            reasons.append("non-default parameters " + ", ".join(
                f"{k}={_cli_value(v['value'])}" for k, v in entry["non_default_parameters"].items()))
        note = f"saved to {where}" + ("" if "svg" in entry["files"] else " (quick run: PNG preview, no SVG)")
        note += f"; not publishable ({'; '.join(reasons)})" if reasons else ""
        text = f"{fig_id}: {entry['caption']} ({note})"
        markup = (f'<figure class="kit-figure" id="{fig_id}" style="margin: 0 0 1em 0">'
                  f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" '
                  f'width="{width}" alt="{html.escape(fig_id)}">'
                  f'<figcaption><strong>{html.escape(fig_id)}</strong>: {html.escape(entry["caption"])} '
                  f'<small>({html.escape(note)})</small></figcaption></figure>')
        display({"text/html": markup, "text/plain": text}, raw=True)
        import matplotlib.pyplot as plt

        plt.close(fig)  # shown above with its footer; the inline backend must not show it again

    # -- results -----------------------------------------------------------------------------------
    def write_results(self, mapping: Mapping[str, Any]) -> None:
        """Write key numbers to ``<paths.results_dir()>/<notebook stem>.json`` atomically, sorted keys.

        numpy scalars become plain numbers; NaN/inf and unsupported types are a ValueError naming the key
        (pass a value through :func:`finite_or_none` where a notebook means "no value": it is written as null).
        A "provenance" block (notebook, parameters, seed, data source, data files, git commit and dirty flag)
        is added. Returns None;
        the file is ``self.results_path``.
        """
        if not isinstance(mapping, Mapping):
            raise ValueError(f"results must be a mapping of name -> value, got {type(mapping).__name__}")
        if "provenance" in mapping:
            raise ValueError("results: the key 'provenance' is reserved (it is added automatically)")
        results = to_jsonable(dict(mapping), "results")
        git = self._git_info()  # the commit behind the numbers: notebook 09 checks it against the figures'
        results["provenance"] = {**self.provenance(), "git_commit": git["commit"], "git_dirty": git["dirty"]}
        path = paths.results_dir() / f"{Path(self.notebook).stem}.json"
        self.results_path = atomic_write_json(path, results)
