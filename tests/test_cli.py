"""The command line reports bad input in one line (exit status 2) before doing any work, and leaves nothing behind."""

from __future__ import annotations

import pytest
import torch

from modelguard_fast.cli import main
from modelguard_fast.demo import run_demo

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fails_cleanly(argv, message, capsys, folder):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (folder / "results").exists()  # no empty results/cache left behind


@pytest.mark.parametrize("argv, message", [
    (["run", "--dataset", "cifar10", "--data-root", "missing-root"],
     "modelguard-fast run: cifar10: missing-root/cifar10/cifar-10-batches-bin not found. Place the dataset"),
    (["sweep", "--dataset", "cifar100", "--data-root", "missing-root"], "modelguard-fast sweep: cifar100:"),
    (["growth", "--dataset", "cifar10", "--data-root", "missing-root"], "modelguard-fast growth: cifar10:"),
    (["run", "--config", "missing.toml"],
     "modelguard-fast run: config file missing.toml cannot be read: No such file or directory"),
    (["run", "--device", "bogus"],
     "run.device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got 'bogus'"),
    (["timing", "--device", "bogus"], "modelguard-fast timing: run.device must be a torch device"),
    (["run", "--target-epochs", "0"], "run.target_epochs = 0 is not allowed; use an integer >= 1"),
    (["run", "--budget", "-1"], "run.budget = -1 is not allowed; use an integer >= 0"),
])
def test_bad_settings_are_one_line_errors(argv, message, capsys, in_tmp):
    fails_cleanly(argv, message, capsys, in_tmp)


@NO_CUDA
def test_cuda_without_cuda_is_a_one_line_error(capsys, in_tmp):
    fails_cleanly(["run", "--device", "cuda"], "run.device = 'cuda', but CUDA is not available here", capsys, in_tmp)
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--device", "cuda"])
    assert exit_.value.code == 2
    assert "--device = 'cuda', but CUDA is not available here" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["demo", "--eps", "3"], "argument --eps: '3': eps must be in [0, 2]"),
    (["demo", "--eps", "0.5", "x"], "argument --eps: 'x' is not a number"),
    (["demo", "--epochs", "0"], "argument --epochs: 0 is not allowed; use an integer >= 1"),
    (["demo", "--device", "bogus"], "argument --device: --device must be a torch device"),
])
def test_demo_arguments_are_checked_before_training(argv, message, capsys, in_tmp):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    ({"eps_values": [3]}, r"eps must be in \[0, 2\] .*got 3.0"),
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"device": "bogus"}, "device must be a torch device"),
])
def test_run_demo_checks_its_arguments_first(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_demo(**kwargs)


def test_run_help_names_every_file_it_writes(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "table.png" in capsys.readouterr().out.replace("\n", " ")


def test_demo_shows_progress_and_prints_its_table(capsys, in_tmp):
    assert main(["demo", "--epochs", "1", "--eps", "1.0"]) == 0
    out, err = capsys.readouterr()
    assert "| ModelGuard-S eps=1 |" in out
    assert "target" in err and "substitute (ModelGuard-S eps=1)" in err  # tqdm bars, on stderr
    assert main(["demo", "--epochs", "1", "--eps", "1.0", "--quiet"]) == 0
    assert "substitute" not in capsys.readouterr().err
