"""The paper's qualitative findings, checked on a grid's cells with 95% intervals (stats.py).

Each finding is a set of paired differences between cells (same seeds, same
test images). It "holds" when every difference's interval lies on the
finding's side of its threshold, "does not hold" when one lies wholly on the
other side, and is "not resolved at this size" otherwise: a difference of a
few test images, or of a few points over three seeds, is not a result.
A finding about defenses the grid did not run says which ones it could not
test, so a verdict on a subset is never read as one on the whole statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .report import _cells_by_key, grid_intervals
from ..attacks import QUERY_STRATEGIES
from ..defenses.registry import DEFENSES
from .stats import Interval, difference_interval, verdict

CLOSE_TO_NONE = 0.03  # "close to the undefended target": within 3 points of its Naive accuracy


@dataclass(frozen=True)
class Finding:
    """A finding, its verdict, and each difference checked: (what, Interval, threshold, verdict).

    `untested` names the defenses the statement is about that the grid did not
    run: the verdict covers the others only.
    """

    statement: str
    verdict: str
    checks: tuple[tuple[str, Interval, float, str], ...]
    untested: tuple[str, ...] = ()

    def markdown(self) -> str:
        scope = f" (tested without {', '.join(self.untested)}: not in this grid)" if self.untested else ""
        lines = [f"- **{self.statement}**: {self.verdict}{scope}."]
        for what, iv, threshold, v in self.checks:
            lines.append(f"  - {what}: {iv.format('+.4f')} (needs > {threshold:+.2f}): {v}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        record = {"statement": self.statement, "verdict": self.verdict,
                  "checks": [{"what": what, **iv.as_dict(), "threshold": threshold, "verdict": v}
                             for what, iv, threshold, v in self.checks]}
        if self.untested:
            record["untested"] = list(self.untested)
        return record


def _overall(verdicts: Sequence[str]) -> str:
    if all(v == "holds" for v in verdicts):
        return "holds"
    if any(v == "does not hold" for v in verdicts):
        return "does not hold"
    return "not resolved at this size"


def _finding(statement: str, checks: list[tuple[str, Interval, float]],
             about: Sequence[str], ran: Sequence[str]) -> Finding | None:
    """`about`: the defense keys the statement concerns; `ran`: those in the grid."""
    if not checks:
        return None
    rows = tuple((what, iv, threshold, verdict(iv, threshold)) for what, iv, threshold in checks)
    untested = tuple(DEFENSES[d].label for d in about if d not in ran)
    return Finding(statement, _overall([r[3] for r in rows]), rows, untested)


def paper_findings(grid: dict[str, Any]) -> list[Finding]:
    """The findings of the paper that the grid's cells can test (those whose cells it holds):

    1. ModelGuard-W extracts worst against the Naive attack: every other defense's Naive accuracy minus
       ModelGuard-W's is > 0, for each query strategy.
    2. Partial Bayes lifts MAD, Reverse Sigmoid and ModelGuard-W close to the undefended target: their
       pBayes accuracy minus the undefended target's Naive accuracy is > -0.03.
    3. ModelGuard-S's worst case is below every other defense's: the other defense's max accuracy over
       attacks (the attack of the largest mean) minus ModelGuard-S's is > 0.
    """
    cells = _cells_by_key(grid["cells"])
    queries = list(dict.fromkeys(q for _, q, _ in cells))
    defenses = list(dict.fromkeys(d for d, _, _ in cells))
    found = []
    lowest = []
    for q in queries:
        if ("mgw", q, "naive") in cells:
            lowest += [(f"{DEFENSES[d].label} - ModelGuard-W, {QUERY_STRATEGIES[q].label} Naive",
                        difference_interval(cells[d, q, "naive"], cells["mgw", q, "naive"]), 0.0)
                       for d in defenses if d != "mgw" and (d, q, "naive") in cells]
    found.append(_finding("ModelGuard-W is the lowest against the Naive attack", lowest, DEFENSES,
                           [d for d, _, s in cells if s == "naive"]))
    lifted = [(f"{DEFENSES[d].label} pBayes - None Naive, {QUERY_STRATEGIES[q].label}",
               difference_interval(cells[d, q, "pbayes"], cells["none", q, "naive"]), -CLOSE_TO_NONE)
              for q in queries for d in ("mad", "revsig", "mgw")
              if (d, q, "pbayes") in cells and ("none", q, "naive") in cells]
    found.append(_finding("Partial Bayes lifts MAD, Reverse Sigmoid and ModelGuard-W to within 3 points of the "
                          "undefended target's Naive accuracy", lifted, ("mad", "revsig", "mgw"),
                           [d for d, _, s in cells if s == "pbayes"]))
    if "mgs" in defenses:
        worst = {d: w["max_accuracy"][0] for d, w in grid_intervals(grid)["defenses"].items()}
        mgs = cells[("mgs", *worst["mgs"])]
        below = [(f"{DEFENSES[d].label} max acc. - ModelGuard-S max acc.",
                  difference_interval(cells[(d, *worst[d])], mgs), 0.0) for d in defenses if d != "mgs"]
        found.append(_finding("ModelGuard-S's worst case is below every other defense's", below, DEFENSES, defenses))
    return [f for f in found if f is not None]


def findings_markdown(findings: Sequence[Finding]) -> str:
    return "\n".join(f.markdown() for f in findings)
