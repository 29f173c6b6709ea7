"""Static HTML site of a notebook run: ``python -m analysis report`` (``make report``) -> ``build/site/``.

Built with nbconvert (the kit's template of :mod:`analysis.html_report`, plus a navigation bar) from the
executed notebooks of the last canonical run (``build/notebooks/``), their results (``build/results/``) and
the figure index (``figures/index.json`` for the canonical run; ``<run>/figures/index.json`` for a quick or
parameterised run given with ``--build-dir``). Pages:

* ``index.html``: the synthesis table (notebook 09's results when present, else a row per notebook built
  from the ``headline`` block of its results JSON; notebooks without one are listed as such), the ranked
  "where to act first" when notebook 09 gives it, and the list of notebooks;
* ``notebooks/NN_name.html``: one page per executed notebook, code folded in ``<details>``, figures shown
  with their id and caption (each an anchor ``#fig-NN-name``);
* ``figures.html``: the gallery (id, picture, caption, notebook, data, commit, parameters, citation key),
  pictures copied to ``figures/``; ``results/*.json`` copied as they are.

Nothing is loaded from the internet (no scripts, fonts or MathJax: math stays as its TeX text), so the site
opens offline; :func:`check_site` verifies that, and that every local link, anchor and image resolves.
The site is built in a temporary folder beside the target and swapped in at the end.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from analysis import paths

__all__ = ["build_site", "check_site", "synthesis_table", "MissingInputs", "SiteReport", "SYNTHESIS_STEM",
           "HEADLINE_FIELDS"]

#: File stem of the synthesis notebook whose results JSON, when present, gives the home page's table.
SYNTHESIS_STEM = "09_synthesis"
#: Keys of a notebook's ``headline`` block (see README, "Report").
HEADLINE_FIELDS = ("area", "question", "finding", "metric", "value", "ci_low", "ci_high", "unit", "figure",
                   "mitigation", "effect")
_EXECUTED_GLOB = "[0-9][0-9]_*.ipynb"


class MissingInputs(RuntimeError):
    """The run to report on is incomplete (executed notebooks absent); the message is one line."""


@dataclass
class SiteReport:
    """What :func:`build_site` wrote: the site folder, its pages, figures, and what the home page notes."""

    target: Path
    pages: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    without_headline: list[str] = field(default_factory=list)
    synthesis_source: str = ""
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------- inputs

def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _make_hint(build_dir: Path, missing: Sequence[str]) -> str:
    """The command that writes the executed notebooks ``missing`` (all when empty) into ``build_dir``."""
    root = build_dir.resolve()
    if root == paths.BUILD.resolve():
        if missing and len(missing) < 4:
            return "make reproduce ARGS='" + " ".join(f"--only {Path(n).stem}" for n in missing) + "'"
        return "make reproduce"
    if root == (paths.BUILD / "quick").resolve():
        return "make quick"
    if root.name == "quick":
        return f"python -m analysis reproduce --quick --build-dir {_rel(root.parent)}"
    return f"python -m analysis reproduce --build-dir {_rel(root)}"


def find_executed(build_dir: Path, notebooks_dir: Path) -> list[Path]:
    """Executed copies ``<build_dir>/notebooks/NN_*.ipynb`` of the notebooks in ``notebooks_dir``, in order.

    MissingInputs (one line: which are missing and the command that makes them) when any is absent.
    """
    from analysis.reproduce import discover

    sources = discover(notebooks_dir)
    if not sources:
        raise MissingInputs(f"no notebooks NN_*.ipynb in {_rel(notebooks_dir)}")
    executed_dir = build_dir / "notebooks"
    missing = [src.name for src in sources if not (executed_dir / src.name).is_file()]
    if missing:
        if len(missing) == len(sources):
            what = f"no executed notebooks in {_rel(executed_dir)};"
        else:
            what = f"executed notebook(s) missing from {_rel(executed_dir)}: {', '.join(missing)};"
        also = ""
        quick = paths.BUILD / "quick" / "notebooks"
        if len(missing) == len(sources) and build_dir.resolve() == paths.BUILD.resolve() and \
                any(quick.glob(_EXECUTED_GLOB)):
            also = " (or report on the quick run: `make report REPORT_ARGS='--build-dir build/quick'`)"
        hint = _make_hint(build_dir, [] if len(missing) == len(sources) else missing)
        raise MissingInputs(f"{what} run `{hint}` first, then `make report`{also}")
    return [executed_dir / src.name for src in sources]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MissingInputs(f"{_rel(path)}: not readable JSON ({exc}); rerun the notebook that writes it") \
            from None


def _figure_index(figures_dir: Path) -> dict[str, dict]:
    from analysis.figures import load_index

    try:
        return load_index(figures_dir)
    except ValueError as exc:
        raise MissingInputs(str(exc)) from None


# -------------------------------------------------------------------------------------- synthesis

def _normalise_row(row: Mapping[str, Any]) -> dict:
    """One synthesis row with a nested ``effect`` (09 writes it flat: effect_on, baseline, mitigated,
    effect_unit) and ``finding`` (09's ``key finding`` when it has no ``finding``)."""
    row = dict(row)
    if "effect" not in row and "effect_on" in row:
        row["effect"] = {"on": row.get("effect_on"), "baseline": row.get("baseline"),
                         "mitigated": row.get("mitigated"), "unit": row.get("effect_unit", "")}
    if not row.get("finding") and row.get("key finding"):
        row["finding"] = row["key finding"]
    return row


def _rows_from_synthesis(data: Any) -> list[dict] | None:
    """The row list of notebook 09's results (``areas``, else ``table`` / ``rows`` / ``synthesis``: a list of
    mappings, one per problem area), normalised by :func:`_normalise_row`; None when there is none."""
    if not isinstance(data, Mapping):
        return None
    for key in ("areas", "table", "rows", "synthesis"):
        rows = data.get(key)
        if isinstance(rows, Mapping) and isinstance(rows.get("rows"), list):
            rows = rows["rows"]
        if isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows):
            return [_normalise_row(r) for r in rows]
    return None


