"""Counts where the indexed codebook search spends its work (issue 14, large codebooks).

Writes the benchmark's two one-class streams (benchmarks/bench_mgs.py: low-rank
and noisy, C = 100) and 1,536 queries of each to a scratch folder, builds
benchmarks/index_stats.cpp against csrc/cpu/mgs_index.cpp with MGF_INDEX_STATS
(g++), and prints, per codebook size, the mean per query of coarse nodes
tested, row sketches tested and full distances computed, with the time per
query against the linear scan of the same rows. Run from the repository root:

    .venv/bin/python benchmarks/index_stats.py [scratch folder]
"""

import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]

from bench_mgs import low_rank_rows, noisy_rows  # noqa: E402

C, EPS, SIZES = 100, 0.1, (1_000, 10_000, 100_000)


def main(folder: pathlib.Path) -> None:
    binary = folder / "index_stats"
    subprocess.run(["g++", "-O3", "-DMGF_INDEX_STATS", f"-I{ROOT / 'csrc/include'}",
                    str(ROOT / "benchmarks/index_stats.cpp"), str(ROOT / "csrc/cpu/mgs_index.cpp"),
                    "-o", str(binary)], check=True)
    for stream in (low_rank_rows, noisy_rows):
        book, queries = folder / f"{stream.__name__}_book.f32", folder / f"{stream.__name__}_queries.f32"
        stream(max(SIZES), C, seed=1).tofile(book)
        np.concatenate([stream(256, C, seed=100 + r) for r in range(6)]).tofile(queries)
        print(stream.__name__, flush=True)
        subprocess.run([str(binary), str(book), str(queries), str(C), str(EPS), *map(str, SIZES)], check=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(pathlib.Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            main(pathlib.Path(scratch))
