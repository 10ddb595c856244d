"""A small end-to-end run of the evaluation pipeline: every cell filled, sane, cached and resumable."""

import json

import numpy as np
import pytest

from modelguard_fast.cli import main
from modelguard_fast.experiments.cache import Cache
from modelguard_fast.experiments.config import ConfigError, RunConfig
from modelguard_fast.experiments.grid import Cell, CellRunner, run_cells
from modelguard_fast.experiments.main import run_experiment, run_sweep_experiment
from modelguard_fast.experiments.setup import prepare

TOP1_KEEPING = ("ModelGuard-W", "ModelGuard-S", "Top-1")  # the defenses whose preserves_top1 is True


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    config = RunConfig.load(results_dir=str(folder), budget=60, target_epochs=2, queries=["knockoff", "jbda"],
                            strategies=["naive", "top1", "pbayes"], workers=1,
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
    assert (folder / "digits" / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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
    with pytest.raises(ConfigError, match=r"run.eps must be in \[0, 2\] .*got 3.0"):
        RunConfig.load(eps=3.0)
    path = tmp_path / "bad.toml"
    path.write_text("[run]\nbudgte = 5\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['budgte'\]"):
        RunConfig.load(path)
    path.write_text("[attack]\nepoch = 5\n")
    with pytest.raises(ConfigError, match=r"\[attack\]"):
        RunConfig.load(path)
    path.write_text("[attack]\njbda_seed_size = 5\n[attack.jbda]\nseed_size = 6\n")
    with pytest.raises(ConfigError, match=r"jbda_seed_size is given twice"):
        RunConfig.load(path)
    path.write_text("[attack]\nepochs = 5\n[attack.jbda]\nseed_size = 6\n[attack.restorer]\nepochs = 7\n")
    nested = RunConfig.load(path)  # a table per prefix: the same settings, the same record, the same cache keys
    assert nested.attack == {"epochs": 5, "jbda_seed_size": 6, "restorer_epochs": 7}
    assert nested.attack_config() == RunConfig.load(attack=nested.attack).attack_config()
    assert main(["run", "--dataset", "digits", "--defenses", "nothing"]) == 2
    assert "run.defenses = 'nothing' is not allowed" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses it, by modelguard_fast.params.eps
        main(["sweep", "--eps-values", "0.5", "2.5"])
    assert "'2.5': eps must be in [0, 2]" in capsys.readouterr().err
    assert main(["sweep", "--defenses", "top1"]) == 2
    assert "sweep defenses: 'top1' is not allowed; choose from revsig, mad, mgw, mgs" in capsys.readouterr().err


def test_cells_give_the_same_numbers_in_worker_processes(tiny, tmp_path):
    config, folder, _ = tiny
    cache = Cache(folder / "cache")
    setup = prepare("digits", cache, target_epochs=config.target_epochs)
    cells = [Cell("mgs", "knockoff", "naive", 0.5), Cell("mgw", "knockoff", "ddae", 1.0)]
    attack = config.attack_config().replace(ddae_shadow_models=2, ddae_shadow_epochs=1)
    records = []
    for workers, root in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        runner = CellRunner(setup, Cache(root), attack, config.budget)
        records.append(run_cells(runner, cells, workers=workers, progress=False))
    for one, two in zip(*records):
        assert {k: v for k, v in one.items() if k != "seconds"} == {k: v for k, v in two.items() if k != "seconds"}
    assert records[0][0]["centroids"] > 0 and records[0][1]["table_rows"] > 0


def test_sweep_fills_every_budget_and_plots(tiny):
    config, folder, _ = tiny
    text = run_sweep_experiment(config, eps_values=[0.5, 1.5], defenses=["revsig", "mgs"],
                                strategies=["naive", "pbayes"], progress=False)
    record = json.loads((folder / "digits" / "sweep.json").read_text())
    header, rows = record["header"], record["rows"]
    assert [row[:2] for row in rows] == [["None", None], ["RevSig", 0.5], ["RevSig", 1.5], ["ModelGuard-S", 0.5],
                                         ["ModelGuard-S", 1.5]]
    column = {name: i for i, name in enumerate(header)}
    for row in rows[1:]:
        assert row[column["max L1"]] <= row[1] + 1e-6
        assert all(0 <= row[column[f"{s} acc."]] <= 1 for s in ("naive", "pbayes"))
    mgs = [row for row in rows if row[0] == "ModelGuard-S"]
    assert mgs[0][column["centroids"]] >= mgs[1][column["centroids"]] > 0  # a larger budget needs fewer centroids
    for name in ("sweep.png", "centroids.png"):
        assert (folder / "digits" / name).read_bytes()[:4] == b"\x89PNG"
    assert "ModelGuard-S" in text


def test_seeds_repeat_every_cell_and_keep_the_single_seed_cells(tiny, capsys):
    config, folder, _ = tiny
    single = {(c["defense"], c["query"], c["strategy"]): c for c in
              json.loads((folder / "digits" / "table.json").read_text())["cells"]}
    seeded = RunConfig.load(results_dir=str(folder), budget=60, target_epochs=2, queries=["knockoff"],
                            strategies=["naive", "pbayes"], defenses=["none", "mgw"], workers=1, seeds=[0, 1],
                            attack=config.attack)
    text = run_experiment(seeded, progress=False)
    record = json.loads((folder / "digits" / "table.json").read_text())
    assert [s["seed"] for s in record["seeds"]] == [0, 1]
    assert [s["query_seed"] for s in record["seeds"]] == [42, 43]  # seed 1 queries in another order
    cells = record["cells"]
    assert len(cells) == 2 * 2 * 2 and [c["seed"] for c in cells] == [0] * 4 + [1] * 4
    for c in cells[:4]:  # seed 0 is the single-seed run: its cells come from the same cache entries
        assert c == {**single[c["defense"], c["query"], c["strategy"]], "seed": 0}
    assert any(a["accuracy"] != b["accuracy"] for a, b in zip(cells[:4], cells[4:]))
    header, rows = record["header"], record["rows"]
    intervals = {(c["defense"], c["strategy"]): c["accuracy"] for c in record["intervals"]["cells"]}
    assert record["intervals"]["method"] == "t over seeds"
    for row in rows:
        key = {"None": "none", "ModelGuard-W": "mgw"}[row[0]]
        for j, strategy in ((1, "naive"), (2, "pbayes")):
            iv = intervals[key, strategy]
            assert len(iv["values"]) == 2 and row[j] == pytest.approx(np.mean(iv["values"]))
            assert iv["low"] <= row[j] <= iv["high"]
        assert row[3] == max(row[1:3])  # max of the means
    ci = (folder / "digits" / "table-ci.md").read_text()
    assert ci.startswith("| defense |") and " [" in ci
    assert "2 seeds (0, 1;" in text and "t over seeds" in text
    assert (folder / "digits" / "findings.md").read_text().startswith("- **ModelGuard-W is the lowest")
    assert (folder / "digits" / "table.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_seeds_are_refused(capsys):
    with pytest.raises(ConfigError, match=r"run.seeds = \[0, 0\] is not allowed; the seeds must differ"):
        RunConfig.load(seeds=[0, 0])
    with pytest.raises(ConfigError, match=r"run.seeds = \[-1\] is not allowed; use a list of non-negative"):
        RunConfig.load(seeds=[-1])
    with pytest.raises(SystemExit):
        main(["run", "--seeds", "0,x"])
    assert "'0,x' is not a list of seeds" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"run.backend = 'spark' is not allowed; choose from 'local', 'ray'"):
        RunConfig.load(backend="spark")
