"""Execute the notebooks with papermill: parameter checks, progress, failure summary, HTML rendering.

``python -m analysis reproduce`` runs every ``notebooks/NN_*.ipynb`` in order with the kit's Jupyter kernel
(working directory ``notebooks/``), writes the executed copies to ``build/notebooks/`` and an HTML rendering
to ``build/html/``; the notebooks themselves write figures to ``figures/`` and results to ``build/results/``.
``--quick`` passes ``quick=True`` and sends every output below ``build/quick/`` (``KIT_OUTPUT_DIR``), so
quick runs never touch the committed figures. A failing notebook does not stop the others.

Every file is written atomically (temporary file + ``os.replace``), so an interrupted run (Ctrl-C) leaves
either the previous or the new version of each file, never a truncated one.
"""
from __future__ import annotations

import ast
import contextlib
import fnmatch
import io
import math
import os
import re
import sys
import tempfile
import time
import tokenize
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import paths
from analysis.atomic import atomic_write_text

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
SUPPORTED_TYPES = ("int", "float", "bool", "str")
#: Kernel command-line options: keep the kernel's own log quiet (cell errors are reported separately).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
TRUE_WORDS = {"true": True, "1": True, "false": False, "0": False}


class ParameterError(ValueError):
    """A command-line parameter that the notebooks do not declare, or a value of the wrong type."""


class SetupError(RuntimeError):
    """The run cannot start (no notebooks matched, kernel not registered)."""


# ------------------------------------------------------------------------------------ parameters

@dataclass(frozen=True)
class NotebookParameter:
    """One assignment of a notebook's ``parameters`` cell: name, declared type, default (source text), help."""

    name: str
    type_name: str
    default: str
    help: str = ""

    @property
    def base_type(self) -> str | None:
        """'int', 'float', 'bool' or 'str' (Optional[...] / '... | None' unwrapped), else None."""
        return _base_type(self.type_name, self.default)[0]

    @property
    def optional(self) -> bool:
        return _base_type(self.type_name, self.default)[1]


def _base_type(type_name: str, default: str) -> tuple[str | None, bool]:
    text = type_name.replace(" ", "")
    optional = False
    match = re.fullmatch(r"(?:typing\.)?Optional\[(.+)\]", text)
    if match:
        text, optional = match.group(1), True
    parts = text.split("|")
    if len(parts) == 2 and "None" in parts:
        text, optional = [p for p in parts if p != "None"][0], True
    if text in SUPPORTED_TYPES:
        return text, optional
    if text in ("", "None"):  # no annotation: infer from a literal default
        try:
            value = ast.literal_eval(default)
        except (ValueError, SyntaxError):
            return None, optional
        for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str)):
            if isinstance(value, kind):
                return name, optional
    return None, optional


def parameters_cell(nb) -> tuple[int, Any] | tuple[None, None]:
    """Index and cell of the first cell tagged ``parameters`` (None, None if there is none)."""
    for index, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index, cell
    return None, None


