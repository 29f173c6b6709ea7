"""Render an executed notebook to a self-contained HTML page for readers.

``export_html(executed, target)``: nbconvert's JupyterLab template, with

* the page titled after the notebook (its first Markdown heading), not "Notebook";
* every code cell folded in a ``<details>`` element (click "code" to read it); outputs stay visible;
* figures shown with their id and caption (``NotebookOutputs.save`` displays them in the notebook);
* no internet assets: require.js, MathJax, Mermaid and widget scripts are left out (the kit's notebooks
  use none of them), CSS and images are inlined, so the page works offline and loads nothing.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from analysis.atomic import atomic_write_text

__all__ = ["export_html", "notebook_title", "TEMPLATE"]

#: Jinja template extending nbconvert's "lab" page: no remote scripts, code folded.
TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
  details.kit-code > summary { cursor: pointer; color: #555; font-size: 85%; margin: 0.2em 0; }
  figure.kit-figure figcaption { font-size: 90%; max-width: 46em; }
</style>
{%- endblock extra_css -%}
{% block input_group -%}
<details class="kit-code"><summary>{{ 'parameters' if ('parameters' in cell.metadata.get('tags', [])
    or 'injected-parameters' in cell.metadata.get('tags', [])) else 'code' }}</summary>
{{ super() }}
</details>
{%- endblock input_group %}
"""

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def notebook_title(nb) -> str:
    """Text of the first Markdown heading in the notebook (``# 05 · Cost ...``), else the notebook's title
    metadata, else "Notebook"."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = _HEADING.search(cell.source)
            if match:
                return re.sub(r"[*_`]", "", match.group(1)).strip()
    return str(nb.metadata.get("title") or "Notebook")


def export_html(executed: str | os.PathLike, target: str | os.PathLike) -> None:
    """Render the executed notebook ``executed`` to ``target`` (HTML, written atomically).

    ValueError naming the file when ``executed`` is missing or not a notebook.
    """
    from analysis._lazy import without_iri_grammars

    without_iri_grammars()
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    executed = Path(executed)
    if not executed.is_file():
        raise ValueError(f"executed={str(executed)!r}: no such notebook")
    try:
        nb = nbformat.read(str(executed), as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises several types for bad JSON
        raise ValueError(f"executed={str(executed)!r}: not a readable notebook ({exc})") from None
    title = notebook_title(nb)
    exporter = HTMLExporter(template_name="lab", template_file="kit_report.html.j2",
                            extra_loaders=[DictLoader({"kit_report.html.j2": TEMPLATE})])
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    atomic_write_text(target, body)
