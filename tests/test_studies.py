"""The defense studies (Figures 5 and 6, Table 6) on a tiny digits setup: shapes, sane values, plots, CLI."""

import json

import numpy as np
import pytest

from modelguard_fast.attacks import AttackConfig
from modelguard_fast.cli import main
from modelguard_fast.experiments import plots, studies
from modelguard_fast.experiments.cache import Cache
from modelguard_fast.defenses.registry import DEFENSES
from modelguard_fast.experiments.setup import prepare

TARGET_EPOCHS = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def setup(results):
    return prepare("digits", Cache(results / "cache"), target_epochs=TARGET_EPOCHS)


def png_written(path):
    return path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_response_times_of_every_defense_at_every_batch_size(setup, tmp_path):
    header, rows = studies.response_times(setup, batch_sizes=(1, 16), repeats=2, warmup=1)
    assert header[:2] == ["defense", "batch"] and len(header) == 6
    assert [(r[0], r[1]) for r in rows] == [(spec.label, b) for spec in DEFENSES.values() for b in (1, 16)]
    for row in rows:
        total, forward, own, ratio = row[2:]
        assert total > 0 and forward > 0 and own > 0 and ratio > 0
        assert total == pytest.approx(forward + own, rel=0.5)  # medians of sums vs sums of medians
    assert [r[-1] for r in rows if r[0] == "None"] == [1.0, 1.0]
    assert next(setup.target.parameters()).device.type == "cpu"  # the setup's models were not moved
    assert png_written(plots.plot_response_times(header, rows, tmp_path / "timing.png"))


def test_ood_auroc_curves_and_reference_lines(setup, tmp_path):
    eps = (0.5, 1.0, 2.0)
    header, rows = studies.ood_auroc(setup, eps, ood_count=150)
    assert header == ["defense", "eps=0.5", "eps=1", "eps=2"]
    assert [r[0] for r in rows] == ["None", "Top-1", "ModelGuard-S", "ModelGuard-W", "MAD"]
    assert all(len(r) == 4 and all(0.0 <= v <= 1.0 for v in r[1:]) for r in rows)
    assert rows[1][1:] == [0.5, 0.5, 0.5]  # one-hot answers carry no confidence
    assert len(set(rows[0][1:])) == 1  # None ignores eps
    assert png_written(plots.plot_ood_auroc(header, rows, tmp_path / "ood.png"))


def test_the_ood_sets_are_disjoint_images():
    photos = studies.ood_images("photos", 50, 8, seed=0)
    oe = studies.ood_images("oe-photos", 50, 8, seed=0)
    assert photos.shape == oe.shape == (50, 1, 8, 8)
    assert 0.0 <= float(photos.min()) and float(photos.max()) <= 1.0
    from modelguard_fast.data.outliers import sample_image_patches

    assert not np.array_equal(oe.numpy(), sample_image_patches(50, 8, seed=0).numpy())


def test_centroid_growth_is_monotone(setup, tmp_path):
    header, rows = studies.centroid_growth(setup, (0.5, 1.0, 1.5), checkpoints=6)
    pool = len(setup.splits.pool_x)
    assert header == ["queries", "eps=0.5", "eps=1", "eps=1.5"] and len(rows) == 6
    queries = [r[0] for r in rows]
    assert queries == sorted(set(queries)) and queries[-1] == pool
    counts = np.array([r[1:] for r in rows])
    assert (np.diff(counts, axis=0) >= 0).all()  # non-decreasing in queries
    assert (np.diff(counts[-1]) <= 0).all()  # non-increasing in eps at the end of the stream
    assert (counts >= setup.num_classes // 2).all() and (counts <= np.array(queries)[:, None]).all()
    assert png_written(plots.plot_centroid_growth(header, rows, tmp_path / "growth.png"))


def test_qpi_ordered_quantization_answers_every_pass_alike(setup, results):
    cache = Cache(results / "cache")
    config = AttackConfig.small(epochs=1)
    header, rows = studies.qpi_study(setup, cache, config, budget=120)
    assert len(header) == 6 and [r[0].split(":")[0] for r in rows] == ["first", "nearest"]
    first, nearest = rows
    assert first[1:4] == [0, None, None]  # ordered: nothing changes, so 2-QPI has nothing to average
    assert first[4] == first[5]  # identical answers train identical substitutes
    assert isinstance(nearest[1], int) and 0 <= nearest[1] <= 120
    if nearest[1]:
        assert nearest[2] > 0 and 0 <= nearest[3] < nearest[2]  # averaging moves toward the clean prediction
    else:
        assert nearest[2] is None and nearest[3] is None
    assert all(0.0 <= v <= 1.0 for r in rows for v in r[4:])
    assert studies.qpi_study(setup, cache, config, budget=120) == (header, rows)  # read back from the cache


def test_bad_arguments_name_the_argument_the_value_and_what_is_allowed(setup, capsys):
    with pytest.raises(studies.StudyError, match=r"eps_values\[1\] must be in \[0, 2\] \(an L1 budget .*\), got 3.0"):
        studies.ood_auroc(setup, (0.5, 3.0))
    with pytest.raises(studies.StudyError, match=r"eps_values must be a non-empty sequence of numbers in \[0, 2\], got \(\)"):
        studies.centroid_growth(setup, ())
    with pytest.raises(studies.StudyError, match=r"batch_sizes\[0\] = 0 is not allowed; use an integer >= 1"):
        studies.response_times(setup, batch_sizes=(0,))
    with pytest.raises(studies.StudyError, match=r"ood = 'svhn' is not allowed; choose from 'photos', 'oe-photos'"):
        studies.ood_auroc(setup, ood="svhn")
    with pytest.raises(studies.StudyError, match=r"budget = 100000 is not allowed; the attacker's pool has \d+"):
        studies.qpi_study(setup, budget=100_000)
    for argv, message in ((["ood", "--eps", "0.5", "3"], "argument --eps: '3': eps must be in [0, 2]"),
                          (["growth", "--eps"], "argument --eps: expected at least one argument"),
                          (["timing", "--batch-sizes", "0"], "argument --batch-sizes: 0 is not allowed")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_growth_writes_table_record_and_plot(setup, results, capsys):
    argv = ["growth", "--results-dir", str(results), "--target-epochs", str(TARGET_EPOCHS), "--eps", "0.5", "1",
            "--checkpoints", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    folder = results / "digits"
    assert out.startswith("| queries | eps=0.5 | eps=1 |") and f"{folder}/growth.png" in out
    record = json.loads((folder / "growth.json").read_text())
    assert record["header"] == ["queries", "eps=0.5", "eps=1"] and len(record["rows"]) == 4
    assert record["options"]["eps"] == [0.5, 1.0] and record["study"] == "growth"
    assert record["config"]["target_epochs"] == TARGET_EPOCHS
    assert {"versions", "seconds"} <= set(record)
    assert (folder / "growth.md").read_text().startswith("| queries |")
    assert (folder / "growth.csv").read_text().count("\n") == 5
    assert png_written(folder / "growth.png")
    assert main([*argv[:-2], "--budget", "100000"]) == 2
    assert "budget = 100000 is not allowed" in capsys.readouterr().err
