"""An on-disk cache of experiment results and trained weights, keyed by configuration.

A key is the SHA-256 of the canonical JSON of everything that determines the
result (settings, seeds, data, code version), so an interrupted run resumes
from what is cached and a changed setting recomputes only what it touches.
Entries are written atomically; weights are loaded with weights_only=True
(never unpickled as arbitrary objects).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..persistence.atomic import write_atomically


def cache_key(spec: dict[str, Any]) -> str:
    text = json.dumps({"modelguard_fast": __version__, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Cache:
    """The cache under `root`; folders are created by the first write, so a run that fails before it
    writes anything leaves no empty cache behind."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, kind: str, key: str, suffix: str, create: bool = False) -> Path:
        folder = self.root / kind
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{key}{suffix}"

    def get_json(self, kind: str, spec: dict[str, Any]) -> Any | None:
        path = self._path(kind, cache_key(spec), ".json")
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        return record["value"] if record.get("spec") == json.loads(json.dumps(spec, default=str)) else None

    def put_json(self, kind: str, spec: dict[str, Any], value: Any) -> None:
        text = json.dumps({"spec": spec, "value": value}, indent=1, sort_keys=True, default=str)
        write_atomically(self._path(kind, cache_key(spec), ".json", create=True), lambda f: f.write(text.encode()))

    def load_weights(self, kind: str, spec: dict[str, Any], model: nn.Module) -> bool:
        """Loads cached weights into `model`; False when there are none."""
        path = self._path(kind, cache_key(spec), ".pt")
        if not path.exists():
            return False
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return True

    def save_weights(self, kind: str, spec: dict[str, Any], model: nn.Module) -> None:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
        write_atomically(self._path(kind, cache_key(spec), ".pt", create=True), lambda f: f.write(buffer.getvalue()))
