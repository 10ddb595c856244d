"""run_attack end to end on a tiny fixed case: every query and recovery strategy, and the known orderings."""

from __future__ import annotations

import json

import pytest
import torch
from attack_cases import TINY, digits_case, tiny_substitute

import modelguard_fast as mgf
from modelguard_fast import attacks


def attack(defense, strategy="naive", query="knockoff", budget=120, config=TINY, **kwargs):
    splits, target = digits_case()
    kwargs.setdefault("pool_y", splits.pool_y)
    return mgf.run_attack(target, defense, splits.pool_x, splits.test_x, splits.test_y, query=query,
                          strategy=strategy, budget=budget, config=config, substitute=tiny_substitute, **kwargs)


@pytest.mark.parametrize("query", attacks.QUERY_STRATEGIES)
@pytest.mark.parametrize("strategy", attacks.RECOVERY_STRATEGIES)
def test_every_attack_runs_end_to_end(query, strategy):
    result = attack(mgf.ModelGuardS(10, eps=1.0), strategy, query)
    copies = TINY.smoothing_copies if strategy == "smoothing" else 1
    assert result.queries_used == 120 * copies and result.num_images == 120
    assert 0 <= result.accuracy <= 1 and 0 <= result.fidelity <= 1 and result.target_accuracy > 0.8
    assert 0 <= result.recovery_distance < 2 ** 0.5
    assert (result.table_rows is not None) == (strategy in ("ddae", "ddae+", "pbayes"))
    assert result.transcript.labels.shape == result.transcript.received.shape == (120, 10)
    assert not result.substitute.training
    row = json.loads(json.dumps(result.as_dict()))
    assert row["strategy"] == strategy and row["query"] == query and row["defense"] == "ModelGuard-S"
    assert row["config"] == TINY.as_dict()


def test_top1_recovery_of_a_one_hot_oracle_gives_the_oracles_labels():
    splits, target = digits_case()
    result = attack(mgf.Top1(), "top1")
    t = result.transcript
    assert torch.equal(t.labels, t.received)
    assert torch.equal(t.labels.sum(dim=1), torch.ones(120)) and set(t.labels.unique().tolist()) == {0.0, 1.0}
    with torch.no_grad():
        assert torch.equal(t.labels.argmax(dim=1), target(t.images).argmax(dim=1))
    rounded = attack(mgf.Rounding(), "top1").transcript
    assert torch.equal(rounded.labels.argmax(dim=1), rounded.received.argmax(dim=1))


def test_no_defense_naive_trains_on_the_clean_predictions():
    result = attack(mgf.NoDefense())
    assert result.recovery_distance < 1e-6


def test_pbayes_recovers_modelguard_w_better_than_modelguard_s_end_to_end():
    config = TINY.replace(bayes_table_size=300 * 40)
    w = attack(mgf.ModelGuardW(eps=0.5), "pbayes", budget=300, config=config)
    s = attack(mgf.ModelGuardS(10, eps=0.5), "pbayes", budget=300, config=config)
    naive_w = attack(mgf.ModelGuardW(eps=0.5), "naive", budget=300, config=config)
    assert w.recovery_distance < 0.5 * s.recovery_distance
    assert w.recovery_distance < 0.2 * naive_w.recovery_distance


def test_pbayes_with_the_attackers_own_means_and_against_a_defense_that_looks_at_queries():
    _, target = digits_case()
    own = attack(mgf.ModelGuardW(eps=0.5), "pbayes", config=TINY.replace(bayes_means="received"))
    assert own.config["bayes_means"] == "received" and own.table_rows > 0
    mad = attack(mgf.MAD.from_target(target, seed=1, eps=0.5), "pbayes", budget=60,
                 config=TINY.replace(bayes_table_size=600))
    naive = attack(mgf.MAD.from_target(target, seed=1, eps=0.5), "naive", budget=60)
    assert mad.recovery_distance < naive.recovery_distance


@pytest.mark.parametrize("order, changes", [("first", False), ("nearest", True)])
def test_qpi_queries_each_image_m_times(order, changes):
    result = attack(mgf.ModelGuardS(10, eps=0.4, order=order), budget=200, config=TINY.replace(qpi=2))
    assert result.queries_used == 400
    if changes:  # the non-ordered ablation leaks: later centroids change earlier answers (Table 6)
        assert result.qpi_changed > 0
        assert result.qpi_distance_mean < result.qpi_distance_first
    else:
        assert result.qpi_changed == 0 and result.qpi_distance_first is None


def test_same_seed_same_attack():
    a = attack(mgf.ModelGuardS(10, eps=1.0), "ddae+", seed=3)
    b = attack(mgf.ModelGuardS(10, eps=1.0), "ddae+", seed=3)
    c = attack(mgf.ModelGuardS(10, eps=1.0), "ddae+", seed=4)
    assert torch.equal(a.transcript.images, b.transcript.images)
    assert torch.equal(a.transcript.labels, b.transcript.labels)
    assert all(torch.equal(p, q) for p, q in zip(a.substitute.parameters(), b.substitute.parameters()))
    # Another seed changes the attack's randomness but not which pool images are asked.
    assert torch.equal(a.transcript.images, c.transcript.images)
    assert not torch.equal(a.transcript.labels, c.transcript.labels)


