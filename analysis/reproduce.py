"""Execute the notebooks with papermill, each in its own process session, and publish what succeeded.

``python -m analysis reproduce`` runs every ``notebooks/NN_*.ipynb`` (working directory ``notebooks/``, kernel
``cloud-scalability-kit``), up to ``--jobs`` notebooks at a time. Each notebook runs in a worker process
started in a new session (``python -m analysis.reproduce --worker``) with ``KIT_OUTPUT_DIR`` set to a fresh
staging folder ``<out>/.staging/<notebook>/``: its figures, results JSON, executed copy and HTML are written
there first. When the worker ends, the runner (one process, in notebook order):

* ok: moves the executed notebook to ``<out>/notebooks/``, the HTML to ``<out>/html/``, the results JSON to
  ``<out>/results/``; a canonical run (no ``-p``, not ``--quick``, ``<out>`` = ``build/``) hands the staged
  figures to ``analysis.publish.publish_notebook`` (the only writer of ``figures/``); any other run merges
  them into ``<out>/figures/`` (``<out>`` = ``build/quick/`` or ``build/runs/<parameters>/``);
* failed: moves the executed notebook and HTML to ``<out>/failed/`` (the last good ones stay), publishes
  nothing.

Ctrl-C (SIGINT) or SIGTERM interrupts the running cells, shuts the kernels down, kills each kernel's whole
process group (multiprocessing forkserver, resource tracker, pool workers), removes the staging folders and
exits 128 + signal number (130 for Ctrl-C) after printing the table so far. A worker whose runner dies
(SIGKILL) kills its kernel's process group itself. ``<out>/.lock`` refuses a second concurrent run on the
same output folder; temporaries of killed runs are removed at start.

Parameters (``-p NAME VALUE``) are checked before anything runs: the type against the ``parameters`` cell
(read as JSON, no nbformat import) and the range by the notebook's own cell tagged ``validate`` (run on the
given values in a short plain-Python process; see :func:`preflight`).
"""
from __future__ import annotations

import ast
import contextlib
import fnmatch
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tokenize
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import paths

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
SUPPORTED_TYPES = ("int", "float", "bool", "str")
#: Kernel command-line options: keep the kernel's own log quiet (cell errors are reported separately).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
TRUE_WORDS = {"true": True, "1": True, "false": False, "0": False}


class ParameterError(ValueError):
    """A command-line parameter that the notebooks do not declare, or a value of the wrong type."""


class SetupError(RuntimeError):
    """The run cannot start (no notebooks matched, kernel not registered, output folder locked)."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``: SIGINT for Ctrl-C, SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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


def read_notebook_json(path: str | os.PathLike) -> dict:
    """The notebook file as plain JSON (no nbformat/jsonschema import: fast); ParameterError if unreadable."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"{Path(path).name}: cannot read the notebook ({exc})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ParameterError(f"{Path(path).name}: not a notebook (no list of cells)")
    return nb


def cell_source(cell: Mapping) -> str:
    """A cell's source as one string (the JSON may store it as a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def tagged_cell(nb, tag: str) -> tuple[int, Any] | tuple[None, None]:
    """Index and cell of the first cell carrying ``tag`` (nbformat node or plain JSON dict)."""
    for index, cell in enumerate(nb["cells"]):
        if tag in (cell.get("metadata") or {}).get("tags", []):
            return index, cell
    return None, None


def parameters_cell(nb) -> tuple[int, Any] | tuple[None, None]:
    """Index and cell of the first cell tagged ``parameters`` (None, None if there is none)."""
    return tagged_cell(nb, "parameters")


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

    Parsed with ``ast`` from the notebook's JSON (nothing is executed, nbformat is not imported). Unlike
    ``papermill.inspect_notebook`` this also understands ``int | None`` annotations and needs no kernel
    metadata. Empty when there is no parameters cell.
    """
    nb = read_notebook_json(path)
    _, cell = parameters_cell(nb)
    if cell is None:
        return {}
    source = cell_source(cell)
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

def runs_last(notebook: Path) -> bool:
    """True for a notebook that reads the other notebooks' results (its parameters cell declares
    ``results_dir``, e.g. 09_synthesis): the runner starts it only after every other selected notebook has
    finished and its results are in ``<out>/results/``, whatever ``--jobs``."""
    return "results_dir" in notebook_parameters(notebook)


