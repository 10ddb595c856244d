"""MAD batched (Jacobian-free) against the public code's row-by-row literal-Jacobian MAD.

The public code, per query: one surrogate forward pass, C backward passes for
the last-layer Jacobian G (C x C*d), then the oracle over G (all 2^(C-1)
vertex sets at C <= 10, greedy rounds up to 1,024 candidates above) and the
line search. Ours: one batched surrogate forward pass and tensor ops on its
softmax, for a batch of 256. Both include the surrogate's forward pass; the
target's clean predictions are given. The speed-up is reported per query
(the literal MAD is timed on 32 of the queries), by min and by mean over
rounds, at the end of the run. Run with:

    PYTHONPATH=. python -m pytest --benchmark-only benchmarks/bench_mad.py
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import modelguard_fast as mgf

import _mad_reference as ref  # noqa: E402

from conftest import median_seconds  # noqa: E402

BATCH = 256
# The literal MAD handles one query at a time, so its cost per query does not depend on the
# batch; it is timed on a slice of the batch to keep the run short.
LITERAL_ROWS = 32
EPS = 1.0


def small_cnn(num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def setup(num_classes: int, dtype=torch.float32):
    """MAD with the paper's random surrogate, a batch of queries and their clean predictions."""
    torch.manual_seed(0)
    mad = mgf.MAD.from_target(small_cnn(num_classes).to(dtype), seed=0, eps=EPS)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, 32, 32, generator=g, dtype=dtype)
    y = torch.from_numpy(np.random.default_rng(2).dirichlet(np.full(num_classes, 0.3), size=BATCH)).to(dtype)
    return mad, x, y / y.sum(dim=1, keepdim=True)


def batched(mad, x, y):
    return mad(y, mad.query_view(x))


def literal(surrogate, x, y):
    return ref.mad_rows(surrogate, x, y, EPS)[0]


def differentiable(mad):
    """The same surrogate with gradients on, as the public code's Jacobian needs them."""
    return copy.deepcopy(mad.surrogate).requires_grad_(True)


@pytest.mark.parametrize("impl", ["batched", "literal"])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_mad_speed(benchmark, ratios, num_classes, impl):
    group = f"MAD C={num_classes} batch={BATCH}"
    benchmark.group = group
    # correctness first, in float64 where both must pick the same targets
    mad64, x64, y64 = setup(num_classes, torch.float64)
    torch.testing.assert_close(batched(mad64, x64[:16], y64[:16]), literal(differentiable(mad64), x64[:16], y64[:16]),
                               rtol=0, atol=1e-10)

    mad, x, y = setup(num_classes)
    if impl == "batched":
        rows = BATCH
        benchmark.pedantic(batched, args=(mad, x, y), rounds=10, iterations=1, warmup_rounds=1)
    else:
        rows = LITERAL_ROWS
        benchmark.pedantic(literal, args=(differentiable(mad), x[:rows], y[:rows]), rounds=3, iterations=1)
    name = "batched (modelguard_fast)" if impl == "batched" else "reference: literal Jacobian loop"
    ratios.add(group, name, median_seconds(benchmark) / rows, unit="query", reference=impl == "literal")
    benchmark.extra_info["rows"] = rows
