"""The Defense base class, defined in modelguard_fast.defense (the protocol every defense implements)."""

from ..defense import Defense

__all__ = ["Defense"]
