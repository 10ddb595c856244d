"""One torch thread for every model an experiment trains: results then do not depend on the core count."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """torch on one intra-op thread inside the block (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
