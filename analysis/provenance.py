"""Provenance helpers: file hashes, the git commit behind a result, package versions, JSON-safe values.

Everything here is deterministic (no timestamps), so that recording provenance twice for the same
inputs gives the same bytes.
"""
from __future__ import annotations

import hashlib
import math
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


def git_info(pathspecs: Sequence[str | os.PathLike] = ("analysis",)) -> dict[str, Any]:
    """Last commit that touched ``pathspecs`` (relative to the project root) and whether they are dirty.

    Returns ``{"commit": <40 hex> | None, "dirty": bool | None}``; both None outside a git checkout.
    Only the given paths count, so committing generated figures does not change the recorded commit.
    """
    specs = []
    for spec in pathspecs:
        spec_path = Path(spec)
        if spec_path.is_absolute():
            try:
                spec_path = spec_path.resolve().relative_to(paths.ROOT)
            except ValueError:
                continue  # outside the repository: git knows nothing about it
        specs.append(spec_path.as_posix())
    if not specs:
        return {"commit": None, "dirty": None}
    commit = _git(["log", "-1", "--format=%H", "--", *specs])
    status = _git(["status", "--porcelain", "--untracked-files=normal", "--", *specs])
    commit = commit.strip() if commit else None
    return {"commit": commit or None, "dirty": None if status is None else bool(status.strip())}


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


def to_jsonable(value: Any, name: str = "value") -> Any:
    """Convert ``value`` to plain JSON types (numpy scalars/arrays, Paths, tuples included).

    Raises ValueError naming the offending key path (e.g. ``results['mmc']['p_wait']``) for NaN or
    infinite numbers, non-string keys and unsupported types (DataFrames: convert them explicitly).
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
