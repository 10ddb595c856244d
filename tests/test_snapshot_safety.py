"""Every bad snapshot is a SnapshotError, within bounded memory and time; keyed snapshots; no temporaries left."""

import fcntl
import io
import json
import os
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest

import modelguard_fast as mgf
from modelguard_fast.persistence import snapshot as sf
from streams import classifier_like

C = 10
KEY = bytes(range(32))


def saved(tmp_path, rows=300, name="g.npz", **kw):
    g = mgf.ModelGuardS(C, eps=0.7, **kw)
    g(classifier_like(rows, C, seed=31))
    path = tmp_path / name
    g.save(path)
    return g, path


def npz_bytes(members):
    """An .npz written as numpy writes one, with the given raw .npy members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def resigned(arrays, meta, key=None, keep_mac=None):
    """A snapshot whose checksum (and HMAC, with `key`) was recomputed, as anyone can for the unkeyed one."""
    meta = {k: v for k, v in meta.items() if k not in ("sha256", "hmac_sha256")}
    meta["sha256"] = sf._digest(meta, arrays)
    if key is not None:
        meta["hmac_sha256"] = sf._mac(key, meta["sha256"])
    if keep_mac is not None:
        meta["hmac_sha256"] = keep_mac
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return npz_bytes({"meta.npy": npy(blob), **{f"{k}.npy": npy(v) for k, v in arrays.items()}})


def contents(path):
    meta, arrays = sf.read_snapshot(path, "modelguard_fast.ModelGuardS", 2)
    return meta, arrays


def test_every_flipped_bit_is_refused_or_harmless(tmp_path):
    g, path = saved(tmp_path, rows=40)
    original = path.read_bytes()
    state = g.state_dict()
    rng = np.random.default_rng(0)
    refused = harmless = 0
    flip = tmp_path / "flip.npz"
    positions = range(len(original))  # every byte, one random bit each
    for pos in positions:
        data = bytearray(original)
        data[pos] ^= 1 << int(rng.integers(8))
        flip.write_bytes(bytes(data))
        try:
            loaded = mgf.ModelGuardS.load(flip)
        except mgf.SnapshotError:
            refused += 1
            continue
        # zip fields numpy does not read (times, comments, ...) may differ: the state must not.
        np.testing.assert_array_equal(loaded.state_dict()["centroids"], state["centroids"])
        np.testing.assert_array_equal(loaded.state_dict()["counts"], state["counts"])
        harmless += 1
    assert refused > 0.8 * len(original), (refused, harmless)


@pytest.mark.parametrize("key", ["num_classes", "eps", "order", "dtype"])
def test_missing_metadata_is_a_snapshot_error(tmp_path, key):
    _, path = saved(tmp_path)
    meta, arrays = contents(path)
    del meta[key]
    path.write_bytes(resigned(arrays, meta))
    with pytest.raises(mgf.SnapshotError, match=rf"lacks \['{key}'\]"):
        mgf.ModelGuardS.load(path)


def test_missing_arrays_and_bad_settings_are_snapshot_errors(tmp_path):
    _, path = saved(tmp_path)
    meta, arrays = contents(path)
    path.write_bytes(resigned({"centroids": arrays["centroids"]}, meta))
    with pytest.raises(mgf.SnapshotError, match=r"lacks \['counts'\]"):
        mgf.ModelGuardS.load(path)
    path.write_bytes(resigned(arrays, dict(meta, eps="wide")))
    with pytest.raises(mgf.SnapshotError, match="holds invalid settings or codebooks"):
        mgf.ModelGuardS.load(path)
    path.write_bytes(resigned(arrays, dict(meta, num_classes=10**11)))
    with pytest.raises(mgf.SnapshotError, match="declares num_classes=100000000000"):
        mgf.ModelGuardS.load(path)


def test_a_huge_declared_shape_is_refused_without_allocating(tmp_path):
    _, path = saved(tmp_path)
    meta, arrays = contents(path)
    honest = npy(arrays["centroids"])
    header_len = honest.index(b"\n") + 1
    header = honest[:header_len].replace(repr(arrays["centroids"].shape).encode(), b"(100000000000, 4)")
    header = header[:-1].ljust(header_len - 1) + b"\n"  # same header length: same data offset
    crafted = header + honest[header_len:]
    blob = npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    path.write_bytes(npz_bytes({"meta.npy": blob, "centroids.npy": crafted, "counts.npy": npy(arrays["counts"])}))
    tracemalloc.start()
    try:
        with pytest.raises(mgf.SnapshotError, match=r"declares shape \(100000000000, 4\)"):
            mgf.ModelGuardS.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_a_deflate_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("meta.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (256 << 20,)})
            chunk = bytes(1 << 20)
            for _ in range(256):
                member.write(chunk)
    assert path.stat().st_size < 512 << 10  # about 256 KiB on disk, 256 MiB inflated
    tracemalloc.start()
    try:
        with pytest.raises(mgf.SnapshotError, match="is compressed"):
            mgf.ModelGuardS.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_a_fifo_or_a_folder_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "snap.npz"
    os.mkfifo(fifo)
    result = []

    def load():
        try:
            mgf.ModelGuardS.load(fifo)
        except BaseException as err:
            result.append(err)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(timeout=20)
    if t.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not t.is_alive()
    assert isinstance(result[0], mgf.SnapshotError) and "not a regular file" in str(result[0])
    with pytest.raises(mgf.SnapshotError, match="not a regular file"):
        mgf.ModelGuardS.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        mgf.ModelGuardS.load(tmp_path / "missing.npz")


def test_counts_whose_int64_sum_wraps_are_refused(tmp_path):
    g = mgf.ModelGuardS(4, eps=0.5)
    g(np.eye(4, dtype=np.float32))
    state = g.state_dict()
    # Four counts near 2**62: their int64 sum wraps around to 4, the number of rows.
    counts = np.array([2**62 + 1] * 4, dtype=np.int64)
    assert int(counts.sum()) == 4
    with pytest.raises(ValueError, match=r"state\['counts'\] must be non-negative and sum to 4"):
        mgf.ModelGuardS(4, eps=0.5).load_state_dict(dict(state, counts=counts))
    wrapped = np.array([2**63 - 1, 2**63 - 1, 3, 3], dtype=np.int64)  # sums to 4 in int64 too
    assert int(wrapped.sum()) == 4
    with pytest.raises(ValueError, match="must be non-negative and sum to 4"):
        mgf.ModelGuardS(4, eps=0.5).load_state_dict(dict(state, counts=wrapped))
    g.save(tmp_path / "g.npz")
    meta, arrays = sf.read_snapshot(tmp_path / "g.npz", "modelguard_fast.ModelGuardS", 2)
    (tmp_path / "g.npz").write_bytes(resigned(dict(arrays, counts=counts), dict(meta, format_version=2)))
    with pytest.raises(mgf.SnapshotError, match="must be non-negative and sum to 4"):
        mgf.ModelGuardS.load(tmp_path / "g.npz")


def test_keyed_snapshots(tmp_path):
    g, _ = saved(tmp_path)
    signed = tmp_path / "signed.npz"
    g.save(signed, key=KEY)
    loaded = mgf.ModelGuardS.load(signed, key=KEY)
    np.testing.assert_array_equal(loaded.state_dict()["centroids"], g.state_dict()["centroids"])
    mgf.ModelGuardS.load(signed)  # the unkeyed checksum still holds
    with pytest.raises(mgf.SnapshotError, match="HMAC mismatch"):
        mgf.ModelGuardS.load(signed, key=bytes(32))
    # Forged: a setting changed and the unkeyed checksum recomputed, as anyone with write access can.
    meta, arrays = contents(signed)
    with np.load(signed) as npz:
        genuine_mac = json.loads(npz["meta"].tobytes())["hmac_sha256"]
    signed.write_bytes(resigned(arrays, dict(meta, eps=0.9)))
    assert mgf.ModelGuardS.load(signed).eps == 0.9  # the unkeyed check cannot see it
    with pytest.raises(mgf.SnapshotError, match="carries no HMAC, but a key was given"):
        mgf.ModelGuardS.load(signed, key=KEY)
    signed.write_bytes(resigned(arrays, dict(meta, eps=0.9), keep_mac=genuine_mac))
    with pytest.raises(mgf.SnapshotError, match="HMAC mismatch"):
        mgf.ModelGuardS.load(signed, key=KEY)
    signed.write_bytes(resigned(arrays, dict(meta, eps=0.9), key=KEY))  # only a key holder can do this
    assert mgf.ModelGuardS.load(signed, key=KEY).eps == 0.9
    with pytest.raises(TypeError, match="key must be bytes"):
        g.save(signed, key="secret")
    with pytest.raises(ValueError, match="key must hold at least 16 bytes, got 3"):
        g.save(signed, key=b"abc")


def test_stale_temporaries_are_removed_by_the_next_save(tmp_path):
    g, path = saved(tmp_path)
    stale = tmp_path / ".g.npz.killed1.tmp"
    stale.write_bytes(b"x" * 1000)  # left by a save killed midway (its lock died with it)
    live = tmp_path / ".g.npz.writing.tmp"
    live.write_bytes(b"y")
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a save in progress elsewhere holds its temporary's lock
    other = tmp_path / ".other.npz.x.tmp"
    other.write_bytes(b"z")  # another target's temporary is not ours to remove
    try:
        g.save(path)
    finally:
        os.close(fd)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".g.npz.writing.tmp", ".other.npz.x.tmp", "g.npz"], names
    g.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.x.tmp", "g.npz"]


def test_max_centroids_is_kept_by_snapshots(tmp_path):
    g, path = saved(tmp_path, max_centroids=500, centroid_warning=100)
    loaded = mgf.ModelGuardS.load(path)
    assert (loaded.max_centroids, loaded.centroid_warning) == (500, 100)
