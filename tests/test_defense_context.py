"""Every defense is a context manager; ModelGuard-S closes its journal at the end of a `with` block."""

from __future__ import annotations

import numpy as np
import pytest

import modelguard_fast as mgf


def test_with_closes_the_journal_so_the_same_line_runs_twice(tmp_path):
    path = tmp_path / "guard.journal"
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=50).astype(np.float32)
    with mgf.ModelGuardS(num_classes=10, eps=1.0, journal=path) as guard:
        first = guard(probs)
        centroids = guard.num_centroids
    with pytest.raises(RuntimeError, match="this guard.s journal was closed; open a new guard on the journal"):
        guard(probs)
    with mgf.ModelGuardS(num_classes=10, eps=1.0, journal=path) as again:  # the journal reopens, codebooks restored
        assert again.num_centroids == centroids
        np.testing.assert_array_equal(again(probs), first)


@pytest.mark.parametrize("defense", [mgf.ModelGuardW(eps=1.0), mgf.ReverseSigmoid(0.2), mgf.ModelGuardS(3)],
                         ids=lambda d: d.name)
def test_every_defense_works_in_a_with_block(defense):
    with defense as entered:
        assert entered is defense
        np.testing.assert_allclose(entered(np.array([0.7, 0.2, 0.1])).sum(), 1.0)
