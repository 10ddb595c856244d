"""Settings of an experiment run, from a TOML file and command-line overrides.

Example (every key optional; shown with the defaults)::

    [run]
    dataset = "digits"        # digits | mnist5k | cifar10 | cifar100 (the last two from data_root)
    data_root = ""            # folder of the paper's datasets (layouts: modelguard_fast/data/local.py)
    results_dir = "results"   # tables, plots and the cache of finished cells
    device = "cpu"
    seed = 0
    eps = 1.0                 # the utility budget of ModelGuard-W, ModelGuard-S and MAD
    budget = 0                # images the attacker queries; 0: the whole attacker pool
    target_epochs = 30
    workers = 0               # processes running attack cells; 0: one per CPU core (one on a GPU)
    defenses = ["none", "revsig", "mad", "am", "top1", "rounding", "mgw", "mgs"]
    queries = ["knockoff", "jbda"]
    strategies = ["naive", "top1", "s4l", "smoothing", "ddae", "ddae+", "pbayes"]

    [attack]                  # any AttackConfig field; defaults: AttackConfig.small() for the bundled
                              # datasets, AttackConfig.paper(dataset) for CIFAR
    epochs = 30
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..attacks import AttackConfig
from ..data.bundled import BUNDLED
from .grid import QUERIES, STRATEGIES
from .presets import PIPELINE_DATASETS
from .setup import DEFENSES

DATASETS = PIPELINE_DATASETS


class ConfigError(ValueError):
    """A bad setting: names the key, the value and what is allowed."""


@dataclass
class RunConfig:
    dataset: str = "digits"
    data_root: str = ""
    results_dir: str = "results"
    device: str = "cpu"
    seed: int = 0
    eps: float = 1.0
    budget: int = 0
    target_epochs: int = 30
    workers: int = 0
    defenses: list[str] = field(default_factory=lambda: list(DEFENSES))
    queries: list[str] = field(default_factory=lambda: list(QUERIES))
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
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
        for key, allowed in (("defenses", DEFENSES), ("queries", QUERIES), ("strategies", STRATEGIES)):
            values = getattr(self, key)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"run.{key} must be a non-empty list, got {values!r}")
            for v in values:
                one_of(f"run.{key}", v, allowed)
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0 < self.eps <= 2:
            raise ConfigError(f"run.eps = {self.eps!r} is not allowed; use a number in (0, 2]")
        for key in ("seed", "budget", "target_epochs", "workers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "target_epochs" else 0):
                raise ConfigError(f"run.{key} = {value!r} is not allowed; use a non-negative integer")
        self.attack_config()
        return self

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "RunConfig":
        """Defaults, then the TOML file's [run] and [attack] tables, then `overrides` (None values ignored)."""
        values: dict[str, Any] = {}
        if path is not None:
            with open(path, "rb") as f:
                try:
                    data = tomllib.load(f)
                except tomllib.TOMLDecodeError as err:
                    raise ConfigError(f"{path}: {err}") from None
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
        return cls(**values).validate()