def _ranking_from_synthesis(data: Any) -> tuple[list, str]:
    """Notebook 09's ranked "where to act first" (``ranking`` / ``where_to_act_first``: a list) and its rule
    (``ranking_rule``); ``([], "")`` when there is none."""
    if not isinstance(data, Mapping):
        return [], ""
    for key in ("ranking", "where_to_act_first", "act_first"):
        value = data.get(key)
        rule = ""
        if isinstance(value, Mapping):
            rule = str(value.get("rule", ""))
            value = value.get("rows") or value.get("ranking")
        if isinstance(value, list) and value:
            return value, rule or str(data.get("ranking_rule", "") or data.get(f"{key}_rule", ""))
    return [], ""


def synthesis_table(results: Mapping[str, Any]) -> tuple[list[dict], list[str], str, list, str]:
    """``(rows, without_headline, source, ranking, ranking_rule)`` for the home page.

    ``results`` maps a notebook stem to its results JSON (None when the file is absent). The rows come
    from notebook 09's results (``09_synthesis``: its ``areas`` list) when present, else from
    each notebook's ``headline`` block, with the notebook's stem added; ``without_headline`` names the
    notebooks (other than 09) whose results have no headline block (or no results file).
    """
    without = []
    headline_rows = []
    for stem, data in results.items():
        if stem == SYNTHESIS_STEM:
            continue
        block = data.get("headline") if isinstance(data, Mapping) else None
        if isinstance(block, Mapping):
            headline_rows.append({"notebook": stem, **block})
        else:
            without.append(stem)
    synthesis = results.get(SYNTHESIS_STEM)
    rows = _rows_from_synthesis(synthesis)
    ranking, rule = _ranking_from_synthesis(synthesis)
    if rows is not None:
        return rows, without, f"notebook {SYNTHESIS_STEM}'s results ({SYNTHESIS_STEM}.json)", ranking, rule
    source = "the headline block of each notebook's results JSON"
    if synthesis is not None:
        source += f" ({SYNTHESIS_STEM}.json has no table of rows)"
    return headline_rows, without, source, ranking, rule


