"""Publish one notebook's figures from a run's staging folder into the committed ``figures/``.

Notebooks never write ``figures/`` themselves: :class:`analysis.figures.NotebookOutputs` saves into
``paths.figures_dir()`` (the runner's staging folder ``KIT_OUTPUT_DIR/figures``, or ``build/`` in
JupyterLab and plain papermill). After a notebook succeeded in the canonical build (``make reproduce`` with
no ``-p``, not ``--quick``) the runner calls :func:`publish_notebook`, which

* copies each publishable PNG/SVG atomically (temporary file + ``os.replace``),
* merges the notebook's entries into ``figures/index.json`` and drops the entries (and files) of that
  notebook's figures that this run no longer produced,
* regenerates the gallery ``figures/README.md``,
* keeps back, with the reason, every figure drawn from the synthetic default data or with parameters that
  differ from the notebook's declared defaults, or whose staged files do not match their recorded sha256.
  A kept-back figure leaves the published one (if any) untouched.
* leaves a figure alone when the run reproduced it exactly (same bytes, and an index entry that differs only
  in the commit it was built at): a rebuild that changes nothing leaves ``figures/`` and its index
  byte-identical, and the entry keeps the commit that first produced those bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from analysis import paths
from analysis.atomic import atomic_write_bytes
from analysis.figures import (FIG_ID_PATTERN, NOTEBOOK_PATTERN, _locked, _sigint_deferred, load_index,
                              write_index)
from analysis.provenance import sha256_bytes

__all__ = ["PublishReport", "publish_notebook", "publish_refusal", "same_figure"]


@dataclass
class PublishReport:
    """What :func:`publish_notebook` did: figure ids published, and (id, reason) pairs kept back.

    ``dropped``: ids of that notebook that were in the destination index but not produced by this run
    (their entries and files were removed). ``unchanged``: ids this run reproduced to the byte (files and
    entry left as they were).
    """

    published: list[str] = field(default_factory=list)
    kept_back: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One human line per figure, for the runner to print."""
        out = [f"published {fig_id}" for fig_id in self.published]
        out += [f"unchanged {fig_id} (reproduced to the byte)" for fig_id in self.unchanged]
        out += [f"kept back {fig_id}: {reason}" for fig_id, reason in self.kept_back]
        out += [f"dropped {fig_id} (no longer produced by its notebook)" for fig_id in self.dropped]
        return out


def publish_refusal(entry: Mapping[str, Any]) -> str | None:
    """Why an index entry must not be published (None when it may): synthetic data, non-default parameters."""
    reasons = []
    kind = entry.get("data_kind")
    if kind is None:
        return "the index entry has no data_kind (saved by an older analysis.figures); rerun the notebook"
    if kind == "synthetic":
        reasons.append(f"drawn from synthetic data ({entry.get('data_source', '?')}); the real dataset was "
                       "not found (make data, or KIT_DATA_DIR)")
    changed = entry.get("non_default_parameters")
    if changed is None:
        return "the index entry has no non_default_parameters (saved by an older analysis.figures); rerun"
    if changed:
        listed = ", ".join(f"{name}={change.get('value')!r} (default {change.get('default')!r})"
                           for name, change in sorted(changed.items()))
        reasons.append(f"non-default parameters: {listed}")
    return "; ".join(reasons) or None


BUILD_FIELDS = ("git_commit", "git_dirty")  #: where a rebuild of the same figure may differ


def same_figure(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when ``new`` reproduces ``old``: equal content hash and entries equal but for BUILD_FIELDS."""
    if not old or old.get("content_sha256") is None or old.get("content_sha256") != new.get("content_sha256"):
        return False
    strip = lambda e: {k: v for k, v in e.items() if k not in BUILD_FIELDS}  # noqa: E731
    return strip(old) == strip(new)


def _notebook_name(entry: Mapping[str, Any]) -> str:
    return Path(str(entry.get("notebook", ""))).name


def publish_notebook(staging: str | os.PathLike, notebook: str,
                     destination: str | os.PathLike | None = None) -> PublishReport:
    """Publish ``notebook``'s figures from ``staging/figures`` into ``destination`` (default ``figures/``).

    staging: the run's ``KIT_OUTPUT_DIR`` (figures and their ``index.json`` in ``staging/figures``).
    notebook: the notebook's file name, e.g. ``05_cost_autoscaling.ipynb``.
    Raises ValueError naming the argument for a missing staging folder or a malformed notebook name, and
    for a corrupt index (nothing is written then).
    """
    staging = Path(staging)
    if not staging.is_dir():
        raise ValueError(f"staging={str(staging)!r}: no such directory (the run's KIT_OUTPUT_DIR)")
    name = Path(str(notebook)).name
    if not NOTEBOOK_PATTERN.match(name):
        raise ValueError(f"notebook={notebook!r}: expected a file name like '05_cost_autoscaling.ipynb'")
    destination = Path(destination) if destination is not None else paths.COMMITTED_FIGURES
    source_dir = staging / "figures"
    staged = {fig_id: entry for fig_id, entry in load_index(source_dir).items()
              if _notebook_name(entry) == name} if source_dir.is_dir() else {}

    report = PublishReport()
    ready: dict[str, tuple[dict, dict[str, bytes]]] = {}
    for fig_id, entry in sorted(staged.items()):
        if not FIG_ID_PATTERN.match(fig_id) or fig_id[4:6] != name[:2]:
            report.kept_back.append((fig_id, f"id does not match notebook {name} "
                                             f"(expected fig-{name[:2]}-...)"))
            continue
        reason = publish_refusal(entry)
        if reason is None:
            files, problem = {}, None
            for fmt in ("png", "svg"):
                record = entry.get("files", {}).get(fmt, {})
                path = source_dir / str(record.get("path", f"{fig_id}.{fmt}"))
                if not path.is_file():
                    problem = f"{path.name} is missing from the staging folder"
                    break
                data = path.read_bytes()
                if sha256_bytes(data) != record.get("sha256"):
                    problem = f"{path.name} does not match the sha256 in the staging index"
                    break
                files[path.name] = data
            reason = problem
        if reason is not None:
            report.kept_back.append((fig_id, reason))
        else:
            ready[fig_id] = (dict(entry), files)

    destination.mkdir(parents=True, exist_ok=True)
    with _locked(destination), _sigint_deferred():
        index = load_index(destination)  # a corrupt index stops here, before anything is written
        report.dropped = sorted(fig_id for fig_id, entry in index.items()
                                if _notebook_name(entry) == name and fig_id not in staged)
        if not ready and not report.dropped:
            return report
        before = dict(index)
        for fig_id, (entry, files) in sorted(ready.items()):
            if same_figure(index.get(fig_id), entry) and all(
                    (destination / f).is_file() and (destination / f).read_bytes() == d for f, d in files.items()):
                report.unchanged.append(fig_id)
                continue
            for file_name, data in sorted(files.items()):
                atomic_write_bytes(destination / file_name, data)
            index[fig_id] = entry
            report.published.append(fig_id)
        stale_files = []
        for fig_id in report.dropped:
            entry = index.pop(fig_id)
            stale_files += [destination / str(rec.get("path")) for rec in entry.get("files", {}).values()
                            if rec.get("path")]
        if report.published or report.dropped or index != before:
            write_index(destination, index)
        for path in stale_files:  # after the index no longer names them
            if path.parent.resolve() == destination.resolve():
                path.unlink(missing_ok=True)
    return report
