"""The boundary to the compiled module: the only place that imports `_C`.

`_C.pyi` (next to this file) types every function the package calls; the
functions here pick the float32 or float64 instantiation and turn kernel
statuses into errors. Hooks that exist only for the tests live in
`_C._testing` and are not part of the package's surface. `C` is the module of
the instruction-set level chosen at import (MODELGUARD_FAST_ISA, else the best
one this CPU runs); kernel_isa() names it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

import numpy as np

try:
    from . import _C as _baseline
except ImportError as err:  # the source folder is on sys.path, or the build failed
    raise ImportError(
        "modelguard_fast's compiled module (modelguard_fast._C) is missing from "
        f"{__name__.rsplit('.', 1)[0]!r} at {__file__.rsplit('/', 1)[0]}: this is the source folder, not an "
        "installed package. Install it (scripts/setup.sh, or pip install .) and do not put src/ on sys.path "
        "or PYTHONPATH; the installed package is then what `import modelguard_fast` finds."
    ) from err

#: The environment variable that picks the kernels' instruction-set level at import.
ISA_VARIABLE = "MODELGUARD_FAST_ISA"
#: Each level and its module: the x86-64 baseline (SSE2; every CPU) and x86-64-v3 (AVX2, FMA, BMI2),
#: the same sources compiled twice (CMakeLists.txt). Every level gives the same bits.
MODULES = {"baseline": "_C", "x86-64-v3": "_C_avx2"}


def built_isas() -> tuple[str, ...]:
    """The instruction-set levels this installation has a module for, baseline first."""
    return tuple(isa for isa, name in MODULES.items() if importlib.util.find_spec(f"{__package__}.{name}"))


def load(isa: str):
    """The compiled module of level `isa` (a key of MODULES), after checking that it is built and that
    this CPU runs it; the tests load each level to compare them bit for bit."""
    if isa not in MODULES:
        raise ValueError(f"isa must be one of {', '.join(map(repr, MODULES))}; got {isa!r}")
    if isa not in built_isas():
        raise ImportError(f"modelguard_fast was built without its {isa} kernels (module {MODULES[isa]}: not an "
                          "x86-64 build, a compiler without -march=x86-64-v3, or MODELGUARD_FAST_ISA_VARIANTS=OFF)")
    if not _baseline.cpu_runs(isa):
        raise ImportError(f"this CPU does not run modelguard_fast's {isa} kernels (it lacks AVX2, FMA or BMI2)")
    return importlib.import_module(f"{__package__}.{MODULES[isa]}")


def _chosen():
    """The module to run: MODELGUARD_FAST_ISA's level when set, else the best one built that this CPU runs."""
    wanted = os.environ.get(ISA_VARIABLE, "auto")
    if wanted == "auto":
        best = [isa for isa in built_isas() if _baseline.cpu_runs(isa)][-1]
        return load(best)
    if wanted not in MODULES:
        raise ValueError(f"{ISA_VARIABLE} must be 'auto' or one of {', '.join(map(repr, MODULES))}; got {wanted!r}")
    return load(wanted)


#: The compiled module every kernel call goes to.
C = _chosen()


def check_rows(x: np.ndarray, sum_tol: float, top: np.ndarray) -> tuple[int, int, int, float]:
    """check_probability_row over a C-contiguous float32/float64 batch: (row, code, column, value) of
    the first bad row (row -1 when all are valid); fills `top` with each row's top-1 class."""
    check = C.check_rows_f32 if x.dtype == np.float32 else C.check_rows_f64
    return check(x, sum_tol, top)


def check_copy_rows(x: np.ndarray, sum_tol: float, out: np.ndarray) -> tuple[int, int, int, float]:
    """check_rows, copying each row to `out` (same shape and dtype) in the same pass."""
    check = C.check_copy_rows_f32 if x.dtype == np.float32 else C.check_copy_rows_f64
    return check(x, sum_tol, out)


def check_rows_cuda(x: Any, sum_tol: float) -> tuple[Any, Any]:
    """check_probability_row over a contiguous float32/float64 CUDA tensor, on the caller's current
    stream: (status, top) per row as int32 / int64 tensors on its device."""
    import torch

    B, C = x.shape
    status = torch.empty(B, dtype=torch.int32, device=x.device)
    top = torch.empty(B, dtype=torch.int64, device=x.device)
    with torch.cuda.device(x.device):
        C.check_rows_cuda(x.data_ptr(), B, C, 0 if x.dtype == torch.float32 else 1, sum_tol, status.data_ptr(),
                           top.data_ptr(), torch.cuda.current_stream(x.device).cuda_stream)
    return status, top
