"""analysis.site (`make report`): the static site of a run, its links, figures and synthesis table.

The fixture is a real quick run (``analysis.reproduce.run``) of two tiny notebooks made here: ``00_alpha``
saves a figure and writes results with a headline block, ``01_beta`` saves a figure and writes results
without one. The site is built from that run the way ``python -m analysis report --build-dir`` does.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from analysis import paths, site

HEADLINE = {
    "area": "demo area", "question": "How slow is the demo?",
    "metric": "mean response", "unit": "s", "figure": "fig-00-alpha",
    "mitigation": "Add a server.",
    "effect": {"on": "latency", "baseline": 1.0, "mitigated": 0.4, "unit": "s"},
}


def _notebook(path: Path, fig_id: str, caption: str, with_headline: bool) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("quick: bool = False  # small sizes\nseed: int = 3  # base seed")
    params.metadata["tags"] = ["parameters"]
    results = "{'mean_s': mean_s}"
    if with_headline:
        results = ("{'mean_s': mean_s, 'headline': dict(" + repr(HEADLINE) +
                   ", finding=f'mean response {mean_s:.3f} s', value=mean_s, ci_low=mean_s - 0.01, "
                   "ci_high=mean_s + 0.01)}")
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {path.stem[:2]} · Demo {path.stem[3:]}\n\nProse with $\\rho$, "
                                      "see [beta](01_beta.ipynb#fig-01-beta)."),
        nbformat.v4.new_code_cell("import numpy as np\nfrom analysis import figures"),
        params,
        nbformat.v4.new_code_cell(
            f"out = figures.NotebookOutputs({path.name!r}, parameters={{'quick': quick, 'seed': seed}}, "
            "seed=seed, data_source='no dataset: test')\n"
            "mean_s = float(np.random.default_rng(seed).exponential(0.1, 1000).mean())\n"
            "fig, ax = figures.subplots()\nax.plot([0, 1], [0, mean_s])\n"
            f"out.save(fig, {fig_id!r}, {caption!r})"),
        nbformat.v4.new_code_cell(f"out.write_results({results})\nprint('mean', round(mean_s, 4))"),
    ]
    nb.metadata["kernelspec"] = {"name": paths.KERNEL_NAME, "display_name": "kit", "language": "python"}
    nbformat.write(nb, str(path))


CAPTIONS = {"fig-00-alpha": "Alpha line <with markup>.", "fig-01-beta": "Beta line."}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from analysis import reproduce

    tmp = tmp_path_factory.mktemp("site")
    sources = tmp / "notebooks"
    sources.mkdir()
    _notebook(sources / "00_alpha.ipynb", "fig-00-alpha", CAPTIONS["fig-00-alpha"], with_headline=True)
    _notebook(sources / "01_beta.ipynb", "fig-01-beta", CAPTIONS["fig-01-beta"], with_headline=False)
    results = reproduce.run(sources, tmp / "build", quick=True, html=False, progress=False, jobs=2)
    assert [r.status for r in results] == ["ok", "ok"], [r.failure_line() for r in results]
    run = tmp / "build" / "quick"
    report = site.build_site(run, notebooks_dir=sources)
    return run, report


def _pages(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.html"))}


class _Refs(HTMLParser):
    """Every (tag, attribute, url) and element id of a page (independent of analysis.site's checker)."""

    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.refs.append((tag, key, attrs[key], attrs.get("rel")))


def test_site_pages_links_images_and_no_network(built):
    run, report = built
    root = report.target
    assert root == run / "site"
    pages = _pages(root)
    assert set(pages) == {"index.html", "figures.html", "notebooks/00_alpha.html", "notebooks/01_beta.html"}
    parsed = {}
    for name, text in pages.items():
        parser = _Refs()
        parser.feed(text)
        parsed[name] = parser
    checked = 0
    for name, parser in parsed.items():
        for tag, key, url, rel in parser.refs:
            if url.startswith("data:"):
                continue
            loads = tag != "a"
            if re.match(r"(?i)(https?:)?//", url):
                assert not loads, f"{name}: <{tag} {key}={url!r} rel={rel!r}> loads from the network"
                continue
            parts = urlsplit(url)
            target = (root / Path(name).parent / unquote(parts.path)).resolve() if parts.path else root / name
            assert target.is_file(), f"{name}: {url!r} does not resolve"
            if parts.fragment and target.suffix == ".html":
                ids = parsed[str(target.relative_to(root.resolve()))].ids
                assert {parts.fragment, unquote(parts.fragment)} & ids, f"{name}: {url!r}: no such anchor"
            checked += 1
    assert checked > 20
    # no remote asset anywhere: scripts, stylesheets, images, CSS imports, fonts
    for name, text in pages.items():
        for pattern in (r"<script[^>]+src=\"(https?:)?//", r"<link[^>]+href=\"(https?:)?//",
                        r"<img[^>]+src=\"(https?:)?//", r"@import\s+url\(\s*['\"]?(https?:)?//",
                        r"url\(\s*['\"]?https?://", r"MathJax\.js|require\.min\.js"):
            assert not re.search(pattern, text), f"{name}: remote asset ({pattern})"
    assert site.check_site(root) == []


def test_every_indexed_figure_has_a_gallery_row_a_picture_and_an_anchor_in_its_notebook(built):
    run, report = built
    root = report.target
    index = json.loads((run / "figures" / "index.json").read_text())
    assert sorted(index) == sorted(CAPTIONS) == sorted(report.figures)
    gallery = (root / "figures.html").read_text()
    for fig_id, entry in index.items():
        assert f'<tr id="{fig_id}">' in gallery
        assert f'src="figures/{fig_id}.png"' in gallery
        assert (root / "figures" / f"{fig_id}.png").read_bytes() == (run / "figures" / f"{fig_id}.png").read_bytes()
        # a quick run saves PNG previews only; a full run's SVG is copied beside its PNG
        assert (root / "figures" / f"{fig_id}.svg").is_file() == ("svg" in index[fig_id]["files"])
        # caption (escaped), citation key, commit, parameters, data source from the index
        assert entry["caption"].replace("<", "&lt;").replace(">", "&gt;") in gallery
        assert entry["cite"] in gallery
        assert (entry["git_commit"] or "unknown")[:12] in gallery
        assert 'quick=true <strong>(non-default)</strong>' in gallery
        assert "no dataset: test" in gallery
        stem = Path(entry["notebook"]).stem
        assert f'href="notebooks/{stem}.html#{fig_id}"' in gallery
        page = (root / "notebooks" / f"{stem}.html").read_text()
        assert f'id="{fig_id}"' in page and f"<strong>{fig_id}</strong>" in page


def test_notebook_pages_fold_code_and_show_outputs_with_navigation(built):
    _, report = built
    page = (report.target / "notebooks" / "00_alpha.html").read_text()
    assert "<title>00 · Demo alpha</title>" in page
    assert page.count('<details class="kit-code">') >= 4  # every code cell folded
    assert re.search(r"mean 0\.\d{4}", page)  # the printed output is visible
    assert 'href="../index.html">Home</a>' in page and 'href="../notebooks/01_beta.html"' in page
    assert "$\\rho$" in page  # math left as its TeX text (no MathJax from the web)
    assert 'href="01_beta.html#fig-01-beta"' in page  # a link to a sibling notebook goes to its page


def test_home_page_synthesis_table_and_notebooks_without_headline(built):
    run, report = built
    home = (report.target / "index.html").read_text()
    headline = json.loads((run / "results" / "00_alpha.json").read_text())["headline"]
    assert report.synthesis_source == "the headline block of each notebook's results JSON"
    assert report.without_headline == ["01_beta"]
    assert headline["finding"] in home and headline["question"] in home
    assert f"{headline['value']:.4g} s" in home and f"CI {headline['ci_low']:.4g} to" in home
    assert '<a href="figures.html#fig-00-alpha"><code>fig-00-alpha</code></a>' in home
    assert "latency: 1 s &rarr; 0.4 s <small>(-60%)</small>" in home
    assert re.search(r"Without a headline block.*01_beta", home)
    assert 'href="results/00_alpha.json"' in home and (report.target / "results" / "01_beta.json").is_file()


def test_rebuild_replaces_the_site_and_leaves_no_temporaries(built):
    run, report = built
    stray = report.target / "stray.html"
    stray.write_text("old")
    again = site.build_site(run, notebooks_dir=Path(run).parents[1] / "notebooks")
    assert again.target == report.target and not stray.exists()
    assert [p.name for p in run.iterdir() if p.name.startswith(".site")] == []


def test_synthesis_rows_come_from_notebook_09_when_present():
    """The shape notebook 09 writes: ``areas`` rows (effect flattened, ``key finding``, a status), ``ranking``
    rows and ``ranking_rule``."""
    areas = [{"notebook": "01_fanout", "area": "fan-out", "status": "ok", "question": "q?",
              "key finding": "p99: 0.2 s (95% CI 0.19-0.21)", "value": 0.2, "ci_low": 0.19, "ci_high": 0.21,
              "unit": "s", "figure": "fig-01-x", "mitigation": "hedge", "effect_on": "latency",
              "baseline": 0.5, "mitigated": 0.25, "effect_unit": "s", "factor": 2.0},
             {"notebook": "04_*", "area": "retries", "status": "missing notebook"}]
    ranking = [{"rank": 1, "area": "fan-out", "notebook": "01_fanout", "effect_on": "latency", "factor": 2.0}]
    results = {"00_a": {"headline": {"area": "a"}}, "01_b": {"x": 1}, "09_synthesis":
               {"areas": areas, "ranking": ranking, "ranking_rule": "largest factor first"}}
    got, without, source, got_ranking, rule = site.synthesis_table(results)
    assert [r["area"] for r in got] == ["fan-out", "retries"] and without == ["01_b"] and "09_synthesis" in source
    assert got[0]["effect"] == {"on": "latency", "baseline": 0.5, "mitigated": 0.25, "unit": "s"}
    assert got[0]["finding"] == "p99: 0.2 s (95% CI 0.19-0.21)"
    assert got_ranking == ranking and rule == "largest factor first"
    links = site._Links(["01_fanout"], ["fig-01-x"], {})
    home = site._home(got, without, source, got_ranking, rule, [], links, "a run", "figures/index.json")
    assert "latency: 0.5 s &rarr; 0.25 s <small>(-50%)</small>" in home
    assert "<em>missing notebook</em>" in home and "Ranking rule: largest factor first" in home
    assert '<td><a href="notebooks/01_fanout.html">fan-out</a></td><td>latency</td><td>2</td>' in home
    # 09's results without rows: the headline blocks, and the reason is stated
    got, _, source, _, _ = site.synthesis_table({"00_a": {"headline": {"area": "a"}}, "09_synthesis": {}})
    assert got == [{"notebook": "00_a", "area": "a"}] and "has no table" in source


def test_check_site_reports_broken_links_anchors_and_remote_assets(tmp_path):
    (tmp_path / "img.png").write_bytes(b"png")
    (tmp_path / "index.html").write_text(
        '<html><head><script src="https://cdn.example.org/x.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/f.css">'
        '<style>@import url("https://fonts.example.org/g.css");</style></head><body id="top">'
        '<a href="https://example.org/">an outside link is fine</a><a href="#top">ok</a>'
        '<img src="img.png"><img src="missing.png"><a href="other.html">gone</a>'
        '<a href="#nowhere">bad anchor</a><a href="../outside.html">out</a></body></html>')
    problems = site.check_site(tmp_path)
    assert len(problems) == 7, problems
    for needle in ("x.js", "f.css", "g.css", "missing.png", "other.html", "nowhere", "outside the site"):
        assert any(needle in p for p in problems), (needle, problems)


def test_missing_executed_notebooks_one_line_with_the_command(tmp_path, monkeypatch):
    sources = tmp_path / "notebooks"
    sources.mkdir()
    _notebook(sources / "00_alpha.ipynb", "fig-00-alpha", "a", with_headline=False)
    _notebook(sources / "01_beta.ipynb", "fig-01-beta", "b", with_headline=False)
    run = tmp_path / "run"
    (run / "notebooks").mkdir(parents=True)
    (run / "notebooks" / "00_alpha.ipynb").write_text((sources / "00_alpha.ipynb").read_text())
    done = subprocess.run([sys.executable, "-m", "analysis", "report", "--build-dir", str(run),
                           "--notebooks-dir", str(sources)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "01_beta.ipynb" in lines[0] and "00_alpha" not in lines[0] and "reproduce" in lines[0]
    assert not (run / "site").exists()
    # for the canonical build folder the hint is the make command for exactly the missing notebooks
    monkeypatch.setattr(paths, "BUILD", run)
    with pytest.raises(site.MissingInputs, match=r"make reproduce ARGS='--only 01_beta'"):
        site.find_executed(run, sources)


def test_a_broken_link_fails_the_build_and_keeps_the_previous_site(built, tmp_path):
    import shutil

    run, report = built
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    executed = copy / "notebooks" / "01_beta.ipynb"
    nb = nbformat.read(str(executed), as_version=4)
    nb.cells[0].source += "\n\n![a picture](pictures/missing.png)"
    nbformat.write(nb, str(executed))
    before = (copy / "site" / "notebooks" / "01_beta.html").read_bytes()
    with pytest.raises(ValueError, match=r"notebooks/01_beta\.html: <img src=\"pictures/missing\.png\"> does "
                                         r"not resolve"):
        site.build_site(copy, notebooks_dir=run.parents[1] / "notebooks")
    assert (copy / "site" / "notebooks" / "01_beta.html").read_bytes() == before
    assert [p.name for p in copy.iterdir() if p.name.startswith(".site")] == []


def test_no_canonical_run_but_a_quick_one_points_at_it(tmp_path, monkeypatch):
    sources = tmp_path / "notebooks"
    sources.mkdir()
    _notebook(sources / "00_alpha.ipynb", "fig-00-alpha", "a", with_headline=False)
    build = tmp_path / "build"
    (build / "quick" / "notebooks").mkdir(parents=True)
    (build / "quick" / "notebooks" / "00_alpha.ipynb").write_text("{}")
    monkeypatch.setattr(paths, "BUILD", build)
    with pytest.raises(site.MissingInputs, match=r"^no executed notebooks in .*; run `make reproduce` first, then "
                                                 r"`make report` \(or report on the quick run: `make report "
                                                 r"REPORT_ARGS='--build-dir build/quick'`\)$"):
        site.find_executed(build, sources)