# ------------------------------------------------------------------------------------- formatting

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _with_unit(value: Any, unit: str) -> str:
    text = _num(value)
    return f"{text} {_e(unit)}" if unit and unit not in ("", "1", "-") else text


def _value_cell(row: Mapping[str, Any]) -> str:
    """'0.123 s (0.11 to 0.13)', or 'closed form' when the interval is one point."""
    if row.get("value") is None:
        return ""
    unit = str(row.get("unit", "") or "")
    text = _with_unit(row["value"], unit)
    low, high = row.get("ci_low"), row.get("ci_high")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        if low == high == row["value"]:
            text += " <small>(exact)</small>"
        else:
            text += f" <small>(CI {_num(low)} to {_num(high)})</small>"
    metric = row.get("metric")
    return (f"{_e(metric)}: " if metric else "") + text


def _effect_cell(effect: Any) -> str:
    if not isinstance(effect, Mapping):
        return _e(effect) if effect not in (None, "") else ""
    unit = str(effect.get("unit", "") or "")
    base, mitigated = effect.get("baseline"), effect.get("mitigated")
    text = f"{_e(effect.get('on', ''))}: {_with_unit(base, unit)} &rarr; {_with_unit(mitigated, unit)}"
    if isinstance(base, (int, float)) and isinstance(mitigated, (int, float)) and base:
        text += f" <small>({(mitigated - base) / abs(base):+.0%})</small>"
    return text


class _Links:
    """Where each notebook and figure lives in the site (links are relative to the page's folder)."""

    def __init__(self, stems: Sequence[str], figure_ids: Sequence[str], titles: Mapping[str, str]):
        self.stems = list(stems)
        self.figure_ids = set(figure_ids)
        self.titles = dict(titles)

    def notebook(self, stem: str, depth: int) -> str:
        return ("../" * depth) + f"notebooks/{stem}.html"

    def figure(self, fig_id: str, depth: int) -> str | None:
        return ("../" * depth) + f"figures.html#{fig_id}" if fig_id in self.figure_ids else None

    def nav(self, depth: int, current: str = "") -> str:
        up = "../" * depth
        items = [f'<a href="{up}index.html">Home</a>', f'<a href="{up}figures.html">Figures</a>']
        for stem in self.stems:
            label = _e(stem.split("_", 1)[0])
            title = _e(self.titles.get(stem, stem))
            if stem == current:
                items.append(f'<strong title="{title}">{label}</strong>')
            else:
                items.append(f'<a href="{up}notebooks/{stem}.html" title="{title}">{label}</a>')
        return '<nav class="kit-nav">' + " &middot; ".join(items) + "</nav>"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 76em; padding: 0 1.2em 3em 1.2em; color: #222; line-height: 1.45; }
