"""analysis.synthesis: the headline contract, the checks of results against the figures, table and ranking."""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from analysis import paths, synthesis
from analysis.synthesis import ResultsError


def _head(**changes):
    args = dict(area="cost and autoscaling", question="How much does autoscaling save?",
                finding="Predictive scaling costs 0.6 of static peak provisioning.", metric="weekly cost",
                value=60.0, ci_low=55.0, ci_high=65.0, unit="$", figure="fig-05-frontier",
                mitigation="Scale predictively.",
                effect={"on": "cost", "baseline": 100.0, "mitigated": 60.0, "unit": "$"})
    args.update(changes)
    return synthesis.headline(**args)


def test_headline_returns_the_plain_contract_dict():
    h = _head(value=np.float64(60.0))
    assert h == {"area": "cost and autoscaling", "question": "How much does autoscaling save?",
                 "finding": "Predictive scaling costs 0.6 of static peak provisioning.", "metric": "weekly cost",
                 "value": 60.0, "ci_low": 55.0, "ci_high": 65.0, "unit": "$", "figure": "fig-05-frontier",
                 "mitigation": "Scale predictively.",
                 "effect": {"on": "cost", "baseline": 100.0, "mitigated": 60.0, "unit": "$"}}
    assert type(h["value"]) is float
    json.dumps(h)


@pytest.mark.parametrize("changes, message", [
    ({"value": None}, "headline: value is missing (None); give the computed number"),
    ({"ci_low": math.nan}, "headline: ci_low is NaN; give the computed number"),
    ({"ci_high": math.inf}, "headline: ci_high=inf is not finite"),
    ({"value": "1"}, "headline: value='1' is not a number"),
    ({"value": 70.0}, "headline: need ci_low <= value <= ci_high, got ci_low=55, value=70, ci_high=65"),
    ({"figure": "figure-5"}, "headline: figure='figure-5' is not a figure id of the form 'fig-NN-name'"),
    ({"effect": {"on": "throughput", "baseline": 2.0, "mitigated": 1.0, "unit": "s"}},
     "headline: effect['on']='throughput' must be one of latency, cost, availability"),
    ({"effect": {"on": "cost", "baseline": 2.0, "mitigated": math.nan, "unit": "$"}},
     "headline: effect['mitigated'] is NaN; give the computed number"),
    ({"effect": {"on": "cost", "baseline": 2.0, "mitigated": 0.0, "unit": "$"}},
     "headline: effect['mitigated']=0 must be > 0"),
    ({"effect": {"on": "cost", "baseline": 2.0, "mitigated": 1.0, "unit": "$", "mitigated_ci": [1.5, 2]}},
     "headline: effect['mitigated_ci']=[1.5, 2] must be positive and contain effect['mitigated']=1"),
    ({"area": " "}, "headline: area=' ' must be a non-empty string"),
])
def test_headline_rejects_bad_fields_with_one_line_naming_the_field(changes, message):
    with pytest.raises(ValueError) as info:
        _head(**changes)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------- results vs figures

def _rev(ref: str) -> str:
    done = subprocess.run(["git", "-C", str(paths.ROOT), "rev-parse", ref], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"needs git history ({ref}): {done.stderr.strip()}")
    return done.stdout.strip()


PARAMS = {"quick": False, "seed": 7}
FILES = [{"path": "ecommerce/rps.csv", "sha256": "ab" * 32}]


def _setup(tmp_path, results_commit, figure_commit, params=PARAMS, files=FILES, head=None):
    """A results folder with 05's results and a figure folder whose index has fig-05-frontier."""
    results_dir, figures_dir = tmp_path / "results", tmp_path / "figures"
    results_dir.mkdir(parents=True)
    figures_dir.mkdir(parents=True)
    entry = {"notebook": "notebooks/05_cost_autoscaling.ipynb", "git_commit": figure_commit,
             "parameters": dict(PARAMS), "data_files": list(FILES)}
    (figures_dir / "index.json").write_text(json.dumps({"fig-05-frontier": entry}))
    results = {"cost": 1.0, "headline": head if head is not None else _head(),
               "provenance": {"notebook": "05_cost_autoscaling.ipynb", "parameters": dict(params),
                              "data_files": list(files), "git_commit": results_commit, "git_dirty": False}}
    (results_dir / "05_cost_autoscaling.json").write_text(json.dumps(results))
    return results_dir, figures_dir


