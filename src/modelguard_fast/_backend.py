"""Access to the compiled module and to what it was built with."""

from __future__ import annotations

from . import _C


def cuda_built() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return bool(_C.cuda_built())


def cuda_available() -> bool:
    """True when the CUDA kernels were built and a CUDA device is visible."""
    return cuda_built() and _C.cuda_device_count() > 0


def require_cuda(what: str) -> None:
    """Raises a clear error when `what` needs the CUDA kernels but they cannot run."""
    if not cuda_built():
        raise RuntimeError(
            f"{what} is a CUDA array, but modelguard_fast was built without CUDA "
            "(no nvcc at build time, or MODELGUARD_FAST_CUDA=OFF); pass a CPU array or "
            "reinstall with nvcc on the PATH"
        )
    if _C.cuda_device_count() == 0:
        raise RuntimeError(f"{what} is a CUDA array, but no CUDA device is visible to modelguard_fast")
