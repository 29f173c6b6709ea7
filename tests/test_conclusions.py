"""The rules behind the notebooks' generated conclusions: the cheapest policy at equal SLO (notebook 05)
and the verdict on simulation-vs-theory interval coverage (notebook 00)."""
from __future__ import annotations

import pandas as pd
import pytest

from analysis import capacity as cap
from analysis.validation import coverage_verdict


def _frontier(rows: dict[str, tuple[float, float, float, float]]) -> pd.DataFrame:
    """policy -> (cost, attainment, attainment_lo, attainment_hi), as policy_frontier lays it out."""
    f = pd.DataFrame.from_dict(rows, orient="index", columns=["cost", "attainment", "attainment_lo", "attainment_hi"])
    f["server_hours"] = f["cost"] * 10
    return f


# The case that caught the bug (shaped like notebook 05 on the real Black Friday week, fig-05-frontier):
# reactive's attainment is within the 1-point tolerance of static peak's, but its band lies wholly below
# static peak's, so the table flags it significantly worse; the old conclusion (the cheapest policy with
# equal_or_better) still called it "the cheapest policy at equal SLO".
BUG_TABLE = _frontier({
    "static peak": (1176.0, 1.000, 1.000, 1.000),
    "reactive": (414.0, 0.994, 0.976, 0.994),
    "predictive": (395.0, 0.976, 0.929, 0.988),
    "hour of week": (316.0, 0.482, 0.292, 0.821),
})


def test_significantly_worse_policy_is_never_the_cheapest_at_equal_slo():
    savings = cap.savings_against(BUG_TABLE, "static peak", attainment_tolerance=0.01)
    assert bool(savings.loc["reactive", "equal_or_better"]) and bool(savings.loc["reactive", "significantly_worse"])
    choice = cap.cheapest_policy_meeting_slo(savings, baseline="static peak")
    assert choice.policy is None and choice.saving_pct is None
    assert set(choice.excluded) == {"reactive", "predictive", "hour of week"}
    assert "significantly worse" in choice.excluded["reactive"]
    assert choice.reason.startswith("no policy is cheaper than static peak at equal SLO")


def test_cheapest_qualifying_policy_is_chosen_with_its_reason():
    table = _frontier({
        "static peak": (100.0, 0.99, 0.97, 1.00),
        "reactive": (60.0, 0.985, 0.96, 1.00),      # within tolerance, bands overlap: qualifies
        "predictive": (50.0, 0.99, 0.98, 1.00),     # cheaper and equal: the answer
        "hour of week": (30.0, 0.70, 0.60, 0.80),   # cheapest, but far worse
    })
    savings = cap.savings_against(table, "static peak", attainment_tolerance=0.01)
    choice = cap.cheapest_policy_meeting_slo(savings, baseline="static peak")
    assert choice.policy == "predictive" and choice.saving_pct == pytest.approx(50.0)
    assert "hour of week" in choice.excluded and "reactive" not in choice.excluded
    assert "predictive is the cheapest policy" in choice.reason and "50.0%" in choice.reason


def test_a_policy_that_is_not_cheaper_is_not_a_saving():
    table = _frontier({"static peak": (100.0, 0.9, 0.8, 1.0), "gold": (150.0, 1.0, 1.0, 1.0)})
    choice = cap.cheapest_policy_meeting_slo(cap.savings_against(table, "static peak"), baseline="static peak")
    assert choice.policy is None and "not cheaper" in choice.excluded["gold"]


def test_cheapest_policy_rejects_a_table_without_the_flags():
    with pytest.raises(ValueError, match="savings_against.*significantly_worse"):
        cap.cheapest_policy_meeting_slo(BUG_TABLE)


@pytest.mark.parametrize("covered,total,verdict,consistent", [
    (20, 20, "every interval covers the closed form", True),
    (7, 8, "the misses are within chance", True),         # the quick run that printed "The engine is sound."
    (17, 20, "the misses are within chance", True),       # 3 misses of 20: P = 0.075
    (15, 20, "more misses than chance explains", False),  # 5 misses of 20: P = 0.003
    (4, 8, "more misses than chance explains", False),
])
def test_coverage_verdict_follows_the_count(covered, total, verdict, consistent):
    v = coverage_verdict(covered, total)
    assert (v.verdict, v.consistent, v.misses) == (verdict, consistent, total - covered)
    assert v.expected_misses == pytest.approx(0.05 * total)
    assert f"with {total} intervals at 95% confidence" in v.rule and "at least 0.01" in v.rule


def test_coverage_verdict_p_value_is_the_binomial_tail():
    assert coverage_verdict(20, 20).p_value == 1.0
    assert coverage_verdict(17, 20).p_value == pytest.approx(0.0755, abs=1e-4)  # P(Bin(20, .05) >= 3)
    from scipy import stats
    for total in (1, 8, 20, 100, 400):
        for covered in range(0, total + 1, max(1, total // 9)):
            expected = stats.binom.sf(total - covered - 1, total, 0.05)
            assert coverage_verdict(covered, total).p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("kwargs,name", [
    (dict(covered=9, total=8), "covered"), (dict(covered=-1, total=8), "covered"),
    (dict(covered=1, total=0), "total"), (dict(covered=1, total=2, level=1.0), "level"),
])
def test_coverage_verdict_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        coverage_verdict(**kwargs)


def test_cheapest_at_equal_slo_agrees_with_the_conclusion_rule():
    # The frontier helper and the notebook's conclusion rule must name the same policy (or none).
    with pytest.raises(ValueError, match="no policy reaches"):
        cap.cheapest_at_equal_slo(BUG_TABLE, "static peak", attainment_tolerance=0.01)
    table = _frontier({
        "static peak": (100.0, 0.99, 0.97, 1.00),
        "reactive": (60.0, 0.985, 0.96, 1.00),
        "predictive": (50.0, 0.99, 0.98, 1.00),
        "hour of week": (30.0, 0.70, 0.60, 0.80),
    })
    best = cap.cheapest_at_equal_slo(table, "static peak", attainment_tolerance=0.01)
    choice = cap.cheapest_policy_meeting_slo(cap.savings_against(table, "static peak", attainment_tolerance=0.01),
                                             baseline="static peak")
    assert best["policy"] == choice.policy == "predictive"
