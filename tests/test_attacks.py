"""Building blocks of the attacks: config, oracle, querying, JBDA-TR, augmentations, restorer, partial Bayes table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from attack_cases import digits_case
from torch import nn

import modelguard_fast as mgf
from modelguard_fast import attacks
from modelguard_fast.attacks import ddae
from modelguard_fast.defense import check_replayable

CPU = torch.device("cpu")


def clean_probs(rows=300):
    splits, target = digits_case()
    with torch.no_grad():
        return torch.softmax(target(splits.pool_x[:rows]), dim=1)


# ------------------------------------------------------------------ config
def test_defaults_are_the_papers():
    c = mgf.AttackConfig()
    assert (c.epochs, c.lr, c.batch_size, c.momentum, c.lr_step, c.lr_gamma) == (30, 0.1, 128, 0.5, 10, 0.5)
    assert (c.query_seed, c.qpi) == (42, 1)
    assert (c.jbda_seed_size, c.jbda_new_per_sample, c.jbda_steps, c.jbda_eps) == (1000, 3, 8, 0.1)
    assert c.step_size == pytest.approx(0.1 * 1.85 / 8)
    assert (c.s4l_weight, c.smoothing_copies, c.smoothing_flip) == (1.0, 3, True)
    assert (c.ddae_shadow_models, c.restorer_epochs, c.restorer_batch_size, c.restorer_lr, c.restorer_momentum,
            c.restorer_weight_decay, c.restorer_lr_step, c.restorer_lr_gamma) == (20, 200, 1024, 0.01, 0.9, 1e-4, 100,
                                                                                   0.5)
    assert (c.bayes_table_size, c.bayes_precision_factor, c.bayes_delta, c.bayes_means) == (1_000_000, 8.0, 0.01,
                                                                                            "clean")
    caltech = mgf.AttackConfig.paper("caltech256")
    assert (caltech.lr, caltech.batch_size) == (0.01, 32)
    assert mgf.AttackConfig.paper("cifar100", epochs=5).epochs == 5
    assert c.crop_padding(32) == 4 and c.crop_padding(8) == 1


def test_substitute_and_shadow_settings_follow_the_public_code():
    for c in (mgf.AttackConfig(), mgf.AttackConfig.paper("cifar10"), mgf.AttackConfig.paper("caltech256")):
        assert (c.weight_decay, c.jbda_weight_decay) == (0.0, 5e-4)  # KnockoffNets without, JBDA-TR with
        assert (c.ddae_shadow_epochs, c.ddae_shadow_lr, c.ddae_shadow_lr_step, c.ddae_shadow_lr_gamma,
                c.ddae_shadow_batch_size, c.ddae_shadow_momentum, c.ddae_shadow_weight_decay) == (
                    5, 0.01, 3, 0.5, 64, 0.5, 5e-4)
    c = mgf.AttackConfig()
    assert attacks.TrainSettings.from_config(c).weight_decay == 0.0
    assert attacks.TrainSettings.from_config(c, query="jbda").weight_decay == 5e-4
    assert attacks.TrainSettings.shadow(c) == attacks.TrainSettings(5, 64, 0.01, 0.5, 5e-4, 3, 0.5)
    # small() keeps the settings the default run's published table was made with
    small = mgf.AttackConfig.small()
    assert attacks.TrainSettings.from_config(small) == attacks.TrainSettings(30, 64, 0.1, 0.5, 5e-4, 10, 0.5)
    assert attacks.TrainSettings.shadow(small) == attacks.TrainSettings(30, 64, 0.1, 0.5, 5e-4, 10, 0.5)
    assert attacks.TrainSettings.from_config(small, query="jbda").weight_decay == 5e-4


def test_config_round_trips_through_json():
    c = mgf.AttackConfig.small(jbda_input_range=(-1.0, 1.0), restorer_hidden=(32, 16))
    again = mgf.AttackConfig.from_dict(json.loads(json.dumps(c.as_dict())))
    assert again == c and again.jbda_input_range == (-1.0, 1.0)


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "AttackConfig.epochs must be a positive integer, got 0"),
    ({"epochs": 2.5}, "AttackConfig.epochs must be a positive integer, got 2.5"),
    ({"lr": -1.0}, r"AttackConfig.lr must be a finite real number > 0, got -1.0"),
    ({"momentum": 1.0}, r"AttackConfig.momentum must be a real number in \[0, 1\), got 1.0"),
    ({"qpi": True}, "AttackConfig.qpi must be a positive integer, got True"),
    ({"bayes_means": "oracle"}, "AttackConfig.bayes_means must be one of 'clean', 'received'; got 'oracle'"),
    ({"bayes_top1_filter": "yes"}, "AttackConfig.bayes_top1_filter must be True, False or None, got 'yes'"),
    ({"jbda_input_range": (1.0, 0.0)}, r"AttackConfig.jbda_input_range must be None or a pair \(low, high\)"),
    ({"restorer_batch_size": 1}, "AttackConfig.restorer_batch_size must be an integer >= 2"),
    ({"restorer_hidden": (0, 4)}, r"AttackConfig.restorer_hidden must be None or a pair \(h1, h2\)"),
    ({"epoch": 3}, "unknown AttackConfig key 'epoch'; allowed keys: epochs, batch_size, "),
])
def test_bad_config_names_key_value_and_allowed(changes, message):
    with pytest.raises(ValueError, match=message):
        mgf.AttackConfig().replace(**changes)
    with pytest.raises(ValueError, match=message):
        mgf.AttackConfig.from_dict(changes)


def test_config_tables_stand_for_their_prefixed_fields():
    nested = {"epochs": 3, "jbda": {"seed_size": 40, "input_range": [-1.0, 1.0]}, "ddae": {"shadow_models": 2},
              "bayes": {"means": "received"}}
    flat = {"epochs": 3, "jbda_seed_size": 40, "jbda_input_range": [-1.0, 1.0], "ddae_shadow_models": 2,
            "bayes_means": "received"}
    assert mgf.AttackConfig.from_dict(nested) == mgf.AttackConfig.from_dict(flat)
    with pytest.raises(ValueError, match=r"unknown key 'seeds' in \[attack.jbda\]; allowed keys: weight_decay, "
                                         "seed_size, new_per_sample"):
        mgf.AttackConfig.from_dict({"jbda": {"seeds": 4}})
    with pytest.raises(ValueError, match=r"jbda_seed_size is given twice, as \[attack\] jbda_seed_size and as "
                                         r"\[attack.jbda\] seed_size; give it once"):
        mgf.AttackConfig.from_dict({"jbda_seed_size": 4, "jbda": {"seed_size": 5}})
    with pytest.raises(ValueError, match="AttackConfig.ddae_shadow_models must be a positive integer, got 0"):
        mgf.AttackConfig.from_dict({"ddae": {"shadow_models": 0}})


def test_bad_paper_dataset():
    with pytest.raises(ValueError, match="dataset must be one of 'caltech256', 'cub200', 'cifar100', 'cifar10'; "
                                         "got 'mnist'"):
        mgf.AttackConfig.paper("mnist")


# ------------------------------------------------------------------ oracle
def test_oracle_answers_are_the_guarded_models_and_count_queries():
    splits, target = digits_case()
    x = splits.pool_x[:50]
    oracle = attacks.Oracle(target, mgf.ModelGuardS(10, eps=0.5), budget=80, batch_size=7)
    got = oracle.query(x)
    guarded = mgf.GuardedModel(target, mgf.ModelGuardS(10, eps=0.5))
    want = torch.cat([guarded(x[i:i + 7]) for i in range(0, 50, 7)])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert oracle.queries_used == 50 and oracle.remaining == 30


def test_oracle_refuses_queries_past_its_budget_before_answering_any():
    splits, target = digits_case()
    guard = mgf.ModelGuardS(10, eps=0.5)
    oracle = attacks.Oracle(target, guard, budget=10)
    oracle.query(splits.pool_x[:6])
    seen = guard.num_queries
    with pytest.raises(attacks.BudgetExceededError,
                       match="a query of 5 inputs exceeds the oracle's budget: 6 of 10 queries used, 4 left"):
        oracle.query(splits.pool_x[6:11])
    assert oracle.queries_used == 6 and guard.num_queries == seen
    oracle.query(splits.pool_x[6:10])
    assert oracle.remaining == 0
    with pytest.raises(attacks.BudgetExceededError):
        oracle.query(splits.pool_x[:1])


def test_oracle_bad_arguments():
    _, target = digits_case()
    with pytest.raises(ValueError, match="budget must be a positive integer, got 0"):
        attacks.Oracle(target, mgf.NoDefense(), budget=0)
    oracle = attacks.Oracle(target, mgf.NoDefense(), budget=3)
    with pytest.raises(TypeError, match="x must be a torch.Tensor of query inputs, got ndarray"):
        oracle.query(np.zeros((1, 1, 8, 8), dtype=np.float32))


# ------------------------------------------------------------------ querying
def test_knockoff_indices_are_a_seeded_permutation_prefix():
    first = attacks.knockoff_indices(100, 30, seed=42)
    assert torch.equal(first, attacks.knockoff_indices(100, 30, seed=42))
    assert torch.equal(first, attacks.pool_order(100, 42)[:30])
    assert len(set(first.tolist())) == 30
    assert not torch.equal(first, attacks.knockoff_indices(100, 30, seed=43))
    with pytest.raises(ValueError, match="budget must be at most the pool size 100 for KnockoffNets, got 101"):
        attacks.knockoff_indices(100, 101, seed=42)


def test_same_seed_same_queries_same_modelguard_s_answers():
    splits, target = digits_case()

    def answers(query_seed):
        oracle = attacks.Oracle(target, mgf.ModelGuardS(10, eps=0.8), budget=200)
        x = splits.pool_x[attacks.knockoff_indices(len(splits.pool_x), 200, query_seed)]
        return x, attacks.QueryPlan(64).ask(oracle, x, torch.Generator()).labels

    x1, a1 = answers(42)
    x2, a2 = answers(42)
    assert torch.equal(x1, x2) and torch.equal(a1, a2)
    x3, a3 = answers(7)
    assert not torch.equal(x1, x3) and not torch.equal(a1, a3)


def test_qpi_averages_passes_in_order():
    splits, target = digits_case()
    x = splits.pool_x[:40]
    oracle = attacks.Oracle(target, mgf.ModelGuardS(10, eps=0.8), budget=120)
    got = attacks.QueryPlan(16, repeats=3).ask(oracle, x, torch.Generator())
    assert oracle.queries_used == 120 and got.passes.shape == (3, 40, 10)
    # Ordered quantization answers every repeat alike: nothing changes between passes.
    assert torch.equal(got.passes[0], got.passes[2])
    torch.testing.assert_close(got.labels, got.passes.mean(dim=0))


def test_random_crop_flip():
    x = torch.rand(64, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(attacks.random_crop_flip(x, 0, False, torch.Generator()), x)
    flipped = attacks.random_crop_flip(x, 0, True, torch.Generator().manual_seed(1))
    is_flip = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, x)]
    assert all(torch.equal(f, i) or flip for f, i, flip in zip(flipped, x, is_flip))
    assert 0 < sum(is_flip) < 64
    cropped = attacks.random_crop_flip(x, 2, False, torch.Generator().manual_seed(2))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = [[padded[:, :, i:i + 6, j:j + 6] for j in range(5)] for i in range(5)]
    for n in range(64):
        assert any(torch.equal(cropped[n], windows[i][j][n]) for i in range(5) for j in range(5))
    assert not torch.equal(cropped, x)


# ------------------------------------------------------------------ JBDA-TR
@pytest.mark.parametrize("input_range", [(0.0, 1.0), None])
def test_ifgsm_respects_the_linf_bound_and_input_range(input_range):
    splits, target = digits_case()
    x = splits.pool_x[:40]
    out = attacks.targeted_ifgsm(target, x, 10, steps=8, eps=0.1, step_size=0.1 * 1.85 / 8, input_range=input_range,
                                 generator=torch.Generator().manual_seed(0), device=CPU, batch_size=16)
    assert out.shape == x.shape and not out.requires_grad
    assert float((out - x).abs().max()) <= 0.1 + 1e-6
    assert float((out - x).abs().max()) > 0.09  # the steps add up to 1.85 eps, so the bound is reached
    if input_range is not None:
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    again = attacks.targeted_ifgsm(target, x, 10, 8, 0.1, 0.1 * 1.85 / 8, input_range, torch.Generator().manual_seed(0),
                                   CPU, 16)
    assert torch.equal(out, again)


def test_jbda_rounds_grow_the_set_until_the_budget():
    splits, target = digits_case()
    seeds = splits.pool_x[:10]
    oracle = attacks.Oracle(target, mgf.NoDefense(), budget=100)
    rounds = []

    def train_round(x, labels):
        rounds.append((len(x), labels.shape))
        return target

    settings = attacks.JbdaSettings(3, 8, 0.1, 0.1 * 1.85 / 8, (0.0, 1.0))
    x, answers = attacks.jbda_tr(oracle, seeds, 100, attacks.QueryPlan(32), train_round, settings, 10,
                                 (torch.Generator().manual_seed(0), torch.Generator()), CPU)
    assert [r[0] for r in rounds] == [10, 40] and rounds[0][1] == (10, 10)
    assert len(x) == 100 and len(answers) == 100 and oracle.queries_used == 100
    assert torch.equal(x[:10], seeds)
    # Each round's new images come copy by copy from the images so far, within eps of their source.
    assert float((x[10:40] - seeds.repeat(3, 1, 1, 1)).abs().max()) <= 0.1 + 1e-6
    assert float((x[40:100] - x[:40].repeat(2, 1, 1, 1)[:60]).abs().max()) <= 0.1 + 1e-6


# ------------------------------------------------------------------ S4L
def test_rotations_and_s4l_model_check():
    x = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 1, 3, 3)
    images, labels = attacks.rotated(x)
    assert images.shape == (8, 1, 3, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(images[2], torch.rot90(x[0], 1, dims=(-2, -1)))
    with pytest.raises(ValueError, match=r"needs square images \(N, channels, H, H\), got shape \(2, 1, 3, 4\)"):
        attacks.rotated(torch.zeros(2, 1, 3, 4))
    splits, target = digits_case()
    with pytest.raises(TypeError, match="strategy 's4l' needs a substitute with a features"):
        attacks.train_substitute(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), splits.pool_x[:8],
                                 torch.full((8, 10), 0.1), attacks.TrainSettings(1, 4, 0.1, 0.5, 0.0, 1, 0.5), seed=0,
                                 device=CPU, rotation_weight=1.0)


def test_substitute_training_is_seeded_and_leaves_the_global_rng_alone():
    splits, _ = digits_case()
    x, y = splits.pool_x[:64], torch.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(0)), 1)
    settings = attacks.TrainSettings(2, 16, 0.1, 0.5, 5e-4, 1, 0.5)

    def trained(seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = mgf.models.SmallCNN(10, width=4)
        return attacks.train_substitute(model, x, y, settings, seed=seed, device=CPU, rotation_weight=1.0)

    state = torch.random.get_rng_state()
    a, b, c = trained(1), trained(1), trained(2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not a.training
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


# ------------------------------------------------------------------ D-DAE restorer
def test_restorer_sizes_follow_the_papers_table():
    for C, sizes in ddae.PAPER_HIDDEN.items():
        assert attacks.restorer_hidden_sizes(C) == sizes
    assert attacks.restorer_hidden_sizes(43) == (512, 256)
    assert attacks.restorer_hidden_sizes(2) == (16, 8)
    layers = list(attacks.Restorer(10).layers)
    assert [type(m).__name__ for m in layers] == ["Linear", "BatchNorm1d", "LeakyReLU"] * 3
    assert [m.out_features for m in layers if isinstance(m, nn.Linear)] == [128, 64, 10]
    assert all(m.negative_slope == 0.2 for m in layers if isinstance(m, nn.LeakyReLU))


def test_restorer_trains_and_restores_in_eval_mode():
    clean = clean_probs(200)
    received = mgf.Top1()(clean)
    config = mgf.AttackConfig.small(restorer_epochs=3, restorer_batch_size=32)
    restorer = attacks.train_restorer(received, clean, config, seed=0, device=CPU)
    assert not restorer.training
    restorer.train()  # restore() must not depend on the mode it finds the restorer in
    alone = torch.cat([attacks.restore(restorer, received[i:i + 1], CPU) for i in range(5)])
    together = attacks.restore(restorer, received, CPU, batch_size=64)[:5]
    assert not restorer.training
    torch.testing.assert_close(alone, together)
    torch.testing.assert_close(together.sum(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match="the restorer needs at least 2 training pairs, got 1"):
        attacks.train_restorer(received[:1], clean[:1], config, seed=0, device=CPU)


# ------------------------------------------------------------------ partial Bayes table
def test_table_draws_have_the_right_mean_and_precision():
    mean = torch.tensor([[0.6, 0.3, 0.1]])
    offline = mgf.NoDefense().offline_map()
    table = attacks.draw_table(offline, mean, 20000, precision=24.0, rng=np.random.default_rng(0))
    assert table.per_image == 20000 and len(table) == 20000 and table.clean.dtype == torch.float32
    draws = table.clean.double()
    torch.testing.assert_close(draws.mean(dim=0), mean[0].double(), atol=0.01, rtol=0)
    variance = mean[0].double() * (1 - mean[0].double()) / (24.0 + 1)  # Dir(s m): m (1 - m) / (s + 1)
    torch.testing.assert_close(draws.var(dim=0), variance, rtol=0.1, atol=0)
    torch.testing.assert_close(table.perturbed, table.clean)


def test_table_rows_are_grouped_by_image_in_order():
    means = torch.eye(3) * 0.97 + 0.01
    table = attacks.draw_table(mgf.NoDefense().offline_map(), means, 30, 8 * 3,
                               np.random.default_rng(0))
    assert table.per_image == 10 and table.draws == 30
    assert table.clean.argmax(dim=1).tolist() == [0] * 10 + [1] * 10 + [2] * 10


def test_modelguard_s_table_uses_the_frozen_view_and_drops_rows_beyond_eps():
    clean = clean_probs(300)
    guard = mgf.ModelGuardS(10, eps=0.6)
    guard(clean)
    centroids = guard.num_centroids
    offline = guard.offline_map()
    assert isinstance(offline, mgf.FrozenModelGuardS)
    table = attacks.draw_table(offline, clean, 300 * 20, 80.0, np.random.default_rng(1))
    assert guard.num_centroids == centroids  # the attacker's replay never inserts
    assert 0 < len(table) < table.draws  # the nearest fallback gives rows beyond eps, which are dropped
    l1 = (table.clean.double() - table.perturbed.double()).abs().sum(dim=1)
    assert float(l1.max()) <= 0.6 + 1e-6
    codebook = {tuple(row) for c in range(10) for row in guard.centroids(c).tolist()}
    assert all(tuple(row) in codebook for row in table.perturbed.tolist())


def test_pbayes_recovers_modelguard_w_much_better_than_modelguard_s():
    # eps = 0.5: at eps = 1 and C = 10, ModelGuard-W's optimum for a confident target keeps
    # little beyond the top class and the least likely one, so both defenses leave about as
    # little to recover.
    clean = clean_probs(300)
    distances = {}
    for name, live in [("W", mgf.ModelGuardW(eps=0.5)), ("S", mgf.ModelGuardS(10, eps=0.5))]:
        received = live(clean)
        table = attacks.draw_table(live.offline_map(), clean, 300 * 40, 80.0, np.random.default_rng(0))
        recovered = attacks.recover(table, received, delta=0.01, top1_filter=True)
        distances[name] = (attacks.recovery_distance(received, clean), attacks.recovery_distance(recovered, clean))
    (naive_w, bayes_w), (naive_s, bayes_s) = distances["W"], distances["S"]
    assert bayes_w < 0.2 * naive_w  # partial Bayes undoes ModelGuard-W's perturbation...
    assert bayes_w < 0.5 * bayes_s  # ...far better than ModelGuard-S's quantization
    assert bayes_s > 0.8 * naive_s  # which it hardly undoes at all


def test_offline_map_refuses_randomized_defenses():
    class Noisy(mgf.NoDefense):
        name = "Noisy"
        deterministic = False

    with pytest.raises(ValueError, match="Noisy is randomized; partial Bayes and D-DAE need a deterministic"):
        Noisy().offline_map()
    with pytest.raises(TypeError, match="defense must be a modelguard_fast Defense, got str"):
        check_replayable("top1")


def test_offline_map_gives_mad_its_view_of_each_image():
    splits, target = digits_case()
    mad = mgf.MAD.from_target(target, seed=3, eps=0.5)
    offline = mad.offline_map()
    assert offline is mad  # a stateless defense is its own offline map
    x = splits.pool_x[:12]
    views = offline.query_views(x)
    assert views.shape == (12, 10)
    clean = clean_probs(12)
    answers, keep = offline.replay(clean, views)
    torch.testing.assert_close(answers, mgf.GuardedModel(target, mad)(x))
    assert bool(keep.all())
    assert mgf.Top1().offline_map().query_views(x) is None


# ------------------------------------------------------------------ metrics
def test_recovery_distance_is_the_mean_l2():
    a = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    b = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    assert attacks.recovery_distance(a, b) == pytest.approx(2 ** 0.5 / 2)
    with pytest.raises(ValueError, match=r"labels and clean must have the same shape, got \(2, 2\) and \(1, 2\)"):
        attacks.recovery_distance(a, b[:1])


# ------------------------------------------------------------------ oracle: atomic queries, checked shapes
class _NanAtMarkedRows(nn.Module):
    """The target, answering NaN logits for inputs whose first pixel is -7 (a target that fails on some rows)."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def forward(self, x):
        out = self.target(x)
        return torch.where((x.flatten(1)[:, 0] == -7)[:, None], torch.full_like(out, float("nan")), out)


