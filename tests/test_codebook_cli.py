"""`modelguard-fast codebook inspect|export|import` against a real private redis-server."""

import numpy as np

import modelguard_fast as mgf
from modelguard_fast.cli import main
from modelguard_fast.stores import RedisStore
from streams import classifier_like

C, EPS = 10, 0.5


def guard_on(server, name):
    return mgf.ModelGuardS(C, eps=EPS, store=RedisStore(server.url, name))


def test_export_import_round_trips_preserve_every_future_answer(redis_server, tmp_path, capsys):
    original = guard_on(redis_server, "prod")
    original(classifier_like(3000, C, seed=1))
    counts = original.centroid_counts

    assert main(["codebook", "inspect", "--url", redis_server.url, "--name", "prod"]) == 0
    out = capsys.readouterr().out
    assert f"centroids: {counts.sum()} (all valid)" in out and "'eps': 0.5" in out and "format version 2" in out
    assert "per class: " + " ".join(f"{c}:{n}" for c, n in enumerate(counts.tolist())) in out

    snapshot = tmp_path / "prod.npz"
    assert main(["codebook", "export", "--url", redis_server.url, "--name", "prod", "--out", str(snapshot)]) == 0
    assert main(["codebook", "import", "--url", redis_server.url, "--name", "copy", "--snapshot", str(snapshot)]) == 0
    journal = tmp_path / "prod.journal"
    mgf.ModelGuardS.load(snapshot, journal=journal).close()
    assert main(["codebook", "import", "--url", redis_server.url, "--name", "from-journal", "--journal",
                 str(journal), "--num-classes", str(C), "--eps", str(EPS)]) == 0
    capsys.readouterr()

    future = classifier_like(2000, C, seed=2)
    want = original(future)
    for guard in (mgf.ModelGuardS.load(snapshot), guard_on(redis_server, "copy"),
                  guard_on(redis_server, "from-journal")):
        np.testing.assert_array_equal(guard.centroid_counts, counts)
        np.testing.assert_array_equal(guard(future), want)


def test_import_refuses_a_non_empty_name_and_inspect_a_missing_one(redis_server, tmp_path, capsys):
    guard = guard_on(redis_server, "prod")
    guard(classifier_like(500, C, seed=3))
    snapshot = tmp_path / "prod.npz"
    guard.save(snapshot)
    before = guard_on(redis_server, "prod").centroid_counts
    assert main(["codebook", "import", "--url", redis_server.url, "--name", "prod", "--snapshot", str(snapshot)]) == 2
    assert "already holds" in capsys.readouterr().err
    np.testing.assert_array_equal(guard_on(redis_server, "prod").centroid_counts, before)
    assert main(["codebook", "inspect", "--url", redis_server.url, "--name", "nothing"]) == 2
    assert "there is no codebook named 'nothing'" in capsys.readouterr().err
    assert main(["codebook", "inspect", "--url", "redis://127.0.0.1:1/0", "--name", "prod", "--timeout", "0.5"]) == 2
    assert "is unreachable" in capsys.readouterr().err
