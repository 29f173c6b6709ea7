"""A module imported on first attribute access (for scipy.stats: about 3 s of import time that
most callers of analysis.theory, analysis.capacity and the simulation engine never need)."""
from __future__ import annotations

import importlib


class LazyModule:
    """Stands in for module ``name`` and imports it when an attribute is first read."""

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def __getattr__(self, attr: str):
        if attr.startswith("__"):              # pickling and introspection probes
            raise AttributeError(attr)
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazily imported module {self._name!r}>"


def lazy_module(name: str) -> LazyModule:
    """``name`` (e.g. "scipy.stats") imported on first use."""
    return LazyModule(name)
