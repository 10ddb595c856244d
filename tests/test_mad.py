"""MAD: the batched, Jacobian-free implementation against the public code's literal-Jacobian loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import modelguard_fast as mgf
from modelguard_fast.ops import mad as mad_ops

import _mad_reference as ref


def small_cnn(num_classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(24, 12), nn.Tanh(), nn.Linear(12, num_classes),
    )
    return model.double().eval()


def clean_predictions(num_classes: int, rows: int, seed: int) -> torch.Tensor:
    """Dirichlet rows plus rows with zeros and ties (at the top and below it)."""
    rng = np.random.default_rng(seed)
    y = rng.dirichlet(np.full(num_classes, 0.3), size=rows)
    y[0] = 0.0
    y[0, [1, num_classes - 1]] = 0.5  # tie at the top
    y[1] = 1.0 / num_classes  # all tied
    y[2] = 0.0
    y[2, num_classes - 1] = 1.0  # one-hot on the last class
    y[3, :] = 0.0
    y[3, 0] = 0.6
    y[3, 1:3] = 0.2  # tie below the top, zeros elsewhere
    return torch.as_tensor(y / y.sum(axis=1, keepdims=True))


def queries(rows: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 3, 8, 8, generator=g, dtype=torch.float64)


CASES = [  # (C, oracle, max_evals): exhaustive, greedy running out of classes, greedy on budget, extreme
    (3, "argmax", 1024), (6, "argmax", 1024), (10, "argmax", 1024), (12, "argmax", 1024),
    (30, "argmax", 1024), (60, "argmax", 1024), (25, "argmax", 100), (7, "extreme", 1024), (40, "extreme", 1024),
]


@pytest.mark.parametrize("C,oracle,max_evals", CASES)
def test_matches_literal_jacobian_mad(C, oracle, max_evals):
    model = small_cnn(C, seed=C)
    x, y = queries(7, seed=C), clean_predictions(C, 7, seed=C)
    want_out, want_target, want_val = ref.mad_rows(model, x, y, 0.6, oracle=oracle, max_evals=max_evals)

    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    top = torch.argmax(y, dim=1)
    target, val = mad_ops.mad_targets(p, y, top, oracle, max_evals, 10)
    torch.testing.assert_close(target, want_target, rtol=0, atol=1e-12)
    torch.testing.assert_close(val, want_val, rtol=0, atol=1e-6)

    mad = mgf.MAD(eps=0.6, oracle=oracle, max_evals=max_evals, num_classes=C)
    torch.testing.assert_close(mad(y, p), want_out, rtol=0, atol=1e-12)
    with_model = mgf.MAD(eps=0.6, oracle=oracle, max_evals=max_evals, surrogate=model)
    torch.testing.assert_close(with_model(y, with_model.query_view(x)), want_out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("C", [2, 5, 10, 17])
def test_identity_objective_equals_jacobian_objective(C):
    """2 - 2 cos(p s' - y', p s - y) equals the literal G-based objective, for any target, to 1e-6."""
    model = small_cnn(C, seed=100 + C)
    x, y = queries(5, seed=C), clean_predictions(C, 5, seed=C)
    rng = np.random.default_rng(C)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    for i in range(5):
        G = ref.jacobian(model, x[i:i + 1])
        targets = torch.as_tensor(rng.dirichlet(np.ones(C), size=20))
        targets[0] = 0.0
        targets[0, 0] = 1.0
        targets[1] = targets[1] * 1.3  # not summing to 1: the identity still holds with p * sum(y')
        want = ref.objective(targets.T, y[i], G)
        got = mad_ops.mad_objective(p[i:i + 1], y[i:i + 1], targets[None])[0]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_greedy_budget_counts_scored_candidates():
    """At C = 100 the public search scores 99 + 98 + ... + 89 = 1,034 >= 1,024 candidates: 11 rounds."""
    C = 100
    model = small_cnn(C, seed=5)
    x, y = queries(4, seed=5), clean_predictions(C, 4, seed=5)
    want_out, want_target, _ = ref.mad_rows(model, x, y, 1.0)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    torch.testing.assert_close(mgf.MAD()(y, p), want_out, rtol=0, atol=1e-12)
    assert ((want_target > 0).sum(dim=1) <= 12).all()


def test_float32_inputs_follow_the_float64_computation():
    model = small_cnn(10, seed=3)
    x, y = queries(16, seed=3), clean_predictions(10, 16, seed=3).float()
    p = torch.softmax(model(x), dim=1).detach().float()
    out = mgf.MAD()(y, p)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, mgf.MAD()(y.double(), p.double()).float(), rtol=0, atol=0)


def test_batch_equals_row_by_row():
    C = 14
    model = small_cnn(C, seed=4)
    x, y = queries(33, seed=4), clean_predictions(C, 33, seed=4).numpy()
    p = torch.softmax(model(x), dim=1).detach().numpy()
    for oracle in ("argmax", "extreme"):
        mad = mgf.MAD(eps=0.8, oracle=oracle)
        batch = mad(y, p)
        rows = np.stack([mad(y[i], p[i]) for i in range(len(y))])
        np.testing.assert_allclose(batch, rows, rtol=0, atol=1e-15)


def _simplex_rows(draw, C, rows):
    raw = draw(st.lists(st.lists(st.sampled_from([0.0, 0.0, 0.25, 1.0, 2.0, 3.7]), min_size=C, max_size=C),
                        min_size=rows, max_size=rows))
    y = np.asarray(raw, dtype=np.float64)
    y[np.arange(rows), np.arange(rows) % C] += 1e-3  # no all-zero row, even when rows > C
    return y / y.sum(axis=1, keepdims=True)


@st.composite
def mad_case(draw):
    C = draw(st.integers(2, 24))
    rows = draw(st.integers(1, 6))
    y = _simplex_rows(draw, C, rows)
    logits = np.asarray(draw(st.lists(st.floats(-4, 4), min_size=rows * C, max_size=rows * C))).reshape(rows, C)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    eps = draw(st.sampled_from([0.05, 0.5, 1.0, 2.0]))
    return y, p, eps


@settings(max_examples=60, deadline=None)
@given(mad_case(), st.sampled_from(["argmax", "extreme"]))
def test_answers_are_valid_within_budget(case, oracle):
    y, p, eps = case
    out = mgf.MAD(eps=eps, oracle=oracle)(y, p)
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    assert (np.abs(out - y).sum(axis=1) <= eps + 1e-9).all()
    if oracle == "argmax":
        np.testing.assert_array_equal(out.argmax(axis=1), y.argmax(axis=1))


def test_argmax_oracle_keeps_top1_in_float32():
    rng = np.random.default_rng(0)
    for C in (4, 10, 32):
        y = rng.dirichlet(np.full(C, 0.2), size=500).astype(np.float32)
        y /= y.sum(axis=1, keepdims=True)
        p = rng.dirichlet(np.ones(C), size=500).astype(np.float32)
        for eps in (1e-3, 0.5, 2.0):
            out = mgf.MAD(eps=eps)(y, p)
            np.testing.assert_array_equal(out.argmax(axis=1), y.argmax(axis=1))


def test_undefined_objective_falls_back_to_first_candidate():
    """When the surrogate's softmax equals y every direction is undefined; the answer stays valid."""
    y = np.array([[0.5, 0.3, 0.2]])
    out = mgf.MAD(eps=1.0)(y, y)
    assert np.isfinite(out).all()
    assert out.argmax() == 0
    np.testing.assert_allclose(out.sum(), 1.0)