nav.kit-nav { padding: 0.6em 0; border-bottom: 1px solid #ddd; margin-bottom: 1em; font-size: 95%; }
nav.kit-nav a { text-decoration: none; }
table { border-collapse: collapse; width: 100%; font-size: 92%; }
th, td { border: 1px solid #ddd; padding: 0.35em 0.5em; vertical-align: top; text-align: left;
         overflow-wrap: break-word; }
td > a > code { white-space: nowrap; }
th { background: #f4f4f4; }
td.num { white-space: nowrap; }
img.thumb { max-width: 100%; height: auto; border: 1px solid #eee; }
table.gallery { table-layout: fixed; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 90%; }
small { color: #555; }
.note { background: #fff8e1; border-left: 4px solid #f0c040; padding: 0.4em 0.8em; }
"""


def _page(title: str, body: str, nav: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{nav}\n{body}\n"
            f"{nav}\n</body>\n</html>\n")


# ------------------------------------------------------------------------------------------ pages

#: nbconvert template of a notebook page: the kit's report template plus the site's navigation bar.
NOTEBOOK_TEMPLATE = r"""{%- extends 'kit_report.html.j2' -%}
{%- block extra_css -%}
{{ super() }}
<style type="text/css">
  nav.kit-nav { padding: 0.6em 0; border-bottom: 1px solid #ddd; margin-bottom: 1em;
                font-family: system-ui, sans-serif; font-size: 95%; }
  nav.kit-nav a { text-decoration: none; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.kit_nav }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.kit_nav }}
{{ super() }}
{% endblock body_footer %}
"""


def _notebook_exporter():
    from analysis._lazy import without_iri_grammars

    without_iri_grammars()
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    from analysis.html_report import TEMPLATE

    return HTMLExporter(template_name="lab", template_file="kit_site_notebook.html.j2",
                        extra_loaders=[DictLoader({"kit_report.html.j2": TEMPLATE,
                                                   "kit_site_notebook.html.j2": NOTEBOOK_TEMPLATE})])


_NOTEBOOK_LINK = re.compile(r'href="(?:\./|\.\./notebooks/)?([0-9]{2}_[\w.-]+?)\.ipynb(#[^"]*)?"')


def _render_notebook(exporter, nb, title: str, nav: str, stems: Sequence[str]) -> str:
    """The notebook's page; Markdown links to a sibling notebook (``05_x.ipynb#anchor``) go to its page."""
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}, "kit_nav": nav})

    def to_page(match: re.Match) -> str:
        stem, anchor = match.group(1), match.group(2) or ""
        return f'href="{stem}.html{anchor}"' if stem in stems else match.group(0)

    return _NOTEBOOK_LINK.sub(to_page, body)


def _executed_note(nb) -> str:
    meta = nb.metadata.get("papermill") or {}
    end, duration = meta.get("end_time"), meta.get("duration")
    if not end:
        return ""
    text = f"executed {str(end)[:19].replace('T', ' ')} UTC"
    if isinstance(duration, (int, float)):
        text += f" in {duration:.0f} s"
    return text


def _home(rows: list[dict], without: list[str], source: str, ranking: list, rule: str,
          notebooks: list[dict], links: _Links, run_label: str, figures_label: str) -> str:
    parts = ["<h1>Cloud scalability kit: report</h1>",
             f"<p>Built from the executed notebooks of {_e(run_label)} and the figure index "
             f"<span class=\"mono\">{_e(figures_label)}</span>. Every number below was computed by the "
             "notebook that shows it. See the <a href=\"figures.html\">figure gallery</a> for every figure "
             "with its id, provenance and citation key.</p>",
             "<h2 id=\"synthesis\">Synthesis</h2>",
             f"<p><small>Rows from {_e(source)}.</small></p>"]
    if rows:
        parts.append("<table><thead><tr><th>Area</th><th>Question</th><th>Finding</th><th>Value</th>"
                     "<th>Figure</th><th>Mitigation</th><th>Effect</th></tr></thead><tbody>")
        for row in rows:
            stem = str(row.get("notebook", "") or "")
            stem = Path(stem).stem if stem else ""
            area = _e(row.get("area", stem))
            if stem in links.stems:
                area = f'<a href="{links.notebook(stem, 0)}">{area}</a>'
            fig = str(row.get("figure", "") or "")
            target = links.figure(fig, 0)
            fig_cell = (f'<a href="{target}"><code>{_e(fig)}</code></a>' if target else
                        (f"<code>{_e(fig)}</code> <small>(not in the index)</small>" if fig else ""))
            status = str(row.get("status") or "ok")
            finding = _e(row.get("finding") or "") if status == "ok" else f"<em>{_e(status)}</em>"
            parts.append(f"<tr><td>{area}</td><td>{_e(row.get('question') or '')}</td>"
                         f"<td>{finding}</td><td class=\"num\">{_value_cell(row)}</td>"
                         f"<td>{fig_cell}</td><td>{_e(row.get('mitigation') or '')}</td>"
                         f"<td class=\"num\">{_effect_cell(row.get('effect'))}</td></tr>")
        parts.append("</tbody></table>")
    else:
        parts.append("<p class=\"note\">No notebook has a headline block in its results yet.</p>")
    if without:
        items = ", ".join(f'<a href="{links.notebook(s, 0)}">{_e(s)}</a>' if s in links.stems else _e(s)
                          for s in without)
        parts.append(f"<p class=\"note\">Without a headline block in their results (not in the table): "
                     f"{items}.</p>")
    if ranking:
        parts.append("<h2 id=\"act-first\">Where to act first</h2>")
        if rule:
            parts.append(f"<p><small>Ranking rule: {_e(rule)}</small></p>")
        parts.append(_ranking_table(ranking, links))
    parts.append("<h2 id=\"notebooks\">Notebooks</h2><table><thead><tr><th>Notebook</th><th>Figures</th>"
                  "<th>Results</th><th>Run</th></tr></thead><tbody>")
    for info in notebooks:
        figs = ", ".join(f'<a href="{links.notebook(info["stem"], 0)}#{_e(f)}"><code>{_e(f)}</code></a>'
                         for f in info["figures"]) or "<small>none</small>"
        results = (f'<a href="results/{_e(info["stem"])}.json">{_e(info["stem"])}.json</a>'
                   if info["results"] else "<small>no results file</small>")
        note = _e(info["executed"])
        if info["failed_since"]:
            note += (" <small class=\"note\">its latest run failed (see build/failed/); this page shows the "
                     "last successful run</small>")
        parts.append(f'<tr><td><a href="{links.notebook(info["stem"], 0)}">{_e(info["title"])}</a> '
                     f'<small>({_e(info["stem"])})</small></td><td>{figs}</td><td>{results}</td>'
                     f"<td><small>{note}</small></td></tr>")
    parts.append("</tbody></table>")
    return _page("Cloud scalability kit: report", "\n".join(parts), links.nav(0))


