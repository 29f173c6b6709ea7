"""Test-suite set-up: real data from ../shared/data when present, outputs to a temporary folder."""
from __future__ import annotations

import os
from pathlib import Path

# One BLAS thread per process (see Makefile): set before numpy is imported by any test module.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest

from analysis import paths

SHARED_DATA = (paths.ROOT.parent / "shared" / "data").resolve()


def pytest_configure(config):
    # Tests read the real datasets whenever the shared copy exists (it does in CI); the variable
    # may also be set by the caller to point at another verified copy.
    if not os.environ.get(paths.DATA_ENV_VAR) and SHARED_DATA.is_dir():
        os.environ[paths.DATA_ENV_VAR] = str(SHARED_DATA)


@pytest.fixture(autouse=True, scope="session")
def _outputs_to_tmp(tmp_path_factory):
    """No test writes into the committed figures/ or build/: everything goes below a temp folder."""
    out = tmp_path_factory.mktemp("kit-output")
    old = os.environ.get(paths.OUTPUT_ENV_VAR)
    os.environ[paths.OUTPUT_ENV_VAR] = str(out)
    yield out
    if old is None:
        os.environ.pop(paths.OUTPUT_ENV_VAR, None)
    else:
        os.environ[paths.OUTPUT_ENV_VAR] = old


# The real-data directory every real-data test reads: KIT_DATA_DIR when the caller set it, else the
# shared copy beside the checkout (pytest_configure points KIT_DATA_DIR at it too).
REAL_DATA = Path(os.environ.get(paths.DATA_ENV_VAR) or SHARED_DATA).resolve()

REAL_DATA_SKIP_REASON = (
    f"real datasets not available at {REAL_DATA}: set KIT_DATA_DIR to a copy of the data "
    "(layout of shared/data) or run `make data`"
)
requires_real_data = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=REAL_DATA_SKIP_REASON)


@pytest.fixture
def no_real_data(monkeypatch, tmp_path):
    """No KIT_DATA_DIR and an empty data/external, as on a fresh clone without network."""
    monkeypatch.delenv(paths.DATA_ENV_VAR, raising=False)
    empty = tmp_path / "empty-external"
    empty.mkdir()
    monkeypatch.setattr(paths, "DATA_EXTERNAL", empty)
    return empty
