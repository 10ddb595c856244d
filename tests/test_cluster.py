"""The Ray backend of the experiment grids, against a real local Ray instance started and stopped here."""

import time

import pytest

from modelguard_fast.experiments.cache import Cache
from modelguard_fast.experiments.config import ConfigError, RunConfig
from modelguard_fast.experiments.grid import Cell, CellRunner, run_tasks
from modelguard_fast.experiments.setup import prepare

ray = pytest.importorskip("ray", reason="the cluster extra: pip install '.[cluster]' (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def local_ray():
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield time.perf_counter() - started
    ray.shutdown()


def test_ray_gives_the_local_pool_records(local_ray, tmp_path):
    setup = prepare("digits", Cache(tmp_path / "setup"), target_epochs=2)
    attack = RunConfig().attack_config().replace(epochs=2, ddae_shadow_models=2, ddae_shadow_epochs=1,
                                                 restorer_epochs=2, bayes_table_size=600)
    cells = [Cell("mgs", "knockoff", "naive", 0.5), Cell("mad", "knockoff", "pbayes"),
             Cell("none", "knockoff", "ddae")]
    records = {}
    for backend in ("local", "ray"):
        cache = Cache(tmp_path / backend)
        runners = [CellRunner(setup, cache, attack, 80, seed=seed) for seed in (0, 1)]
        tasks = [(runner, cell) for runner in runners for cell in cells]
        records[backend] = run_tasks(tasks, workers=1, progress=False, backend=backend)
        # finished cells are cached by this process, under the same keys: a second run reads them all
        assert run_tasks(tasks, progress=False, backend=backend) == records[backend]
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in records[b]] for b in ("local", "ray")]
    assert strip[0] == strip[1]
    assert strip[0][0] != strip[0][3]  # the two seeds differ
    assert sorted(p.name for p in (tmp_path / "local" / "cell").iterdir()) == sorted(
        p.name for p in (tmp_path / "ray" / "cell").iterdir())


def test_ray_backend_is_checked_in_the_configuration(monkeypatch):
    assert RunConfig.load(backend="ray", ray_address="auto").backend == "ray"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"run.backend = 'ray' needs Ray, which is not installed: pip install "
                                          r"\"modelguard_fast\[cluster\]\""):
        RunConfig.load(backend="ray")