def _ranking_table(ranking: list, links: _Links) -> str:
    """Notebook 09's ranking: a table of its rows' keys in order (area linked to its notebook's page),
    or a numbered list of plain items."""
    if not all(isinstance(item, Mapping) for item in ranking):
        return "<ol>" + "".join(f"<li>{_e(item)}</li>" for item in ranking) + "</ol>"
    columns: list[str] = []
    for item in ranking:
        columns += [k for k in item if k not in columns and k != "notebook"]
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for item in ranking:
        stem = Path(str(item.get("notebook") or "")).stem
        cells = []
        for column in columns:
            value = item.get(column)
            text = _effect_cell(value) if column == "effect" else _num(value)
            if column == "area" and stem in links.stems:
                text = f'<a href="{links.notebook(stem, 0)}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _parameters_cell(entry: Mapping[str, Any]) -> str:
    params = entry.get("parameters") or {}
    if not isinstance(params, Mapping) or not params:
        return "<small>none</small>"
    changed = entry.get("non_default_parameters") or {}
    items = ", ".join(f"{_e(k)}={_e(json.dumps(v))}" + (" <strong>(non-default)</strong>" if k in changed else "")
                      for k, v in sorted(params.items()))
    return f"<details><summary>{len(params)} parameters</summary><span class=\"mono\">{items}</span></details>"