def test_flags():
    assert mgf.MAD().preserves_top1 and not mgf.MAD(oracle="extreme").preserves_top1
    mad = mgf.MAD()
    assert mad.deterministic and not mad.discrete_outputs and mad.needs_query
    assert "MAD(eps=1.0" in repr(mad)


def test_query_view_needs_a_surrogate():
    with pytest.raises(ValueError, match="has no surrogate model"):
        mgf.MAD().query_view(torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"eps": 2.5}, ValueError, r"eps must be in \[0, 2\] .*got 2.5"),
    ({"eps": "1"}, TypeError, "eps must be a real number"),
    ({"oracle": "random"}, ValueError, "oracle must be one of 'argmax', 'extreme'; got 'random'"),
    ({"max_evals": 0}, ValueError, "max_evals must be a positive integer, got 0"),
    ({"exhaustive_max_classes": 17}, ValueError, "exhaustive_max_classes must be at most 16"),
    ({"surrogate": "model"}, TypeError, "surrogate must be a torch.nn.Module or None, got str"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        mgf.MAD(**kwargs)


def test_bad_surrogate_probs():
    y = np.full((2, 4), 0.25)
    with pytest.raises(ValueError, match=r"surrogate_probs must have the shape of probs \(2, 4\), got shape \(2, 3\)"):
        mgf.MAD()(y, np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"surrogate_probs must have the shape of probs \(2, 4\), got shape \(4,\)"):
        mgf.MAD()(y, np.full(4, 0.25))
    bad = y.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="surrogate_probs must be finite, got nan at row 1, column 2"):
        mgf.MAD()(y, bad)
    with pytest.raises(TypeError, match="surrogate_probs must have dtype float32 or float64, got int64"):
        mgf.MAD()(y, np.ones((2, 4), dtype=np.int64))


