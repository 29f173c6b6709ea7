"""The three descriptions of the environment (pyproject, requirements.lock, environment.yml) agree."""
from __future__ import annotations

import re
from importlib import metadata

import yaml

from analysis import paths


def _lock() -> dict[str, str]:
    pins = {}
    for n, line in enumerate((paths.ROOT / "requirements.lock").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        assert m, f"requirements.lock line {n}: not an exact pin: {line!r}"
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def _conda() -> dict[str, str]:
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for item in dep.get("pip", []):
                if "==" in item:
                    name, version = item.split("==")
                    pins[_norm(name)] = version
        elif "=" in dep and not dep.startswith("python="):
            name, version = dep.split("=", 1)
            pins[_norm(name)] = version.lstrip("=")
    return pins


def test_conda_pins_equal_lock():
    lock, conda = _lock(), _conda()
    assert conda, "environment.yml pins nothing"
    missing = sorted(set(conda) - set(lock))
    assert not missing, f"environment.yml pins packages absent from requirements.lock: {missing}"
    differ = {k: (conda[k], lock[k]) for k in conda if conda[k] != lock[k]}
    assert not differ, f"environment.yml vs requirements.lock (conda, pip): {differ}"


def test_every_direct_dependency_is_pinned_in_both():
    import tomllib

    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    direct = {_norm(re.split(r"[<>=!~ ]", d)[0]) for d in project["dependencies"]}
    lock, conda = _lock(), _conda()
    assert direct - set(lock) == set(), f"direct dependencies not in the lock: {direct - set(lock)}"
    assert direct - set(conda) == set(), f"direct dependencies not in environment.yml: {direct - set(conda)}"


def test_exact_pins_of_optional_dependencies_equal_lock_and_conda():
    """An optional dependency pinned exactly in pyproject (selenium) has that version in both other files."""
    import tomllib

    extras = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    exact = {_norm(d.split("==")[0]): d.split("==")[1].strip() for deps in extras.values() for d in deps
             if "==" in d}
    assert "selenium" in exact, "pyproject's test extra pins selenium exactly (tests/test_jupyterlab.py)"
    lock, conda = _lock(), _conda()
    differ = {k: (v, lock.get(k), conda.get(k)) for k, v in exact.items() if not v == lock.get(k) == conda.get(k)}
    assert not differ, f"pyproject vs requirements.lock vs environment.yml: {differ}"


def test_installed_versions_match_lock():
    """The running environment is the locked one (a stale .venv is caught here)."""
    lock = _lock()
    differ = {}
    for name in ["ciw", "pandas", "numpy", "matplotlib", "statsmodels", "papermill", "scipy"]:
        installed = metadata.version(name)
        if installed != lock[name]:
            differ[name] = (installed, lock[name])
    assert not differ, f"installed vs locked: {differ}; run `make setup` after `rm -rf .venv`"


def test_no_iri_grammar_package_slows_every_notebook_process():
    """jsonschema is locked at 4.24.0, whose format extra does not install rfc3987-syntax: that package
    compiles about 40 lark grammars when jsonschema is imported (about 3 CPU-s in papermill, nbconvert and
    the Jupyter server, each time), more than a quick notebook's own work. A lock regenerated with a newer
    jsonschema brings it back; this test says so."""
    from importlib.util import find_spec

    assert _lock().get("jsonschema") == "4.24.0", "requirements.lock: keep jsonschema==4.24.0 (see this test)"
    assert "rfc3987-syntax" not in _lock(), "requirements.lock pins rfc3987-syntax: drop it (see this test)"
    assert find_spec("rfc3987_syntax") is None, (
        "rfc3987_syntax is installed in this environment: `.venv/bin/python -m pip uninstall -y "
        "rfc3987-syntax lark` (or rm -rf .venv && make setup)")


def _requires_python() -> str:
    import tomllib

    return tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["requires-python"]


def _floor(spec: str) -> str:
    match = re.match(r">=\s*(3\.\d+(?:\.\d+)?)\s*(?:,|$)", spec)
    assert match, f"pyproject requires-python = {spec!r}: expected '>=3.N[.P][, ...]' (the lock's lowest Python)"
    return match.group(1)


#: Interpreter versions the checks below try (3.11.0 ... 3.14.20).
CANDIDATE_PYTHONS = [f"3.{minor}.{patch}" for minor in range(11, 15) for patch in range(21)]


def test_readme_pyproject_and_interpreter_agree_on_python_versions():
    """README's "Python >= X.Y[.Z]", pyproject's requires-python, the Makefile's check, the running Python."""
    import sys

    from packaging.specifiers import SpecifierSet

    spec = _requires_python()
    floor = _floor(spec)
    stated = set(re.findall(r"Python\s*>=\s*(3\.\d+(?:\.\d+)?)", (paths.ROOT / "README.md").read_text()))
    assert stated == {floor}, f"README states Python >= {sorted(stated)}, pyproject {spec!r}"
    makefile = (paths.ROOT / "Makefile").read_text()
    assert f"MIN_PYTHON := {floor}\n" in makefile, "Makefile MIN_PYTHON differs from requires-python"
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    conda_python = [d.split("=", 1)[1] for d in env["dependencies"] if isinstance(d, str) and
                    d.startswith("python=")]
    assert conda_python == [".".join(floor.split(".")[:2])], f"environment.yml python={conda_python}"
    running = ".".join(map(str, sys.version_info[:3]))
    assert running in SpecifierSet(spec), f"running Python {running} is outside requires-python {spec!r}"


def test_requires_python_admits_no_interpreter_that_a_locked_pin_rejects():
    """Every distribution installed from the lock accepts every Python that requires-python admits."""
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(_requires_python())
    admitted = [v for v in CANDIDATE_PYTHONS if v in spec]
    assert admitted, f"requires-python {spec} admits none of 3.11-3.14"
    rejected = {}
    for name in _lock():
        try:
            requires = metadata.metadata(name).get("Requires-Python")
        except metadata.PackageNotFoundError:
            continue
        if requires:
            bad = [v for v in admitted if v not in SpecifierSet(requires)]
            if bad:
                rejected[name] = (requires, bad[:3])
    assert not rejected, f"requires-python {spec} admits Pythons that locked packages reject: {rejected}"
