"""Per-object seeds for the attack's random parts, and seeded model construction."""

from __future__ import annotations

import contextlib
import copy
import zlib
from typing import Callable, Iterator, Union

import numpy as np
import torch
from torch import nn

ModelSource = Union[nn.Module, Callable[[], nn.Module]]


def derive_seed(seed: int, name: str) -> int:
    """An independent 32-bit seed for the part of an attack called `name`."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())]).generate_state(1)
    return int(state[0])


def torch_generator(seed: int, name: str) -> torch.Generator:
    """A CPU torch.Generator for one part of an attack."""
    return torch.Generator().manual_seed(derive_seed(seed, name))


def numpy_generator(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, name))


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seeds torch's default generators (CPU, and `device` when it is a GPU) inside the block only.

    Layer initialisers and dropout draw from torch's default generators and
    take no generator argument; forking them keeps the caller's random state
    untouched and makes construction and training reproducible.
    """
    cuda = device.type == "cuda"
    index = device.index if device.index is not None else (torch.cuda.current_device() if cuda else None)
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def build_model(source: ModelSource, seed: int, device: torch.device, name: str) -> nn.Module:
    """A fresh model on `device`: a deep copy of a module, or a factory's product built under a fixed seed."""
    if isinstance(source, nn.Module):
        model = copy.deepcopy(source)
    elif callable(source):
        with isolated_rng(seed, torch.device("cpu")):
            model = source()
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name} factory must return a torch.nn.Module, got {type(model).__name__}")
    else:
        raise TypeError(f"{name} must be a torch.nn.Module or a callable returning one, got {type(source).__name__}")
    return model.to(device)
