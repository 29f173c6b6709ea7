"""Provenance helpers: file hashes, the git commit behind a result, package versions, JSON-safe values.

Everything here is deterministic (no timestamps), so that recording provenance twice for the same
inputs gives the same bytes.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis import paths

#: Packages whose versions are recorded with every figure (``python`` is the interpreter).
TRACKED_PACKAGES = ("numpy", "pandas", "matplotlib", "ciw", "statsmodels", "scipy")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks). ValueError naming the file if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot hash {str(path)!r}: no such file")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def portable_path(path: str | os.PathLike) -> str:
    """A path string that does not depend on where the kit is checked out.

    Relative to the project root when inside it, else relative to the real-data root when inside that,
    else the absolute path (e.g. a scratch notebook under /tmp).
    """
    path = Path(path).resolve()
    bases = [paths.ROOT]
    try:
        root = paths.data_root()
    except ValueError:
        root = None
    if root is not None:
        bases.append(root)
    for base in bases:
        try:
            return path.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def _git(args: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(paths.ROOT), *args], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


#: Paths whose changes do not make the code "dirty": the published figures are outputs, not code.
GIT_DIRTY_EXCLUDE = ("figures",)


def git_info(exclude: Sequence[str] = GIT_DIRTY_EXCLUDE) -> dict[str, Any]:
    """The commit checked out when a result is made (HEAD) and whether tracked code differs from it.

    Returns ``{"commit": <40 hex> | None, "dirty": bool | None}``; both None outside a git checkout.
    ``dirty`` counts modified, staged and untracked (not ignored) files anywhere in the checkout except
    under ``exclude`` (the published ``figures/``). Notebooks are compared through git's clean filter
    (nbstripout, installed by ``make setup``), so outputs autosaved by JupyterLab do not count.
    """
    head = _git(["rev-parse", "--verify", "--quiet", "HEAD"])
    commit = head.strip() if head else None
    if commit is None:
        return {"commit": None, "dirty": None}
    specs = [".", *(f":(exclude){item}" for item in exclude)]
    status = _git(["status", "--porcelain", "--untracked-files=normal", "--", *specs])
    return {"commit": commit, "dirty": None if status is None else bool(status.strip())}


# ------------------------------------------------------------------------------------- notebooks
#: Keys nbstripout strips by default (nbstripout 0.9 ``main``), repeated here so that the notebook hash
#: below equals the content git stores through the filter.
NBSTRIPOUT_DEFAULT_KEYS = (
    "metadata.signature", "metadata.widgets", "cell.metadata.collapsed", "cell.metadata.ExecuteTime",
    "cell.metadata.execution", "cell.metadata.heading_collapsed", "cell.metadata.hidden",
    "cell.metadata.scrolled",
)
#: Extra keys the kit's filter strips: the interpreter's patch version (the kernel writes it into
#: ``language_info`` and it differs between machines) and papermill's run records.
NOTEBOOK_EXTRA_KEYS = ("metadata.language_info.version", "metadata.papermill", "cell.metadata.papermill")
#: nbstripout options of the kit's git filter: keep the committed cell ids (JupyterLab keeps them too).
NBSTRIPOUT_OPTIONS = ("--keep-id", "--extra-keys", " ".join(NOTEBOOK_EXTRA_KEYS))


def stripped_notebook(path: str | os.PathLike) -> bytes:
    """The bytes git stores for a notebook file through the kit's nbstripout filter (no outputs, no counts).

    Same result as ``python -m nbstripout --keep-id --extra-keys ... < path``; for a notebook that is
    already clean this is the file itself. ValueError naming the file if it is missing or not a notebook.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot hash {str(path)!r}: no such file")
    return stripped_notebook_bytes(path.read_bytes(), str(path))


def stripped_notebook_bytes(data: bytes, name: str = "notebook") -> bytes:
    """:func:`stripped_notebook` for a notebook's bytes (e.g. ``git show HEAD:notebooks/...``)."""
    import warnings

    from analysis._lazy import without_iri_grammars

    without_iri_grammars()
    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        try:
            nb = nbformat.reads(data.decode("utf-8"), as_version=nbformat.NO_CONVERT)
        except Exception as exc:  # noqa: BLE001 - nbformat raises several types for bad JSON
            raise ValueError(f"{name!r} is not a readable notebook: {exc}") from None
        text = nbformat.writes(_strip_node(nb))
    if not text.endswith("\n"):
        text += "\n"  # as nbformat.write (used by nbstripout) ends the file
    return text.encode("utf-8")


def notebook_sha256(path: str | os.PathLike) -> str:
    """sha256 of the notebook as git stores it (:func:`stripped_notebook`): outputs and execution counts
    saved by JupyterLab or papermill do not change it; an edit to a cell's source or tags does."""
    return sha256_bytes(stripped_notebook(path))


def _strip_node(nb):
    from nbstripout import strip_output

    return strip_output(nb, keep_output=False, keep_count=False, keep_id=True,
                        extra_keys=[*NBSTRIPOUT_DEFAULT_KEYS, *NOTEBOOK_EXTRA_KEYS])


