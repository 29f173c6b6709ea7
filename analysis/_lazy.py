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


def without_iri_grammars() -> None:
    """Make the next import of jsonschema skip its optional IRI format checker (``rfc3987_syntax``).

    nbformat (and so papermill, nbconvert and the kit's notebook hash) imports jsonschema, whose format
    module imports ``rfc3987_syntax`` when installed; that package compiles about 40 lark grammars at
    import: 3-5 CPU-s per process, more than a quick notebook's own work. Notebook schemas use no IRI
    formats, so the checker is never needed here. No effect once jsonschema is imported.
    """
    import sys

    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)   # import raises ImportError: jsonschema skips it
