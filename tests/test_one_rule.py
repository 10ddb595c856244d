"""One rule in one place (issue 10): every defense validates its input and its parameters the same way.

Each drifted copy found in the issue, and the validation faults of issues 12 and 13 of the same kind,
is a test here with its right value.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import modelguard_fast as mgf
from modelguard_fast import ops
from modelguard_fast.experiments.config import ConfigError, RunConfig
from modelguard_fast.experiments.studies import StudyError, check_eps
from modelguard_fast.experiments.sweep import check_sweep

# The row of issue 10: float32, its entries sum to 1.0000000112 in exact arithmetic.
ISSUE_ROW = np.array([0.19066131, 0.03494434, 0.07067952, 0.05078050, 0.08392707, 0.12363263, 0.20240143,
                      0.14776324, 0.09520996], dtype=np.float32)
C = ISSUE_ROW.size


def uniform(rows, cols=C):
    return np.full((rows, cols), 1.0 / cols)


def frozen(eps=0.5, sum_tol=1e-3, dtype=np.float32, cols=C):
    """A FrozenModelGuardS holding one centroid per class (its one-hot vector)."""
    return mgf.FrozenModelGuardS(np.eye(cols, dtype=dtype), np.arange(cols + 1, dtype=np.int64), eps, sum_tol)


def every_defense(sum_tol):
    """name -> a call `probs -> answer` for every defense and both ops, all with this sum_tol."""
    def query_view(probs):  # a valid view of the query, whatever the row: the row itself
        return probs

    mad = mgf.MAD(eps=0.5, sum_tol=sum_tol)
    am = mgf.AdaptiveMisinformation(tau=0.5, sum_tol=sum_tol)
    codebook, offsets = np.eye(C, dtype=np.float32), np.arange(C + 1, dtype=np.int64)
    return {
        "NoDefense": mgf.NoDefense(sum_tol=sum_tol),
        "Top1": mgf.Top1(sum_tol=sum_tol),
        "Rounding": mgf.Rounding(sum_tol=sum_tol),
        "ReverseSigmoid": mgf.ReverseSigmoid(0.1, sum_tol=sum_tol),
        "MAD": lambda p: mad(p, query_view(p)),
        "AM": lambda p: am(p, query_view(p)),
        "ModelGuardS": mgf.ModelGuardS(C, eps=0.5, sum_tol=sum_tol),
        "ModelGuardW": mgf.ModelGuardW(eps=0.5, sum_tol=sum_tol),
        "FrozenModelGuardS": frozen(sum_tol=sum_tol),
        "ops.mgs_search": lambda p: ops.mgs_search(p, codebook, offsets, 0.5, sum_tol=sum_tol),
        "ops.solve_mgw": lambda p: ops.solve_mgw(p, 0.5, sum_tol=sum_tol),
    }


def verdict(call, probs):
    try:
        call(probs)
    except ValueError as err:
        return str(err).replace("; pass renormalize=True to rescale rows", "")
    return "accepted"


# ------------------------------------------------------------------ one probability-row check
def test_the_issue_row_gets_one_verdict_from_every_defense():
    # Checked by the C++ check_probability_row in the row's dtype: float32 lanes sum to
    # 1.0000000037252903, which sum_tol = 0 refuses (the exact sum is not 1 either).
    verdicts = {name: verdict(call, ISSUE_ROW) for name, call in every_defense(0.0).items()}
    assert set(verdicts.values()) == {
        "probs rows must sum to 1 (within sum_tol=0.0), row 0 sums to 1.0000000037252903"}, verdicts
    verdicts = {name: verdict(call, ISSUE_ROW) for name, call in every_defense(1e-8).items()}
    assert set(verdicts.values()) == {"accepted"}, verdicts


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sum_tol", [0.0, 1e-7, 1e-3])
def test_random_rows_get_one_verdict_from_every_defense(dtype, sum_tol):
    rng = np.random.default_rng(int(sum_tol * 1e7) + dtype().itemsize)
    for _ in range(20):
        row = rng.dirichlet(np.full(C, 0.5)).astype(dtype)
        row[0] += dtype(rng.choice([0.0, 1e-7, 5e-4, 2e-3]))
        verdicts = {name: verdict(call, row) for name, call in every_defense(sum_tol).items()}
        assert len(set(verdicts.values())) == 1, verdicts


@pytest.mark.skipif(not mgf.cuda_available(), reason="needs a CUDA device")
def test_the_issue_row_gets_the_same_verdict_on_the_gpu():
    row = torch.from_numpy(ISSUE_ROW).cuda()
    for sum_tol, expected in ((0.0, "sums to 1.0000000037252903"), (1e-8, "accepted")):
        verdicts = {name: verdict(call, row) for name, call in every_defense(sum_tol).items()}
        assert all(expected in v for v in verdicts.values()), verdicts


# ------------------------------------------------------------------ one eps rule
def eps_takers():
    y = uniform(2)
    return {
        "ModelGuardS": lambda e: mgf.ModelGuardS(C, eps=e),
        "ModelGuardW": lambda e: mgf.ModelGuardW(eps=e),
        "MAD": lambda e: mgf.MAD(eps=e),
        "FrozenModelGuardS": lambda e: frozen(eps=e),
        "ops.mgs_search": lambda e: ops.mgs_search(y, np.eye(C), np.arange(C + 1, dtype=np.int64), e),
        "ops.solve_mgw": lambda e: ops.solve_mgw(y, e),
        "studies": lambda e: check_eps(e),
        "RunConfig": lambda e: RunConfig.load(eps=e),
        "sweep": lambda e: check_sweep([e], ["mgs"], ["naive"]),
    }


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1.0, 2.0, np.float32(0.5), 1])
def test_every_defense_and_setting_accepts_eps_in_0_2(eps):
    for name, take in eps_takers().items():
        take(eps)  # no error


@pytest.mark.parametrize("eps,error,message", [
    (-1e-9, ValueError, r"must be in \[0, 2\] \(an L1 budget between probability vectors; 2 is the largest "
                        r"such distance\), got -1e-09"),
    (2.0000001, ValueError, r"must be in \[0, 2\] \(an L1 budget .*\), got 2.0000001"),
    (3.0, ValueError, r"must be in \[0, 2\] .*got 3.0"),
    (math.nan, ValueError, r"must be finite, got nan"),
    (math.inf, ValueError, r"must be finite, got inf"),
    (True, TypeError, r"must be a real number, got True"),
    ("1", TypeError, r"must (be a real number|hold real numbers)"),
])
def test_every_defense_and_setting_refuses_the_same_eps(eps, error, message):
    for name, take in eps_takers().items():
        # The experiments raise their own ConfigError / StudyError (ValueErrors) with the same text.
        expected = (error, ConfigError, StudyError) if name in ("studies", "RunConfig", "sweep") else error
        with pytest.raises(expected, match=r"eps.*" + message):
            take(eps)


def test_the_cli_reads_eps_by_the_same_rule(capsys):
    from modelguard_fast.cli import main

    for args, message in ((["sweep", "--eps-values", "0.5", "2.5"], "'2.5': eps must be in [0, 2]"),
                          (["timing", "--eps", "nan"], "'nan': eps must be finite, got nan"),
                          (["demo", "--eps", "3"], "'3': eps must be in [0, 2]"),
                          (["timing", "--eps", "one"], "'one' is not a number")):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


def test_eps_zero_allows_no_distortion():
    rng = np.random.default_rng(0)
    y = rng.dirichlet(np.ones(C), size=6)
    guard = mgf.ModelGuardS(C, eps=0.0, dtype="float64")
    np.testing.assert_array_equal(guard(y), y)  # every distinct prediction is its own centroid
    np.testing.assert_array_equal(guard(y[::-1]), y[::-1])  # identical ones merge with it
    assert guard.num_centroids == 6
    x, feasible = ops.solve_mgw(y, 0.0, margin=0.0)
    assert feasible.all()
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-15)  # y itself, to float64 rounding
    np.testing.assert_allclose(mgf.MAD(eps=0.0)(y, uniform(6)), y, rtol=0, atol=0)


# ------------------------------------------------------------------ NoDefense is a checked copy
@pytest.mark.parametrize("make", [np.asarray, torch.from_numpy])
def test_no_defense_returns_a_checked_copy(make):
    y = make(np.random.default_rng(1).dirichlet(np.ones(C), size=5).astype(np.float32))
    out = mgf.NoDefense()(y)
    assert type(out) is type(y) and out.dtype == y.dtype
    np.testing.assert_array_equal(np.asarray(out), np.asarray(y))
    out[0, 0] = 5.0
    assert y[0, 0] != 5.0
    with pytest.raises(ValueError, match=r"probs must be non-negative probabilities, got -0.1\d* at row 1, column 2"):
        bad = np.asarray(y).copy()
        bad[1, 2] = -0.1
        mgf.NoDefense()(bad)


# ------------------------------------------------------------------ the public surface
def subpackages():
    yield mgf
    for info in pkgutil.walk_packages(mgf.__path__, "modelguard_fast."):
        if info.ispkg:
            yield importlib.import_module(info.name)


def test_every_name_in_every_all_exists_and_star_imports_work():
    packages = list(subpackages())
    assert {"modelguard_fast.attacks", "modelguard_fast.defenses", "modelguard_fast.ops"} <= {
        p.__name__ for p in packages}
    for package in packages:
        names = getattr(package, "__all__", None)
        if names is None:
            continue
        missing = [n for n in names if not hasattr(package, n)]
        assert not missing, f"{package.__name__}.__all__ lists missing names {missing}"
        namespace: dict = {}
        exec(f"from {package.__name__} import *", namespace)
        assert set(names) <= set(namespace)


def test_the_defenses_package_exports_every_defense():
    from modelguard_fast import defenses

    defined = {name for name, value in vars(mgf).items()
               if isinstance(value, type) and issubclass(value, mgf.Defense) and value is not mgf.Defense}
    assert defined == {"MAD", "AdaptiveMisinformation", "FrozenModelGuardS", "ModelGuardS", "ModelGuardW",
                       "NoDefense", "ReverseSigmoid", "Rounding", "Top1"}
    assert defined <= set(defenses.__all__)


REPO = Path(__file__).resolve().parents[1]


def test_import_from_the_repository_root_finds_the_installed_package():
    out = subprocess.run([sys.executable, "-c", "import modelguard_fast as m; print(m.__file__)"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert REPO / "src" not in Path(out).parents, out


def test_the_source_folder_without_its_compiled_module_says_how_to_fix_it():
    source = REPO / "src" / "modelguard_fast"
    if list(source.glob("_C*.so")) or list(source.glob("_C*.pyd")):
        pytest.skip("a compiled module was copied into the source folder")
    code = f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); import modelguard_fast"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: modelguard_fast's compiled module (modelguard_fast._C) is missing")
    assert "scripts/setup.sh" in last and "do not put src/ on sys.path" in last
    assert "circular import" not in last


def test_available_backends_and_choosing_one():
    backends = mgf.available_backends()
    assert "cpu" in backends and ("cuda" in backends) == mgf.cuda_available()
    y = np.random.default_rng(2).dirichlet(np.ones(C), size=4)
    answers = [ops.solve_mgw(y, 0.5, backend=b)[0] for b in backends if b != "cuda"]
    for other in answers[1:]:
        np.testing.assert_array_equal(other, answers[0])
    with pytest.raises(ValueError, match=r"backend must be None or one of 'cpu-avx512', 'cpu', 'cuda'; got 'gpu'"):
        ops.solve_mgw(y, 0.5, backend="gpu")
    with pytest.raises(ValueError, match=r"backend='cuda' cannot run on probs, which is a CPU array"):
        ops.solve_mgw(y, 0.5, backend="cuda")


# ------------------------------------------------------------------ issue 12, fault 12: parameters
@pytest.mark.parametrize("kwargs,error,message", [
    ({"eps": math.nan}, ValueError, r"eps must be finite, got nan"),
    ({"eps": -1}, ValueError, r"eps must be in \[0, 2\] .*got -1.0"),
    ({"eps": True}, TypeError, r"eps must be a real number, got True"),
    ({"sum_tol": math.inf}, ValueError, r"sum_tol must be finite, got inf"),
    ({"sum_tol": math.nan}, ValueError, r"sum_tol must be finite, got nan"),
    ({"sum_tol": -1}, ValueError, r"sum_tol must be in \[0, 1\) .*got -1.0"),
    ({"sum_tol": 1.0}, ValueError, r"sum_tol must be in \[0, 1\) \(at 1 an all-zero row would pass"),
    ({"sum_tol": True}, TypeError, r"sum_tol must be a real number, got True"),
])
def test_frozen_guard_and_mgs_search_check_eps_and_sum_tol(kwargs, error, message):
    args = {"eps": 0.5, "sum_tol": 1e-3, **kwargs}
    with pytest.raises(error, match=message):
        frozen(**args)
    with pytest.raises(error, match=message):
        ops.mgs_search(uniform(1), np.eye(C), np.arange(C + 1, dtype=np.int64), args["eps"], sum_tol=args["sum_tol"])
    with pytest.raises(error, match=message):
        mgf.ModelGuardS(C, **args)


@pytest.mark.parametrize("change,message", [
    (lambda cb: cb.__setitem__((2, 2), np.nan), r"codebook must be finite, got nan at row 2, column 2"),
    (lambda cb: cb.__setitem__((3, 0), -0.5), r"codebook must be non-negative probabilities, got -0.5 at row 3"),
    (lambda cb: cb.__setitem__(4, np.eye(C)[0]),
     r"codebook row 4 is filed under class 4 by offsets, but its top-1 class is 0"),
    (lambda cb: cb.__setitem__((5, 5), 3.0), r"codebook rows must sum to 1 \(within sum_tol=0.001\), row 5 sums to 3"),
])
def test_codebook_contents_are_checked(change, message):
    codebook, offsets = np.eye(C), np.arange(C + 1, dtype=np.int64)
    change(codebook)
    with pytest.raises(ValueError, match=message):
        mgf.FrozenModelGuardS(codebook, offsets, 0.5, 1e-3)
    with pytest.raises(ValueError, match=message):
        ops.mgs_search(uniform(1), codebook, offsets, 0.5)


def test_guard_dtype_none_is_refused_not_float64():
    with pytest.raises(ValueError, match=r"dtype must be float32 or float64, got None"):
        mgf.ModelGuardS(3, dtype=None)


@pytest.mark.parametrize("name", list(every_defense(1e-3)))
def test_sparse_tensors_are_a_type_error_for_every_defense(name):
    sparse = torch.from_numpy(uniform(2)).to_sparse()
    with pytest.raises(TypeError, match=r"probs must be a dense \(strided\) tensor, got layout torch.sparse_coo"):
        every_defense(1e-3)[name](sparse)


@pytest.mark.parametrize("name", list(every_defense(1e-3)))
def test_a_negative_stride_row_is_answered_like_its_copy(name):
    rows = np.random.default_rng(3).dirichlet(np.ones(C), size=3)
    flipped = rows[::-1][:1]  # one row, negative row stride
    assert flipped.strides[0] < 0
    answer, reference = every_defense(1e-3)[name](flipped), every_defense(1e-3)[name](flipped.copy())
    for got, want in zip(answer if isinstance(answer, tuple) else (answer,),
                         reference if isinstance(reference, tuple) else (reference,)):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ issue 13, fault 6: bfloat16 rows
def bf16_softmax_rows(rows=64, seed=0):
    logits = torch.randn(rows, 10, generator=torch.Generator().manual_seed(seed)) * 3
    return torch.softmax(logits.to(torch.bfloat16), dim=1)


def test_bfloat16_rows_are_held_to_their_own_precision_by_every_defense():
    probs = bf16_softmax_rows()
    misses = (probs.float().sum(dim=1) - 1).abs()
    assert misses.max() > 1e-3  # the default sum_tol alone would refuse some (e.g. 0.998046875)
    codebook, offsets = np.eye(10, dtype=np.float32), np.arange(11, dtype=np.int64)
    calls = {
        "NoDefense": mgf.NoDefense(), "Top1": mgf.Top1(), "Rounding": mgf.Rounding(),
        "ReverseSigmoid": mgf.ReverseSigmoid(0.1), "MAD": lambda p: mgf.MAD(eps=0.5)(p, p),
        "AM": lambda p: mgf.AdaptiveMisinformation(0.5)(p, p), "ModelGuardS": mgf.ModelGuardS(10),
        "ModelGuardW": mgf.ModelGuardW(), "FrozenModelGuardS": mgf.FrozenModelGuardS(codebook, offsets, 0.5, 1e-3),
        "ops.mgs_search": lambda p: ops.mgs_search(p, codebook, offsets, 0.5),
        "ops.solve_mgw": lambda p: ops.solve_mgw(p, 0.5)}
    for name, call in calls.items():
        out = call(probs)
        out = out[0] if isinstance(out, tuple) and name != "ops.mgs_search" else out
        if name == "ops.mgs_search":
            assert (np.asarray(out[0]) == probs.float().argmax(dim=1).numpy()).all()
        else:
            assert out.dtype == torch.float32 and out.shape == (64, 10), name
    too_far = probs.clone()
    too_far[3] *= 0.98
    for call, hint in ((mgf.NoDefense(), False), (mgf.Top1(), False), (mgf.ModelGuardS(10), True),
                       (mgf.ModelGuardW(), True)):
        with pytest.raises(ValueError, match=r"row 3 sums to") as err:
            call(too_far)
        assert ("renormalize=True" in str(err.value)) == hint


def test_guarded_model_answers_every_query_of_a_bfloat16_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 10), nn.Softmax(dim=1)).to(torch.bfloat16).eval()
    x = torch.randn(64, 8).to(torch.bfloat16)
    for defense in (mgf.NoDefense(), mgf.ModelGuardS(10), mgf.ModelGuardW(), mgf.Top1()):
        out = mgf.GuardedModel(model, defense, outputs="probs")(x)
        assert out.shape == (64, 10) and out.dtype == torch.float32


# ------------------------------------------------------------------ issue 13, fault 7: float64 near-ties
NEAR_TIE = np.array([0.5 - 1e-9, 0.5 + 1e-9, 0.0])


def test_a_float64_near_tie_is_refused_by_a_float32_guard_and_nothing_changes():
    guard = mgf.ModelGuardS(3, eps=0.5)
    with pytest.raises(ValueError, match=r'probs row 0 has top-1 class 1, but once rounded to float32 .* its top-1 '
                                          r'class is 0: .*build the defense with dtype="float64"'):
        guard(NEAR_TIE)
    assert guard.num_centroids == 0 and guard.num_queries == 0
    for call in (frozen(cols=3), lambda p: ops.mgs_search(p, np.eye(3, dtype=np.float32),
                                                          np.arange(4, dtype=np.int64), 0.5)):
        with pytest.raises(ValueError, match=r'dtype="float64"'):
            call(NEAR_TIE)


def test_a_float64_guard_keeps_the_near_tie_top1():
    guard = mgf.ModelGuardS(3, eps=0.5, dtype="float64")
    answer = guard(NEAR_TIE)
    assert np.argmax(answer) == 1
    assert guard.centroid_counts.tolist() == [0, 1, 0]
    x, feasible = ops.solve_mgw(NEAR_TIE, 0.5)  # ModelGuard-W computes in float64 whatever the guard
    assert feasible and np.argmax(x) == 1
    assert np.argmax(frozen(cols=3, dtype=np.float64)(NEAR_TIE)) == 1


# ------------------------------------------------------------------ the typed kernel boundary
def test_the_compiled_module_is_imported_in_one_module_and_typed_by_its_stub():
    import ast

    package = Path(mgf.__file__).parent
    importers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                       if any(isinstance(node, ast.ImportFrom) and any(a.name == "_C" for a in node.names)
                              or isinstance(node, ast.Import) and any(a.name.endswith("._C") for a in node.names)
                              for node in ast.walk(ast.parse(p.read_text()))))
    assert importers == ["_kernels.py"]
    stub = ast.parse((package / "_C.pyi").read_text())
    typed = {node.name for node in stub.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
             and not node.name.startswith("_")} | {"_testing"}
    built = {name for name in dir(mgf._C) if not name.startswith("__")}
    assert typed == built
