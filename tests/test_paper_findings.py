"""The default run of `modelguard-fast run` (bundled digits) and the paper's qualitative findings that hold on it.

Slow (about 10 minutes on 2 cores): run with `pytest -m slow tests/test_paper_findings.py`.
What does not hold on the bundled data, and why, is in the README ("What the default run shows").
"""

import json

import pytest

from modelguard_fast.experiments.cache import Cache
from modelguard_fast.experiments.config import RunConfig
from modelguard_fast.experiments.main import run_experiment
from modelguard_fast.experiments.setup import prepare
from modelguard_fast.experiments.studies import qpi_study

pytestmark = pytest.mark.slow
CLOSE_TO_NONE = 0.03  # extraction accuracy within 3 points (11 of the 359 test images)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    config = RunConfig.load(results_dir=str(folder))
    run_experiment(config, progress=False)
    record = json.loads((folder / "digits" / "table.json").read_text())
    cells = {(c["defense"], c["query"], c["strategy"]): c for c in record["cells"]}
    return config, folder, record, cells


def test_the_default_run_fills_the_whole_grid(default_run):
    _, folder, record, cells = default_run
    assert len(cells) == 8 * 2 * 7 and len(record["rows"]) == 8
    assert record["seconds"] < 15 * 60
    assert (folder / "digits" / "table.png").stat().st_size > 10_000


def test_modelguard_w_is_the_lowest_against_naive(default_run):
    _, _, _, cells = default_run
    for query in ("knockoff", "jbda"):
        mgw = cells["mgw", query, "naive"]["accuracy"]
        others = {d: c["accuracy"] for (d, q, s), c in cells.items() if q == query and s == "naive" and d != "mgw"}
        assert mgw < min(others.values()), (query, mgw, others)


def test_partial_bayes_lifts_mad_revsig_and_modelguard_w_close_to_none(default_run):
    _, _, _, cells = default_run
    for query in ("knockoff", "jbda"):
        undefended = cells["none", query, "naive"]["accuracy"]
        for defense in ("mad", "revsig", "mgw"):
            assert cells[defense, query, "pbayes"]["accuracy"] >= undefended - CLOSE_TO_NONE, (defense, query)
        assert cells["mgw", query, "pbayes"]["accuracy"] > cells["mgw", query, "naive"]["accuracy"] + 0.2


def test_ordered_quantization_gives_nothing_to_2qpi_and_nearest_does(default_run):
    config, folder, _, _ = default_run
    cache = Cache(folder / "cache")
    setup = prepare(config.dataset, cache, target_epochs=config.target_epochs)
    _, rows = qpi_study(setup, cache, config.attack_config(), eps=0.25)
    ordered, nearest = rows
    assert ordered[1] == 0 and ordered[4] == ordered[5]  # no answer changed: 2-QPI is 1-QPI
    assert nearest[1] > 0 and nearest[3] < nearest[2]  # answers changed, and averaging them moved closer
