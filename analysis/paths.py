"""Absolute project paths and the data-directory lookup, so notebooks run from any working directory.

Lookup order for real data (first hit wins):
1. the notebook's ``data_dir`` parameter (a non-empty string),
2. the environment variable ``KIT_DATA_DIR``,
3. ``data/external/`` when ``make data`` has downloaded something into it,
4. otherwise ``None``: callers fall back to the embedded synthetic default in ``data/synthetic/``.

Outputs: figures go to ``figures/`` and results files to ``build/results/`` unless the environment
variable ``KIT_OUTPUT_DIR`` is set (the test-suite and ``reproduce --quick`` set it), in which case
both go below that directory, so quick runs never overwrite the committed figures.
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
    """Directory named by ``KIT_OUTPUT_DIR``, or None for the project defaults."""
    env = os.environ.get(OUTPUT_ENV_VAR, "")
    return Path(env).expanduser().resolve() if env else None


def figures_dir() -> Path:
    """Where figures and the figure index are written (``figures/`` unless KIT_OUTPUT_DIR is set)."""
    out = output_root()
    return out / "figures" if out else COMMITTED_FIGURES


def results_dir() -> Path:
    """Where each notebook's results JSON is written (``build/results/`` unless KIT_OUTPUT_DIR is set)."""
    out = output_root()
    return out / "results" if out else BUILD / "results"
