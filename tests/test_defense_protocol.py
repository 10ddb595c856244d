"""The Defense protocol (modelguard_fast.defense): defend(), query views, the offline map, one statistics accumulator."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
import torch
from torch import nn

import modelguard_fast as mgf
from modelguard_fast.defense import check_replayable


def net(num_classes=6, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.3), nn.ReLU(),
                         nn.Linear(16, num_classes)).eval()


def queries(rows=20, seed=0):
    return torch.randn(rows, 8, generator=torch.Generator().manual_seed(seed))


def clean_of(model, x):
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)


def every_defense(model):
    """One of each kind, fresh."""
    return [mgf.NoDefense(), mgf.Top1(), mgf.Rounding(), mgf.ReverseSigmoid(0.3), mgf.ModelGuardW(eps=0.5),
            mgf.ModelGuardS(6, eps=0.5), mgf.MAD.from_target(model, seed=1, eps=0.5),
            mgf.AdaptiveMisinformation(0.6, misinformation_model=net(seed=2))]


def the_old_way(defense, probs, x):
    """How the four former copies defended a batch: the defense called with its view of the whole batch."""
    with torch.no_grad():
        return defense(probs, defense.query_view(x)) if defense.needs_query else defense(probs)


@pytest.mark.parametrize("index", range(8))
def test_defend_gives_the_bits_of_calling_the_defense_with_its_view(index):
    model, x = net(), queries()
    probs = clean_of(model, x)
    ours, reference = every_defense(model)[index], every_defense(model)[index]
    out = ours.defend(probs, x)
    assert out.dtype == probs.dtype and out.shape == probs.shape and not out.requires_grad
    assert torch.equal(out, the_old_way(reference, probs, x)), ours.name
    # numpy in, numpy out; the view computed in batches of 7 rows gives the view of each batch
    fresh = every_defense(model)[index]
    answers = fresh.defend(probs.numpy(), x, batch_size=7)
    assert isinstance(answers, np.ndarray) and answers.dtype == np.float32
    if fresh.needs_query:
        view = torch.cat([fresh.query_view(x[i:i + 7]) for i in range(0, len(x), 7)])
        assert torch.equal(fresh.query_views(x, batch_size=7), view)
        np.testing.assert_array_equal(answers, every_defense(model)[index](probs.numpy(), view))


def test_guarded_model_oracle_and_utility_defend_through_the_protocol():
    model, x = net(), queries()
    mad = mgf.MAD.from_target(model, seed=1, eps=0.5)
    probs = clean_of(model, x)
    want = the_old_way(mgf.MAD.from_target(model, seed=1, eps=0.5), probs, x)
    assert torch.equal(mgf.GuardedModel(model, mad)(x), want)
    oracle = mgf.attacks.Oracle(model, mad, budget=len(x), batch_size=6)  # views computed 6 rows at a time
    assert torch.allclose(oracle.query(x), want, rtol=0, atol=1e-6)
    assert mad.num_queries == 2 * len(x)


def test_a_query_model_in_training_mode_is_served_in_eval_mode_and_left_as_it_was():
    x = queries()
    am = mgf.AdaptiveMisinformation(0.6, misinformation_model=net(seed=2))
    want = am.query_views(x)
    am.misinformation_model.train()
    assert torch.equal(am.query_views(x), want)  # dropout off, batch-norm running statistics used
    assert all(m.training for m in am.misinformation_model.modules())
    assert not am.query_views(x).is_inference()


def test_defend_needs_the_query_or_its_view_for_mad_and_am():
    model, x = net(), queries()
    probs = clean_of(model, x)
    mad = mgf.MAD.from_target(model, seed=1)
    with pytest.raises(TypeError, match="MAD needs the query: pass either x .* or view .*got neither"):
        mad.defend(probs)
    with pytest.raises(TypeError, match="got both"):
        mad.defend(probs, x, view=mad.query_views(x))
    with pytest.raises(TypeError, match="x must be a torch.Tensor of queries, got ndarray"):
        mad.query_views(x.numpy())
    with pytest.raises(ValueError, match="batch_size must be a positive integer or None, got 0"):
        mad.query_views(x, batch_size=0)
    assert mad.num_queries == 0
    assert torch.equal(mad.defend(probs, view=mad.query_views(x)), mad.defend(probs, x))
    assert mgf.Top1().query_views(x) is None and torch.equal(mgf.Top1().defend(probs, x), mgf.Top1()(probs))


# ------------------------------------------------------------------ the offline map
def test_offline_map_of_modelguard_s_is_its_frozen_view_and_replay_flags_rows_beyond_eps():
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.full(6, 0.4), size=400).astype(np.float32)
    guard = mgf.ModelGuardS(6, eps=0.3)
    guard(rows[:200])
    offline = guard.offline_map()
    assert isinstance(offline, mgf.FrozenModelGuardS) and len(offline.codebook) == guard.num_centroids
    answers, keep = offline.replay(torch.from_numpy(rows[200:]))
    assert guard.num_centroids == len(offline.codebook)  # replay never inserts
    # the reference: first centroid within eps, else the nearest, kept only within eps (or no centroid at all)
    top, index, distance = offline.assign(rows[200:])
    want = rows[200:].copy()
    hit = index >= 0
    want[hit] = offline.codebook[offline.offsets[top[hit]] + index[hit]]
    assert torch.equal(answers, torch.from_numpy(want))
    assert torch.equal(keep, torch.from_numpy(~hit | (distance <= np.float32(0.3))))
    assert 0 < int(keep.sum()) < len(keep)  # some nearest fallbacks lie beyond eps
    single, keep_one = offline.replay(rows[300])
    assert single.shape == (6,) and keep_one.shape == ()


def test_a_stateless_defense_is_its_own_offline_map():
    model, x = net(), queries()
    probs = clean_of(model, x)
    for defense in every_defense(model):
        if isinstance(defense, mgf.ModelGuardS):
            continue
        assert defense.offline_map() is defense
        answers, keep = defense.replay(probs, defense.query_views(x))
        assert torch.equal(answers, defense.defend(probs, x)) and keep.dtype == torch.bool and bool(keep.all())


def test_randomized_defenses_and_other_objects_have_no_offline_map():
    class Noisy(mgf.NoDefense):
        name = "Noisy"
        deterministic = False

    with pytest.raises(ValueError, match="Noisy is randomized; partial Bayes and D-DAE need a deterministic"):
        Noisy().offline_map()
    with pytest.raises(TypeError, match="defense must be a modelguard_fast Defense, got str"):
        check_replayable("top1")


# ------------------------------------------------------------------ one statistics accumulator
def test_every_defense_counts_the_rows_it_answered_and_nothing_it_refused():
    model, x = net(), queries()
    probs = clean_of(model, x)
    bad = probs.clone()
    bad[3, 0] = float("nan")
    for defense in every_defense(model):
        defense.defend(probs, x)
        defense.defend(probs[:1], x[:1])
        with pytest.raises(ValueError):
            defense.defend(bad, x)
        assert defense.num_queries == defense.stats.queries == len(x) + 1, defense.name
        defense.reset_stats()
        assert defense.stats.snapshot() == {"queries": 0, "infeasible": 0, "distortion_rows": 0,
                                            "distortion_sum": 0.0, "distortion_max": 0.0}, defense.name


def test_modelguard_statistics_live_in_the_accumulator():
    rows = np.random.default_rng(1).dirichlet(np.full(6, 0.4), size=300).astype(np.float32)
    guard = mgf.ModelGuardS(6, eps=0.5)
    out = guard(rows)
    l1 = np.abs(out.astype(np.float64) - rows).sum(axis=1)
    stats = guard.stats.snapshot()
    assert stats["queries"] == stats["distortion_rows"] == 300
    assert guard.mean_distortion == pytest.approx(l1.mean(), rel=1e-5)
    assert guard.max_distortion == pytest.approx(l1.max(), rel=1e-5)
    twin = pickle.loads(pickle.dumps(guard))
    assert twin.stats.snapshot() == stats and twin.stats is not guard.stats
    centroids = guard.num_centroids
    guard.reset_stats()  # statistics only: the codebooks stay
    assert guard.num_queries == 0 and guard.num_centroids == centroids
    guard.reset()  # everything
    assert guard.num_centroids == 0

    tie = np.array([[0.5, 0.5, 0.0]], dtype=np.float32)  # a tie at the top that eps = 0 cannot open: infeasible
    w = mgf.ModelGuardW(eps=0.0)
    w(np.repeat(tie, 4, axis=0))
    assert (w.num_queries, w.num_infeasible) == (4, 4)
    copied = copy.deepcopy(w)
    assert copied.stats.snapshot() == w.stats.snapshot()
    w.reset_stats()
    assert (w.num_queries, w.num_infeasible, copied.num_queries) == (0, 0, 4)


def test_concurrent_calls_are_all_counted():
    defense = mgf.NoDefense()
    rows = np.full((3, 4), 0.25, dtype=np.float32)

    def serve():
        for _ in range(300):
            defense(rows)

    threads = [threading.Thread(target=serve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert defense.num_queries == 4 * 300 * 3


# ------------------------------------------------------------------ arrays that went through pickle
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpickled_arrays_are_accepted_by_every_kernel(dtype):
    # An unpickled array's dtype equals numpy's canonical one without being that object; the kernels
    # compared dtypes by identity and refused it ("x: wrong dtype").
    rows = np.random.default_rng(2).dirichlet(np.ones(6), size=16).astype(dtype)
    thawed = pickle.loads(pickle.dumps(rows))
    assert thawed.dtype == rows.dtype and thawed.dtype is not rows.dtype
    for make in (mgf.NoDefense, mgf.Top1, lambda: mgf.ModelGuardW(eps=0.5), lambda: mgf.ModelGuardS(6, eps=0.5)):
        np.testing.assert_array_equal(make()(thawed), make()(rows))
    np.testing.assert_array_equal(mgf.ops.solve_mgw(thawed, eps=0.5)[0], mgf.ops.solve_mgw(rows, eps=0.5)[0])
    guard = mgf.ModelGuardS(6, eps=0.5, dtype=dtype)
    guard(rows[:8])
    offline = guard.offline_map()
    np.testing.assert_array_equal(offline(thawed), offline(rows))
