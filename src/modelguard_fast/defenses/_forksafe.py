"""Guards stay usable across os.fork(): the fork waits for calls in flight, the child gets fresh locks.

A lock held by another thread at the instant of fork() would stay held
forever in the child (that thread does not exist there), so the child's
first call would deadlock; and the state that thread was changing could be
half-written. Before a fork every tracked guard's lock is taken (in-flight
calls finish first), so the child inherits consistent state; it then gets
new, free locks, and the parent releases its own.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable

_GUARDS: "weakref.WeakKeyDictionary[Any, Callable[[], Any]]" = weakref.WeakKeyDictionary()
_registry = threading.Lock()  # held only while the registry is read or changed, never while waiting for a guard
_held: list[Any] = []


def track(guard: Any, new_lock: Callable[[], Any]) -> None:
    """Registers `guard`, whose lock is `guard._lock`, made by `new_lock()`."""
    with _registry:
        _GUARDS[guard] = new_lock


def _before_fork() -> None:
    with _registry:
        guards = list(_GUARDS.keys())
    for guard in guards:
        guard._lock.acquire()
        _held.append(guard)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop()._lock.release()


def _after_fork_in_child() -> None:
    global _registry
    _registry = threading.Lock()
    _held.clear()
    for guard, new_lock in list(_GUARDS.items()):
        guard._lock = new_lock()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)
