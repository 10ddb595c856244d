"""Shared benchmark plumbing: ratios against the reference measured in the same run.

Each benchmark calls `ratios.add(group, name, seconds_per_item, reference=...)`;
at the end of the session a table prints, per group, each entry's time per item
and its speed-up over the group's reference. Also written to
.benchmarks/ratios.json for the record.
"""

import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))


class Ratios:
    def __init__(self):
        self.groups = defaultdict(dict)
        self.references = {}
        self.bounds = []
        self.facts = []

    def add(self, group, name, seconds_per_item, unit="row", reference=False):
        self.groups[group][name] = (seconds_per_item, unit)
        if reference:
            self.references[group] = name

    def bound(self, group, what, ratio, bound):
        """Records a ratio measured in this run against the bound it should stay within."""
        self.bounds.append((group, what, ratio, bound))

    def fact(self, group, what, value):
        """Records a measured count that explains a group's figures (e.g. store exchanges per batch)."""
        self.facts.append((group, what, value))

    def lines(self):
        out = []
        if self.bounds:
            out.append("ratios against their bounds (same run)")
            for group, what, ratio, bound in self.bounds:
                verdict = "within" if ratio <= bound else "OVER"
                out.append(f"    {group:<34} {what:<38} {ratio:8.2f}x  bound {bound:5.2f}x  {verdict}")
        if self.facts:
            out.append("measured counts (same run)")
            for group, what, value in self.facts:
                out.append(f"    {group:<34} {what:<52} {value:10.3f}")
        for group, entries in sorted(self.groups.items()):
            ref = self.references.get(group)
            ref_time = entries[ref][0] if ref in entries else None
            out.append(f"{group}")
            for name, (sec, unit) in entries.items():
                ratio = f"{ref_time / sec:10.1f}x vs {ref}" if ref_time and name != ref else ""
                out.append(f"    {name:<34} {sec * 1e6:12.3f} us/{unit:<6} {1 / sec:14.0f} {unit}s/s  {ratio}")
        return out


_RATIOS = Ratios()


@pytest.fixture(scope="session")
def ratios():
    return _RATIOS


def median_seconds(benchmark):
    return benchmark.stats.stats.median


def timed(fn, repeats=3, per_call=False):
    """Median wall time of fn() over `repeats` runs (perf_counter); with per_call, the mean per call."""
    if per_call:
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pytest_terminal_summary(terminalreporter):
    if not _RATIOS.groups and not _RATIOS.bounds and not _RATIOS.facts:
        return
    terminalreporter.section("throughput and ratios (medians, same run)")
    for line in _RATIOS.lines():
        terminalreporter.write_line(line)
    path = Path(".benchmarks")
    path.mkdir(exist_ok=True)
    data = {g: {n: {"seconds_per_item": s, "unit": u} for n, (s, u) in e.items()} for g, e in _RATIOS.groups.items()}
    bounds = [{"group": g, "what": w, "ratio": r, "bound": b} for g, w, r, b in _RATIOS.bounds]
    facts = [{"group": g, "what": w, "value": v} for g, w, v in _RATIOS.facts]
    (path / "ratios.json").write_text(json.dumps({"groups": data, "references": _RATIOS.references,
                                                  "bounds": bounds, "facts": facts}, indent=2))
