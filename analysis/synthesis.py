"""The kit as a whole: every notebook's headline, checked against the figures it cites, in one table.

Each notebook writes, in its results JSON (``NotebookOutputs.write_results``), a key ``"headline"`` built
with :func:`headline`: the problem area, the one question, the finding (a number with its confidence
interval, the figure that shows it) and the mitigation with the size of its effect (``baseline`` without
it, ``mitigated`` with it, lower is better). Notebook 09 reads them with :func:`load_results` (which refuses
results that are missing, older than the figures or made with other parameters or data), tabulates them
with :func:`synthesis_table` and ranks the mitigations with :func:`rank_where_to_act`.

Ranking rule (:data:`RANKING_RULE`): each effect's factor is ``baseline / mitigated`` (how many times the
mitigation divides the quantity it acts on; > 1 is an improvement). Effects on latency, cost and
availability (unavailability) are ranked together by that factor, largest first; ties are broken by area
name. An area whose notebook does not exist yet is listed as missing and not ranked.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from analysis import paths

__all__ = ["EFFECT_ON", "PLANNED_AREAS", "RANKING_RULE", "ResultsError", "headline", "load_results",
           "check_results", "portable", "synthesis_table", "rank_where_to_act", "effect_factor", "results_location"]

#: What a mitigation's effect may act on (lower is better for each: seconds, money, unavailability).
EFFECT_ON = ("latency", "cost", "availability")

#: The seed's problem areas by notebook number (a notebook not yet in notebooks/ is a missing area).
PLANNED_AREAS = {
    "00": "queueing foundations",
    "01": "microservice fan-out",
    "02": "load balancing and traffic spikes",
    "03": "replication and consistency",
    "04": "dependency failures and retries",
    "05": "cost and autoscaling",
    "06": "security and compliance cost",
    "07": "observability and alerting",
    "08": "serverless, edge and orchestration",
}

RANKING_RULE = ("rank by the factor baseline / mitigated of each headline's effect (how many times the "
                "mitigation divides the latency, cost or unavailability it acts on), largest first, latency, "
                "cost and availability ranked together; ties broken by area name")

_TEXT_FIELDS = ("area", "question", "finding", "metric", "unit", "mitigation")
_NUMBER_FIELDS = ("value", "ci_low", "ci_high")


class ResultsError(ValueError):
    """A results file that cannot be synthesised: missing, stale, other parameters or data, bad headline."""


# ------------------------------------------------------------------------------------------ headline

def _number(name: str, value: Any) -> float:
    if value is None:
        raise ValueError(f"headline: {name} is missing (None); give the computed number")
    try:
        import numpy as np
        if isinstance(value, np.generic):
            value = value.item()
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"headline: {name}={value!r} is not a number")
    if math.isnan(value):
        raise ValueError(f"headline: {name} is NaN; give the computed number")
    if math.isinf(value):
        raise ValueError(f"headline: {name}={value} is not finite")
    return float(value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"headline: {name}={value!r} must be a non-empty string")
    return " ".join(value.split())


def _interval(name: str, value: Any) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"headline: {name}={value!r} must be a pair [low, high]")
    low, high = _number(f"{name}[0]", value[0]), _number(f"{name}[1]", value[1])
    if low > high:
        raise ValueError(f"headline: {name}={value!r}: low > high")
    return [low, high]


def headline(area: str, question: str, finding: str, metric: str, value: float, ci_low: float,
             ci_high: float, unit: str, figure: str, mitigation: str, effect: Mapping[str, Any]) -> dict:
    """The validated headline dict of a notebook's results (the contract of notebook 09).

    value, ci_low, ci_high: the key number in ``unit`` and its confidence interval (a closed form:
    ci_low = ci_high = value); figure: the id ``fig-NN-name`` that shows it; effect: ``{"on": "latency" |
    "cost" | "availability", "baseline": without the mitigation, "mitigated": with it, "unit": ...}``, both
    positive, lower is better; optional ``"baseline_ci"`` / ``"mitigated_ci"`` pairs [low, high] give the
    uncertainty of each side. Returns a plain dict (JSON-ready). Raises a one-line ValueError naming the
    field for a missing, NaN or infinite number, ci_low <= value <= ci_high violated, a malformed figure
    id, an unknown effect "on" or an empty text.
    """
    from analysis.figures import FIG_ID_PATTERN

    out: dict[str, Any] = {}
    for name, val in (("area", area), ("question", question), ("finding", finding), ("metric", metric)):
        out[name] = _text(name, val)
    for name, val in (("value", value), ("ci_low", ci_low), ("ci_high", ci_high)):
        out[name] = _number(name, val)
    if not out["ci_low"] <= out["value"] <= out["ci_high"]:
        raise ValueError(f"headline: need ci_low <= value <= ci_high, got ci_low={out['ci_low']:g}, "
                         f"value={out['value']:g}, ci_high={out['ci_high']:g}")
    out["unit"] = _text("unit", unit)
    if not isinstance(figure, str) or not FIG_ID_PATTERN.match(figure):
        raise ValueError(f"headline: figure={figure!r} is not a figure id of the form 'fig-NN-name'")
    out["figure"] = figure
    out["mitigation"] = _text("mitigation", mitigation)
    if not isinstance(effect, Mapping):
        raise ValueError(f"headline: effect={effect!r} must be a mapping with on, baseline, mitigated, unit")
    unknown = sorted(set(effect) - {"on", "baseline", "mitigated", "unit", "baseline_ci", "mitigated_ci"})
    if unknown:
        raise ValueError(f"headline: effect has unknown key(s) {unknown}")
    if effect.get("on") not in EFFECT_ON:
        raise ValueError(f"headline: effect['on']={effect.get('on')!r} must be one of {', '.join(EFFECT_ON)}")
    eff: dict[str, Any] = {"on": effect["on"]}
    for side in ("baseline", "mitigated"):
        number = _number(f"effect['{side}']", effect.get(side))
        if number <= 0:
            raise ValueError(f"headline: effect['{side}']={number:g} must be > 0 (lower is better; the "
                             "ranking divides baseline by mitigated)")
        eff[side] = number
        if f"{side}_ci" in effect:
            low, high = _interval(f"effect['{side}_ci']", effect[f"{side}_ci"])
            if not low <= number <= high or low <= 0:
                raise ValueError(f"headline: effect['{side}_ci']=[{low:g}, {high:g}] must be positive and "
                                 f"contain effect['{side}']={number:g}")
            eff[f"{side}_ci"] = [low, high]
    eff["unit"] = _text("effect['unit']", effect.get("unit"))
    out["effect"] = eff
    return out


def effect_factor(effect: Mapping[str, Any]) -> tuple[float, float | None, float | None]:
    """``(factor, low, high)`` with factor = baseline / mitigated; low/high from the sides' intervals
    (low = baseline_low / mitigated_high, high = baseline_high / mitigated_low), None without them."""
    factor = effect["baseline"] / effect["mitigated"]
    b = effect.get("baseline_ci") or [effect["baseline"]] * 2
    m = effect.get("mitigated_ci") or [effect["mitigated"]] * 2
    if "baseline_ci" not in effect and "mitigated_ci" not in effect:
        return factor, None, None
    return factor, b[0] / m[1], b[1] / m[0]


# ------------------------------------------------------------------------------------ reading results

def results_location(results_dir: str = "", quick: bool = False) -> tuple[Path, Path]:
    """``(results folder, figure folder to check against)`` for notebook 09's ``results_dir`` parameter.

    "" means the canonical build: ``build/results`` checked against the committed ``figures/``; with
    ``quick`` the quick build: ``build/quick/results`` against ``build/quick/figures``. A named folder
    ``<run>/results`` is checked against ``<run>/figures`` when that has an index, else against ``figures/``.
    """
    if not results_dir:
        if quick:
            return paths.BUILD / "quick" / "results", paths.BUILD / "quick" / "figures"
        return paths.BUILD / "results", paths.COMMITTED_FIGURES
    folder = Path(results_dir).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"results_dir={results_dir!r}: no such directory")
    if folder == (paths.BUILD / "results").resolve():
        return folder, paths.COMMITTED_FIGURES
    sibling = folder.parent / "figures"
    return folder, sibling if (sibling / "index.json").is_file() else paths.COMMITTED_FIGURES


def _git_is_ancestor(ancestor: str, commit: str) -> bool | None:
    """True when ``ancestor`` is ``commit`` or one of its ancestors; None when git cannot tell."""
    if ancestor == commit:
        return True
    try:
        done = subprocess.run(["git", "-C", str(paths.ROOT), "merge-base", "--is-ancestor", ancestor, commit],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(done.returncode)


def check_results(name: str, results: Mapping[str, Any], index: Mapping[str, Mapping[str, Any]],
                  where: str = "figures/index.json") -> dict:
    """Check one notebook's results against its figures in ``index``; returns the validated headline.

    ResultsError (one line, naming the notebook) when: no figure of the notebook is in the index; the
    results record no commit, or a commit that does not contain every figure's commit (results older than
    the figures); their parameters or data files differ from the figures'; the headline is missing,
    invalid, or cites a figure that is not in the index.
    """
    prov = results.get("provenance")
    if not isinstance(prov, Mapping):
        raise ResultsError(f"{name}: its results have no provenance block; rerun the notebook")
    figs = {fig_id: e for fig_id, e in index.items() if Path(str(e.get("notebook", ""))).name == name}
    if not figs:
        raise ResultsError(f"{name}: no figure of this notebook in {where}; nothing to check its results "
                           "against (rebuild with `make reproduce`)")
    commit = prov.get("git_commit")
    if not commit:
        raise ResultsError(f"{name}: its results record no git commit (made by an older kit or outside "
                           "a checkout); rerun the notebook")
    for fig_id, entry in sorted(figs.items()):
        fig_commit = entry.get("git_commit")
        contains = _git_is_ancestor(fig_commit, commit) if fig_commit else True  # no commit: nothing to compare
        if contains is None:
            raise ResultsError(f"{name}: cannot tell whether results commit {commit[:12]} contains "
                               f"{fig_id}'s commit {fig_commit[:12]} (unknown to git here)")
        if not contains:
            raise ResultsError(f"{name}: results made at commit {commit[:12]}, older than (or beside) "
                               f"commit {fig_commit[:12]} of {fig_id} in {where}; rerun the notebook")
        if entry.get("parameters") != prov.get("parameters"):
            fig_params, res_params = entry.get("parameters") or {}, prov.get("parameters") or {}
            diff = sorted(k for k in set(fig_params) | set(res_params) if fig_params.get(k) != res_params.get(k))
            shown = ", ".join(f"{k}={res_params.get(k)!r} (figures: {fig_params.get(k)!r})" for k in diff[:3])
            raise ResultsError(f"{name}: results made with other parameters than {fig_id} in {where}: {shown}")
        if entry.get("data_files") != prov.get("data_files"):
            raise ResultsError(f"{name}: results made from other data files than {fig_id} in {where} "
                               f"(results: {_files(prov.get('data_files'))}; figures: "
                               f"{_files(entry.get('data_files'))})")
    raw = results.get("headline")
    if not isinstance(raw, Mapping):
        raise ResultsError(f"{name}: its results have no 'headline' block (analysis.synthesis.headline); "
                           "add it to the notebook's write_results")
    try:
        head = headline(**{k: raw.get(k) for k in ("area", "question", "finding", "metric", "value", "ci_low",
                                                    "ci_high", "unit", "figure", "mitigation", "effect")})
    except (TypeError, ValueError) as exc:
        raise ResultsError(f"{name}: invalid {exc}") from None
    if head["figure"] not in figs:
        raise ResultsError(f"{name}: its headline cites {head['figure']}, which is not one of its figures "
                           f"in {where} ({', '.join(sorted(figs))})")
    return head


def _files(files: Any) -> str:
    if not files:
        return "none"
    return ", ".join(f"{f.get('path')}@{str(f.get('sha256'))[:8]}" for f in files)


def load_results(results_dir: str | os.PathLike, notebooks: Iterable[str | os.PathLike],
                 figures_dir: str | os.PathLike | None = None) -> dict[str, dict]:
    """Read and check ``<results_dir>/<notebook stem>.json`` of each notebook (names or paths).

    Each is checked by :func:`check_results` against ``<figures_dir>/index.json`` (default: the committed
    ``figures/``). Returns notebook name -> results dict (headline validated). ResultsError (one line) for
    a missing or unreadable results file, or a failed check.
    """
    from analysis.figures import load_index

    folder = Path(results_dir)
    reference = Path(figures_dir) if figures_dir is not None else paths.COMMITTED_FIGURES
    index = load_index(reference)
    where = f"{portable(reference)}/index.json"
    out = {}
    for notebook in notebooks:
        name = Path(notebook).name
        path = folder / f"{Path(name).stem}.json"
        if not path.is_file():
            raise ResultsError(f"{name}: no results file {portable(path)}; run the notebook first "
                               f"(make reproduce ARGS='--only {Path(name).stem}')")
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsError(f"{name}: cannot read {portable(path)} ({exc})") from None
        if not isinstance(results, dict):
            raise ResultsError(f"{name}: {portable(path)} is not a JSON object")
        results["headline"] = check_results(name, results, index, where)
        out[name] = results
    return out


def portable(path: Path) -> str:
    """``path`` relative to the project root when inside it (for messages), else as given."""
    try:
        return Path(path).resolve().relative_to(paths.ROOT).as_posix()
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------- tables

def _fmt(x: float) -> str:
    return f"{x:.3g}"


def synthesis_table(results: Mapping[str, Mapping[str, Any]],
                    existing: Iterable[str] | None = None) -> "pd.DataFrame":
    """One row per problem area: notebook, area, status, question, key finding with its interval, figure,
    mitigation, effect (on, baseline, mitigated, unit, factor).

    results: notebook name -> results (from :func:`load_results`). existing: notebook names present in
    notebooks/ (default: the keys of ``results``); planned areas (:data:`PLANNED_AREAS`) with no notebook
    among them become rows with status "missing notebook". Rows in notebook order.
    """
    import pandas as pd

    names = sorted(set(results) | set(existing or ()))
    by_number = {n[:2]: n for n in names}
    rows = []
    for number in sorted(set(PLANNED_AREAS) | set(by_number)):
        name = by_number.get(number)
        if name is None or name not in results:
            rows.append({"notebook": name or f"{number}_*", "area": PLANNED_AREAS.get(number, "?"),
                         "status": "missing notebook" if name is None else "no results"})
            continue
        h = results[name]["headline"]
        factor, low, high = effect_factor(h["effect"])
        rows.append({
            "notebook": name, "area": h["area"], "status": "ok", "question": h["question"],
            "key finding": f"{h['metric']}: {_fmt(h['value'])} {h['unit']} " + (
                f"(95% CI {_fmt(h['ci_low'])}-{_fmt(h['ci_high'])})" if h["ci_low"] < h["ci_high"]
                else "(no interval: a closed form, or every replication gave this value)"),
            "finding": h["finding"], "metric": h["metric"], "value": h["value"], "ci_low": h["ci_low"],
            "ci_high": h["ci_high"], "unit": h["unit"], "figure": h["figure"], "mitigation": h["mitigation"],
            "effect_on": h["effect"]["on"], "baseline": h["effect"]["baseline"],
            "mitigated": h["effect"]["mitigated"], "effect_unit": h["effect"]["unit"], "factor": factor,
            "factor_low": low, "factor_high": high})
    columns = ["notebook", "area", "status", "question", "key finding", "finding", "metric", "value", "ci_low",
               "ci_high", "unit", "figure", "mitigation", "effect_on", "baseline", "mitigated", "effect_unit",
               "factor", "factor_low", "factor_high"]
    return pd.DataFrame(rows).reindex(columns=columns)


def rank_where_to_act(table: "pd.DataFrame") -> "pd.DataFrame":
    """The areas with a headline, ranked by :data:`RANKING_RULE` (factor = baseline / mitigated, largest
    first; latency, cost and availability together; ties by area name). Adds ``rank`` (1 = act first)."""
    needed = {"status", "area", "factor"}
    if not needed <= set(table.columns):
        raise ValueError(f"table: needs columns {sorted(needed)} (from synthesis_table), has {list(table.columns)}")
    ok = table[table["status"] == "ok"].copy()
    ok = ok.sort_values(["factor", "area"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    ok.insert(0, "rank", range(1, len(ok) + 1))
    return ok
