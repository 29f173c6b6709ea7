"""Verdicts on a simulation-vs-theory check: do the confidence intervals cover the closed forms as often as
their level promises?

The rule (stated in every verdict): with ``total`` intervals at confidence ``level`` around a correct
simulation, the number of intervals that miss the closed form is about Binomial(total, 1 - level) (exactly
so for independent, exact intervals). The simulation is called *consistent with the closed forms* when
so many misses are not unusual: P(misses >= observed) >= ``alpha`` (default 0.01); otherwise it *disagrees*
and needs investigation (a bug, too short a warm-up, or intervals too narrow for few replications).
"""
from __future__ import annotations

from dataclasses import dataclass

from analysis._lazy import lazy_module

special = lazy_module("scipy.special")    # imported on first use

from . import checks

__all__ = ["CoverageVerdict", "coverage_verdict"]


@dataclass(frozen=True)
class CoverageVerdict:
    """covered / total intervals contain the closed form; expected_misses = total x (1 - level);
    p_value = P(misses >= observed misses) under the rule; consistent: p_value >= alpha;
    verdict: a short phrase whose wording follows the count; rule: the rule in one sentence."""

    covered: int
    total: int
    level: float
    alpha: float
    expected_misses: float
    p_value: float
    consistent: bool
    verdict: str
    rule: str

    @property
    def misses(self) -> int:
        return self.total - self.covered


def coverage_verdict(covered: int, total: int, level: float = 0.95, alpha: float = 0.01) -> CoverageVerdict:
    """Verdict on ``covered`` of ``total`` intervals (confidence ``level``) containing the closed form.

    Wording: "every interval covers the closed form" (no miss), "the misses are within chance" (some
    misses, p_value >= alpha), "more misses than chance explains" (p_value < alpha).
    """
    total = checks.integer("total", total, minimum=1)
    covered = checks.integer("covered", covered, minimum=0)
    if covered > total:
        raise ValueError(f"covered must be <= total={total}, got {covered}")
    level = checks.open_unit("level", level)
    alpha = checks.open_unit("alpha", alpha)
    misses = total - covered
    miss_p = 1.0 - level
    # P(M >= misses) = P(M > misses - 1): scipy.stats.binom.sf's own formula, without importing scipy.stats
    p_value = 1.0 if misses == 0 else float(special.bdtrc(misses - 1, total, miss_p))
    consistent = p_value >= alpha
    if misses == 0:
        verdict = "every interval covers the closed form"
    elif consistent:
        verdict = "the misses are within chance"
    else:
        verdict = "more misses than chance explains"
    rule = (f"with {total} intervals at {level:.0%} confidence about {total * miss_p:.2g} are expected to miss by "
            f"chance; {misses} or more misses has probability {p_value:.2g}, and the simulation is called "
            f"consistent with the closed forms when that probability is at least {alpha:g}")
    return CoverageVerdict(covered, total, level, alpha, total * miss_p, p_value, consistent, verdict, rule)
