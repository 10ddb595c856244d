"""ModelGuard-S throughput and latency against the public code's approach, in the same run.

Stream: 50,000 classifier-like predictions (a random class boosted over
Gaussian logits), eps = 1.0. Reference (a): the paper's public code's way, a
Python loop over rows with torch ops per row and codebooks grown with
torch.cat. (b): the undefended pass-through (the batch copied out as is).
Each round serves the whole stream from empty codebooks, so codebook growth
is included, as in a real deployment.
"""

import itertools
import os

import numpy as np
import pytest
import torch

import modelguard_fast as mgf
from conftest import median_seconds, timed
from streams import classifier_like

STREAM = int(os.environ.get("MGF_BENCH_STREAM", 50_000))
EPS = 1.0


class TorchLoopReference:
    """Algorithm 1 as the public code runs it: one row at a time, torch ops, torch.cat growth."""

    def __init__(self, num_classes, eps):
        self.eps = eps
        self.books = [torch.empty(0, num_classes) for _ in range(num_classes)]

    def __call__(self, batch):
        out = torch.empty_like(batch)
        for i, y in enumerate(batch):
            t = int(torch.argmax(y))
            book = self.books[t]
            if len(book):
                hits = torch.nonzero((book - y).abs().sum(dim=1) <= self.eps)
                if len(hits):
                    out[i] = book[hits[0, 0]]
                    continue
            self.books[t] = torch.cat([book, y[None]])
            out[i] = y
        return out


def serve(defense, stream, batch):
    for start in range(0, len(stream), batch):
        defense(stream[start : start + batch])


@pytest.fixture(scope="module", params=[10, 100, 256])
def stream(request):
    C = request.param
    return C, torch.from_numpy(classifier_like(STREAM, C, seed=C))


@pytest.mark.parametrize("batch", [1, 32, 256, 4096])
def test_mgs_stream_throughput(benchmark, ratios, stream, batch):
    C, data = stream
    head = data[:2000]
    np.testing.assert_array_equal(mgf.ModelGuardS(C, eps=EPS)(head).numpy(),
                                  TorchLoopReference(C, EPS)(head).numpy())  # correct before timing

    benchmark.group = f"mgs stream C={C} batch={batch}"
    benchmark.pedantic(lambda: serve(mgf.ModelGuardS(C, eps=EPS), data, batch), rounds=3, iterations=1)
    ratios.add(benchmark.group, "modelguard_fast (cpu)", median_seconds(benchmark) / STREAM)
    ratios.add(benchmark.group, "reference: torch loop (a)",
               timed(lambda: serve(TorchLoopReference(C, EPS), data, batch), repeats=1) / STREAM, reference=True)
    ratios.add(benchmark.group, "pass-through (b)", timed(lambda: serve(torch.clone, data, batch)) / STREAM)
    guard = mgf.ModelGuardS(C, eps=EPS)
    guard(data)
    benchmark.extra_info["centroids"] = guard.num_centroids


@pytest.mark.parametrize("C", [10, 100])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_mgs_single_call_latency(benchmark, ratios, C, kind):
    data = classifier_like(STREAM, C, seed=C)
    guard = mgf.ModelGuardS(C, eps=EPS)
    guard(data)  # steady state: the codebooks of a served stream
    picks = data[np.random.default_rng(0).integers(0, STREAM, 1024)]
    rows = [torch.from_numpy(r) for r in picks] if kind == "torch" else list(picks)
    cycle = itertools.cycle(rows)
    benchmark.group = f"mgs latency batch=1 C={C}"
    benchmark(lambda: guard(next(cycle)))
    ratios.add(benchmark.group, f"modelguard_fast {kind} (cpu)", median_seconds(benchmark), unit="call")
    reference = TorchLoopReference(C, EPS)
    reference(torch.from_numpy(data))
    torch_rows = itertools.cycle([torch.from_numpy(r)[None] for r in picks])
    ratios.add(benchmark.group, "reference: torch loop (a)",
               timed(lambda: reference(next(torch_rows)), repeats=2000, per_call=True), unit="call",
               reference=True)


@pytest.mark.skipif(not mgf.cuda_available(), reason="needs a CUDA GPU and a CUDA build")
@pytest.mark.parametrize("C", [10, 100, 256])
def test_mgs_gpu_throughput(benchmark, ratios, C):
    batch = 65_536
    data = torch.from_numpy(classifier_like(STREAM, C, seed=C)).cuda()
    guard = mgf.ModelGuardS(C, eps=EPS)
    guard(data)  # steady state
    x = torch.from_numpy(classifier_like(batch, C, seed=C + 1)).cuda()
    np.testing.assert_array_equal(guard(x).cpu().numpy(), guard(x.cpu()).numpy())

    def run():
        guard(x)
        torch.cuda.synchronize()

    benchmark.group = f"mgs gpu batch={batch} C={C}"
    benchmark.pedantic(run, rounds=10, warmup_rounds=2, iterations=1)
    ratios.add(benchmark.group, "modelguard_fast (cuda)", median_seconds(benchmark) / batch)
    host = x.cpu()
    ratios.add(benchmark.group, "modelguard_fast (cpu)", timed(lambda: guard(host), repeats=3) / batch,
               reference=True)