def _load(results_dir, figures_dir, notebooks=("05_cost_autoscaling.ipynb",)):
    return synthesis.load_results(results_dir, notebooks, figures_dir)


def test_load_results_accepts_results_that_contain_the_figures_commit(tmp_path):
    head, parent = _rev("HEAD"), _rev("HEAD~1")
    loaded = _load(*_setup(tmp_path, head, parent))
    assert loaded["05_cost_autoscaling.ipynb"]["headline"]["figure"] == "fig-05-frontier"
    assert loaded["05_cost_autoscaling.ipynb"]["cost"] == 1.0
    _load(*_setup(tmp_path / "same", head, head))  # same commit: fine


def _error(results_dir, figures_dir, notebooks=("05_cost_autoscaling.ipynb",)) -> str:
    with pytest.raises(ResultsError) as info:
        _load(results_dir, figures_dir, notebooks)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_missing_results_file_is_a_one_line_error(tmp_path):
    results_dir, figures_dir = _setup(tmp_path, _rev("HEAD"), _rev("HEAD"))
    text = _error(results_dir, figures_dir, ["02_load_balancing_spikes.ipynb"])
    assert text.startswith("02_load_balancing_spikes.ipynb: no results file ")
    assert text.endswith("02_load_balancing_spikes.json; run the notebook first "
                         "(make reproduce ARGS='--only 02_load_balancing_spikes')")


def test_results_older_than_the_figures_are_refused(tmp_path):
    head, parent = _rev("HEAD"), _rev("HEAD~1")
    text = _error(*_setup(tmp_path, parent, head))
    assert text == (f"05_cost_autoscaling.ipynb: results made at commit {parent[:12]}, older than (or beside) "
                    f"commit {head[:12]} of fig-05-frontier in {tmp_path}/figures/index.json; rerun the notebook")


def test_results_without_a_commit_are_refused(tmp_path):
    text = _error(*_setup(tmp_path, None, _rev("HEAD")))
    assert text.startswith("05_cost_autoscaling.ipynb: its results record no git commit")


def test_results_with_other_parameters_are_refused(tmp_path):
    head = _rev("HEAD")
    text = _error(*_setup(tmp_path, head, head, params={"quick": True, "seed": 7}))
    assert text == (f"05_cost_autoscaling.ipynb: results made with other parameters than fig-05-frontier in "
                    f"{tmp_path}/figures/index.json: quick=True (figures: False)")


def test_parameters_are_checked_even_when_a_figure_records_no_commit(tmp_path):
    text = _error(*_setup(tmp_path, _rev("HEAD"), None, params={"quick": False, "seed": 8}))
    assert "results made with other parameters than fig-05-frontier" in text and "seed=8 (figures: 7)" in text


def test_a_commit_unknown_to_git_is_a_one_line_error(tmp_path):
    text = _error(*_setup(tmp_path, "f" * 40, _rev("HEAD")))
    assert text.startswith(f"05_cost_autoscaling.ipynb: cannot tell whether results commit {'f' * 12} contains")


def test_results_from_other_data_are_refused(tmp_path):
    head = _rev("HEAD")
    other = [{"path": "ecommerce/rps.csv", "sha256": "cd" * 32}]
    text = _error(*_setup(tmp_path, head, head, files=other))
    assert text.startswith("05_cost_autoscaling.ipynb: results made from other data files than fig-05-frontier")
    assert "ecommerce/rps.csv@cdcdcdcd" in text and "ecommerce/rps.csv@abababab" in text


def test_results_without_a_headline_or_citing_another_figure_are_refused(tmp_path):
    head = _rev("HEAD")
    results_dir, figures_dir = _setup(tmp_path, head, head)
    path = results_dir / "05_cost_autoscaling.json"
    data = json.loads(path.read_text())
    del data["headline"]
    path.write_text(json.dumps(data))
    assert _error(results_dir, figures_dir).startswith("05_cost_autoscaling.ipynb: its results have no 'headline'")
    text = _error(*_setup(tmp_path / "b", head, head, head=_head(figure="fig-05-demand")))
    assert text == ("05_cost_autoscaling.ipynb: its headline cites fig-05-demand, which is not one of its "
                    f"figures in {tmp_path}/b/figures/index.json (fig-05-frontier)")
    bad = dict(_head())
    bad["value"] = None
    text = _error(*_setup(tmp_path / "c", head, head, head=bad))
    assert text.startswith("05_cost_autoscaling.ipynb: invalid headline: value is missing")


