"""analysis.html_report: titled, code folded, figures with id and caption, no internet assets.

Executes a tiny notebook (built here) with the kit's kernel, the way the runner does, then renders it.
"""
from __future__ import annotations

import re

import nbformat
import pytest

from analysis import paths
from analysis.html_report import export_html, notebook_title

TITLE = "07 · Demo: a knee & a caption"
CAPTION = "Mean response against utilisation <for the demo>."


def tiny_notebook(path, out_dir):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("seed: int = 3  # base seed")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"Intro text.\n\n# {TITLE}\n\nSome prose."),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nfrom analysis import figures"),
        params,
        nbformat.v4.new_code_cell(
            "figures.use_house_style()\n"
            f"out = figures.NotebookOutputs({str(path)!r}, parameters={{'seed': seed}}, seed=seed,\n"
            "                               data_source='no dataset: theory')\n"
            "fig, ax = figures.subplots()\n"
            "ax.plot([0, 0.5, 0.9], [1, 2, 10])\n"
            "figures.label_axes(ax, x='Utilisation', x_unit='', y='Mean response', y_unit='s')\n"
            f"out.save(fig, 'fig-07-knee', {CAPTION!r})"),
        nbformat.v4.new_code_cell("out.write_results({'knee': 0.8})"),
    ]
    nb.metadata["kernelspec"] = {"name": paths.KERNEL_NAME, "display_name": "kit", "language": "python"}
    nbformat.write(nb, str(path))
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from nbclient import NotebookClient

    tmp = tmp_path_factory.mktemp("html")
    out_dir = tmp / "out"
    source = tmp / "07_demo.ipynb"
    nb = tiny_notebook(source, out_dir)
    mp = pytest.MonkeyPatch()
    mp.setenv(paths.OUTPUT_ENV_VAR, str(out_dir))  # the kernel inherits the environment
    try:
        NotebookClient(nb, kernel_name=paths.KERNEL_NAME, timeout=300,
                       resources={"metadata": {"path": str(tmp)}}).execute()
    finally:
        mp.undo()
    target = tmp / "07_demo.executed.ipynb"
    nbformat.write(nb, str(target))
    return target, nb, out_dir


def test_save_and_write_results_print_nothing_noisy(executed):
    _, nb, out_dir = executed
    save_cell, results_cell = nb.cells[3], nb.cells[4]
    assert [o.output_type for o in save_cell.outputs] == ["display_data"], save_cell.outputs
    shown = save_cell.outputs[0].data
    assert "fig-07-knee" in shown["text/plain"] and "Mean response against utilisation" in shown["text/plain"]
    assert "data:image/png;base64," in shown["text/html"] and "<figcaption>" in shown["text/html"]
    assert "build/" in shown["text/plain"] or str(out_dir) in shown["text/plain"]
    assert results_cell.outputs == [], "write_results must not print a path"
    assert (out_dir / "results" / "07_demo.json").is_file()


def test_html_is_titled_folded_captioned_and_offline(executed, tmp_path):
    source, nb, _ = executed
    target = tmp_path / "html" / "07_demo.html"
    export_html(source, target)
    html = target.read_text(encoding="utf-8")
    assert re.search(r"<title>07 · Demo: a knee &amp; a caption</title>", html), html[:500]
    # every code cell folded, the parameters cell labelled as such
    assert html.count('<details class="kit-code">') == sum(c.cell_type == "code" for c in nb.cells)
    assert "<summary>parameters</summary>" in html
    # the figure with its id and caption (escaped) next to it
    figure = re.search(r'<figure class="kit-figure".*?</figure>', html, re.S)
    assert figure, "the saved figure is not in the page"
    assert "data:image/png;base64," in figure.group(0)
    assert "<strong>fig-07-knee</strong>" in figure.group(0)
    assert "Mean response against utilisation &lt;for the demo&gt;." in figure.group(0)
    # nothing loaded from the internet
    remote = re.findall(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["\']?(?:https?:)?//', html, re.I)
    assert remote == [], remote
    assert re.findall(r"<script\b[^>]*\bsrc\s*=", html, re.I) == [], "no external script at all"
    assert "mathjax" not in html.lower() and "require.js" not in html.lower()


def test_title_falls_back_and_bad_input_is_named(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("no heading here")]
    assert notebook_title(nb) == "Notebook"
    nb.cells.append(nbformat.v4.new_markdown_cell("## Second **level** heading"))
    assert notebook_title(nb) == "Second level heading"
    with pytest.raises(ValueError, match="executed="):
        export_html(tmp_path / "missing.ipynb", tmp_path / "x.html")
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable notebook"):
        export_html(tmp_path / "bad.ipynb", tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()
