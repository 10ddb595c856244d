"""ModelGuard-S on a shared RedisStore against local guards, in the same run.

Redis: a private redis-server (Debian's 7.0 package) on 127.0.0.1 TCP, AOF on with
`appendfsync always` (an acknowledged append survives a server crash), started by
the module fixture. Local journal: fsync per append (also durable).

- Steady-state throughput: 4 processes at once, each first serves a warm-up
  stream (50,000 classifier-like rows, C = 100, eps = 1, batches of 256; with
  Redis the four share one codebook), then a timed stream of 50,000 new rows of
  its own. Throughput = all timed rows / the slowest process's time. Reference:
  4 processes each with its own in-memory guard, warmed and fed the same way.
  Two timed streams: new rows (about 0.4% of them still create centroids, in
  about two thirds of the batches: each such batch waits for a durable append)
  and rows already served in the warm-up (every row hits: local kernel speed).
- Cost of a miss: one-row calls that create a centroid, on RedisStore and on a
  journal; median and p99 latency (reference: the journal).
"""

import statistics
import time
from multiprocessing import get_context

import numpy as np
import pytest

import modelguard_fast as mgf
from modelguard_fast.stores import RedisStore
from redis_server import RedisServer
from streams import classifier_like

C, EPS, ROWS, BATCH, PROCESSES = 100, 1.0, 50_000, 256, 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


def serve(guard, rows):
    for start in range(0, len(rows), BATCH):
        guard(rows[start : start + BATCH])


def replica(url, name, index, barrier, results, repeats):
    """One process: warm up, wait for the others, time its own stream."""
    store = RedisStore(url, name) if url else None
    guard = mgf.ModelGuardS(C, eps=EPS, store=store)
    warm = classifier_like(ROWS, C, seed=1)
    serve(guard, warm)
    if repeats:
        timed = warm[np.random.default_rng(index).permutation(ROWS)]
    else:
        timed = classifier_like(ROWS, C, seed=100 + index)
    barrier.wait()
    start = time.perf_counter()
    serve(guard, timed)
    results.put((time.perf_counter() - start, guard.num_centroids))


def four_processes(url, name, repeats):
    ctx = get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=replica, args=(url, name, i, barrier, results, repeats)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    out = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return max(seconds for seconds, _ in out), [n for _, n in out]


@pytest.mark.parametrize("stream", ["new rows", "repeated rows"])
def test_four_replicas_on_one_redis_store_vs_four_local_guards(benchmark, ratios, server, stream):
    results = {}
    repeats = stream == "repeated rows"

    def run_redis():
        results["redis"] = four_processes(server.url, f"throughput-{stream.replace(' ', '-')}", repeats)

    benchmark.group = f"stores: 4 processes, steady state, {stream}, C={C} eps={EPS} batch={BATCH}"
    benchmark.pedantic(run_redis, rounds=1, iterations=1)
    local_seconds, local_centroids = four_processes(None, None, repeats)
    redis_seconds, redis_centroids = results["redis"]
    total = PROCESSES * ROWS
    ratios.add(benchmark.group, "4 processes on one RedisStore", redis_seconds / total)
    ratios.add(benchmark.group, "4 processes, local guards (a)", local_seconds / total, reference=True)
    benchmark.extra_info.update(redis_seconds=redis_seconds, local_seconds=local_seconds,
                                ratio=local_seconds / redis_seconds, redis_centroids=redis_centroids,
                                local_centroids=local_centroids)


def miss_latencies(guard, rows):
    """Seconds of each one-row call that appended a centroid."""
    out = []
    for row in rows:
        before = guard.num_centroids
        start = time.perf_counter()
        guard(row[None])
        seconds = time.perf_counter() - start
        if guard.num_centroids > before:
            out.append(seconds)
    return out


def test_cost_of_a_miss_redis_vs_journal(benchmark, ratios, server, tmp_path):
    rows = classifier_like(3000, C, seed=5)  # early rows of fresh codebooks: most are misses
    results = {}

    def run_redis():
        results["redis"] = miss_latencies(mgf.ModelGuardS(C, eps=EPS, store=RedisStore(server.url, "misses")),
                                          rows)

    benchmark.group = f"stores: latency of a call that appends, C={C} eps={EPS}"
    benchmark.pedantic(run_redis, rounds=1, iterations=1)
    journal = mgf.ModelGuardS(C, eps=EPS, journal=tmp_path / "misses.journal")
    local = miss_latencies(journal, rows)
    journal.close()
    for name, values in (("RedisStore (AOF, appendfsync always)", results["redis"]), ("journal (fsync)", local)):
        ratios.add(benchmark.group, f"{name} median", statistics.median(values), unit="call",
                   reference=name.startswith("journal"))
        ratios.add(benchmark.group, f"{name} p99", float(np.percentile(values, 99)), unit="call")
        benchmark.extra_info[f"{name} misses"] = len(values)
