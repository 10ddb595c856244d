"""Bad input to ModelGuard-S: a clear error, and the guard exactly as before the call."""

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
from streams import classifier_like


def snapshot(guard):
    state = guard.state_dict()
    return state, guard.num_queries, guard.mean_distortion, guard.max_distortion


def assert_unchanged(guard, before):
    state, queries, mean, mx = snapshot(guard)
    np.testing.assert_array_equal(state["centroids"], before[0]["centroids"])
    np.testing.assert_array_equal(state["counts"], before[0]["counts"])
    assert (queries, mean, mx) == before[1:]


@pytest.fixture
def guard():
    g = mgf.ModelGuardS(4, eps=0.5)
    g(classifier_like(300, 4, seed=0))
    return g


def good_rows(n=8):
    return classifier_like(n, 4, seed=1)


def with_value(value, row=5, col=2):
    x = good_rows()
    x[row, col] = value
    return x


BAD_VALUES = [
    (with_value(np.nan), ValueError, r"probs must be finite, got nan at row 5, column 2"),
    (with_value(np.inf), ValueError, r"probs must be finite, got inf at row 5, column 2"),
    (with_value(-0.25), ValueError, r"non-negative probabilities, got -0.25 at row 5, column 2"),
    (with_value(3.0), ValueError, r"rows must sum to 1 \(within sum_tol=0.001\), row 5 sums to"),
    (good_rows()[:, :3], ValueError, r"probs must have 4 columns \(num_classes\), got shape \(8, 3\)"),
    (good_rows().reshape(2, 4, 4), ValueError, r"1-D \(C,\) or 2-D \(B, C\), got shape \(2, 4, 4\)"),
    (np.empty((0, 4), dtype=np.float32), ValueError, r"at least one prediction, got an empty batch"),
    (good_rows().astype(np.int64), TypeError, r"probs must have dtype float32 or float64, got int64"),
    (good_rows().astype(np.complex128), TypeError, r"float32 or float64, got complex128"),
    (torch.ones(3, 4, dtype=torch.int64), TypeError, r"float32 or float64, got torch.int64"),
    (good_rows().tolist(), TypeError, r"probs: expected a numpy array, torch tensor or cupy array, got list"),
]


@pytest.mark.parametrize("bad,error,message", BAD_VALUES)
def test_bad_input_raises_and_changes_nothing(guard, bad, error, message):
    before = snapshot(guard)
    with pytest.raises(error, match=message):
        guard(bad)
    assert_unchanged(guard, before)


def test_bad_row_after_new_centroids_rolls_nothing_in(guard):
    before = snapshot(guard)
    x = np.concatenate([classifier_like(50, 4, seed=99), with_value(np.nan)])
    with pytest.raises(ValueError, match="row 55"):
        guard(x)
    assert_unchanged(guard, before)


@pytest.mark.parametrize("eps,error,message", [
    (2.5, ValueError, r"eps must be in \[0, 2\] .*got 2.5"),
    (-1, ValueError, r"eps must be in \[0, 2\] .*got -1.0"),
    (float("nan"), ValueError, r"eps must be finite, got nan"),
    ("1.0", TypeError, r"eps must be a real number, got '1.0' of type str"),
    (True, TypeError, r"eps must be a real number, got True"),
    (None, TypeError, r"eps must be a real number, got None"),
])
def test_bad_eps(eps, error, message):
    with pytest.raises(error, match=message):
        mgf.ModelGuardS(4, eps=eps)


@pytest.mark.parametrize("kwargs,message", [
    ({"num_classes": 0}, r"num_classes must be a positive integer, got 0"),
    ({"num_classes": 2.5}, r"num_classes must be a positive integer, got 2.5"),
    ({"order": "closest"}, r"order must be one of 'first', 'nearest'; got 'closest'"),
    ({"dtype": "float16"}, r"dtype must be float32 or float64, got 'float16'"),
    ({"sum_tol": -1.0}, r"sum_tol must be in \[0, 1\) .*got -1.0"),
])
def test_bad_settings(kwargs, message):
    args = {"num_classes": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        mgf.ModelGuardS(**args)


def test_numpy_scalar_eps_and_class_counts_accepted():
    guard = mgf.ModelGuardS(np.int64(3), eps=np.float32(0.5))
    assert guard.eps == 0.5 and guard.num_classes == 3


def test_cuda_input_without_cuda_gives_a_clear_error():
    if mgf.cuda_available():
        pytest.skip("a GPU is present")
    from modelguard_fast._backend import require_cuda

    with pytest.raises(RuntimeError, match="probs is a CUDA array, but"):
        require_cuda("probs")


def test_device_row_errors_name_the_original_row():
    from modelguard_fast._arrays import raise_for_device_row

    x = torch.from_numpy(good_rows())
    x[5, 2] = float("nan")
    with pytest.raises(ValueError, match=r"got nan at row 5, column 2"):
        raise_for_device_row(x, 5, "probs", 1e-3)