def _point_readers_at_this_run(notebooks: Sequence[Path], injected: dict, out_root: Path, quick: bool) -> None:
    """A notebook that reads the others' results (:func:`runs_last`) reads this run's ``<out>/results``: when
    that is not its default location (a ``-p`` run, another ``--build-dir``) and no ``results_dir`` was given,
    it is injected (so the canonical build keeps the notebook's default parameters)."""
    readers = [nb for nb in notebooks if runs_last(nb) and "results_dir" not in injected[nb]]
    if not readers:
        return
    from analysis.synthesis import results_location

    own = out_root / "results"
    if own.resolve() != results_location("", quick=quick)[0].resolve():
        own.mkdir(parents=True, exist_ok=True)
        for nb in readers:
            injected[nb]["results_dir"] = str(own)


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



# ------------------------------------------------------------------------------------- preflight

#: Seconds a notebook's ``validate`` cell may take in the preflight process.
PREFLIGHT_TIMEOUT_S = 120.0


def preflight(notebooks: Sequence[Path], per_notebook: Mapping[Path, Mapping[str, Any]],
              cwd: Path | None = None) -> None:
    """Run each notebook's cell tagged ``validate`` on the given values before anything else runs.

    The rule: a notebook checks its parameters (ranges, consistency) in one code cell tagged ``validate``
    that uses only the parameters, builtins and cheap imports (e.g. ``analysis.checks``) and has no side
    effects. The runner executes, in one short plain-Python process per run, the ``parameters`` cell, then
    the values given with ``-p`` (as papermill injects them), then the ``validate`` cell; the first
    exception becomes a ParameterError ``<notebook>: <Error>: <message>``. Notebooks without such a cell,
    or without given values, are skipped. In JupyterLab and papermill the cell simply runs in order.
    """
    jobs = []
    for notebook in notebooks:
        given = dict(per_notebook.get(notebook) or {})
        if not given:
            continue
        nb = read_notebook_json(notebook)
        _, validate = tagged_cell(nb, "validate")
        if validate is None:
            continue
        _, params = parameters_cell(nb)
        jobs.append({"notebook": notebook.name, "parameters": cell_source(params) if params else "",
                     "given": given, "validate": cell_source(validate)})
    if not jobs:
        return
    env = dict(os.environ)
    with _scratch_dir() as scratch:
        env[paths.OUTPUT_ENV_VAR] = str(scratch)  # a validate cell that writes anyway writes here
        try:
            done = subprocess.run([sys.executable, "-m", "analysis.reproduce", "--preflight"],
                                  input=json.dumps(jobs), capture_output=True, text=True, env=env,
                                  cwd=str(cwd or notebooks[0].parent), timeout=PREFLIGHT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ParameterError(f"the 'validate' cells did not finish within {PREFLIGHT_TIMEOUT_S:g} s; "
                                 "keep them to cheap parameter checks") from None
    try:
        errors = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ParameterError(f"parameter preflight failed: {tail}") from None
    if errors:
        raise ParameterError(errors[0])


@contextlib.contextmanager
def _scratch_dir() -> Iterator[Path]:
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="kit-preflight-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _preflight_main() -> int:
    """Body of the preflight process: JSON jobs on stdin, a JSON list of error lines as the last stdout line."""
    jobs = json.loads(sys.stdin.read())
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # a cell's prints must not corrupt the answer
    errors = []
    for job in jobs:
        namespace: dict[str, Any] = {"__name__": "__main__"}
        try:
            exec(compile(job["parameters"], f"{job['notebook']}:parameters", "exec"), namespace)
            namespace.update(job["given"])
            exec(compile(job["validate"], f"{job['notebook']}:validate", "exec"), namespace)
        except NameError as exc:
            errors.append(f"{job['notebook']}: its 'validate' cell must use only the parameters and its own "
                          f"imports ({type(exc).__name__}: {exc})")
            break
        except BaseException as exc:  # noqa: BLE001 - every failure of the checks is a parameter error
            message = str(exc) or type(exc).__name__
            errors.append(f"{job['notebook']}: invalid parameters ({type(exc).__name__}: {message})")
            break
    sys.stdout = real_stdout
    print(json.dumps(errors))
    return 0


# ---------------------------------------------------------------------------------- output folders

def output_root(build_dir: Path, quick: bool, given: Sequence[tuple[str, Any]]) -> Path:
    """Where a run keeps its outputs: ``build/`` (canonical), ``build/quick/`` or ``build/runs/<parameters>/``.

    The name of a parametrised run lists its parameters, e.g. ``build/runs/quick_seed-7_replications-20``.
    """
    if not given:
        return build_dir / "quick" if quick else build_dir
    parts = (["quick"] if quick else []) + [f"{name}-{value}" for name, value in given]
    slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", "_".join(parts)).strip("_.") or "params"
    if len(slug) > 80:
        import hashlib

        slug = slug[:64] + "-" + hashlib.sha256(slug.encode()).hexdigest()[:12]
    return build_dir / "runs" / slug


class OutputLock:
    """Exclusive lock on an output folder (``<folder>/.lock``, POSIX flock) for the length of a run.

    A second run on the same folder gets a SetupError naming the holder's pid; a lock file left by a dead
    process is taken over (the kernel releases a flock when its holder dies). The file is removed on release.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                raise SetupError(f"another `python -m analysis reproduce` run{holder} is writing to "
                                 f"{self.folder}; wait for it to finish or stop it") from None
            try:  # the holder may have removed the file between our open and flock: lock the current one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "argv": sys.argv}).encode())
        self.fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f" (pid {info['pid']}, started {info['started']})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


#: Temporary files a killed run can leave: executed notebooks of the old runner, atomic-write temporaries.
STALE_PATTERNS = (".[0-9][0-9]_*.tmp.ipynb", ".*.tmp")


def remove_stale_temporaries(folders: Sequence[Path]) -> list[Path]:
    """Remove staging folders and temporaries of killed runs from ``folders`` (held under their lock).

    Looks in each folder's ``.staging/``, ``notebooks/``, ``html/``, ``results/``, ``figures/`` and ``failed/``.
    Returns what was removed.
    """
    removed = []
    for folder in folders:
        staging = folder / ".staging"
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
        for sub in (folder, folder / "notebooks", folder / "html", folder / "results", folder / "figures",
                    folder / "failed"):
            if not sub.is_dir():
                continue
            for pattern in STALE_PATTERNS:
                for path in sub.glob(pattern):
                    if path.is_file():
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                            removed.append(path)
    return removed


def check_index(directory: Path) -> list[str]:
    """Problems between a figure folder's ``index.json`` and its files (a run killed while saving).

    One line per problem: a recorded file that is missing or whose sha256 differs, a figure file that the
    index does not list, an index that is not valid JSON. Empty when everything matches or there is no index.
    """
    import hashlib

    path = directory / "index.json"
    if not path.is_file():
        return []
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        entries = {str(k): dict(v) for k, v in index.items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        return [f"{path}: not a valid figure index ({exc})"]
    problems, listed = [], set()
    for fig_id, entry in sorted(entries.items()):
        files = entry.get("files") if isinstance(entry.get("files"), dict) else {}
        for record in files.values():
            if not isinstance(record, dict) or "path" not in record:
                continue
            name = str(record["path"])
            listed.add(name)
            file = directory / name
            if not file.is_file():
                problems.append(f"{directory / name}: listed for {fig_id} in index.json but missing")
            elif record.get("sha256") and hashlib.sha256(file.read_bytes()).hexdigest() != record["sha256"]:
                problems.append(f"{directory / name}: sha256 differs from index.json (a run killed while saving?)")
    for file in sorted(directory.glob("fig-*")):
        if file.suffix in (".png", ".svg") and file.name not in listed:
            problems.append(f"{file}: not listed in index.json")
    return problems


def _file_mode() -> int:
    """0666 minus the process umask (0644 under umask 022): the mode of a normally created file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _move(source: Path, target: Path, mode: int) -> Path:
    """Atomically move ``source`` over ``target`` (same filesystem), with a normal file mode."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(source, mode)
    os.replace(source, target)
    return target


# --------------------------------------------------------------------------------------- results

@dataclass
class NotebookResult:
    """Outcome of executing one notebook (seconds of wall time, number of figures it produced)."""

    notebook: str
    status: str  # "ok", "failed" or "interrupted"
    seconds: float
    figures: int = 0
    cell_index: int | None = None  # 0-based index of the failing cell in the source notebook
    error: str | None = None
    executed: Path | None = None
    html: Path | None = None
    figure_ids: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_back: list[tuple[str, str]] = field(default_factory=list)
    cpu_seconds: float | None = None  # CPU of the execution: papermill, the kernel and its workers (not HTML)
    outputs: Path | None = None  # folder holding this run's figures/results when not published

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
        nb = read_notebook_json(notebook)
    except ParameterError:  # best effort; fall back to papermill's index
        return cell_index
    index, _ = parameters_cell(nb)
    injected_at = 0 if index is None else index + 1  # papermill injects after the parameters cell
    return cell_index - 1 if cell_index > injected_at else cell_index


def export_html(executed: Path, target: Path) -> None:
    """Render an executed notebook to HTML with :func:`analysis.html_report.export_html`."""
    from analysis import html_report

    html_report.export_html(executed, target)


# ---------------------------------------------------------------------------------------- worker

def _kill_group(pgid: int | None, signum: int) -> bool:
    """Send ``signum`` to process group ``pgid``; False when the group has no process left."""
    if not pgid or pgid <= 1 or pgid == os.getpgrp():
        return False
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def _process_tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished, reaped children (the kernel and,
    through it, the kernel's replication workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _worker_main(spec_path: str) -> int:
    """Body of a worker process: execute one notebook with papermill, report events, render HTML.

    Events (one JSON object per line on the file descriptor ``events_fd``): ``kernel`` (its process group
    id), ``cell`` (k-th code cell of n started), ``done`` (status, error, failing cell). A watchdog thread
    kills the kernel's process group and exits when the runner (our parent) dies.
    """
    cpu_at_start = _process_tree_cpu_s()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    events = os.fdopen(spec["events_fd"], "w", buffering=1, encoding="utf-8")
    lock = threading.Lock()

    def emit(**event: Any) -> None:
        with lock, contextlib.suppress(OSError, ValueError):
            events.write(json.dumps(event) + "\n")
            events.flush()

    from analysis._lazy import without_iri_grammars

    without_iri_grammars()
    import papermill as pm
    from jupyter_client.manager import AsyncKernelManager
    from papermill.exceptions import PapermillExecutionError

    managers: list[AsyncKernelManager] = []

    class TrackedKernelManager(AsyncKernelManager):
        """nbclient's default kernel manager, remembered so the watchdog can read the kernel's process group."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            managers.append(self)

    parent = os.getppid()
    state: dict[str, Any] = {"pgid": None}

    def kernel_pgid() -> int | None:
        for km in managers:
            provisioner = getattr(km, "provisioner", None)
            pgid = getattr(provisioner, "pgid", None)
            if pgid:
                return int(pgid)
        return None

    def watchdog() -> None:
        while True:
            if state["pgid"] is None:
                state["pgid"] = kernel_pgid()
                if state["pgid"] is not None:
                    emit(event="kernel", pgid=state["pgid"])
            if os.getppid() != parent:  # the runner died (SIGKILL): take the kernel's processes with us
                _kill_group(state["pgid"] or kernel_pgid(), signal.SIGKILL)
                os._exit(137)
            time.sleep(0.1)

    threading.Thread(target=watchdog, name="kit-watchdog", daemon=True).start()

    notebook, executed = Path(spec["notebook"]), Path(spec["executed"])
    parameters = spec["parameters"]
    source = read_notebook_json(notebook)
    code_cells = sum(1 for c in source["cells"] if c.get("cell_type") == "code") + (1 if parameters else 0)
    counter = {"n": 0}

    def on_cell_start(cell: Any, cell_index: int) -> None:
        if cell.get("cell_type") == "code":
            counter["n"] += 1
            emit(event="cell", index=counter["n"], count=code_cells)

    done: dict[str, Any] = {"event": "done", "status": "ok", "cell_index": None, "error": None}
    try:
        # request_save_on_cell_execute=False: papermill otherwise rewrites the whole executed notebook (figures
        # included) at every cell's start and end, about 1 CPU-s per notebook; it still writes it at the end and
        # on a cell error, and progress comes from on_cell_start.
        pm.execute_notebook(str(notebook), str(executed), parameters=parameters or None,
                            kernel_name=spec["kernel_name"], cwd=spec["cwd"], progress_bar=False,
                            log_output=False, extra_arguments=KERNEL_ARGUMENTS,
                            request_save_on_cell_execute=False,
                            kernel_manager_class=TrackedKernelManager, on_cell_start=on_cell_start)
    except PapermillExecutionError as exc:
        done.update(status="failed", error=f"{exc.ename}: {exc.evalue}",
                    cell_index=_source_cell_index(notebook, exc.cell_index, bool(parameters)))
    except Exception as exc:  # noqa: BLE001 - kernel died, bad notebook JSON, ...: report
        done.update(status="failed", error=f"{type(exc).__name__}: {exc}".strip())
    _kill_group(state["pgid"] or kernel_pgid(), signal.SIGKILL)  # processes the notebook left running
    done["cpu_s"] = round(_process_tree_cpu_s() - cpu_at_start, 2)  # papermill, kernel, its workers; not HTML
    if spec.get("html") and executed.is_file():
        try:
            export_html(executed, Path(spec["html"]))
        except Exception as exc:  # noqa: BLE001
            if done["status"] == "ok":
                done.update(status="failed", error=f"HTML export failed: {type(exc).__name__}: {exc}")
    emit(**done)
    return 0


# ----------------------------------------------------------------------------------------- runner

#: Seconds the kernel gets to stop after an interrupt before its process group is killed.
STOP_GRACE_S = 2.0
#: On a non-terminal stderr, a running notebook's progress line is printed at most this often (s).
PROGRESS_INTERVAL_S = 15.0


@dataclass
class _Job:
    """One notebook execution in a worker process."""

    index: int
    notebook: Path
    parameters: dict[str, Any]
    staging: Path
    process: subprocess.Popen | None = None
    events: Any = None  # read end of the event pipe (binary file)
    buffer: bytes = b""
    kernel_pgid: int | None = None
    started: float = 0.0
    cell: tuple[int, int] | None = None
    done: dict[str, Any] | None = None
    finished: float | None = None
    last_report: float = 0.0

    @property
    def executed(self) -> Path:
        return self.staging / self.notebook.name

    @property
    def html(self) -> Path:
        return self.staging / f"{self.notebook.stem}.html"


class _Progress:
    """Progress on stderr: a live status line on a terminal, throttled plain lines otherwise."""

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self._status = ""

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty and self._status:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty and self._status:
            self.stream.write(self._status)
        self.stream.flush()

    def running(self, jobs: Sequence[_Job], now: float) -> None:
        if not self.enabled:
            return
        if self.tty:
            parts = [f"{j.notebook.stem}: " + (f"cell {j.cell[0]}/{j.cell[1]}" if j.cell else "starting")
                     + f" {now - j.started:.0f} s" for j in jobs]
            status = ("running " + "; ".join(parts))[: shutil.get_terminal_size().columns - 1] if parts else ""
            if status != self._status:
                self.stream.write("\r\x1b[K" + status)
                self.stream.flush()
                self._status = status
            return
        for job in jobs:
            if job.cell and now - job.last_report >= PROGRESS_INTERVAL_S:
                job.last_report = now
                self.line(f"{job.notebook.name}: cell {job.cell[0]}/{job.cell[1]} ({now - job.started:.0f} s)")

    def close(self) -> None:
        if self.tty and self._status:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._status = ""


class _Signals:
    """While active, SIGINT and SIGTERM only record the signal (the run loop then stops every worker)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def _record(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _start(job: _Job, kernel_name: str, cwd: Path, html: bool) -> None:
    """Start the worker process of ``job`` in a new session, outputs staged in ``job.staging``."""
    if job.staging.exists():
        shutil.rmtree(job.staging)
    job.staging.mkdir(parents=True)
    read_fd, write_fd = os.pipe()
    spec = {"notebook": str(job.notebook), "executed": str(job.executed),
            "html": str(job.html) if html else None, "parameters": job.parameters,
            "kernel_name": kernel_name, "cwd": str(cwd), "events_fd": write_fd}
    spec_path = job.staging / "worker.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ, **{paths.OUTPUT_ENV_VAR: str(job.staging)})
    log = open(job.staging / "worker.log", "wb")  # noqa: SIM115 - closed right after the start
    try:
        job.process = subprocess.Popen(
            [sys.executable, "-m", "analysis.reproduce", "--worker", str(spec_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(cwd),
            pass_fds=(write_fd,), start_new_session=True)
    finally:
        os.close(write_fd)
        log.close()
    os.set_blocking(read_fd, False)
    job.events = os.fdopen(read_fd, "rb", buffering=0)
    job.started = job.last_report = time.monotonic()


def _read_events(job: _Job) -> bool:
    """Consume the worker's pending events; True at end of stream."""
    eof = False
    while True:
        try:
            chunk = job.events.read(65536)
        except BlockingIOError:
            break
        if chunk is None:
            break
        if not chunk:
            eof = True
            break
        job.buffer += chunk
    *lines, job.buffer = job.buffer.split(b"\n")
    for raw in lines:
        try:
            event = json.loads(raw)
        except json.JSONDecodeError:
            continue
        kind = event.get("event")
        if kind == "kernel":
            job.kernel_pgid = int(event["pgid"])
        elif kind == "cell":
            job.cell = (int(event["index"]), int(event["count"]))
        elif kind == "done":
            job.done = event
    return eof


def _wait_gone(job: _Job, deadline: float) -> bool:
    """Wait until the worker exited and the kernel's process group is empty (or ``deadline``)."""
    while time.monotonic() < deadline:
        worker_alive = job.process is not None and job.process.poll() is None
        if not worker_alive and not _kill_group(job.kernel_pgid, 0):
            return True
        time.sleep(0.05)
    return False


def _stop(jobs: Sequence[_Job]) -> None:
    """Interrupt the running cells, then shut down and kill every worker's and kernel's process group."""
    for job in jobs:
        _read_events(job)
        _kill_group(job.kernel_pgid, signal.SIGINT)  # KeyboardInterrupt in the cell and its pool workers
    deadline = time.monotonic() + STOP_GRACE_S / 2
    for job in jobs:
        _wait_gone(job, deadline)
    for job in jobs:  # the worker's papermill/nbclient gets SIGTERM: it shuts its kernel down
        _read_events(job)
        if job.process is not None and job.process.poll() is None:
            _kill_group(job.process.pid, signal.SIGTERM)
        _kill_group(job.kernel_pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S / 2
    for job in jobs:
        _wait_gone(job, deadline)
    for job in jobs:
        _read_events(job)
        if job.process is not None:
            _kill_group(job.process.pid, signal.SIGKILL)
        _kill_group(job.kernel_pgid, signal.SIGKILL)
    for job in jobs:
        _wait_gone(job, time.monotonic() + 5.0)
        if job.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                job.process.wait(timeout=1.0)
        if job.events is not None:
            job.events.close()
        shutil.rmtree(job.staging, ignore_errors=True)


def _worker_log_tail(job: _Job) -> str:
    try:
        lines = (job.staging / "worker.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _staged_figure_ids(staging: Path) -> list[str]:
    return sorted(p.stem for p in (staging / "figures").glob("fig-*.png"))


def _merge_figures(staging: Path, destination: Path, notebook: str, mode: int) -> list[str]:
    """Copy one notebook's staged figures into a non-canonical ``destination`` and merge the index.

    That notebook's previous figures in ``destination`` that were not produced again are removed.
    """
    source = staging / "figures"
    staged_index = _read_index(source / "index.json")
    destination.mkdir(parents=True, exist_ok=True)
    index = _read_index(destination / "index.json")
    produced = set(_staged_figure_ids(staging))
    for fig_id, entry in list(index.items()):
        if Path(str(entry.get("notebook", ""))).name == notebook and fig_id not in produced:
            del index[fig_id]
            for suffix in (".png", ".svg"):
                with contextlib.suppress(FileNotFoundError):
                    (destination / f"{fig_id}{suffix}").unlink()
    for path in sorted(source.glob("fig-*")):
        if path.suffix in (".png", ".svg") and path.stem in produced:
            _move(path, destination / path.name, mode)
    index.update({k: v for k, v in staged_index.items() if k in produced})
    index = dict(sorted(index.items()))
    from analysis.atomic import atomic_write_json, atomic_write_text

    atomic_write_json(destination / "index.json", index)
    try:
        from analysis.figures import render_gallery
    except ImportError:  # pragma: no cover - the gallery is a convenience here
        return sorted(produced)
    atomic_write_text(destination / "README.md", render_gallery(index))
    return sorted(produced)


def _read_index(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _finish(job: _Job, out_root: Path, canonical: bool, mode: int) -> NotebookResult:
    """Turn a finished worker into a NotebookResult and move its staged outputs to their places."""
    done = job.done or {}
    seconds = (job.finished or time.monotonic()) - job.started
    result = NotebookResult(job.notebook.name, done.get("status", "failed"), seconds,
                            cell_index=done.get("cell_index"), error=done.get("error"),
                            cpu_seconds=done.get("cpu_s"))
    if job.done is None:
        code = job.process.returncode if job.process is not None else None
        tail = _worker_log_tail(job)
        result.error = f"the worker process ended (exit status {code}) without a result" + (
            f": {tail}" if tail else "")
    result.figure_ids = _staged_figure_ids(job.staging)
    result.figures = len(result.figure_ids)
    name, stem = job.notebook.name, job.notebook.stem
    failed_dir = out_root / "failed"
    if result.ok:
        result.executed = _move(job.executed, out_root / "notebooks" / name, mode)
        if job.html.is_file():
            result.html = _move(job.html, out_root / "html" / f"{stem}.html", mode)
        for stale in (failed_dir / name, failed_dir / f"{stem}.html"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        for path in sorted((job.staging / "results").glob("*.json")):
            _move(path, out_root / "results" / path.name, mode)
        if canonical:
            _publish(job, result)
        elif result.figure_ids:
            _merge_figures(job.staging, out_root / "figures", name, mode)
            result.outputs = out_root
        elif (job.staging / "results").is_dir():
            result.outputs = out_root
    else:
        if job.executed.is_file():
            result.executed = _move(job.executed, failed_dir / name, mode)
        if job.html.is_file():
            result.html = _move(job.html, failed_dir / f"{stem}.html", mode)
    if job.events is not None:
        job.events.close()
    shutil.rmtree(job.staging, ignore_errors=True)
    return result


def _publish(job: _Job, result: NotebookResult) -> None:
    """Hand a successful canonical notebook's staged figures to analysis.publish (the only writer of figures/)."""
    if not result.figure_ids:
        return
    try:
        from analysis.publish import publish_notebook
    except ImportError:
        result.kept_back = [(fig_id, "analysis.publish is not available: nothing written to figures/")
                            for fig_id in result.figure_ids]
        return
    try:
        report = publish_notebook(job.staging, job.notebook.name)
    except Exception as exc:  # noqa: BLE001 - the notebook ran; say why its figures were not published
        result.status = "failed"
        result.error = f"publishing its figures failed: {type(exc).__name__}: {exc}"
        return
    result.published = list(report.published)
    result.unchanged = list(getattr(report, "unchanged", []))
    result.kept_back = [tuple(item) for item in report.kept_back]


def default_jobs() -> int:
    """Number of notebooks run at once by default: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run(notebooks_dir: str | os.PathLike | None = None, build_dir: str | os.PathLike | None = None, *,
        quick: bool = False, only: Sequence[str] | str | None = None,
        parameters: Sequence[tuple[str, Any]] | Mapping[str, Any] = (), kernel_name: str = paths.KERNEL_NAME,
        html: bool = True, progress: bool = True, results: list[NotebookResult] | None = None,
        jobs: int | None = None) -> list[NotebookResult]:
    """Execute the selected notebooks, up to ``jobs`` at once; one NotebookResult per notebook, in order.

    Parameters are validated (types, then each notebook's ``validate`` cell) before anything is written.
    ``quick`` injects ``quick=True``. Outputs: see :func:`output_root`; the canonical run (no parameters,
    not quick) publishes figures through ``analysis.publish``. ``results`` (optional list) is filled in
    notebook order as notebooks finish, so a caller still has them when :class:`Interrupted` propagates.
    """
    notebooks_dir = Path(notebooks_dir or paths.NOTEBOOKS).resolve()
    build_dir = Path(build_dir or paths.BUILD).resolve()
    notebooks = discover(notebooks_dir, only)
    if not notebooks:
        patterns = [only] if isinstance(only, str) else list(only or [])
        what = "matching --only " + " ".join(repr(p) for p in patterns) + " " if patterns else ""
        raise SetupError(f"no notebooks {what}in {notebooks_dir} (expected names like 00_foundations.ipynb)")
    pairs = list(parameters.items()) if isinstance(parameters, Mapping) else [tuple(p) for p in parameters]
    per_notebook = validate_parameters(notebooks, pairs)
    injected = {nb: ({"quick": True} if quick else {}) | per_notebook[nb] for nb in notebooks}
    preflight(notebooks, injected, notebooks_dir)
    check_kernel(kernel_name)
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise SetupError(f"--jobs must be >= 1, got {jobs}")

    canonical = not quick and not pairs
    out_root = output_root(build_dir, quick, pairs)
    _point_readers_at_this_run(notebooks, injected, out_root, quick)
    results = [] if results is None else results
    mode = _file_mode()
    report = _Progress(progress)
    with OutputLock(out_root), _Signals() as signals:
        remove_stale_temporaries([out_root] + ([paths.COMMITTED_FIGURES] if canonical else []))
        for problem in check_index(paths.COMMITTED_FIGURES if canonical else out_root / "figures"):
            print(f"warning: {problem}; rerun the notebook that makes it", file=sys.stderr)
        notebooks = sorted(notebooks, key=runs_last)  # stable: readers of the others' results go last
        queue = [_Job(i, nb, injected[nb], out_root / ".staging" / nb.stem) for i, nb in enumerate(notebooks)]
        last = {job.index for job in queue if runs_last(job.notebook)}
        pending, running, finished = list(queue), [], {}
        next_result = 0
        try:
            while (pending or running) and signals.signum is None:
                while pending and len(running) < jobs and signals.signum is None:
                    if pending[0].index in last and (running or finished):
                        break  # it reads the others' results: start it once they are all moved in place
                    job = pending.pop(0)
                    report.line(f"running {job.notebook.name}")
                    _start(job, kernel_name, notebooks_dir, html)
                    running.append(job)
                _poll(running, finished, report)
                while next_result in finished and signals.signum is None:
                    result = _finish(finished.pop(next_result), out_root, canonical, mode)
                    results.append(result)
                    detail = "" if result.ok else f": {result.failure_line(with_name=False)}"
                    cpu = "" if result.cpu_seconds is None else f" ({result.cpu_seconds:.1f} CPU-s)"
                    report.line(f"{result.notebook}: {result.status} in {result.seconds:.1f} s{cpu}, "
                                f"{result.figures} figure(s){detail}")
                    next_result += 1
        finally:
            stopped = signals.signum is not None or sys.exc_info()[0] is not None
            if stopped:
                report.close()
                _stop(running)
                # notebooks that completed before the signal keep their (complete) outputs
                tail = [_finish(finished.pop(i), out_root, canonical, mode) for i in sorted(finished)]
                tail += [NotebookResult(job.notebook.name, "interrupted", time.monotonic() - job.started)
                         for job in running]
                order = {nb.name: i for i, nb in enumerate(notebooks)}
                results.extend(sorted(tail, key=lambda r: order[r.notebook]))
            report.close()
            shutil.rmtree(out_root / ".staging", ignore_errors=True)
        if signals.signum is not None:
            raise Interrupted(signals.signum)
    return results


def _poll(running: list[_Job], finished: dict[int, _Job], report: _Progress, timeout: float = 0.2) -> None:
    """Wait up to ``timeout`` s for worker events; move ended workers from ``running`` to ``finished``."""
    import selectors

    with selectors.DefaultSelector() as selector:
        for job in running:
            selector.register(job.events, selectors.EVENT_READ, job)
        selector.select(timeout)
    now = time.monotonic()
    for job in list(running):
        eof = _read_events(job)
        if eof or job.process.poll() is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                job.process.wait(timeout=5.0)
            _read_events(job)
            _kill_group(job.kernel_pgid, signal.SIGKILL)  # anything the notebook left running
            job.finished = now
            running.remove(job)
            finished[job.index] = job
    report.running(running, now)


# ------------------------------------------------------------------------------------------ report

def format_table(results: Sequence[NotebookResult]) -> str:
    """Plain-text table: notebook, status, wall seconds, CPU seconds (all processes of the execution), figures."""
    rows = [("notebook", "status", "seconds", "CPU-s", "figures")]
    rows += [(r.notebook, r.status, f"{r.seconds:.1f}",
              "-" if r.cpu_seconds is None else f"{r.cpu_seconds:.1f}", str(r.figures)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def outputs_summary(results: Sequence[NotebookResult]) -> list[str]:
    """Lines saying what was published to figures/, what was kept back and where other outputs are."""
    lines = []
    for r in results:
        if r.published:
            lines.append(f"{r.notebook}: published to figures/: {', '.join(r.published)}")
        if r.unchanged:
            lines.append(f"{r.notebook}: reproduced to the byte, figures/ left as it was: {', '.join(r.unchanged)}")
        for fig_id, reason in r.kept_back:
            lines.append(f"{r.notebook}: kept back {fig_id}: {reason}")
    folders = sorted({r.outputs for r in results if r.outputs is not None})
    for folder in folders:
        lines.append(f"outputs of this run (figures/ untouched): {_relative(folder)}/ "
                     "(figures/, results/, notebooks/, html/)")
    return lines


def cli(args) -> int:
    """``python -m analysis reproduce``: run, print the table; exit 0 (all ok), 1 (failures), 2 (bad usage),
    128 + signal number when interrupted (130 for Ctrl-C)."""
    results: list[NotebookResult] = []
    try:
        run(args.notebooks_dir, args.build_dir, quick=args.quick, only=args.only,
            parameters=[tuple(p) for p in (args.param or [])], progress=not args.no_progress,
            html=not args.no_html, results=results, jobs=args.jobs)
    except (ParameterError, SetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        if results:
            print(format_table(results))
        for line in outputs_summary(results):
            print(line)
        unfinished = [r.notebook for r in results if r.status == "interrupted"]
        what = (f" ({', '.join(unfinished)} not finished; their partial outputs were removed)"
                if unfinished else "")
        print(f"interrupted by {signal.Signals(signum).name}{what}: finished notebooks kept their outputs, "
              "committed figures are unchanged; rerun to finish", file=sys.stderr)
        return 128 + int(signum)
    print(format_table(results))
    for line in outputs_summary(results):
        print(line)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} notebook(s) failed (nothing of theirs was published):",
              file=sys.stderr)
        for r in failed:
            print(f"  {r.failure_line()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(_worker_main(sys.argv[2]))
    if sys.argv[1:2] == ["--preflight"]:
        sys.exit(_preflight_main())
    sys.exit("usage: python -m analysis reproduce ... (this module's own entry point is internal)")
