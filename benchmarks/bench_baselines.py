"""The pass-through's cost against a plain copy of the same batch, in the same run (issue 14's target:
NoDefense within 1.5x of np.copyto at batch 4096).

NoDefense validates each row with the C++ row check every defense shares and returns a copy; the
reference is `np.copyto` into a preallocated array (a copy with no check and no allocation), the least
any defense that returns a new array can cost, as issue 14 sets it; `np.copy` (a copy into a fresh
array, which is what an answer is) is timed beside it, and so are the other baselines, for scale.
"""

import statistics
import time

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
from conftest import median_seconds, timed
from streams import classifier_like


@pytest.mark.parametrize("C", [10, 100])
@pytest.mark.parametrize("batch", [256, 4096])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_no_defense_against_a_plain_copy(benchmark, ratios, C, batch, kind):
    rows = classifier_like(batch, C, seed=C).astype(np.float32)
    probs = torch.from_numpy(rows) if kind == "torch" else rows
    defense = mgf.NoDefense()
    np.testing.assert_array_equal(np.asarray(defense(probs)), rows)  # correct before timing

    benchmark.group = f"pass-through {kind} float32 C={C} batch={batch}"
    benchmark(lambda: defense(probs))
    ratios.add(benchmark.group, "NoDefense (checked copy)", median_seconds(benchmark) / batch)
    target = np.empty_like(rows)
    ratios.add(benchmark.group, "reference: np.copyto", timed(lambda: np.copyto(target, rows), repeats=2000,
                                                              per_call=True) / batch, reference=True)
    ratios.add(benchmark.group, "np.copy (allocating)", timed(lambda: np.copy(rows), repeats=500, per_call=True) / batch)
    for other in (mgf.Top1(), mgf.Rounding()):
        ratios.add(benchmark.group, f"{other.name}", timed(lambda: other(probs), repeats=200, per_call=True) / batch)


@pytest.mark.parametrize("C", [10, 100, 256])
@pytest.mark.parametrize("batch", [256, 4096])
def test_no_defense_against_its_bound(ratios, C, batch):
    """NoDefense and np.copyto timed in alternation (so the machine's load falls on both alike), the
    ratio printed against issue 14's bound (1.5x at batch 4096)."""
    rows = classifier_like(batch, C, seed=C).astype(np.float32)
    defense, target = mgf.NoDefense(), np.empty_like(rows)
    times = [[], []]
    for _ in range(300 if batch == 256 else 60):
        for spent, fn in zip(times, (lambda: defense(rows), lambda: np.copyto(target, rows))):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    t_defense, t_copy = (statistics.median(t) for t in times)
    group = f"pass-through vs copy C={C} batch={batch}"
    ratios.add(group, "NoDefense (checked copy)", t_defense / batch)
    ratios.add(group, "np.copyto (read + write)", t_copy / batch, reference=True)
    if batch >= 4096:
        ratios.bound(group, "NoDefense / copy", t_defense / t_copy, 1.5)
