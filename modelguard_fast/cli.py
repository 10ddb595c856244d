"""The modelguard-fast command line."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    print(run_demo(dataset=args.dataset, eps_values=args.eps, epochs=args.epochs, seed=args.seed,
                   device=args.device))
    return 0


def _config(args: argparse.Namespace):
    from .experiments.config import RunConfig

    overrides = {k: getattr(args, k) for k in ("dataset", "results_dir", "device", "seed", "eps", "budget",
                                                "target_epochs", "workers", "defenses", "queries", "strategies")
                 if hasattr(args, k)}
    return RunConfig.load(args.config, **overrides)


def _run(args: argparse.Namespace) -> int:
    from .experiments.config import ConfigError
    from .experiments.main import run_experiment

    try:
        config = _config(args)
    except ConfigError as err:
        print(f"modelguard-fast run: {err}", file=sys.stderr)
        return 2
    print(run_experiment(config, progress=not args.quiet))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .experiments.config import ConfigError
    from .experiments.main import run_sweep_experiment
    from .experiments.sweep import check_sweep

    try:
        config = _config(args)
        check_sweep(args.eps_values, args.sweep_defenses, args.sweep_strategies)
    except ConfigError as err:
        print(f"modelguard-fast sweep: {err}", file=sys.stderr)
        return 2
    print(run_sweep_experiment(config, args.eps_values, args.sweep_defenses, args.sweep_strategies,
                               progress=not args.quiet))
    return 0


def _add_setup_options(parser: argparse.ArgumentParser) -> None:
    """The options every experiment on a prepared target shares (they override the config file's [run])."""
    parser.add_argument("--config", help="TOML file with [run] and [attack] tables (see "
                                          "modelguard_fast/experiments/config.py for every key)")
    parser.add_argument("--dataset", choices=["digits", "mnist5k"], help="bundled dataset (default: digits)")
    parser.add_argument("--results-dir", dest="results_dir", help="folder of tables, plots and the cache "
                                                                   "(default: results)")
    parser.add_argument("--device", help="torch device for training and attacks, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--seed", type=int, help="seed of data split, models and attacks (default: 0)")
    parser.add_argument("--budget", type=int, help="images each attack queries (default 0: the whole attacker pool)")
    parser.add_argument("--target-epochs", dest="target_epochs", type=int,
                        help="training epochs of the target and its misinformation model (default: 30)")
    parser.add_argument("--workers", type=int,
                        help="processes running attack cells (default 0: one per CPU core, one on a GPU); a "
                             "cell's numbers do not depend on it")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelguard-fast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="the paper's main table: every query strategy x attack x defense on a bundled dataset",
        description="Trains the target (with Outlier Exposure) and the misinformation model, calibrates "
                    "the baselines, runs every (query strategy, attack strategy, defense) cell and writes "
                    "results/<dataset>/table.{md,csv,json}. Finished cells are cached under "
                    "results/cache, so an interrupted run resumes and a changed setting recomputes only "
                    "what it touches. Options override the config file's [run] table.",
    )
    _add_setup_options(run)
    run.add_argument("--eps", type=float, help="L1 budget of ModelGuard-W, ModelGuard-S and MAD; RevSig's beta is "
                                               "calibrated to it (default: 1.0)")
    run.add_argument("--defenses", nargs="+", help="subset of: none revsig mad am top1 rounding mgw mgs")
    run.add_argument("--queries", nargs="+", help="subset of: knockoff jbda")
    run.add_argument("--strategies", nargs="+", help="subset of: naive top1 s4l smoothing ddae ddae+ pbayes")
    run.set_defaults(handler=_run)

    from .experiments.sweep import SWEEP_DEFENSES, SWEEP_EPS, SWEEP_STRATEGIES

    sweep = sub.add_parser(
        "sweep",
        help="privacy against utility: extraction accuracy against the L1 budget (the paper's Figures 3 and 4)",
        description="Attacks MAD, ModelGuard-W, ModelGuard-S and Reverse Sigmoid (beta calibrated so its largest "
                    "L1 distortion is about eps) at each L1 budget with KnockoffNets queries and the Naive and "
                    "partial Bayes attacks, and the undefended target as reference. Writes "
                    "results/<dataset>/sweep.{md,csv,json,png} and centroids.png (the partial Bayes attack against "
                    "ModelGuard-S's number of centroids). Shares the cache with `run`.",
    )
    _add_setup_options(sweep)
    sweep.add_argument("--eps-values", dest="eps_values", type=float, nargs="+", default=list(SWEEP_EPS),
                       help=f"L1 budgets, each in (0, 2] (default: {' '.join(map(str, SWEEP_EPS))})")
    sweep.add_argument("--defenses", dest="sweep_defenses", nargs="+", default=list(SWEEP_DEFENSES),
                       help=f"subset of: {' '.join(SWEEP_DEFENSES)} (default: all)")
    sweep.add_argument("--strategies", dest="sweep_strategies", nargs="+", default=list(SWEEP_STRATEGIES),
                       help="attack strategies, subset of: naive top1 s4l smoothing ddae ddae+ pbayes "
                            f"(default: {' '.join(SWEEP_STRATEGIES)})")
    sweep.set_defaults(handler=_sweep)

    demo = sub.add_parser(
        "demo",
        help="train a target on bundled data, defend its answers with ModelGuard-S, and extract it",
        description="Trains a small CNN target on a bundled dataset, answers the attacker's pool "
                    "through each defense, trains a substitute on the answers (the naive KnockoffNets "
                    "attack) and prints utility and extraction accuracy as a Markdown table.",
    )
    demo.add_argument("--dataset", default="digits", choices=["digits", "mnist5k"],
                      help="bundled dataset (default: digits)")
    demo.add_argument("--eps", type=float, nargs="+", default=[0.5, 1.0],
                      help="ModelGuard-S L1 budgets to compare (default: 0.5 1.0)")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs of target and substitutes")
    demo.add_argument("--seed", type=int, default=0, help="seed of data split, models and query order")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