def strip_before_save(model: dict, path: str, contents_manager: Any, **kwargs: Any) -> None:
    """JupyterLab pre-save hook: a notebook under ``notebooks/`` is saved as git stores it.

    Outputs, execution counts and the interpreter's patch version stay in the browser but are not
    written to the file, so opening, running and autosaving a source notebook leaves ``git status``
    clean (the git filter alone leaves size-changed files listed as modified). Other folders (e.g. a
    scratch notebook under ``build/``) are saved unchanged. Registered by ``make setup``.
    """
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    try:
        os_path = Path(contents_manager._get_os_path(path)).resolve()
    except Exception:  # noqa: BLE001 - not a file-backed contents manager: leave the save alone
        return
    if not os_path.is_relative_to(paths.NOTEBOOKS.resolve()):
        return
    import nbformat  # the server has imported jsonschema (with its format checkers) already

    model["content"] = _strip_node(nbformat.from_dict(model["content"]))


def install_jupyter_save_hook(prefix: str | os.PathLike) -> Path:
    """Register :func:`strip_before_save` in ``<prefix>/etc/jupyter/jupyter_server_config.json``.

    ``prefix``: the environment (``.venv``) whose Jupyter server runs JupyterLab. Other settings in that
    file are kept. (Files in ``jupyter_server_config.d/`` only enable extensions, so the hook goes here.)
    """
    import json

    target = Path(prefix) / "etc" / "jupyter" / "jupyter_server_config.json"
    config: dict[str, Any] = {}
    if target.is_file():
        try:
            config = json.loads(target.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{target}: not valid JSON ({exc}); fix or delete it") from None
    config.setdefault("ContentsManager", {})["pre_save_hook"] = "analysis.provenance.strip_before_save"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def notebook_filter_command(python: str) -> str:
    """The git clean-filter command line: ``"<python>" -m nbstripout --keep-id --extra-keys '...'``."""
    import shlex

    return " ".join([shlex.quote(python), "-m", "nbstripout", *(shlex.quote(o) for o in NBSTRIPOUT_OPTIONS)])


def install_notebook_filter(python: str = ".venv/bin/python", repo: str | os.PathLike | None = None) -> None:
    """Register nbstripout as the git filter and diff driver named in ``.gitattributes`` (``make setup``).

    ``python``: the interpreter that has nbstripout; a relative path is resolved by git from the top of
    the working tree (so each checkout or worktree uses its own ``.venv``). Writes the repository's
    local git config (``filter.nbstripout.*``, ``diff.ipynb.textconv``), like ``nbstripout --install``.
    """
    command = notebook_filter_command(python)
    settings = [("filter.nbstripout.clean", command), ("filter.nbstripout.smudge", "cat"),
                ("filter.nbstripout.required", "true"), ("diff.ipynb.textconv", command + " -t")]
    where = Path(repo) if repo is not None else paths.ROOT
    for key, value in settings:
        subprocess.run(["git", "-C", str(where), "config", "--local", key, value], check=True,
                       capture_output=True, text=True, timeout=30)


@lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    versions: list[tuple[str, str | None]] = [("python", platform.python_version())]
    for name in TRACKED_PACKAGES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            versions.append((name, None))
    return tuple(versions)


def package_versions() -> dict[str, str | None]:
    """Versions of python, numpy, pandas, matplotlib, ciw, statsmodels and scipy (None if not installed)."""
    return dict(_package_versions())


def finite_or_none(value: Any) -> Any:
    """None for a NaN or infinite real number (Python or numpy float), else ``value`` unchanged.

    The explicit way for a notebook to record "no value" (JSON null), e.g. the p99 of an overloaded hour
    (infinite s): :func:`to_jsonable` and ``NotebookOutputs.write_results`` still reject a NaN or infinity
    that was not passed through here.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return value if math.isfinite(value) else None
    return value


def to_jsonable(value: Any, name: str = "value") -> Any:
    """Convert ``value`` to plain JSON types (numpy scalars/arrays, Paths, tuples included).

    Raises ValueError naming the offending key path (e.g. ``results['mmc']['p_wait']``) for NaN or
    infinite numbers (pass a value through :func:`finite_or_none` to record it as None instead), non-string keys and unsupported types (DataFrames: convert them explicitly).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None
    if np is not None:
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            value = float(value)
        elif isinstance(value, np.ndarray):
            return [to_jsonable(item, f"{name}[{i}]") for i, item in enumerate(value.tolist())]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError(f"{name} is NaN: JSON results must be finite numbers (use None for 'no value')")
        if math.isinf(value):
            raise ValueError(f"{name} is infinite ({value}): JSON results must be finite numbers")
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if np is not None and isinstance(key, (np.str_,)):
                key = str(key)
            if not isinstance(key, str):
                raise ValueError(f"{name}: key {key!r} is a {type(key).__name__}; JSON keys must be strings")
            out[key] = to_jsonable(item, f"{name}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, f"{name}[{i}]") for i, item in enumerate(value)]
    raise ValueError(f"{name} has unsupported type {type(value).__name__}; convert it to numbers, strings, "
                     "lists or dicts (e.g. DataFrame.to_dict())")