def test_a_notebook_without_figures_in_the_index_is_refused(tmp_path):
    head = _rev("HEAD")
    results_dir, figures_dir = _setup(tmp_path, head, head)
    (figures_dir / "index.json").write_text("{}")
    assert _error(results_dir, figures_dir).startswith(
        "05_cost_autoscaling.ipynb: no figure of this notebook in ")


def test_results_location_of_the_canonical_and_quick_builds(tmp_path):
    assert synthesis.results_location("") == (paths.BUILD / "results", paths.COMMITTED_FIGURES)
    assert synthesis.results_location("", quick=True) == (paths.BUILD / "quick" / "results",
                                                          paths.BUILD / "quick" / "figures")
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    assert synthesis.results_location(str(run / "results")) == (run / "results", paths.COMMITTED_FIGURES)
    (run / "figures").mkdir()
    (run / "figures" / "index.json").write_text("{}")
    assert synthesis.results_location(str(run / "results")) == (run / "results", run / "figures")
    with pytest.raises(ValueError, match="results_dir='/nonexistent/x': no such directory"):
        synthesis.results_location("/nonexistent/x")


# ------------------------------------------------------------------------------------ table, ranking

def _results(area, number, on, baseline, mitigated, **effect):
    h = _head(area=area, figure=f"fig-{number}-x",
              effect={"on": on, "baseline": baseline, "mitigated": mitigated, "unit": "s", **effect})
    return {"headline": h}


def test_table_has_a_row_per_planned_area_and_lists_missing_notebooks():
    results = {"00_foundations.ipynb": _results("queueing", "00", "latency", 2.0, 1.0),
               "05_cost_autoscaling.ipynb": _results("cost", "05", "cost", 10.0, 4.0)}
    table = synthesis.synthesis_table(results, existing=[*results, "02_load_balancing_spikes.ipynb"])
    assert list(table["notebook"].str[:2]) == [f"{i:02d}" for i in range(9)]
    status = dict(zip(table["notebook"].str[:2], table["status"]))
    assert status["00"] == status["05"] == "ok"
    assert status["02"] == "no results" and status["04"] == "missing notebook"
    row = table.set_index("notebook").loc["05_cost_autoscaling.ipynb"]
    assert row["factor"] == pytest.approx(2.5)
    assert row["key finding"] == "weekly cost: 60 $ (95% CI 55-65)"
    assert math.isnan(row["factor_low"])
    exact = {"00_x.ipynb": {"headline": _head(value=2.0, ci_low=2.0, ci_high=2.0)}}
    assert synthesis.synthesis_table(exact)["key finding"].iloc[0] == (
        "weekly cost: 2 $ (no interval: a closed form, or every replication gave this value)")


def test_ranking_follows_the_stated_rule_with_ties_by_area():
    results = {"00_a.ipynb": _results("zeta", "00", "latency", 3.0, 1.0),
               "01_b.ipynb": _results("alpha", "01", "cost", 6.0, 2.0),       # same factor 3: alpha first
               "02_c.ipynb": _results("beta", "02", "latency", 10.0, 1.0),
               "03_d.ipynb": _results("gamma", "03", "availability", 1.5, 1.0,
                                      baseline_ci=[1.2, 1.8], mitigated_ci=[0.9, 1.2])}
    ranked = synthesis.rank_where_to_act(synthesis.synthesis_table(results))
    assert list(ranked["area"]) == ["beta", "alpha", "zeta", "gamma"]
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    gamma = ranked.set_index("area").loc["gamma"]
    assert (gamma["factor_low"], gamma["factor_high"]) == pytest.approx((1.0, 2.0))
    assert "baseline / mitigated" in synthesis.RANKING_RULE and "ties broken by area name" in synthesis.RANKING_RULE
    with pytest.raises(ValueError, match="table: needs columns"):
        synthesis.rank_where_to_act(ranked.drop(columns=["factor"]))