def _gallery(index: Mapping[str, Mapping], links: _Links, copied: Mapping[str, Mapping[str, str]],
             shown: Mapping[str, str], figures_label: str) -> str:
    parts = ["<h1>Figures</h1>",
             f"<p>Every figure of <span class=\"mono\">{_e(figures_label)}</span>, with its provenance. Cite a "
             "figure by its key <code>fig-NN-name@&lt;12 hex&gt;</code> (the first 12 hex digits of the sha256 "
             "of its PNG bytes followed by its SVG bytes) and the commit of the code that drew it, e.g. "
             "<em>Cloud scalability kit, figure fig-05-frontier@3f2a9c1d0b7e (commit &lt;git_commit&gt;)</em>."
             "</p>",
             "<table class=\"gallery\"><colgroup><col style=\"width: 15%\"><col style=\"width: 23%\">"
             "<col style=\"width: 22%\"><col style=\"width: 10%\"><col style=\"width: 12%\">"
             "<col style=\"width: 10%\"><col style=\"width: 8%\"></colgroup>"
             "<thead><tr><th>Figure</th><th>Picture</th><th>Caption</th><th>Notebook</th><th>Data</th>"
             "<th>Commit</th><th>Parameters</th></tr></thead><tbody>"]
    for fig_id in sorted(index):
        entry = index[fig_id]
        files = copied.get(fig_id, {})
        png, svg = files.get("png"), files.get("svg")
        picture = (f'<a href="{_e(png)}"><img class="thumb" src="{_e(png)}" alt="{_e(fig_id)}"></a>'
                   if png else "<small>PNG missing from the figure folder</small>")
        downloads = " ".join(f'<a href="{_e(path)}">{kind}</a>' for kind, path in (("png", png), ("svg", svg))
                             if path)
        stem = Path(str(entry.get("notebook", ""))).stem
        if stem in links.stems:
            anchor = f"#{fig_id}" if shown.get(fig_id) == stem else ""
            notebook = f'<a href="{links.notebook(stem, 0)}{_e(anchor)}">{_e(stem)}</a>'
            if not anchor:
                notebook += " <small>(not shown in the executed notebook)</small>"
        else:
            notebook = _e(stem or "unknown")
        data = _e(entry.get("data_source", ""))
        data_files = entry.get("data_files") or []
        if data_files:
            data += "<br><small>" + "<br>".join(
                f"{_e(f.get('path', ''))} <span class=\"mono\">sha256 {_e(str(f.get('sha256', ''))[:12])}</span>"
                for f in data_files if isinstance(f, Mapping)) + "</small>"
        commit = str(entry.get("git_commit") or "unknown")
        commit_cell = f"<span class=\"mono\">{_e(commit[:12])}</span>" + (
            " <small>(uncommitted changes)</small>" if entry.get("git_dirty") else "")
        parts.append(
            f'<tr id="{_e(fig_id)}"><td><code>{_e(fig_id)}</code><br><small>cite as</small> '
            f'<code>{_e(entry.get("cite", fig_id))}</code><br>{downloads}</td><td>{picture}</td>'
            f'<td>{_e(entry.get("caption", ""))}</td><td>{notebook}</td><td>{data}</td><td>{commit_cell}<br>'
            f'<small class="mono">{_e(entry.get("command", ""))}</small></td><td>{_parameters_cell(entry)}</td>'
            "</tr>")
    if not index:
        parts.append("<tr><td colspan=\"7\">No figures in the index.</td></tr>")
    parts.append("</tbody></table>")
    return _page("Figures: cloud scalability kit", "\n".join(parts), links.nav(0))


_FIGURE_ANCHOR = re.compile(r'<figure class="kit-figure" id="(fig-[0-9]{2}-[a-z0-9-]+)"')


