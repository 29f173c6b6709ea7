"""Absolute project paths and the data-directory lookup, so notebooks run from any working directory.

Lookup order for real data (first hit wins):
1. the notebook's ``data_dir`` parameter (a non-empty string),
2. the environment variable ``KIT_DATA_DIR``,
3. ``data/external/`` when ``make data`` has downloaded something into it,
4. otherwise ``None``: callers fall back to the embedded synthetic default in ``data/synthetic/``.

Outputs: a notebook writes its figures to :func:`figures_dir` and its results JSON to :func:`results_dir`,
both below ``KIT_OUTPUT_DIR`` when that variable is set (``python -m analysis reproduce`` sets it to a fresh
staging folder per notebook run; the test-suite to a temporary folder), else below ``build/interactive/``
(JupyterLab, plain papermill). No notebook run writes ``figures/`` (``COMMITTED_FIGURES``) directly: only
``analysis.publish.publish_notebook`` does, called by the canonical ``make reproduce`` for notebooks that
succeeded.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DATA = ROOT / "data"
DATA_EXTERNAL = DATA / "external"
DATA_SYNTHETIC = DATA / "synthetic"
BUILD = ROOT / "build"
COMMITTED_FIGURES = ROOT / "figures"
#: Outputs of notebook runs outside the runner (JupyterLab, plain papermill): never ``figures/``.
INTERACTIVE_OUTPUT = BUILD / "interactive"

DATA_ENV_VAR = "KIT_DATA_DIR"
OUTPUT_ENV_VAR = "KIT_OUTPUT_DIR"
KERNEL_NAME = "cloud-scalability-kit"


def data_root(data_dir: str | os.PathLike | None = "") -> Path | None:
    """Directory holding the real datasets (same layout as ``shared/data``), or None for the embedded default.

    Raises ValueError when an explicitly named directory (parameter or environment variable) does not exist,
    rather than silently falling back to synthetic data. :func:`data_lookup` also says who named it.
    """
    return data_lookup(data_dir)[0]


def data_lookup(data_dir: str | os.PathLike | None = "") -> tuple[Path | None, str]:
    """``(root, named_by)``: the data root and who named it.

    named_by is ``"data_dir='...'"`` or ``"KIT_DATA_DIR='...'"`` when the user named the location (a dataset
    missing there is then an error, never the synthetic default), ``""`` for the default lookup
    (``data/external`` or None). ValueError, naming the parameter or the variable, when a named location is
    not a directory.
    """
    if data_dir:
        path = Path(data_dir).expanduser().resolve()
        if not path.is_dir():
            what = "not a directory" if path.exists() else "no such directory"
            raise ValueError(f"data_dir={str(data_dir)!r}: {what}")
        return path, f"data_dir={str(data_dir)!r}"
    env = os.environ.get(DATA_ENV_VAR, "")
    if env:
        path = Path(env).expanduser().resolve()
        if not path.is_dir():
            what = "not a directory" if path.exists() else "no such directory"
            raise ValueError(f"environment variable {DATA_ENV_VAR}={env!r}: {what} (unset it for the kit's "
                             "default lookup, or point it at a copy of the data)")
        return path, f"{DATA_ENV_VAR}={env!r}"
    if DATA_EXTERNAL.is_dir() and any(p.is_dir() for p in DATA_EXTERNAL.iterdir()):
        return DATA_EXTERNAL, ""
    return None, ""


def output_root() -> Path | None:
    """Directory named by ``KIT_OUTPUT_DIR``, or None when it is not set."""
    env = os.environ.get(OUTPUT_ENV_VAR, "")
    return Path(env).expanduser().resolve() if env else None


def figures_dir() -> Path:
    """Where a notebook run writes its figures and figure index (never ``figures/``).

    ``$KIT_OUTPUT_DIR/figures`` when the variable is set, else ``build/interactive/figures``.
    """
    return (output_root() or INTERACTIVE_OUTPUT) / "figures"


def results_dir() -> Path:
    """Where a notebook run writes its results JSON.

    ``$KIT_OUTPUT_DIR/results`` when the variable is set, else ``build/interactive/results``; the runner
    moves the results of canonical runs to ``build/results/``.
    """
    return (output_root() or INTERACTIVE_OUTPUT) / "results"
