"""Baselines against plain row-by-row references written from their formulas, and the shared interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import modelguard_fast as mgf

# ----------------------------------------------------------------- references
# Each takes one row (numpy, the input's dtype) and follows the formula literally.


def ref_top1(y):
    out = np.zeros_like(y)
    out[np.argmax(y)] = 1
    return out


def ref_rounding(y, decimals, renormalize):
    out = np.round(y, decimals)
    if renormalize:
        if out.sum() > 0:
            out = (out.astype(np.float64) / out.sum(dtype=np.float64)).astype(y.dtype)
        else:
            out = ref_top1(y)
    return out


def ref_reverse_sigmoid(y, beta, gamma, variant):
    with np.errstate(divide="ignore", over="ignore"):
        if variant == "public":
            y = y.astype(np.float64)
            logit = np.log(y / (1 - y))
            r = beta * (1 / (1 + np.exp(-gamma * logit)) - 0.5)
            out = y - r
        else:  # ART's ReverseSigmoid.__call__, in the input's dtype as ART computes it
            clipped = np.clip(y, 1e-9, 1 - 1e-9)
            r = beta * (1 / (1 + np.exp(gamma * np.log((1 - clipped) / clipped))) - 0.5)
            out = np.clip(y - r, 0, 1)
    return out / out.sum()


def ref_am(y, y_mis, tau, nu):
    y, y_mis = y.astype(np.float64), y_mis.astype(np.float64)
    with np.errstate(over="ignore"):
        a = 1 / (1 + np.exp(nu * (y.max() - tau)))
    return (1 - a) * y + a * y_mis


def batch_with_zeros_and_ties(C=5, rows=40, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    y = rng.dirichlet(np.full(C, 0.4), size=rows)
    special = [
        np.eye(C)[0], np.eye(C)[C - 1],  # one-hot, first and last class
        np.full(C, 1 / C),  # all tied
        np.r_[0.5, 0.5, np.zeros(C - 2)],  # tie at the top, zeros
        np.r_[0.0, 0.4, 0.4, 0.2, np.zeros(C - 4)],  # tie at the top after a zero
        np.r_[0.12, 0.31, 0.26, 0.31, np.zeros(C - 4)],  # the paper's Rounding example
        np.r_[0.05, 0.15, 0.25, 0.35, 0.2],  # halfway cases for one decimal
    ]
    y[: min(rows, len(special))] = special[:rows]
    return (y / y.sum(axis=1, keepdims=True)).astype(dtype)


def rowwise(fn, *arrays):
    return np.stack([fn(*(a[i] for a in arrays)) for i in range(len(arrays[0]))])


# ------------------------------------------------------------- the formulas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_none_returns_a_copy(dtype):
    y = batch_with_zeros_and_ties(dtype=dtype)
    out = mgf.NoDefense()(y)
    assert out.dtype == dtype and out is not y and not np.shares_memory(out, y)
    np.testing.assert_array_equal(out, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top1(dtype):
    y = batch_with_zeros_and_ties(dtype=dtype)
    np.testing.assert_array_equal(mgf.Top1()(y), rowwise(ref_top1, y))
    # ties go to the first index, for every row of the batch (ART's ClassLabels once mixed rows up)
    assert mgf.Top1()(y)[3].tolist() == [1, 0, 0, 0, 0]
    assert mgf.Top1()(y)[4].tolist() == [0, 1, 0, 0, 0]


def test_top1_accepts_logits():
    logits = np.array([[3.0, -1.0, 7.5], [-2.0, -2.0, -5.0], [100.0, 0.0, 400.0]])
    np.testing.assert_array_equal(mgf.Top1(logits=True)(logits), [[0, 0, 1], [1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="logits must be finite, got inf at row 1, column 0"):
        mgf.Top1(logits=True)(np.array([[0.0, 1.0], [np.inf, 0.0]]))
    with pytest.raises(ValueError, match="probs must be non-negative"):
        mgf.Top1()(logits)


@pytest.mark.parametrize("decimals", [0, 1, 2])
@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rounding(decimals, renormalize, dtype):
    y = batch_with_zeros_and_ties(dtype=dtype)
    out = mgf.Rounding(decimals, renormalize=renormalize)(y)
    assert out.dtype == dtype
    want = rowwise(lambda r: ref_rounding(r, decimals, renormalize), y)
    if renormalize:  # sums may be added up in another order
        np.testing.assert_allclose(out, want, rtol=2 * np.finfo(dtype).eps, atol=0)
    else:
        np.testing.assert_array_equal(out, want)


def test_rounding_is_faithful_by_default():
    y = np.array([[0.12, 0.31, 0.26, 0.31], [0.44, 0.44, 0.12, 0.0]])
    np.testing.assert_allclose(mgf.Rounding()(y), [[0.1, 0.3, 0.3, 0.3], [0.4, 0.4, 0.1, 0.0]])
    np.testing.assert_allclose(mgf.Rounding(renormalize=True)(y), [[0.1, 0.3, 0.3, 0.3], [4 / 9, 4 / 9, 1 / 9, 0]])
    # every entry rounds to 0: renormalising falls back to the top-1 one-hot
    flat = np.full((1, 40), 1 / 40)
    flat[0, 7] += 0.01
    flat /= flat.sum()
    np.testing.assert_array_equal(mgf.Rounding(renormalize=True)(flat), np.eye(40)[[7]])


@pytest.mark.parametrize("variant", ["public", "art"])
@pytest.mark.parametrize("beta,gamma", [(0.21, 0.2), (0.02, 0.2), (0.8, 1.0), (1.5, 3.0), (0.0, 0.2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reverse_sigmoid(variant, beta, gamma, dtype):
    y = batch_with_zeros_and_ties(dtype=dtype)
    out = mgf.ReverseSigmoid(beta, gamma, variant=variant)(y)
    assert out.dtype == dtype
    want = rowwise(lambda r: ref_reverse_sigmoid(r, beta, gamma, variant), y).astype(dtype)
    np.testing.assert_allclose(out, want, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=1e-15)


def test_reverse_sigmoid_variants_differ_where_the_public_formula_goes_negative():
    y = np.array([[0.7, 0.3, 0.0]])
    public = mgf.ReverseSigmoid(1.5, 10.0)(y)
    art = mgf.ReverseSigmoid(1.5, 10.0, variant="art")(y)
    assert public.min() < 0 and art.min() >= 0
    np.testing.assert_allclose(public.sum(), 1.0)
    np.testing.assert_allclose(art.sum(), 1.0)


def test_reverse_sigmoid_refuses_rows_it_cannot_renormalise():
    # With C >= 2 the normaliser stays positive; a single class with beta >= 2 leaves nothing.
    for variant in ("public", "art"):
        with pytest.raises(ValueError, match=r"beta=4.0 is too large for probs row 0: y - r sums to"):
            mgf.ReverseSigmoid(4.0, variant=variant)(np.array([[1.0], [1.0]]))


@pytest.mark.parametrize("tau,nu", [(0.7, 1000.0), (0.4, 1000.0), (0.25, 10_000.0), (0.5, 3.0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_misinformation(tau, nu, dtype):
    y = batch_with_zeros_and_ties(dtype=dtype)
    y_mis = batch_with_zeros_and_ties(seed=1, dtype=dtype)[::-1].copy()
    y[10] = np.r_[tau, 1 - tau, 0, 0, 0]  # exactly at the threshold: a = 1/2
    out = mgf.AdaptiveMisinformation(tau, nu)(y, y_mis)
    assert out.dtype == dtype
    want = rowwise(lambda a, b: ref_am(a, b, tau, nu), y, y_mis).astype(dtype)
    np.testing.assert_allclose(out, want, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=1e-15)


def test_adaptive_misinformation_switches_on_low_confidence():
    y = np.array([[0.9, 0.05, 0.05], [0.35, 0.33, 0.32]])
    y_mis = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = mgf.AdaptiveMisinformation(0.7)(y, y_mis)
    np.testing.assert_allclose(out[0], y[0], atol=1e-80)
    np.testing.assert_allclose(out[1], y_mis[1], atol=1e-80)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"tau": 1.5}, ValueError, r"tau must be in \[0, 1\], got 1.5"),
    ({"tau": 0.5, "nu": 0}, ValueError, "nu must be > 0, got 0.0"),
    ({"tau": None}, TypeError, "tau must be a real number, got None"),
    ({"tau": 0.5, "misinformation_model": "m"}, TypeError, "misinformation_model must be a torch.nn.Module"),
])
def test_adaptive_misinformation_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        mgf.AdaptiveMisinformation(**kwargs)


def test_adaptive_misinformation_query_view():
    model = torch.nn.Linear(4, 3).double()
    am = mgf.AdaptiveMisinformation(0.5, misinformation_model=model)
    x = torch.randn(6, 4, dtype=torch.float64)
    torch.testing.assert_close(am.query_view(x), torch.softmax(model(x), dim=1), rtol=0, atol=0)
    assert am.query_model is model
    with pytest.raises(ValueError, match="has no misinformation_model"):
        mgf.AdaptiveMisinformation(0.5).query_view(x)
    with pytest.raises(ValueError, match=r"misinformation_probs must have the shape of probs \(2, 3\)"):
        am(np.full((2, 3), 1 / 3), np.full((3, 3), 1 / 3))


@pytest.mark.parametrize("kwargs,cls,error,match", [
    ({"decimals": -1}, mgf.Rounding, ValueError, r"decimals must be an integer in \[0, 15\], got -1"),
    ({"decimals": 1.0}, mgf.Rounding, ValueError, r"decimals must be an integer in \[0, 15\], got 1.0"),
    ({"renormalize": 1}, mgf.Rounding, TypeError, "renormalize must be a bool, got 1"),
    ({"beta": -0.1}, mgf.ReverseSigmoid, ValueError, "beta must be >= 0, got -0.1"),
    ({"beta": 0.1, "gamma": 0}, mgf.ReverseSigmoid, ValueError, "gamma must be > 0, got 0.0"),
    ({"beta": 0.1, "variant": "clip"}, mgf.ReverseSigmoid, ValueError, "variant must be one of 'public', 'art'"),
    ({"logits": "yes"}, mgf.Top1, TypeError, "logits must be a bool, got 'yes'"),
    ({"num_classes": 0}, mgf.Top1, ValueError, "num_classes must be a positive integer or None, got 0"),
    ({"sum_tol": -1}, mgf.NoDefense, ValueError, r"sum_tol must be in \[0, 1\) .*got -1.0"),
])
def test_bad_arguments(kwargs, cls, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


# ------------------------------------------------------- the shared interface
def _surrogate(y):
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(y.shape[-1]), size=y.shape[:-1] or None)
    return p.astype(y.dtype)


DEFENSES = {  # key: (class, arguments); MAD and AM also get a second, surrogate-like input
    "none": (mgf.NoDefense, {}),
    "top1": (mgf.Top1, {}),
    "rounding": (mgf.Rounding, {}),
    "rounding-renorm": (mgf.Rounding, {"renormalize": True}),
    "revsig": (mgf.ReverseSigmoid, {"beta": 0.21}),
    "revsig-art": (mgf.ReverseSigmoid, {"beta": 0.21, "variant": "art"}),
    "mad": (mgf.MAD, {}),
    "mad-extreme": (mgf.MAD, {"oracle": "extreme", "eps": 0.5}),
    "am": (mgf.AdaptiveMisinformation, {"tau": 0.4}),
}


def call(key, y, side, **kwargs):
    cls, args = DEFENSES[key]
    defense = cls(**args, **kwargs)
    return defense(y, side) if defense.needs_query else defense(y)


@pytest.fixture(params=sorted(DEFENSES))
def key(request):
    return request.param


def test_batch_equals_row_by_row(key):
    y = batch_with_zeros_and_ties()
    side = _surrogate(y)
    batch = call(key, y, side)
    rows = np.stack([call(key, y[i], side[i]) for i in range(len(y))])
    if key.startswith("revsig"):  # torch's vectorised log/sigmoid and its scalar tail may differ by an ulp
        np.testing.assert_allclose(batch, rows, rtol=4 * np.finfo(np.float64).eps, atol=0)
    else:
        np.testing.assert_array_equal(batch, rows)


def test_types_dtypes_and_shapes(key):
    y64 = batch_with_zeros_and_ties(rows=9)
    want = call(key, y64, _surrogate(y64))
    for dtype, tdtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
        y = y64.astype(dtype)
        side = _surrogate(y64).astype(dtype)
        out = call(key, y, side)
        assert type(out) is np.ndarray and out.dtype == dtype and out.shape == y.shape
        t = call(key, torch.from_numpy(y), torch.from_numpy(side))
        assert isinstance(t, torch.Tensor) and t.dtype == tdtype and t.shape == y.shape and t.device.type == "cpu"
        np.testing.assert_array_equal(t.numpy(), out)
        one = call(key, y[2], side[2])
        assert one.shape == (y.shape[1],)
        np.testing.assert_array_equal(one, out[2])
    np.testing.assert_array_equal(out, want)


def test_input_is_never_modified_and_strided_read_only_input_works(key):
    wide = np.repeat(batch_with_zeros_and_ties(rows=12), 2, axis=1)[:, ::2]  # strided view, same values
    wide.setflags(write=False)
    before = wide.copy()
    side = _surrogate(before)
    out = call(key, wide, side)
    np.testing.assert_array_equal(wide, before)
    np.testing.assert_array_equal(out, call(key, before, side))
    t = torch.from_numpy(before.copy())
    t_before = t.clone()
    call(key, t, torch.from_numpy(side))
    assert torch.equal(t, t_before)


def test_gradients_are_not_tracked(key):
    y = torch.from_numpy(batch_with_zeros_and_ties(rows=4)).requires_grad_(True)
    out = call(key, y, torch.from_numpy(_surrogate(y.detach().numpy())))
    assert not out.requires_grad


BAD_INPUTS = [  # (make, error, match)
    (lambda y: np.where(np.arange(y.size).reshape(y.shape) == 7, np.nan, y), ValueError,
     r"probs must be finite, got nan at row 1, column 2"),
    (lambda y: np.where(np.arange(y.size).reshape(y.shape) == 11, np.inf, y), ValueError,
     r"probs must be finite, got inf at row 2, column 1"),
    (lambda y: np.where(np.arange(y.size).reshape(y.shape) == 5, -0.25, y), ValueError,
     r"probs must be non-negative probabilities, got -0.25 at row 1, column 0"),
    (lambda y: y * np.r_[1, 1, 1.01, 1, 1][:, None], ValueError,
     r"probs rows must sum to 1 \(within sum_tol=0.001\), row 2 sums to 1\.0"),
    (lambda y: y[None], ValueError, r"probs must be 1-D \(C,\) or 2-D \(B, C\), got shape \(1, 5, 5\)"),
    (lambda y: y[:0], ValueError, r"probs must hold at least one prediction, got an empty batch of shape \(0, 5\)"),
    (lambda y: y.astype(np.int64), TypeError, "probs must have dtype float32 or float64, got int64"),
    (lambda y: y.astype(np.complex64), TypeError, "probs must have dtype float32 or float64, got complex64"),
    (lambda y: torch.from_numpy(y).to(torch.int32), TypeError, "probs must have dtype float32 or float64, got torch.int32"),
    (lambda y: y.tolist(), TypeError, "probs: expected a numpy array, torch tensor or cupy array, got list"),
]


@pytest.mark.parametrize("make,error,match", BAD_INPUTS)
def test_bad_input(key, make, error, match):
    y = batch_with_zeros_and_ties(rows=5)
    bad = make(y)
    side = _surrogate(y)
    with pytest.raises(error, match=match):
        call(key, bad, side)


def test_wrong_number_of_columns(key):
    y = batch_with_zeros_and_ties(rows=3)
    with pytest.raises(ValueError, match=r"probs must have 6 columns \(num_classes\), got shape \(3, 5\)"):
        call(key, y, _surrogate(y), num_classes=6)


def test_sum_tol_is_honoured():
    y = np.array([[0.6, 0.4005]])
    with pytest.raises(ValueError, match="sums to 1.0005"):
        mgf.Top1(sum_tol=1e-4)(y)
    np.testing.assert_array_equal(mgf.Top1(sum_tol=1e-3)(y), [[1.0, 0.0]])


def test_flags_and_names():
    flags = {d.name: (d.preserves_top1, d.deterministic, d.discrete_outputs, d.needs_query) for d in [
        mgf.NoDefense(), mgf.Top1(), mgf.Rounding(), mgf.ReverseSigmoid(0.1), mgf.MAD(),
        mgf.AdaptiveMisinformation(0.5)]}
    assert flags == {
        "None": (True, True, False, False), "Top-1": (True, True, True, False),
        "Rounding": (False, True, True, False), "RevSig": (False, True, False, False),
        "MAD": (True, True, False, True), "AM": (False, True, False, True),
    }
    with pytest.raises(TypeError, match="Top1 does not look at the query"):
        mgf.Top1().query_view(torch.zeros(1, 2))
    for d in (mgf.NoDefense(), mgf.Top1(), mgf.Rounding(), mgf.ReverseSigmoid(0.1), mgf.AdaptiveMisinformation(0.5)):
        assert repr(d).startswith(type(d).__name__ + "(")


@st.composite
def prob_rows(draw):
    C = draw(st.integers(1, 12))
    rows = draw(st.integers(1, 8))
    raw = np.asarray(draw(st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0, 2.0, 3.3]),
                                   min_size=rows * C, max_size=rows * C)), dtype=np.float64).reshape(rows, C)
    raw[:, 0] += 1e-3
    return raw / raw.sum(axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(prob_rows())
def test_invariants(y):
    np.testing.assert_array_equal(mgf.Top1()(y).argmax(axis=1), y.argmax(axis=1))
    rounded = mgf.Rounding()(y)
    assert (np.abs(rounded - y) <= 0.05 + 1e-12).all()
    renorm = mgf.Rounding(renormalize=True)(y)
    np.testing.assert_allclose(renorm.sum(axis=1), 1.0)
    for variant in ("public", "art"):
        revsig = mgf.ReverseSigmoid(0.5, 0.2, variant=variant)(y)
        np.testing.assert_allclose(revsig.sum(axis=1), 1.0)
        assert (revsig >= 0).all()
    y_mis = y[:, ::-1].copy()
    am = mgf.AdaptiveMisinformation(0.5)(y, y_mis)
    lo, hi = np.minimum(y, y_mis), np.maximum(y, y_mis)
    assert ((am >= lo - 1e-12) & (am <= hi + 1e-12)).all()


@pytest.mark.skipif(not mgf.cuda_available() or not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(key):
    y = batch_with_zeros_and_ties()
    side = _surrogate(y)
    want = call(key, y, side)
    got = call(key, torch.from_numpy(y).cuda(), torch.from_numpy(side).cuda())
    assert got.is_cuda and got.dtype == torch.float64
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-12, atol=1e-15)
