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


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("batch", [1, 32])
def test_small_batches_against_the_checked_copy_kernel(ratios, kind, batch):
    """The Python layer at small batches (C = 10, float32): each per-prediction defense's call against the
    checked copy it cannot do without (a fresh output array and the C++ check_copy_rows, the pass-through's
    whole kernel work), all timed in alternation, 200 calls at a time. A single prediction is a (C,) row."""
    from modelguard_fast import _kernels

    rows = classifier_like(batch, 10, seed=3).astype(np.float32)
    x = rows[0].copy() if batch == 1 else rows
    probs = torch.from_numpy(x) if kind == "torch" else x
    guard = mgf.ModelGuardS(10, eps=1.0)
    guard(classifier_like(5000, 10, seed=10))
    guard(x)  # every row a hit
    fns = {"checked copy (np.empty + check_copy_rows)": lambda: _kernels.check_copy_rows(rows, 1e-3, np.empty_like(rows)),
           "np.copy": lambda: np.copy(x),
           "NoDefense": lambda d=mgf.NoDefense(): d(probs),
           "Top1": lambda d=mgf.Top1(): d(probs),
           "Rounding": lambda d=mgf.Rounding(): d(probs),
           "ReverseSigmoid": lambda d=mgf.ReverseSigmoid(beta=0.5): d(probs),
           "ModelGuard-S (hits)": lambda: guard(probs)}
    times = {name: [] for name in fns}
    for _ in range(40):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(200):
                fn()
            times[name].append((time.perf_counter() - start) / 200)
    group = f"small batches {kind} C=10 batch={batch}"
    for name, spent in times.items():
        ratios.add(group, name, statistics.median(spent), unit="call", reference=name.startswith("checked copy"))
