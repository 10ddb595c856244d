"""What the compiled module was built with, and the backends a user can choose from."""

from __future__ import annotations

from ._kernels import C as _C


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


def kernel_threads() -> int:
    """The number of threads the CPU kernels run on (OpenMP's maximum; OMP_NUM_THREADS sets it)."""
    return int(_C.max_threads())


def kernel_isa() -> str:
    """The instruction-set level of the CPU kernels in use: "x86-64-v3" (AVX2, FMA, BMI2; chosen at import
    when the CPU runs it) or "baseline" (x86-64 SSE2, or any other architecture). The environment variable
    MODELGUARD_FAST_ISA, read at import, forces one ("baseline", "x86-64-v3"; default "auto"). Every level
    gives the same bits."""
    return str(_C.isa())


#: Every backend name, in order of preference for CPU arrays then CUDA arrays.
BACKENDS = ("cpu-avx512", "cpu", "cuda")


def available_backends() -> tuple[str, ...]:
    """The kernel backends this build can run here, best first.

    "cpu" (portable C++, always), "cpu-avx512" (the AVX-512 row preparation of
    ModelGuard-W, when the build has it and this CPU runs it) and "cuda" (a
    CUDA build with a visible device). Pass one as `backend=` to
    modelguard_fast.ops.solve_mgw; every backend gives the same bits.
    """
    found = []
    if _C.mgw_cpu_simd():
        found.append("cpu-avx512")
    found.append("cpu")
    if cuda_available():
        found.append("cuda")
    return tuple(found)


def choose_backend(backend, on_cuda: bool, name: str = "probs") -> str:
    """The backend to run: `backend` (checked: available, and on the input's device) or the best one."""
    if backend is None:
        return "cuda" if on_cuda else available_backends()[0]
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    if (backend == "cuda") != on_cuda:
        where = "a CUDA array" if on_cuda else "a CPU array"
        raise ValueError(f"backend={backend!r} cannot run on {name}, which is {where}; move it, or pass "
                         "backend=None")
    if backend not in available_backends():
        raise ValueError(f"backend={backend!r} is not available here; available: {available_backends()}")
    return backend