def _comments_by_line(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return comments


def notebook_parameters(path: str | os.PathLike) -> dict[str, NotebookParameter]:
    """Parameters declared in the notebook's cell tagged ``parameters`` (name -> NotebookParameter).

    Parsed with ``ast`` (nothing is executed). Unlike ``papermill.inspect_notebook`` this also understands
    ``int | None`` annotations and needs no kernel metadata. Empty when there is no parameters cell.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    _, cell = parameters_cell(nb)
    if cell is None:
        return {}
    source = cell.source
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"{Path(path).name}: parameters cell is not valid Python ({exc.msg}, "
                             f"line {exc.lineno})") from None
    comments = _comments_by_line(source)
    found: dict[str, NotebookParameter] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names, annotation, value = [node.target.id], ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            annotation, value = "None", node.value
        else:
            continue
        default = ast.unparse(value) if value is not None else ""
        for name in names:
            found[name] = NotebookParameter(name, annotation, default, comments.get(node.lineno, ""))
    return found


def convert_value(param: NotebookParameter, raw: Any, where: str = "") -> Any:
    """Convert a command-line string (or check a Python value) against the parameter's declared type."""
    base, optional = _base_type(param.type_name, param.default)
    suffix = f" (in {where})" if where else ""
    if base is None:
        raise ParameterError(f"parameter {param.name!r} has type {param.type_name!r}{suffix}, which cannot be "
                             f"set from the command line (supported: {', '.join(SUPPORTED_TYPES)})")
    if optional and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null"))):
        return None
    bad = ParameterError(f"parameter {param.name!r} expects {base}, got {raw!r}{suffix}")
    if not isinstance(raw, str):  # Python API: check the value's type
        if base == "float" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            if not math.isfinite(raw):
                raise bad
            return float(raw)
        if base == "int" and isinstance(raw, bool):
            raise bad
        if isinstance(raw, {"int": int, "bool": bool, "str": str, "float": float}[base]):
            return raw
        raise bad
    text = raw.strip()
    if base == "str":
        return raw
    if base == "bool":
        if text.lower() not in TRUE_WORDS:
            raise ParameterError(f"parameter {param.name!r} expects bool (true/false/1/0), got {raw!r}{suffix}")
        return TRUE_WORDS[text.lower()]
    if base == "int":
        if not re.fullmatch(r"[+-]?\d+", text.replace("_", "")):
            raise bad
        return int(text.replace("_", ""))
    try:
        value = float(text)
    except ValueError:
        raise bad from None
    if not math.isfinite(value):
        raise ParameterError(f"parameter {param.name!r} expects a finite float, got {raw!r}{suffix}")
    return value


def describe_parameters(declared: Mapping[str, Mapping[str, NotebookParameter]]) -> str:
    """'data_dir (str), quick (bool), seed (int)' for the union of notebooks' parameters."""
    union: dict[str, set[str]] = {}
    for params in declared.values():
        for name, param in params.items():
            union.setdefault(name, set()).add(param.type_name if param.type_name != "None" else
                                              (param.base_type or "untyped"))
    if not union:
        return "(none: the notebooks have no cell tagged 'parameters')"
    return ", ".join(f"{name} ({'/'.join(sorted(types))})" for name, types in sorted(union.items()))


def validate_parameters(notebooks: Sequence[Path], given: Sequence[tuple[str, Any]] | Mapping[str, Any]
                        ) -> dict[Path, dict[str, Any]]:
    """Check ``given`` against each notebook's parameters cell and convert values to the declared types.

    A name must be declared by at least one of ``notebooks``; it is passed only to the notebooks that
    declare it. Raises ParameterError (one line, listing the valid parameters) for an unknown name, a
    repeated name, or a value that does not convert. Returns notebook -> {name: converted value}.
    """
    pairs = list(given.items()) if isinstance(given, Mapping) else [tuple(p) for p in given]
    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    valid = describe_parameters({nb.name: params for nb, params in declared.items()})
    seen: set[str] = set()
    converted: dict[Path, dict[str, Any]] = {nb: {} for nb in notebooks}
    for name, raw in pairs:
        if name in seen:
            raise ParameterError(f"parameter {name!r} given more than once")
        seen.add(name)
        owners = [nb for nb in notebooks if name in declared[nb]]
        if not owners:
            scope = notebooks[0].name if len(notebooks) == 1 else "the selected notebooks"
            raise ParameterError(f"unknown parameter {name!r} for {scope}; valid parameters: {valid}")
        for nb in owners:
            try:
                converted[nb][name] = convert_value(declared[nb][name], raw, nb.name)
            except ParameterError as exc:
                raise ParameterError(f"{exc}; valid parameters: {valid}") from None
    return converted


# ------------------------------------------------------------------------------------- discovery

def discover(notebooks_dir: str | os.PathLike | None = None, only: Sequence[str] | str | None = None) -> list[Path]:
    """``NN_*.ipynb`` files in ``notebooks_dir`` sorted by name, filtered by ``only`` patterns.

    A pattern matches a notebook when it is a substring of the file name (``05``, ``foundations``) or a
    shell glob matching it (``0[1-3]_*``).
    """
    directory = Path(notebooks_dir or paths.NOTEBOOKS)
    found = sorted(p for p in directory.glob(NOTEBOOK_GLOB) if p.is_file())
    if only:
        patterns = [only] if isinstance(only, str) else list(only)
        found = [p for p in found if any(pat in p.name or fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    return found


# --------------------------------------------------------------------------------------- running

@dataclass
class NotebookResult:
    """Outcome of executing one notebook (seconds of wall time, number of figure files written)."""

    notebook: str
    status: str  # "ok" or "failed"
    seconds: float
    figures: int = 0
    cell_index: int | None = None  # 0-based index of the failing cell in the source notebook
    error: str | None = None
    executed: Path | None = None
    html: Path | None = None
    figure_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def failure_line(self, with_name: bool = True) -> str:
        """'<notebook>: cell index <i> (0-based, source notebook): <ErrorName>: <message> (see <executed>)'."""
        where = f"cell index {self.cell_index}" if self.cell_index is not None else "outside the cells"
        line = f"{self.notebook}: {where}: {self.error}" if with_name else f"{where}: {self.error}"
        if self.executed is not None:
            line += f" (see {self.executed})"
        return line


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _figure_snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    if not directory.is_dir():
        return {}
    out = {}
    for png in directory.glob("fig-*.png"):
        st = png.stat()
        out[png.stem] = (st.st_ino, st.st_mtime_ns)
    return out


def check_kernel(kernel_name: str) -> None:
    """SetupError unless the named Jupyter kernel is registered."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise SetupError(f"Jupyter kernel {kernel_name!r} is not registered; run `make setup`") from None


def _source_cell_index(notebook: Path, cell_index: int | None, injected: bool) -> int | None:
    """Map papermill's cell index (which counts the injected-parameters cell) to the source notebook's."""
    if cell_index is None or not injected:
        return cell_index
    try:
        import nbformat

        nb = nbformat.read(str(notebook), as_version=4)
    except Exception:  # noqa: BLE001 - best effort; fall back to papermill's index
        return cell_index
    index, _ = parameters_cell(nb)
    injected_at = 0 if index is None else index + 1  # papermill injects after the parameters cell
    return cell_index - 1 if cell_index > injected_at else cell_index


def _export_html(executed: Path, target: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    atomic_write_text(target, body)


def execute_one(notebook: Path, executed_dir: Path, html_dir: Path | None, parameters: Mapping[str, Any],
                kernel_name: str = paths.KERNEL_NAME, cwd: Path | None = None) -> NotebookResult:
    """Execute one notebook with papermill into ``executed_dir`` (atomically) and render it to HTML.

    Execution errors are captured in the result (status "failed", cell index, error); KeyboardInterrupt
    propagates after removing the partial output.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    executed_dir.mkdir(parents=True, exist_ok=True)
    target = executed_dir / notebook.name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{notebook.stem}.", suffix=".tmp.ipynb", dir=executed_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    figures_before = _figure_snapshot(paths.figures_dir())
    start = time.perf_counter()
    result = NotebookResult(notebook.name, "ok", 0.0)
    try:
        try:
            pm.execute_notebook(str(notebook), str(tmp), parameters=dict(parameters) or None,
                                kernel_name=kernel_name, cwd=str(cwd or notebook.parent),
                                progress_bar=False, log_output=False, extra_arguments=KERNEL_ARGUMENTS)
        except PapermillExecutionError as exc:
            result.status = "failed"
            result.cell_index = _source_cell_index(notebook, exc.cell_index, bool(parameters))
            result.error = f"{exc.ename}: {exc.evalue}"
        except Exception as exc:  # noqa: BLE001 - kernel died, bad notebook JSON, ...: report, go on
            result.status = "failed"
            result.error = f"{type(exc).__name__}: {exc}".strip()
        result.seconds = time.perf_counter() - start
        if tmp.exists() and tmp.stat().st_size > 0:
            os.replace(tmp, target)
            result.executed = target
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    after = _figure_snapshot(paths.figures_dir())
    result.figure_ids = sorted(k for k, v in after.items() if figures_before.get(k) != v)
    result.figures = len(result.figure_ids)
    if html_dir is not None and result.executed is not None:
        html = html_dir / f"{notebook.stem}.html"
        try:
            _export_html(result.executed, html)
            result.html = html
        except Exception as exc:  # noqa: BLE001
            if result.ok:
                result.status = "failed"
                result.error = f"HTML export failed: {type(exc).__name__}: {exc}"
    return result


def run(notebooks_dir: str | os.PathLike | None = None, build_dir: str | os.PathLike | None = None, *,
        quick: bool = False, only: Sequence[str] | str | None = None,
        parameters: Sequence[tuple[str, Any]] | Mapping[str, Any] = (), kernel_name: str = paths.KERNEL_NAME,
        html: bool = True, progress: bool = True, results: list[NotebookResult] | None = None
        ) -> list[NotebookResult]:
    """Execute the selected notebooks in order; returns one NotebookResult per notebook.

    Parameters are validated against every notebook before anything runs (ParameterError). ``quick``
    injects ``quick=True`` and sets ``KIT_OUTPUT_DIR=<build_dir>/quick`` for the kernel; executed notebooks
    then go to ``<build_dir>/quick/notebooks``. ``results`` (optional list) is filled as notebooks finish,
    so a caller still has the finished ones when a KeyboardInterrupt propagates.
    """
    notebooks_dir = Path(notebooks_dir or paths.NOTEBOOKS).resolve()
    build_dir = Path(build_dir or paths.BUILD).resolve()
    notebooks = discover(notebooks_dir, only)
    if not notebooks:
        patterns = [only] if isinstance(only, str) else list(only or [])
        what = "matching --only " + " ".join(repr(p) for p in patterns) + " " if patterns else ""
        raise SetupError(f"no notebooks {what}in {notebooks_dir} (expected names like 00_foundations.ipynb)")
    per_notebook = validate_parameters(notebooks, parameters)
    check_kernel(kernel_name)

    out_root = build_dir / "quick" if quick else build_dir
    executed_dir, html_dir = out_root / "notebooks", (out_root / "html" if html else None)
    results = [] if results is None else results
    from tqdm.auto import tqdm

    with _environment(paths.OUTPUT_ENV_VAR, str(out_root) if quick else None):
        bar = tqdm(notebooks, desc="notebooks", unit="nb", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        for notebook in bar:
            bar.set_postfix_str(notebook.name)
            if progress:
                bar.write(f"running {notebook.name}", file=sys.stderr)
            params = ({"quick": True} if quick else {}) | per_notebook[notebook]
            result = execute_one(notebook, executed_dir, html_dir, params, kernel_name, cwd=notebooks_dir)
            results.append(result)
            if progress:
                detail = "" if result.ok else f": {result.failure_line(with_name=False)}"
                bar.write(f"{notebook.name}: {result.status} in {result.seconds:.1f} s, "
                          f"{result.figures} figure(s){detail}", file=sys.stderr)
        bar.close()
    return results


def format_table(results: Sequence[NotebookResult]) -> str:
    """Plain-text table: notebook, status, seconds, figures."""
    rows = [("notebook", "status", "seconds", "figures")]
    rows += [(r.notebook, r.status, f"{r.seconds:.1f}", str(r.figures)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def unproduced_figures(results: Sequence[NotebookResult]) -> list[str]:
    """Index entries of notebooks that ran successfully but did not write that figure this time."""
    from analysis.figures import load_index

    try:
        index = load_index()
    except ValueError:
        return []
    ran = {r.notebook: set(r.figure_ids) for r in results if r.ok}
    return sorted(fig_id for fig_id, entry in index.items()
                  if Path(str(entry.get("notebook", ""))).name in ran
                  and fig_id not in ran[Path(str(entry.get("notebook", ""))).name])


def cli(args) -> int:
    """``python -m analysis reproduce``: run, print the table, exit 0 (all ok), 1 (failures), 2 (bad usage)."""
    results: list[NotebookResult] = []
    try:
        run(args.notebooks_dir, args.build_dir, quick=args.quick, only=args.only,
            parameters=[tuple(p) for p in (args.param or [])], progress=not args.no_progress,
            html=not args.no_html, results=results)
    except (ParameterError, SetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if results:
            print(format_table(results))
        print("interrupted: every file written so far is complete (atomic writes); rerun to finish",
              file=sys.stderr)
        return 130
    print(format_table(results))
    if not args.quick:
        for fig_id in unproduced_figures(results):
            print(f"note: {fig_id} is in the figure index but was not produced by this run "
                  "(remove it if obsolete)", file=sys.stderr)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} notebook(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.failure_line()}", file=sys.stderr)
        return 1
    return 0
