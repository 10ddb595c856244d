"""Where ModelGuard-S's codebooks live: one process (LocalStore) or shared by replicas (RedisStore).

`RedisStore` needs the optional extra: pip install "modelguard_fast[redis]".
"""

from .base import CodebookStore, StoreError, StoreUnavailable
from .local import LocalStore

__all__ = ["CodebookStore", "LocalStore", "RedisStore", "StoreError", "StoreUnavailable"]


def __getattr__(name):
    if name == "RedisStore":  # imported on use: redis-py is an optional dependency
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
