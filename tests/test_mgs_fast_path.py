"""The in-place path of ModelGuardS.__call__ (plain numpy arrays and CPU tensors of the guard's
dtype) answers, refuses and counts exactly as the general conversion path does."""

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
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
