"""A small end-to-end run of the evaluation pipeline: every cell filled, sane, cached and resumable."""

import json

import numpy as np
import pytest

from modelguard_fast.cli import main
from modelguard_fast.experiments.config import ConfigError, RunConfig
from modelguard_fast.experiments.main import run_experiment

TOP1_KEEPING = ("ModelGuard-W", "ModelGuard-S", "Top-1")  # the defenses whose preserves_top1 is True


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    config = RunConfig.load(results_dir=str(folder), budget=60, target_epochs=2, queries=["knockoff", "jbda"],
                            strategies=["naive", "top1", "pbayes"],
                            attack={"epochs": 1, "jbda_seed_size": 20, "bayes_table_size": 600})
    text = run_experiment(config, progress=False)
    return config, folder, text


def test_every_cell_is_filled_and_sane(tiny):
    config, folder, text = tiny
    record = json.loads((folder / "digits" / "table.json").read_text())
    header, rows = record["header"], record["rows"]
    assert len(rows) == 8 and len(header) == 1 + 2 * 3 + 4
    for row in rows:
        accuracies, (best, fidelity, _, protected) = row[1:-4], row[-4:]
        assert all(0.0 <= a <= 1.0 for a in [*accuracies, fidelity, protected])
        assert best == max(accuracies)
    by_name = {row[0]: row for row in rows}
    assert by_name["None"][-2] == 0.0
    for name in ("ModelGuard-W", "ModelGuard-S", "MAD"):
        assert by_name[name][-2] <= config.eps + 1e-6, name
    for name in TOP1_KEEPING:
        assert by_name[name][-1] == by_name["None"][-1], name
    assert (folder / "digits" / "table.md").read_text().startswith("| defense |")
    assert (folder / "digits" / "table.csv").read_text().count("\n") == 9
    assert {"config", "attack_config", "versions", "seconds", "calibrated"} <= set(record)
    assert "ModelGuard-S" in text


def test_a_second_run_reads_every_cell_from_the_cache(tiny):
    config, folder, _ = tiny
    first = json.loads((folder / "digits" / "table.json").read_text())
    run_experiment(config, progress=False)
    second = json.loads((folder / "digits" / "table.json").read_text())
    np.testing.assert_array_equal(np.array(first["rows"], dtype=object), np.array(second["rows"], dtype=object))
    assert second["seconds"] < first["seconds"] / 3


def test_bad_configuration_names_key_value_and_choices(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"run.defenses = 'mgx' is not allowed; choose from 'none'"):
        RunConfig.load(defenses=["mgx"])
    with pytest.raises(ConfigError, match=r"run.eps = 3.0 is not allowed"):
        RunConfig.load(eps=3.0)
    path = tmp_path / "bad.toml"
    path.write_text("[run]\nbudgte = 5\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['budgte'\]"):
        RunConfig.load(path)
    path.write_text("[attack]\nepoch = 5\n")
    with pytest.raises(ConfigError, match=r"\[attack\]"):
        RunConfig.load(path)
    assert main(["run", "--dataset", "digits", "--defenses", "nothing"]) == 2
    assert "run.defenses = 'nothing' is not allowed" in capsys.readouterr().err
