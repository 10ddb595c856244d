"""ModelGuard-S on CUDA against the CPU kernels, bit for bit (skipped without a GPU)."""

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
from reference_mgs import ReferenceModelGuardS
from streams import classifier_like, dirichlet

pytestmark = pytest.mark.skipif(not mgf.cuda_available(), reason="needs a CUDA GPU and a CUDA build")


def served(guard, stream, batch):
    return torch.cat([guard(stream[i : i + batch]) for i in range(0, len(stream), batch)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["first", "nearest"])
@pytest.mark.parametrize("C", [10, 100, 256])
def test_cuda_batches_equal_cpu_bit_for_bit(C, order, dtype):
    stream = classifier_like(12_000, C, seed=C, dtype=dtype)
    expected = mgf.ModelGuardS(C, eps=1.0, order=order, dtype=dtype)(stream)
    for batch, rows in ((7, 1500), (256, 12_000), (4096, 12_000)):
        guard = mgf.ModelGuardS(C, eps=1.0, order=order, dtype=dtype)
        got = served(guard, torch.from_numpy(stream[:rows]).cuda(), batch)
        assert got.is_cuda and got.dtype == torch.from_numpy(stream).dtype
        np.testing.assert_array_equal(got.cpu().numpy(), expected[:rows], err_msg=f"batch {batch}")


def test_cuda_matches_reference_on_small_batches():
    stream = classifier_like(600, 10, seed=1)
    expected = ReferenceModelGuardS(10, 0.5)(stream)
    got = served(mgf.ModelGuardS(10, eps=0.5), torch.from_numpy(stream).cuda(), 1)
    np.testing.assert_array_equal(got.cpu().numpy(), expected)


def test_cpu_and_cuda_calls_share_one_guard():
    stream = classifier_like(4000, 10, seed=2)
    mixed = mgf.ModelGuardS(10, eps=0.7)
    parts = [mixed(torch.from_numpy(stream[i : i + 500]).cuda()).cpu() if (i // 500) % 2 else
             mixed(torch.from_numpy(stream[i : i + 500])) for i in range(0, 4000, 500)]
    np.testing.assert_array_equal(torch.cat(parts).numpy(), mgf.ModelGuardS(10, eps=0.7)(stream))


@pytest.mark.parametrize("mode", ["first", "nearest", "offline"])
def test_cuda_search_equals_cpu(mode):
    guard = mgf.ModelGuardS(100, eps=0.8)
    guard(classifier_like(5000, 100, seed=3))
    state = guard.state_dict()
    offsets = np.concatenate([[0], np.cumsum(state["counts"])]).astype(np.int64)
    probe = dirichlet(3000, 100, seed=4, alpha=0.05)
    cpu = mgf.ops.mgs_search(probe, state["centroids"], offsets, eps=0.8, mode=mode)
    gpu = mgf.ops.mgs_search(torch.from_numpy(probe).cuda(), state["centroids"], offsets, eps=0.8, mode=mode)
    for a, b in zip(cpu, gpu):
        np.testing.assert_array_equal(a, b.cpu().numpy())


def test_cuda_frozen_view_equals_cpu():
    guard = mgf.ModelGuardS(10, eps=0.6)
    guard(classifier_like(3000, 10, seed=5))
    frozen = guard.frozen()
    probe = dirichlet(2000, 10, seed=6)
    np.testing.assert_array_equal(frozen(torch.from_numpy(probe).cuda()).cpu().numpy(), frozen(probe))


def test_cuda_bad_input_raises_and_changes_nothing():
    guard = mgf.ModelGuardS(10, eps=0.5)
    guard(classifier_like(500, 10, seed=7))
    before = guard.state_dict()["centroids"]
    bad = torch.from_numpy(classifier_like(300, 10, seed=8)).cuda()
    bad[123, 4] = float("nan")
    with pytest.raises(ValueError, match="probs must be finite, got nan at row 123, column 4"):
        guard(bad)
    bad[123, 4] = 0.5
    with pytest.raises(ValueError, match="row 123 sums to"):
        guard(bad)
    np.testing.assert_array_equal(guard.state_dict()["centroids"], before)
    assert guard.num_queries == 500


def test_cuda_renormalize_and_single_rows():
    rows = torch.from_numpy(classifier_like(100, 10, seed=9, dtype=np.float64)).cuda() * 2
    got = mgf.ModelGuardS(10, eps=0.5, renormalize=True)(rows)
    expected = mgf.ModelGuardS(10, eps=0.5, renormalize=True)(rows.cpu())
    np.testing.assert_array_equal(got.cpu().numpy(), expected.numpy())
    assert mgf.ModelGuardS(10, eps=0.5)(rows[0] / 2).shape == (10,)


def test_cupy_in_cupy_out():
    cupy = pytest.importorskip("cupy")
    stream = classifier_like(1000, 10, seed=10)
    got = mgf.ModelGuardS(10, eps=0.5)(cupy.asarray(stream))
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(got), mgf.ModelGuardS(10, eps=0.5)(stream))
