"""The registries of defenses and attack strategies, and what reads them (experiments, tables, command line)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from attack_cases import TINY, digits_case
from torch import nn

import modelguard_fast as mgf
from modelguard_fast.attacks import QUERY_STRATEGIES, RECOVERY_STRATEGIES
from modelguard_fast.cli import build_parser
from modelguard_fast.defenses import registry
from modelguard_fast.defenses.registry import DEFENSES, DefenseSpec, defense_spec
from modelguard_fast.experiments.config import ConfigError, RunConfig
from modelguard_fast.experiments.sweep import SWEEP_DEFENSES


def context(misinformation=True):
    torch.manual_seed(0)
    target = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    return SimpleNamespace(num_classes=10, target=target, params={"am_tau": 0.4},
                           misinformation=nn.Sequential(nn.Flatten(), nn.Linear(64, 10)) if misinformation else None,
                           revsig_beta=lambda max_l1: 0.1 * max_l1)


@pytest.mark.parametrize("key", list(DEFENSES))
def test_every_registered_defense_builds_for_a_budget_and_answers(key):
    spec = defense_spec(key)
    defense = spec.build(context(), eps=0.5, seed=3)
    assert isinstance(defense, spec.cls) and defense.name == spec.label
    if spec.budgeted and hasattr(defense, "eps"):
        assert defense.eps == 0.5
    x = torch.rand(4, 1, 8, 8)
    probs = torch.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(1)), dim=1)
    assert defense.defend(probs, x).shape == (4, 10)


def test_reverse_sigmoid_is_built_with_the_beta_calibrated_to_the_budget():
    assert defense_spec("revsig").build(context(), eps=1.5).beta == pytest.approx(0.15)


def test_reverse_sigmoid_calibration_keeps_the_largest_distortion_within_the_budget():
    splits, target = digits_case()
    with torch.no_grad():
        probs = torch.softmax(target(splits.test_x), dim=1).double().numpy()
    labels = splits.test_y.numpy()
    for max_l1 in (0.5, 1.0):
        beta = mgf.ReverseSigmoid.calibrated_beta(probs, labels, max_l1=max_l1)
        worst = np.abs(mgf.ReverseSigmoid(beta)(probs) - probs).sum(axis=1).max()
        assert worst <= max_l1 and beta > 0
        # a beta 1% larger breaks a condition (distortion or accuracy): beta is the largest that keeps both
        larger = mgf.ReverseSigmoid(beta * 1.01)(probs)
        accuracy_drop = (probs.argmax(1) == labels).mean() - (larger.argmax(1) == labels).mean()
        assert np.abs(larger - probs).sum(axis=1).max() > max_l1 or accuracy_drop > 0.01


def test_a_defense_that_needs_a_misinformation_model_says_so():
    with pytest.raises(ValueError, match="defense 'am' needs a misinformation model, which this setup lacks"):
        defense_spec("am").build(context(misinformation=False))


def test_unknown_and_duplicate_keys_are_refused():
    with pytest.raises(ValueError, match="defense must be one of none, revsig, mad, am, top1, rounding, mgw, mgs; "
                                         "got 'mgx'"):
        defense_spec("mgx")
    with pytest.raises(ValueError, match="a defense with key 'mgs' is already registered"):
        registry.register(DefenseSpec("mgs", mgf.Top1, "twin", lambda ctx, eps, seed: mgf.Top1()))
    with pytest.raises(TypeError, match="spec must be a DefenseSpec, got dict"):
        registry.register({"key": "x"})
    with pytest.raises(TypeError):
        DEFENSES["x"] = None  # read-only view


def test_the_experiments_and_the_command_line_read_the_registries():
    config = RunConfig.load(None)
    assert config.defenses == list(DEFENSES) and config.queries == list(QUERY_STRATEGIES)
    assert config.strategies == list(RECOVERY_STRATEGIES)
    assert SWEEP_DEFENSES == tuple(key for key, spec in DEFENSES.items() if spec.budgeted)
    with pytest.raises(ConfigError, match="run.strategies = 'bayes' is not allowed; choose from 'naive'"):
        RunConfig.load(strategies=["bayes"])
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    helps = {a.dest: a.help for a in run._actions}
    assert helps["defenses"] == "subset of: " + " ".join(DEFENSES)
    assert helps["queries"] == "subset of: " + " ".join(QUERY_STRATEGIES)
    assert helps["strategies"] == "subset of: " + " ".join(RECOVERY_STRATEGIES)


@pytest.mark.parametrize("key", list(RECOVERY_STRATEGIES))
def test_strategies_that_replay_the_defense_offline_refuse_a_randomized_one_before_any_query(key):
    class Noisy(mgf.NoDefense):
        name = "Noisy"
        deterministic = False

    splits, target = digits_case()
    noisy = Noisy()
    run = lambda: mgf.run_attack(target, noisy, splits.pool_x, splits.test_x, splits.test_y, strategy=key,  # noqa: E731
                                 budget=20, config=TINY.replace(epochs=1, ddae_shadow_epochs=1),
                                 pool_y=splits.pool_y, seed=0)
    if RECOVERY_STRATEGIES[key].needs_offline_map:
        with pytest.raises(ValueError, match="Noisy is randomized"):
            run()
        assert noisy.num_queries == 0
    else:
        assert run().queries_used > 0 and noisy.num_queries > 0