def test_run_attack_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    attack(mgf.ModelGuardS(10, eps=1.0), "smoothing", "jbda", budget=60)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_pretrained_substitute_module_is_copied_not_trained_in_place():
    splits, target = digits_case()
    start = tiny_substitute()
    before = [p.clone() for p in start.parameters()]
    mgf.run_attack(target, mgf.Top1(), splits.pool_x, splits.test_x, splits.test_y, budget=50, config=TINY,
                   substitute=start)
    assert all(torch.equal(p, q) for p, q in zip(start.parameters(), before))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"strategy": "bayes"}, ValueError,
     "strategy must be one of 'naive', 'top1', 's4l', 'smoothing', 'ddae', 'ddae\\+', 'pbayes'; got 'bayes'"),
    ({"query": "random"}, ValueError, "query must be one of 'knockoff', 'jbda'; got 'random'"),
    ({"budget": 0}, ValueError, "budget must be a positive integer, got 0"),
    ({"budget": 10_000}, ValueError, "budget must be at most the pool size 720 for KnockoffNets, got 10000"),
    ({"outputs": "softmax"}, ValueError, "outputs must be one of 'logits', 'probs'; got 'softmax'"),
    ({"config": {"epochs": 1}}, TypeError, "config must be an AttackConfig or None, got dict"),
    ({"seed": 1.5}, TypeError, "seed must be an integer, got 1.5"),
    ({"strategy": "ddae", "pool_y": None}, ValueError, "strategy 'ddae' needs pool_y, the pool's own labels"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        attack(mgf.NoDefense(), **kwargs)


def test_recovery_attacks_refuse_a_randomized_defense_before_querying():
    class Noisy(mgf.NoDefense):
        name = "Noisy"
        deterministic = False

    with pytest.raises(ValueError, match="Noisy is randomized"):
        attack(Noisy(), "pbayes")


def test_bad_data():
    splits, target = digits_case()
    with pytest.raises(ValueError, match=r"test_y must be a 1-D integer tensor of 359 labels, got torch.float32"):
        mgf.run_attack(target, mgf.NoDefense(), splits.pool_x, splits.test_x, splits.test_y.float(), budget=10)
    with pytest.raises(ValueError, match=r"test_x must have pool_x's item shape \(1, 8, 8\), got \(64,\)"):
        mgf.run_attack(target, mgf.NoDefense(), splits.pool_x, splits.test_x.flatten(1), splits.test_y, budget=10)
    with pytest.raises(TypeError, match="defense must be a modelguard_fast Defense, got str"):
        mgf.run_attack(target, "top1", splits.pool_x, splits.test_x, splits.test_y, budget=10)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("strategy", ["s4l", "ddae", "ddae+", "pbayes"])
def test_attacker_models_train_on_the_gpu(strategy):
    result = attack(mgf.ModelGuardS(10, eps=1.0), strategy, "jbda", device="cuda")
    assert next(result.substitute.parameters()).is_cuda
    assert result.accuracy > 0


# ------------------------------------------------------------------ batch normalisation, all-zero answers
def bn_substitute(num_classes=10):
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 64, num_classes))


@pytest.mark.parametrize("query, budget, changes", [("knockoff", 17, {}), ("jbda", 40, {"jbda_seed_size": 17})])
def test_a_last_training_batch_of_one_row_does_not_crash_batch_norm_substitutes(query, budget, changes):
    splits, target = digits_case()
    config = TINY.replace(batch_size=16, **changes)
    result = mgf.run_attack(target, mgf.ModelGuardS(10, eps=1.0), splits.pool_x, splits.test_x, splits.test_y,
                            query=query, budget=budget, config=config, substitute=bn_substitute)
    assert result.queries_used == budget and 0 <= result.accuracy <= 1


@pytest.mark.parametrize("query, budget, changes", [("knockoff", 1, {}), ("jbda", 40, {"jbda_seed_size": 1})])
def test_a_batch_norm_substitute_with_one_image_to_train_on_is_refused_before_any_query(query, budget, changes):
    splits, target = digits_case()
    guard = mgf.ModelGuardS(10, eps=1.0)
    with pytest.raises(ValueError, match=r"has batch normalisation, which cannot train on a single image, but the "
                                         r"attack would train it on 1 .*query at least 2 images"):
        mgf.run_attack(target, guard, splits.pool_x, splits.test_x, splits.test_y, query=query, budget=budget,
                       config=TINY.replace(**changes), substitute=bn_substitute)
    assert guard.num_queries == 0


def test_pbayes_on_rounding_answers_that_are_all_zeros_draws_around_the_uniform_mean():
    # A 30-class target that is unsure of everything: every clean entry is below 0.05, so Rounding to one
    # decimal answers all zeros, and the attacker's own means (the received answers) are all zeros.
    splits, _ = digits_case()
    target = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 30))
    with torch.no_grad():
        target[1].weight.mul_(0.01)
    config = TINY.replace(bayes_means="received", bayes_table_size=600)
    result = mgf.run_attack(target, mgf.Rounding(), splits.pool_x, splits.test_x, splits.test_y,
                            strategy="pbayes", budget=60, config=config, substitute=lambda: tiny_substitute_30())
    assert (result.transcript.received == 0).all()
    assert result.table_rows == 600 and torch.isfinite(result.transcript.labels).all()
    torch.testing.assert_close(result.transcript.labels.sum(dim=1), torch.ones(60))


def tiny_substitute_30():
    from modelguard_fast.models import SmallCNN

    return SmallCNN(30, in_channels=1, width=4)