class _Squeezing(nn.Module):
    """A target whose forward squeezes a batch of one to a 1-D row."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def forward(self, x):
        return self.target(x).squeeze()


def test_a_refused_query_counts_nothing_reaches_no_defense_and_names_the_query_row():
    splits, target = digits_case()
    x = splits.pool_x[:10].clone()
    x[6, 0, 0, 0] = -7  # chunk 2 (batch_size 4), row 2 of that chunk, row 6 of the query
    guard = mgf.ModelGuardS(10, eps=0.5)
    oracle = attacks.Oracle(_NanAtMarkedRows(target), guard, budget=20, batch_size=4)
    with pytest.raises(ValueError, match=r"nothing was counted.*must be finite, got nan at row 6, column 0"):
        oracle.query(x)
    assert oracle.queries_used == 0 and guard.num_queries == 0 and guard.num_centroids == 0
    clean = x[[0, 1, 2, 3, 4, 5, 7, 8, 9]]
    torch.testing.assert_close(oracle.query(clean), mgf.GuardedModel(target, mgf.ModelGuardS(10, eps=0.5))(clean),
                               rtol=0, atol=0)
    assert oracle.queries_used == 9


@pytest.mark.parametrize("batch_size", [1, 2])
def test_the_oracle_refuses_a_target_output_that_is_not_batch_by_classes_before_counting(batch_size):
    splits, target = digits_case()
    guard = mgf.ModelGuardS(10, eps=0.5)
    oracle = attacks.Oracle(_Squeezing(target), guard, budget=20, batch_size=batch_size)
    with pytest.raises(ValueError, match=r"model output must have shape \(B, C\) = \(1, num_classes\) for a batch "
                                         r"of 1 queries, got shape \(10,\)"):
        oracle.query(splits.pool_x[:3])
    assert oracle.queries_used == 0 and guard.num_queries == 0


def test_mad_through_the_oracle_is_answered_as_one_batch():
    splits, target = digits_case()
    x = splits.pool_x[:9]
    mad = mgf.MAD.from_target(target, eps=1.0)
    oracle = attacks.Oracle(target, mad, budget=9, batch_size=4)
    torch.testing.assert_close(oracle.query(x), mgf.GuardedModel(target, mad)(x))


# ------------------------------------------------------------------ partial Bayes means
def test_dirichlet_means_of_a_zero_row_are_uniform_and_bad_rows_are_named():
    from modelguard_fast.attacks import pbayes

    means = torch.tensor([[0.0] * 30, [0.1] * 3 + [0.0] * 27])
    got = pbayes.dirichlet_means(means)
    np.testing.assert_allclose(got[0], np.full(30, 1 / 30))
    np.testing.assert_allclose(got[1], [1 / 3] * 3 + [0.0] * 27)
    with pytest.raises(ValueError, match=r"the received answers must be finite and non-negative to serve as "
                                         r"Dirichlet means, got -0.1 at row 1, column 2"):
        pbayes.dirichlet_means(torch.tensor([[0.5, 0.5, 0.0], [0.6, 0.5, -0.1]], dtype=torch.float64),
                               "the received answers")
