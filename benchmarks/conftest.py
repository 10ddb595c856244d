"""Speed-ups of our implementations against the references timed in the same run."""

from __future__ import annotations

# (group, implementation) -> (min, mean) seconds per query, filled in by the benchmarks.
PER_QUERY: dict[tuple[str, str], tuple[float, float]] = {}


def pytest_terminal_summary(terminalreporter):
    lines = []
    for group in sorted({group for group, _ in PER_QUERY}):
        ours, ref = PER_QUERY.get((group, "batched")), PER_QUERY.get((group, "literal"))
        if ours and ref:
            lines.append(f"{group}: per query literal {ref[0] * 1e3:.2f} ms, batched {ours[0] * 1e3:.3f} ms (min); "
                         f"speed-up {ref[0] / ours[0]:.0f}x by min, {ref[1] / ours[1]:.0f}x by mean")
    if lines:
        terminalreporter.write_sep("-", "speed-up against the reference (same run)")
        for line in lines:
            terminalreporter.write_line(line)
