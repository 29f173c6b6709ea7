"""Multiwindow, multi-burn-rate alerts on hand-made series: the Workbook's factors, the both-windows rule,
the closed-form detection time of a step, hourly adaptation, the deviation SLI and the alert report."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import alerting as al


def test_workbook_factors_from_budget_fractions():
    f = [r.factor for r in al.WORKBOOK_RULES]
    assert f == pytest.approx([14.4, 6.0, 1.0])
    assert [r.short_s * 12 for r in al.WORKBOOK_RULES] == [r.long_s for r in al.WORKBOOK_RULES]
    assert [r.severity for r in al.WORKBOOK_RULES] == ["page", "page", "ticket"]


def test_burn_rates_trailing_windows_past_only():
    bad = np.array([0, 0, 2, 0, 0, 0], dtype=float)
    tot = np.full(6, 100.0)
    np.testing.assert_allclose(al.burn_rates(bad, tot, 2, slo=0.99), [0, 0, 1, 1, 0, 0])
    # the future never changes a past burn rate
    b2 = bad.copy()
    b2[4:] = 50
    np.testing.assert_array_equal(al.burn_rates(b2, tot, 3, 0.99)[:4], al.burn_rates(bad, tot, 3, 0.99)[:4])


def test_alert_fires_exactly_when_both_windows_exceed_factor():
    rng = np.random.default_rng(5)
    n = 600
    tot = rng.uniform(50, 150, n)
    bad = tot * rng.choice([0.0, 0.001, 0.05, 0.3], size=n, p=[0.7, 0.2, 0.07, 0.03])
    rule = al.BurnRateRule(long_s=12 * 300.0, short_s=300.0, factor=14.4, budget_fraction=0.02, severity="page")
    out = al.multiwindow_alerts(bad, tot, step_s=300.0, slo=0.999, rules=(rule,))
    long_b = al.burn_rates(bad, tot, 12, 0.999)
    short_b = al.burn_rates(bad, tot, 1, 0.999)
    expect = (long_b > 14.4) & (short_b > 14.4)
    np.testing.assert_array_equal(out["page"], expect)
    # both windows matter on this series: each alone would fire on rows where the rule does not
    assert ((long_b > 14.4) & ~expect).any() and ((short_b > 14.4) & ~expect).any()
    assert not out["ticket"].any()


@pytest.mark.parametrize("burn", [20.0, 36.0, 100.0, 720.0])
@pytest.mark.parametrize("which", [0, 1])
def test_step_detection_time_matches_closed_form(burn, which):
    rule = al.WORKBOOK_RULES[which]
    step = 60.0
    slo = 0.999
    onset = int(rule.long_s / step) + 10             # after one full long window of good events
    n = onset + int(rule.long_s / step) + 100
    tot = np.full(n, 1000.0)
    bad = np.zeros(n)
    bad[onset:] = burn * (1 - slo) * 1000.0          # a step from burn rate 0 to `burn`
    out = al.multiwindow_alerts(bad, tot, step, slo, rules=(rule,))
    first = int(np.flatnonzero(out["page"])[0])
    measured = (first - onset + 1) * step            # an alert on a row is raised at its end
    closed = al.step_detection_time(burn, rule)
    assert closed == pytest.approx(rule.budget_fraction * al.SLO_PERIOD_S / burn)
    assert closed <= measured < closed + step + 1e-9
    # a step just below the factor never pages
    bad[onset:] = 0.999 * rule.factor * (1 - slo) * 1000.0
    assert not al.multiwindow_alerts(bad, tot, step, slo, rules=(rule,))["page"].any()
    assert al.step_detection_time(rule.factor, rule) == float("inf")


def test_hourly_adaptation_rounds_windows_up():
    ad = al.adapt_rules(al.WORKBOOK_RULES, 3600.0)
    assert [(a["long_rows"], a["short_rows"]) for a in ad] == [(1, 1), (6, 1), (72, 6)]
    assert [a["exact"] for a in ad] == [False, False, True]
    ad5 = al.adapt_rules(al.WORKBOOK_RULES, 300.0)
    assert [(a["long_rows"], a["short_rows"]) for a in ad5] == [(12, 1), (72, 6), (864, 72)]
    assert all(a["exact"] for a in ad5)


def test_deviation_sli_counts_requests_beyond_band():
    x = np.array([100.0, 130.0, 60.0, 100.0])
    f = np.array([100.0, 100.0, 100.0, np.nan])
    bad, tot = al.deviation_sli(x, f, 10.0, step_s=3600.0)
    np.testing.assert_allclose(bad, [0.0, 20 * 3600, 30 * 3600, 0.0])
    np.testing.assert_allclose(tot, [100 * 3600, 100 * 3600, 100 * 3600, 0.0])
    with pytest.raises(ValueError, match="tolerance: row 1 is -1.0"):
        al.deviation_sli(x, f, [1.0, -1.0, 0.0, 0.0], 3600.0)


def test_incidents_and_report():
    lab = np.zeros(100, dtype=bool)
    lab[[10, 11, 12, 50, 80, 81]] = True
    inc = al.incident_ranges(lab)
    assert inc == [(10, 12), (50, 50), (80, 81)]
    a = np.zeros(100, dtype=bool)
    a[[11, 12, 30, 52, 95]] = True          # hits incident 1 at its 2nd row, incident 2 within grace 2
    rep = al.alert_report(a, inc, step_s=3600.0, grace_rows=2, scored_from=5)
    assert rep["detected"] == 2 and rep["incidents"] == 3
    assert rep["median_detection_s"] == pytest.approx(2.5 * 3600)   # (2 h, 3 h)
    assert rep["pages"] == 4 and rep["false_pages"] == 2
    assert rep["false_pages_per_month"] == pytest.approx(2 / (95 * 3600 / al.SLO_PERIOD_S))
    # the plain threshold for a target recall: the highest level that still reaches it
    score = np.zeros(100)
    score[[11, 50, 81, 30]] = [5.0, 2.0, 9.0, 3.0]
    t, r = al.threshold_for_recall(score, inc, 3600.0, recall=2 / 3)
    assert 3.0 <= t < 5.0 and r["detected"] == 2 and r["false_pages"] == 0
    t, r = al.threshold_for_recall(score, inc, 3600.0, recall=1.0)
    assert 0 <= t < 2.0 and r["false_pages"] == 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="slo=1.5"):
        al.burn_rates([0.0], [1.0], 1, 1.5)
    with pytest.raises(ValueError, match="bad: row 1 is -2.0"):
        al.burn_rates([0.0, -2.0], [1.0, 1.0], 1, 0.99)
    with pytest.raises(ValueError, match="short_s=600"):
        al.BurnRateRule(300.0, 600.0, 2.0, 0.1, "page")
    with pytest.raises(ValueError, match="budget_fraction=0"):
        al.burn_rate_factor(0, 3600.0)
    with pytest.raises(ValueError, match="step_s=0"):
        al.adapt_rules(al.WORKBOOK_RULES, 0)
