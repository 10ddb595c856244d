"""ModelGuard-W's CUDA kernel against the CPU kernel (skipped without a GPU).

Both run the per-row solver of mgw_solver.h with the same arithmetic (no FMA
contraction, the same log), so they must agree bit for bit.
"""

import pytest
import torch

import modelguard_fast as mgf
from mgw_rows import sweep_rows
from modelguard_fast._kernels import C as kernels  # the compiled module in use
from modelguard_fast.ops import solve_mgw

pytestmark = pytest.mark.skipif(not mgf.cuda_available(), reason="needs a CUDA GPU and a CUDA build")

EPS_GRID = [0.0, 1e-3, 0.25, 0.5, 1.0, 1.5, 1.99, 2.0, 3.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("C", [1, 2, 10, 100, 1000])
def test_cuda_matches_cpu_bit_for_bit(dtype, C):
    y = torch.tensor(sweep_rows(C, 300 if C < 1000 else 40, seed=2000 + C), dtype=dtype)
    for margin in (0.0, 1e-4):
        x_gpu, f_gpu = solve_mgw(y.cuda(), eps=EPS_GRID, margin=margin)
        x_cpu, f_cpu = solve_mgw(y, eps=EPS_GRID, margin=margin)
        assert x_gpu.is_cuda and x_gpu.dtype == dtype and f_gpu.is_cuda and f_gpu.dtype == torch.bool
        assert torch.equal(f_gpu.cpu(), f_cpu)
        assert torch.equal(x_gpu.cpu(), x_cpu)


def test_cuda_batch_larger_than_the_thread_count():
    # Rows beyond the kernel's thread count reuse the per-thread workspaces.
    y = torch.tensor(sweep_rows(100, 300, seed=3), dtype=torch.float32).repeat(700, 1)
    threads = kernels._testing.mgw_cuda_threads(y.shape[0], y.shape[1])
    assert y.shape[0] > threads
    x_gpu, f_gpu = solve_mgw(y.cuda(), eps=[0.5, 1.0])
    x_cpu, f_cpu = solve_mgw(y, eps=[0.5, 1.0])
    assert torch.equal(x_gpu.cpu(), x_cpu) and torch.equal(f_gpu.cpu(), f_cpu)


def test_cuda_single_row_and_defense():
    y = torch.tensor(sweep_rows(10, 1, seed=4)[0], dtype=torch.float64)
    x, feasible = solve_mgw(y.cuda(), eps=1.0)
    assert x.shape == (10,) and x.is_cuda and feasible.shape == () and feasible.is_cuda
    assert torch.equal(x.cpu(), solve_mgw(y, eps=1.0)[0])
    defense = mgf.ModelGuardW(eps=0.0)
    rows = torch.tensor([[0.5, 0.5, 0.0], [0.7, 0.2, 0.1]])
    out = defense(rows.cuda())
    assert out.is_cuda and torch.equal(out.cpu(), mgf.ModelGuardW(eps=0.0)(rows))
    assert torch.equal(out[0].cpu(), rows[0])  # infeasible: unchanged
    assert defense.num_queries == 2 and defense.num_infeasible == 1


def test_cuda_bad_rows_raise():
    y = torch.tensor([[0.7, 0.2, 0.1], [0.7, -0.2, 0.5]], device="cuda")
    with pytest.raises(ValueError, match=r"probs must be non-negative probabilities, got -0.2\d* at row 1, column 1"):
        solve_mgw(y)
    defense = mgf.ModelGuardW()
    with pytest.raises(ValueError, match="rows must sum to 1"):
        defense(torch.tensor([[0.5, 0.2, 0.1]], device="cuda"))
    assert defense.num_queries == 0
