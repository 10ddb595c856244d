"""Settings of an experiment run, from a TOML file and command-line overrides.

Example (every key optional; shown with the defaults)::

    [run]
    dataset = "digits"        # digits | mnist5k | cifar10 | cifar100 (the last two from data_root)
    data_root = ""            # folder of the paper's datasets (layouts: modelguard_fast/data/local.py)
    results_dir = "results"   # tables, plots and the cache of finished cells
    device = "cpu"
    seed = 0                  # seed of the data split and the target, and of the attacks when seeds is empty
    seeds = []                # repeat every cell over these seeds (see below); empty: [seed], one run
    vary_target = false       # with seeds: also re-draw the data split and retrain the target per seed
    backend = "local"         # local (worker processes) | ray (Ray tasks; pip install "modelguard_fast[cluster]")
    ray_address = ""          # with backend = "ray": the cluster ("auto", "ray://host:10001"); empty: a local one
    eps = 1.0                 # the utility budget of ModelGuard-W, ModelGuard-S and MAD
    budget = 0                # images the attacker queries; 0: the whole attacker pool
    target_epochs = 30
    workers = 0               # processes running attack cells; 0: one per CPU core (one on a GPU)
    defenses = ["none", "revsig", "mad", "am", "top1", "rounding", "mgw", "mgs"]
    queries = ["knockoff", "jbda"]
    strategies = ["naive", "top1", "s4l", "smoothing", "ddae", "ddae+", "pbayes"]

    What a seed varies. Replicate seed r runs every attack with seed r (the
    substitute's initialisation and training order, the JBDA-TR targets,
    the D-DAE shadow models and restorer, the partial Bayes table, MAD's
    surrogate) and queries the pool in the order of query_seed + (r - seed)
    (AttackConfig.query_seed, 42 by default), so replicate r = seed is the
    single-seed run, cache entries included. With vary_target, replicate r
    also splits the data and trains the target and misinformation model
    with seed r (the baselines are calibrated again). Each seed's cells are
    cached apart; tables give the mean and a 95% interval (stats.py).

    [attack]                  # any AttackConfig field; defaults: AttackConfig.small() for the bundled
                              # datasets, AttackConfig.paper(dataset) for CIFAR
    epochs = 30

    [attack.jbda]             # a table per prefix (jbda, s4l, smoothing, ddae, restorer, bayes):
    seed_size = 100           # the same as jbda_seed_size = 100 under [attack]; give each field once
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .. import params
from .._validation import torch_device
from ..attacks import QUERY_STRATEGIES, RECOVERY_STRATEGIES, AttackConfig
from ..attacks.config import flatten_sections
from ..data.bundled import BUNDLED
from ..defenses.registry import DEFENSES
from .presets import PIPELINE_DATASETS

DATASETS = PIPELINE_DATASETS
BACKENDS = ("local", "ray")


class ConfigError(ValueError):
    """A bad setting: names the key, the value and what is allowed."""


@dataclass
class RunConfig:
    dataset: str = "digits"
    data_root: str = ""
    results_dir: str = "results"
    device: str = "cpu"
    seed: int = 0
    seeds: list[int] = field(default_factory=list)
    vary_target: bool = False
    backend: str = "local"
    ray_address: str = ""
    eps: float = 1.0
    budget: int = 0
    target_epochs: int = 30
    workers: int = 0
    defenses: list[str] = field(default_factory=lambda: list(DEFENSES))
    queries: list[str] = field(default_factory=lambda: list(QUERY_STRATEGIES))
    strategies: list[str] = field(default_factory=lambda: list(RECOVERY_STRATEGIES))
    attack: dict[str, Any] = field(default_factory=dict)

    def attack_config(self) -> AttackConfig:
        try:
            if self.dataset in BUNDLED:
                return AttackConfig.small(**self.attack)
            return AttackConfig.paper(self.dataset, **self.attack)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"[attack]: {err}") from None

    def validate(self) -> "RunConfig":
        def one_of(key, value, allowed):
            if value not in allowed:
                raise ConfigError(f"{key} = {value!r} is not allowed; choose from {', '.join(map(repr, allowed))}")

        one_of("run.dataset", self.dataset, DATASETS)
        if self.dataset not in BUNDLED and not self.data_root:
            raise ConfigError(f"run.dataset = {self.dataset!r} is read from a local folder: set run.data_root "
                              "(--data-root) to the folder holding it (layouts: modelguard_fast/data/local.py)")
        for key, allowed in (("defenses", DEFENSES), ("queries", QUERY_STRATEGIES),
                             ("strategies", RECOVERY_STRATEGIES)):
            values = getattr(self, key)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"run.{key} must be a non-empty list, got {values!r}")
            for v in values:
                one_of(f"run.{key}", v, allowed)
        try:
            params.eps(self.eps, "run.eps")
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None
        for key in ("seed", "budget", "target_epochs", "workers"):
            value, minimum = getattr(self, key), 1 if key == "target_epochs" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"run.{key} = {value!r} is not allowed; use an integer >= {minimum}")
        try:
            torch_device(self.device, "run.device")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if not isinstance(self.seeds, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                                    for v in self.seeds):
            raise ConfigError(f"run.seeds = {self.seeds!r} is not allowed; use a list of non-negative integers "
                              "(empty: one run with run.seed)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"run.seeds = {self.seeds!r} is not allowed; the seeds must differ")
        if not isinstance(self.vary_target, bool):
            raise ConfigError(f"run.vary_target = {self.vary_target!r} is not allowed; use true or false")
        one_of("run.backend", self.backend, BACKENDS)
        if self.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise ConfigError("run.backend = 'ray' needs Ray, which is not installed: pip install "
                              "\"modelguard_fast[cluster]\" (or pip install \"ray>=2.9\")")
        if not isinstance(self.ray_address, str):
            raise ConfigError(f"run.ray_address = {self.ray_address!r} is not allowed; use a string (empty: a "
                              "local Ray instance)")
        self.attack_config()
        return self

    def replicate_seeds(self) -> list[int]:
        """The seeds every cell is run with: `seeds`, or [seed] when it is empty."""
        return list(self.seeds) or [self.seed]

    def attack_config_for(self, replicate: int, base: AttackConfig | None = None) -> AttackConfig:
        """The attack configuration (`base`, default attack_config()) of replicate seed `replicate`: its query
        order is query_seed + (replicate - seed)."""
        config = self.attack_config() if base is None else base
        return config if replicate == self.seed else config.replace(query_seed=config.query_seed + replicate
                                                                     - self.seed)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "RunConfig":
        """Defaults, then the TOML file's [run] and [attack] tables, then `overrides` (None values ignored)."""
        values: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, "rb") as f:
                    data = tomllib.load(f)
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(f"{path}: {err}") from None
            except OSError as err:
                raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from None
            unknown = set(data) - {"run", "attack"}
            if unknown:
                raise ConfigError(f"{path}: unknown table(s) {sorted(unknown)}; allowed: [run], [attack]")
            values.update(data.get("run", {}))
            values["attack"] = data.get("attack", {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in [run]; allowed: {sorted(names - {'attack'})}")
        if isinstance(values.get("attack"), Mapping):
            try:
                values["attack"] = flatten_sections(values["attack"])
            except ValueError as err:
                raise ConfigError(str(err)) from None
        return cls(**values).validate()