def test_write_results_records_the_commit_for_the_checks(tmp_path, monkeypatch):
    from analysis import figures, provenance

    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(tmp_path))
    out = figures.NotebookOutputs("00_foundations.ipynb", parameters={"quick": True}, seed=1,
                                  data_source="no dataset: test")
    out.write_results({"x": 1})
    prov = json.loads(out.results_path.read_text())["provenance"]
    git = provenance.git_info()
    assert prov["git_commit"] == git["commit"] and prov["git_dirty"] == git["dirty"]


# ------------------------------------------------------------------------------------- notebook 09

def _prepared_run(tmp_path, commit):
    """A run folder with results and a figure index for every notebook in notebooks/ but 09 (factors 2, 3, ...)."""
    from analysis import reproduce

    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    (run / "figures").mkdir()
    index, factors = {}, {}
    names = [p.name for p in reproduce.discover() if not reproduce.runs_last(p)]
    for k, name in enumerate(names):
        nn, fig_id = name[:2], f"fig-{name[:2]}-main"
        index[fig_id] = {"notebook": f"notebooks/{name}", "git_commit": commit, "parameters": {"quick": False},
                         "data_files": []}
        effect = {"on": ("latency", "cost")[k % 2], "baseline": 2.0 + k, "mitigated": 1.0, "unit": "s"}
        if k == 0:
            effect.update(baseline_ci=[1.5, 2.5], mitigated_ci=[0.9, 1.1])
        head = _head(area=f"area {nn}", figure=fig_id, effect=effect)
        factors[head["area"]] = 2.0 + k
        (run / "results" / f"{Path(name).stem}.json").write_text(json.dumps(
            {"headline": head, "provenance": {"notebook": name, "parameters": {"quick": False}, "data_files": [],
                                              "git_commit": commit}}))
    (run / "figures" / "index.json").write_text(json.dumps(index))
    return run, names, factors


def _run_09(tmp_path, results_dir, monkeypatch):
    import papermill as pm

    notebook = paths.NOTEBOOKS / "09_synthesis.ipynb"
    out = tmp_path / "out"
    monkeypatch.setenv(paths.OUTPUT_ENV_VAR, str(out))
    pm.execute_notebook(str(notebook), str(tmp_path / notebook.name),
                        parameters={"quick": True, "results_dir": str(results_dir)}, kernel_name=paths.KERNEL_NAME,
                        cwd=str(paths.NOTEBOOKS), progress_bar=False, log_output=False)
    return out


@pytest.mark.notebook
def test_notebook_09_tabulates_ranks_and_draws_every_area(tmp_path, monkeypatch):
    from analysis import figures

    run, names, factors = _prepared_run(tmp_path, _rev("HEAD"))
    out = _run_09(tmp_path, run / "results", monkeypatch)
    results = json.loads((out / "results" / "09_synthesis.json").read_text())
    assert results["provenance"]["parameters"]["quick"] is True
    expected = sorted(factors, key=lambda a: (-factors[a], a))
    assert [r["area"] for r in results["ranking"]] == expected
    assert [r["factor"] for r in results["ranking"]] == pytest.approx(sorted(factors.values(), reverse=True))
    present = {n[:2] for n in names}
    assert results["missing_areas"] == [a for nn, a in synthesis.PLANNED_AREAS.items() if nn not in present]
    assert results["ranking_rule"] == synthesis.RANKING_RULE
    assert list(figures.load_index(out / "figures")) == ["fig-09-areas"]


@pytest.mark.notebook
def test_notebook_09_stops_with_one_line_on_missing_results(tmp_path, monkeypatch):
    import papermill as pm

    run, names, _ = _prepared_run(tmp_path, _rev("HEAD"))
    (run / "results" / f"{Path(names[-1]).stem}.json").unlink()
    with pytest.raises(pm.PapermillExecutionError) as info:
        _run_09(tmp_path, run / "results", monkeypatch)
    assert info.value.ename == "ResultsError"
    assert info.value.evalue.startswith(f"{names[-1]}: no results file ")
    assert not (tmp_path / "out" / "figures").exists()
