"""The in-place path of ModelGuardS.__call__ (plain numpy arrays and CPU tensors of the guard's
dtype) answers, refuses and counts exactly as the general conversion path does."""

import pickle

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
from modelguard_fast._kernels import C as _C
from streams import classifier_like

C = 10


def twin_guards():
    data = classifier_like(3000, C, seed=4)
    fast, general = mgf.ModelGuardS(C, eps=0.5), mgf.ModelGuardS(C, eps=0.5)
    fast(data)
    general(np.asfortranarray(data))  # not C-contiguous: the general path
    return fast, general


def test_in_place_inputs_give_the_general_paths_answers_types_and_counts():
    fast, general = twin_guards()
    rows = classifier_like(300, C, seed=5)
    for make in (lambda a: a, lambda a: torch.from_numpy(a)):
        for x in (rows, rows[7]):
            got = fast(make(x.copy()))
            expected = general(make(np.asfortranarray(x) if x.ndim == 2 else x.astype(np.float64)))
            assert type(got) is type(make(x)) and tuple(got.shape) == x.shape
            np.testing.assert_array_equal(np.asarray(got), np.asarray(expected, dtype=np.float32))
    assert fast.num_queries == general.num_queries
    assert fast.mean_distortion == pytest.approx(general.mean_distortion)
    np.testing.assert_array_equal(fast.centroid_counts, general.centroid_counts)


def test_in_place_inputs_are_refused_with_the_general_paths_messages_and_change_nothing():
    fast, general = twin_guards()
    bad = classifier_like(20, C, seed=6)
    bad[13, 4] = -0.25
    with pytest.raises(ValueError, match=r"non-negative probabilities, got -0.25 at row 13, column 4") as a:
        fast(bad)
    with pytest.raises(ValueError) as b:
        general(np.asfortranarray(bad))
    assert str(a.value) == str(b.value)
    with pytest.raises(ValueError, match="rows must sum to 1"):
        fast(torch.full((C,), 0.2))
    before = fast.centroid_counts.copy(), fast.num_queries
    np.testing.assert_array_equal(fast.centroid_counts, before[0])
    assert fast.num_queries == before[1]


def test_tensors_the_kernel_cannot_read_in_place_take_the_general_path():
    fast, _ = twin_guards()
    y = torch.from_numpy(classifier_like(5, C, seed=7))
    for x in (y.clone().requires_grad_(True), y.double(), y.t().contiguous().t(), torch.nn.Parameter(y.clone())):
        out = fast(x)
        assert isinstance(out, torch.Tensor) and out.dtype == x.dtype and out.shape == x.shape
        np.testing.assert_array_equal(out.detach().float().numpy(), fast(y.clone()).numpy())


def test_tensor_views_the_kernel_reads_in_place_get_the_answers_of_their_values():
    # Read through DLPack: views with a storage offset, single rows of a batch (any row stride),
    # tensors in inference mode or requiring grad. Each must be answered as its values are.
    fast, general = twin_guards()
    big = torch.from_numpy(classifier_like(40, C, seed=8))
    wide = torch.zeros(40, C + 3)
    wide[:, :C] = big
    with torch.inference_mode():
        frozen = big.clone()
    for x in (big[5:17], big[9], big[9:10], big.t().t(), big[::3][2], wide[:, :C], wide[4, :C], frozen,
              big.clone().requires_grad_(True)):
        values = np.ascontiguousarray(x.detach().numpy())
        out = fast(x)
        assert type(out) is torch.Tensor and out.dtype == x.dtype and out.shape == x.shape and not out.requires_grad
        np.testing.assert_array_equal(out.numpy(), general(np.asfortranarray(values) if values.ndim == 2 else values))


def test_a_tensor_with_the_negative_bit_is_answered_by_its_values():
    # DLPack exports a tensor's memory without its negative bit: such a tensor must not be read in place.
    fast, general = twin_guards()
    p = torch.from_numpy(classifier_like(6, C, seed=9))
    expected = general(np.asfortranarray(p.numpy()))
    for x in (torch._neg_view(-p), torch.complex(torch.zeros_like(p), -p).conj().imag):  # the values of p, stored negated
        assert x.is_neg() and torch.equal(x, p)
        np.testing.assert_array_equal(fast(x).numpy(), expected)
        np.testing.assert_array_equal(fast(x[2]).numpy(), expected[2])
    counts = fast.centroid_counts.copy(), fast.num_queries
    with pytest.raises(ValueError, match="non-negative probabilities"):
        fast(torch._neg_view(p))  # stored as p, its values are -p: refused
    np.testing.assert_array_equal(fast.centroid_counts, counts[0])
    assert fast.num_queries == counts[1]


def test_a_float32_array_with_an_equal_but_not_canonical_dtype_is_answered_in_place():
    fast, general = twin_guards()
    rows = classifier_like(30, C, seed=10)
    thawed = pickle.loads(pickle.dumps(rows))
    assert thawed.dtype == np.float32 and thawed.dtype is not np.dtype(np.float32)
    kernel = _C.Codebooks32(C)  # a bare kernel store: the guards' own stay untouched
    assert kernel.quantize_array(thawed, 0.5, 0, 1e-3) is not None  # read as it is
    np.testing.assert_array_equal(fast(thawed), general(np.asfortranarray(rows)))
    swapped = rows.astype(rows.dtype.newbyteorder(">"))  # equal values, other byte order: not in place
    assert kernel.quantize_array(swapped, 0.5, 0, 1e-3) is None
    np.testing.assert_array_equal(fast(swapped), general(np.asfortranarray(rows)))
