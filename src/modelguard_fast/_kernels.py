"""The boundary to the compiled module: the only place that imports `_C`.

`_C.pyi` (next to this file) types every function the package calls; the
functions here pick the float32 or float64 instantiation and turn kernel
statuses into errors. Hooks that exist only for the tests live in
`_C._testing` and are not part of the package's surface.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from . import _C
except ImportError as err:  # the source folder is on sys.path, or the build failed
    raise ImportError(
        "modelguard_fast's compiled module (modelguard_fast._C) is missing from "
        f"{__name__.rsplit('.', 1)[0]!r} at {__file__.rsplit('/', 1)[0]}: this is the source folder, not an "
        "installed package. Install it (scripts/setup.sh, or pip install .) and do not put src/ on sys.path "
        "or PYTHONPATH; the installed package is then what `import modelguard_fast` finds."
    ) from err

C = _C


def check_rows(x: np.ndarray, sum_tol: float, top: np.ndarray) -> tuple[int, int, int, float]:
    """check_probability_row over a C-contiguous float32/float64 batch: (row, code, column, value) of
    the first bad row (row -1 when all are valid); fills `top` with each row's top-1 class."""
    check = _C.check_rows_f32 if x.dtype == np.float32 else _C.check_rows_f64
    return check(x, sum_tol, top)


def check_copy_rows(x: np.ndarray, sum_tol: float, out: np.ndarray) -> tuple[int, int, int, float]:
    """check_rows, copying each row to `out` (same shape and dtype) in the same pass."""
    check = _C.check_copy_rows_f32 if x.dtype == np.float32 else _C.check_copy_rows_f64
    return check(x, sum_tol, out)


def check_rows_cuda(x: Any, sum_tol: float) -> tuple[Any, Any]:
    """check_probability_row over a contiguous float32/float64 CUDA tensor, on the caller's current
    stream: (status, top) per row as int32 / int64 tensors on its device."""
    import torch

    B, C = x.shape
    status = torch.empty(B, dtype=torch.int32, device=x.device)
    top = torch.empty(B, dtype=torch.int64, device=x.device)
    with torch.cuda.device(x.device):
        _C.check_rows_cuda(x.data_ptr(), B, C, 0 if x.dtype == torch.float32 else 1, sum_tol, status.data_ptr(),
                           top.data_ptr(), torch.cuda.current_stream(x.device).cuda_stream)
    return status, top
