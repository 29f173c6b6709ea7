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


def test_installed_versions_match_lock():
    """The running environment is the locked one (a stale .venv is caught here)."""
    lock = _lock()
    differ = {}
    for name in ["ciw", "pandas", "numpy", "matplotlib", "statsmodels", "papermill", "scipy"]:
        installed = metadata.version(name)
        if installed != lock[name]:
            differ[name] = (installed, lock[name])
    assert not differ, f"installed vs locked: {differ}; run `make setup` after `rm -rf .venv`"
