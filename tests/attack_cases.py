"""A tiny, fixed attack case shared by the attack tests: digits, a small trained target, tiny settings."""

from __future__ import annotations

import functools

import torch

import modelguard_fast as mgf
from modelguard_fast.data import load_bundled
from modelguard_fast.models import SmallCNN
from modelguard_fast.training import fit

# Every attack in the tests finishes in about a second with these.
TINY = mgf.AttackConfig.small(epochs=2, batch_size=32, query_batch_size=64, jbda_seed_size=30, ddae_shadow_models=2,
                              ddae_shadow_epochs=4, ddae_shadow_batch_size=32, restorer_epochs=2,
                              restorer_batch_size=64, bayes_table_size=3000)


def tiny_substitute() -> SmallCNN:
    return SmallCNN(10, in_channels=1, width=4)


@functools.lru_cache(maxsize=None)
def digits_case():
    """(splits, target): digits splits and a SmallCNN target trained on them (about 90% test accuracy)."""
    splits = load_bundled("digits")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        target = SmallCNN(10, in_channels=1, width=8)
    fit(target, splits.train_x, splits.train_y, epochs=12, seed=0)
    return splits, target.eval()