class TestRandomSurrogate:
    def test_seeded_and_leaves_global_rng_and_target_alone(self):
        target = small_cnn(10)
        before = {k: v.clone() for k, v in target.state_dict().items()}
        state = torch.random.get_rng_state()
        a, b, c = mgf.random_surrogate(target, 1), mgf.random_surrogate(target, 1), mgf.random_surrogate(target, 2)
        assert torch.equal(torch.random.get_rng_state(), state)
        for k, v in target.state_dict().items():
            assert torch.equal(v, before[k])
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert not torch.equal(sa["0.weight"], sc["0.weight"])
        assert not torch.equal(sa["0.weight"], before["0.weight"])
        assert not a.training and not any(p.requires_grad for p in a.parameters())

    def test_default_init_ranges(self):
        target = small_cnn(10)
        with torch.no_grad():
            target[1].running_mean.fill_(3.0)
            target[1].weight.fill_(2.0)
        s = mgf.random_surrogate(target, 0)
        assert s[0].weight.abs().max() <= 1 / np.sqrt(3 * 9)
        assert s[8].weight.abs().max() <= 1 / np.sqrt(24)
        assert s[8].weight.abs().max() > 0.5 / np.sqrt(24)
        assert torch.equal(s[1].weight, torch.ones(4, dtype=torch.float64))
        assert torch.equal(s[1].running_mean, torch.zeros(4, dtype=torch.float64))
        emb = mgf.random_surrogate(nn.Embedding(5, 3, padding_idx=1), 0)
        assert torch.equal(emb.weight[1], torch.zeros(3))

    def test_refuses_unknown_layers(self):
        with pytest.raises(TypeError, match=r"cannot redraw the weights of layer '0' \(Bilinear\)"):
            mgf.random_surrogate(nn.Sequential(nn.Bilinear(2, 2, 2)), 0)
        with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
            mgf.random_surrogate("net", 0)
        with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
            mgf.random_surrogate(nn.Linear(2, 2), -1)

    def test_from_target_uses_the_surrogate(self):
        target = small_cnn(6)
        mad = mgf.MAD.from_target(target, seed=3, eps=0.5)
        x = queries(4, seed=9)
        want = torch.softmax(mgf.random_surrogate(target, 3)(x), dim=1)
        torch.testing.assert_close(mad.query_view(x), want, rtol=0, atol=0)
        assert mad.query_model is mad.surrogate


@pytest.mark.skipif(not mgf.cuda_available() or not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    C = 20
    y = clean_predictions(C, 64, seed=1)
    p = torch.softmax(torch.randn(64, C, dtype=torch.float64), dim=1)
    for oracle in ("argmax", "extreme"):
        want = mgf.MAD(oracle=oracle)(y, p)
        got = mgf.MAD(oracle=oracle)(y.cuda(), p.cuda())
        assert got.is_cuda
        torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-12)