def _shown_figures(nb) -> list[str]:
    """Figure ids displayed by ``NotebookOutputs.save`` in the executed notebook's outputs, in order."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            markup = (output.get("data") or {}).get("text/html", "")
            markup = "".join(markup) if isinstance(markup, list) else str(markup)
            for fig_id in _FIGURE_ANCHOR.findall(markup):
                if fig_id not in found:
                    found.append(fig_id)
    return found


# ------------------------------------------------------------------------------------------ build

def _default_figures_dir(build_dir: Path) -> Path:
    own = build_dir / "figures"
    return own if (own / "index.json").is_file() else paths.COMMITTED_FIGURES


def _run_label(build_dir: Path) -> str:
    root = build_dir.resolve()
    if root == paths.BUILD.resolve():
        return "the last canonical run (build/)"
    return f"the run in {_rel(root)}"


def build_site(build_dir: str | os.PathLike | None = None, target: str | os.PathLike | None = None, *,
               figures_dir: str | os.PathLike | None = None,
               notebooks_dir: str | os.PathLike | None = None) -> SiteReport:
    """Write the static site of the run in ``build_dir`` (default ``build/``) to ``target`` (default
    ``<build_dir>/site``) and return a :class:`SiteReport` (``seconds``: wall time of the build).

    ``figures_dir``: the folder of the figure index (default ``<build_dir>/figures`` when it has one, else
    the committed ``figures/``); ``notebooks_dir``: the source notebooks that must all have executed copies
    (default ``notebooks/``). MissingInputs (one line) when executed notebooks are missing or an input file
    is unreadable; ValueError when the built site fails :func:`check_site`.
    """
    started = time.monotonic()
    build_dir = Path(build_dir or paths.BUILD).resolve()
    target = Path(target).resolve() if target else build_dir / "site"
    figures_dir = Path(figures_dir).resolve() if figures_dir else _default_figures_dir(build_dir)
    notebooks_dir = Path(notebooks_dir or paths.NOTEBOOKS).resolve()
    if not build_dir.is_dir():
        raise MissingInputs(f"no run in {_rel(build_dir)}; run `{_make_hint(build_dir, [])}` first, then "
                            "`make report`")
    executed = find_executed(build_dir, notebooks_dir)
    index = _figure_index(figures_dir)

    import nbformat

    from analysis.html_report import notebook_title

    notebooks = []
    results: dict[str, Any] = {}
    for path in executed:
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises several types for bad JSON
            raise MissingInputs(f"{_rel(path)}: not a readable notebook ({exc}); rerun it") from None
        stem = path.stem
        results_path = build_dir / "results" / f"{stem}.json"
        results[stem] = _read_json(results_path)
        failed = build_dir / "failed" / path.name
        notebooks.append({"stem": stem, "nb": nb, "title": notebook_title(nb), "figures": _shown_figures(nb),
                          "results": results_path if results[stem] is not None else None,
                          "executed": _executed_note(nb),
                          "failed_since": failed.is_file() and failed.stat().st_mtime > path.stat().st_mtime})
    rows, without, source, ranking, rule = synthesis_table(results)
    links = _Links([n["stem"] for n in notebooks], list(index), {n["stem"]: n["title"] for n in notebooks})
    shown = {fig_id: info["stem"] for info in notebooks for fig_id in info["figures"]}
    report = SiteReport(target=target, without_headline=without, synthesis_source=source)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the site is for readers
        (staging / "notebooks").mkdir()
        (staging / "figures").mkdir()
        (staging / "results").mkdir()
        exporter = _notebook_exporter()
        for info in notebooks:
            page = f"notebooks/{info['stem']}.html"
            (staging / page).write_text(
                _render_notebook(exporter, info["nb"], info["title"], links.nav(1, info["stem"]), links.stems),
                encoding="utf-8")
            report.pages.append(page)
            if info["results"] is not None:
                shutil.copyfile(info["results"], staging / "results" / f"{info['stem']}.json")
        copied: dict[str, dict[str, str]] = {}
        for fig_id, entry in sorted(index.items()):
            files = entry.get("files") or {}
            for kind in ("png", "svg"):
                name = Path(str((files.get(kind) or {}).get("path") or f"{fig_id}.{kind}")).name
                source_file = figures_dir / name
                if source_file.is_file():
                    shutil.copyfile(source_file, staging / "figures" / name)
                    copied.setdefault(fig_id, {})[kind] = f"figures/{name}"
            report.figures.append(fig_id)
        figures_label = _rel(figures_dir / "index.json")
        (staging / "figures.html").write_text(_gallery(index, links, copied, shown, figures_label),
                                              encoding="utf-8")
        (staging / "index.html").write_text(
            _home(rows, without, source, ranking, rule, notebooks, links, _run_label(build_dir), figures_label),
            encoding="utf-8")
        report.pages[:0] = ["index.html", "figures.html"]
        problems = check_site(staging)
        if problems:
            raise ValueError(f"the built site has {len(problems)} problem(s) (build/site left as it was): "
                             + "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else ""))
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` (renames; the old site is removed after the swap)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------ check

class _Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.stylesheets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        if tag in ("a", "area") and attrs.get("href") is not None:
            self.refs.append((tag, "href", attrs["href"]))
        if tag == "link" and attrs.get("href") is not None:
            self.refs.append((tag, "href", attrs["href"]))
        for key in ("src", "data"):
            if tag in ("img", "script", "iframe", "source", "video", "audio", "embed", "object", "input") \
                    and attrs.get(key) is not None:
                self.refs.append((tag, key, attrs[key]))


_CSS_URL = re.compile(r"""(?:@import\s+(?:url\()?|url\()\s*['"]?([^'")\s]+)""", re.I)
_CSS_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)


def check_site(site: str | os.PathLike) -> list[str]:
    """Problems of the static site in ``site`` (empty list: none), one line each.

    Checks every HTML page: each local ``href``/``src`` resolves to a file inside the site (and an
    ``#anchor`` to an element id of that page); nothing is loaded from the network: no ``http(s)://`` or
    protocol-relative URL in a ``script``/``img``/``iframe``/... ``src``, a ``<link href>``, or a CSS
    ``url()``/``@import``. Links to other sites (``<a href="https://...">``) are allowed: they load nothing.
    """
    site = Path(site).resolve()
    pages = sorted(site.rglob("*.html"))
    parsed: dict[Path, _Collector] = {}
    problems: list[str] = []
    if not (site / "index.html").is_file():
        problems.append(f"{site}: no index.html")
    for page in pages:
        collector = _Collector()
        text = page.read_text(encoding="utf-8")
        collector.feed(text)
        parsed[page] = collector
        for block in _CSS_BLOCK.findall(text):
            for url in _CSS_URL.findall(block):
                if not url.startswith("data:") and _remote(url):
                    problems.append(f"{page.relative_to(site)}: CSS loads {url} from the network")
    for page, collector in parsed.items():
        name = page.relative_to(site)
        for tag, attr, url in collector.refs:
            if url.startswith(("data:", "mailto:", "javascript:")):
                continue
            if _remote(url):
                if tag != "a" and tag != "area":
                    problems.append(f"{name}: <{tag} {attr}=\"{url}\"> loads from the network")
                continue
            parts = urlsplit(url)
            if parts.scheme:
                problems.append(f"{name}: <{tag} {attr}=\"{url}\"> has an unexpected scheme")
                continue
            path = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if site not in path.parents and path != site:
                problems.append(f"{name}: <{tag} {attr}=\"{url}\"> points outside the site")
                continue
            if not path.is_file():
                problems.append(f"{name}: <{tag} {attr}=\"{url}\"> does not resolve ({path.relative_to(site)} "
                                "missing)")
                continue
            if parts.fragment and path.suffix == ".html":
                target = parsed.get(path)
                # a browser looks for an element whose id is the fragment as written, then decoded
                if target is not None and not {parts.fragment, unquote(parts.fragment)} & target.ids:
                    problems.append(f"{name}: <{tag} {attr}=\"{url}\">: no element id "
                                    f"{unquote(parts.fragment)!r} in {path.relative_to(site)}")
    return problems


def _remote(url: str) -> bool:
    lowered = url.strip().lower()
    return lowered.startswith(("http://", "https://", "//", "ftp://"))


# -------------------------------------------------------------------------------------------- cli

def cli(args) -> int:
    """``python -m analysis report``: build the site, print where it is; 1 with a one-line error when the
    run is incomplete."""
    try:
        report = build_site(args.build_dir, args.out, figures_dir=args.figures, notebooks_dir=args.notebooks_dir)
    except (MissingInputs, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"site: {_rel(report.target)}/index.html ({len(report.pages)} pages, {len(report.figures)} figures, "
          f"{report.seconds:.1f} s); synthesis from {report.synthesis_source}")
    if report.without_headline:
        print(f"without a headline block in their results: {', '.join(report.without_headline)}")
    return 0
