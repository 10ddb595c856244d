"""The default run of `modelguard-fast run` (bundled digits) and the paper's qualitative findings on it, each
judged by the 95% interval of its paired differences (experiments/findings.py; one seed: a bootstrap over the
359 test images): a finding "holds" only when the interval says so.

Slow (about 10 minutes on 2 cores): run with `pytest -m slow tests/test_paper_findings.py`.
What does not hold on the bundled data, and why, is in the README ("What the default run shows").
"""

import json

import pytest

from modelguard_fast.experiments.cache import Cache
from modelguard_fast.experiments.config import RunConfig
from modelguard_fast.experiments.findings import paper_findings
from modelguard_fast.experiments.main import run_experiment
from modelguard_fast.experiments.setup import prepare
from modelguard_fast.experiments.stats import difference_interval, verdict
from modelguard_fast.experiments.studies import qpi_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    config = RunConfig.load(results_dir=str(folder))
    run_experiment(config, progress=False)
    record = json.loads((folder / "digits" / "table.json").read_text())
    cells = {(c["defense"], c["query"], c["strategy"]): c for c in record["cells"]}
    findings = {f.statement.split(" ")[0]: f for f in paper_findings(record)}
    return config, folder, record, cells, findings


def test_the_default_run_fills_the_whole_grid(default_run):
    _, folder, record, cells, _ = default_run
    assert len(cells) == 8 * 2 * 7 and len(record["rows"]) == 8
    assert record["seconds"] < 15 * 60
    assert (folder / "digits" / "table.png").stat().st_size > 10_000
    assert record["intervals"]["method"] == "bootstrap over test images"


def test_modelguard_w_is_the_lowest_against_naive(default_run):
    *_, findings = default_run
    lowest = findings["ModelGuard-W"]
    assert len(lowest.checks) == 2 * 7 and lowest.verdict == "holds", lowest.markdown()


def test_partial_bayes_lifts_mad_revsig_and_modelguard_w(default_run):
    _, _, _, cells, findings = default_run
    for query in ("knockoff", "jbda"):  # far above ModelGuard-W's Naive accuracy: holds
        lift = difference_interval([cells["mgw", query, "pbayes"]], [cells["mgw", query, "naive"]])
        assert verdict(lift, 0.2) == "holds", (query, lift)
    # close to the undefended target (within 3 points): no defense is resolved as further below
    lifted = findings["Partial"]
    assert len(lifted.checks) == 6 and all(check[3] != "does not hold" for check in lifted.checks), lifted.markdown()


def test_modelguard_s_worst_case_is_not_resolved_below_the_others(default_run):
    *_, findings = default_run  # the README explains why the paper's effect does not show on digits
    assert findings["ModelGuard-S's"].verdict != "holds", findings["ModelGuard-S's"].markdown()


def test_ordered_quantization_gives_nothing_to_2qpi_and_nearest_does(default_run):
    config, folder, *_ = default_run
    cache = Cache(folder / "cache")
    setup = prepare(config.dataset, cache, target_epochs=config.target_epochs)
    _, rows = qpi_study(setup, cache, config.attack_config(), eps=0.25)
    ordered, nearest = rows
    assert ordered[1] == 0 and ordered[4] == ordered[5]  # no answer changed: 2-QPI is 1-QPI
    assert nearest[1] > 0 and nearest[3] < nearest[2]  # answers changed, and averaging them moved closer
