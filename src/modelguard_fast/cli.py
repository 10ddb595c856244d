"""The modelguard-fast command line."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__, params


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    print(run_demo(dataset=args.dataset, eps_values=args.eps, epochs=args.epochs, seed=args.seed,
                   device=args.device, progress=not args.quiet))
    return 0


def _device_arg(text: str) -> str:
    """An argparse type: a torch device this machine can use (checked before any work starts)."""
    from ._validation import torch_device

    try:
        torch_device(text, "--device")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


_SETUP_KEYS = ("dataset", "data_root", "results_dir", "device", "seed", "target_epochs", "budget")
_GRID_KEYS = ("eps", "workers", "defenses", "queries", "strategies", "seeds", "vary_target", "backend",
              "ray_address")


def _config(args: argparse.Namespace, keys: tuple[str, ...] = _SETUP_KEYS + _GRID_KEYS):
    """The RunConfig of the config file and the flags among `keys` (the others are the subcommand's own)."""
    from .experiments.config import RunConfig

    return RunConfig.load(args.config, **{k: getattr(args, k) for k in keys if hasattr(args, k)})


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


def _add_setup_options(parser: argparse.ArgumentParser, cells: bool = True) -> None:
    """The options every experiment on a prepared target shares (they override the config file's [run]);
    with `cells`, also those of the experiments made of attack cells (run, sweep)."""
    parser.add_argument("--config", help="TOML file with [run] and [attack] tables (see "
                                          "modelguard_fast/experiments/config.py for every key)")
    parser.add_argument("--dataset", choices=["digits", "mnist5k", "cifar10", "cifar100"],
                        help="digits or mnist5k (bundled), or cifar10 / cifar100 from --data-root (default: digits)")
    parser.add_argument("--data-root", dest="data_root",
                        help="folder of the paper's datasets: cifar10/ or cifar100/, tinyimagenet/ (the attacker's "
                             "pool) and svhn/ (outliers), laid out as modelguard_fast/data/local.py says")
    parser.add_argument("--results-dir", dest="results_dir", help="folder of tables, plots and the cache "
                                                                   "(default: results)")
    parser.add_argument("--device", help="torch device for training and attacks, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--seed", type=int, help="seed of data split, models and attacks (default: 0)")
    parser.add_argument("--target-epochs", dest="target_epochs", type=int,
                        help="training epochs of the target and its misinformation model (default: 30)")
    if not cells:
        return
    parser.add_argument("--budget", type=int, help="images each attack queries (default 0: the whole attacker pool)")
    parser.add_argument("--workers", type=int,
                        help="processes running attack cells (default 0: one per CPU core, one on a GPU); a "
                             "cell's numbers do not depend on it")
    parser.add_argument("--seeds", type=_seeds_arg,
                        help="comma-separated seeds, e.g. 0,1,2: every cell is repeated with each (the attacker's "
                             "query order, the substitute's initialisation and training order); tables give the "
                             "mean and a 95%% interval (default: --seed alone)")
    parser.add_argument("--vary-target", dest="vary_target", action="store_true", default=None,
                        help="with --seeds: each seed also re-draws the data split and retrains the target")
    parser.add_argument("--backend", choices=["local", "ray"],
                        help="local: worker processes on this machine (default); ray: Ray tasks, on a local "
                             "instance or the cluster at --ray-address (pip install 'modelguard_fast[cluster]')")
    parser.add_argument("--ray-address", dest="ray_address",
                        help="with --backend ray: the cluster to join, e.g. auto (started by `ray start --head`) "
                             "or ray://host:10001 (default: a local instance started for the run)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _seeds_arg(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of seeds; use comma-separated non-negative "
                                         "integers, e.g. 0,1,2") from None
    return seeds


def build_parser() -> argparse.ArgumentParser:
    from .attacks import QUERY_STRATEGIES, RECOVERY_STRATEGIES
    from .defenses.registry import DEFENSES

    parser = argparse.ArgumentParser(prog="modelguard-fast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="the paper's main table: every query strategy x attack x defense on a bundled dataset",
        description="Trains the target (with Outlier Exposure) and the misinformation model, calibrates "
                    "the baselines, runs every (query strategy, attack strategy, defense) cell and writes "
                    "results/<dataset>/table.{md,csv,json} and table.png (the table as a heat map, with each "
                    "defense's worst case). Finished cells are cached under "
                    "results/cache, so an interrupted run resumes and a changed setting recomputes only "
                    "what it touches. Options override the config file's [run] table.",
    )
    _add_setup_options(run)
    run.add_argument("--eps", type=float, help="L1 budget of ModelGuard-W, ModelGuard-S and MAD; RevSig's beta is "
                                               "calibrated to it (default: 1.0)")
    run.add_argument("--defenses", nargs="+", help=f"subset of: {' '.join(DEFENSES)}")
    run.add_argument("--queries", nargs="+", help=f"subset of: {' '.join(QUERY_STRATEGIES)}")
    run.add_argument("--strategies", nargs="+", help=f"subset of: {' '.join(RECOVERY_STRATEGIES)}")
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
    sweep.add_argument("--eps-values", dest="eps_values", type=_eps_arg, nargs="+", default=list(SWEEP_EPS),
                       help=f"L1 budgets, each in [0, 2] (default: {' '.join(map(str, SWEEP_EPS))})")
    sweep.add_argument("--defenses", dest="sweep_defenses", nargs="+", default=list(SWEEP_DEFENSES),
                       help=f"subset of: {' '.join(SWEEP_DEFENSES)} (default: all)")
    sweep.add_argument("--strategies", dest="sweep_strategies", nargs="+", default=list(SWEEP_STRATEGIES),
                       help=f"attack strategies, subset of: {' '.join(RECOVERY_STRATEGIES)} "
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
    demo.add_argument("--eps", type=_eps_arg, nargs="+", default=[0.5, 1.0],
                      help="ModelGuard-S L1 budgets to compare, each in [0, 2] (default: 0.5 1.0)")
    demo.add_argument("--epochs", type=_int_arg(1), default=30,
                      help="training epochs of target and substitutes, >= 1 (default: 30)")
    demo.add_argument("--seed", type=int, default=0, help="seed of data split, models and query order")
    demo.add_argument("--device", type=_device_arg, default="cpu",
                      help="torch device, e.g. cpu or cuda (default: cpu)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=_demo)
    _add_study_parsers(sub)
    from .stores.commands import add_parser as _add_codebook_parser

    _add_codebook_parser(sub)
    return parser


# ---------------------------------------------------------------- studies: timing, ood, growth, qpi
_STUDY_EPILOG = ("Trains (or reads from results/cache) the dataset's target, as `run` does, then writes "
                 "results/<dataset>/{name}.{{md,csv,json}}{png} and prints the table.")


def _eps_arg(text: str) -> float:
    """An L1 budget from the command line, as modelguard_fast.params.eps rules."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; use a number in [0, 2]") from None
    try:
        return params.eps(value, "eps")
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def _int_arg(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; use an integer >= {minimum}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is not allowed; use an integer >= {minimum}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _study_parser(sub, name: str, help: str, description: str, handler, plot: bool = True) -> argparse.ArgumentParser:
    """A study subcommand with the options every experiment shares."""
    png = f" and {name}.png" if plot else ""
    parser = sub.add_parser(name, help=help, description=description,
                            epilog=_STUDY_EPILOG.format(name=name, png=png))
    _add_setup_options(parser, cells=False)
    parser.set_defaults(handler=handler)
    return parser


def _add_study_parsers(sub) -> None:
    timing = _study_parser(
        sub, "timing", "response time of each defense (the paper's Figure 6)",
        "Median seconds per query of each of the 8 defenses: the target's forward pass and softmax plus the "
        "defense, and the defense's part alone (its overhead over None), at each batch size. Warm-up calls "
        "are not counted; on a GPU the device is synchronised before every clock reading; ModelGuard-S "
        "is timed with codebooks already grown on the attacker pool.", _timing)
    timing.add_argument("--batch-sizes", dest="batch_sizes", type=_int_arg(1), nargs="+", default=[1, 256],
                        help="queries per call (default: 1 256)")
    timing.add_argument("--eps", type=_eps_arg, default=1.0,
                        help="L1 budget of ModelGuard-W, ModelGuard-S and MAD, in [0, 2] (default: 1.0)")
    timing.add_argument("--repeats", type=_int_arg(1), default=30,
                        help="timed rounds; each round every defense answers one batch (default: 30)")
    timing.add_argument("--warmup", type=_int_arg(0), default=3,
                        help="rounds before the timed ones, not counted (default: 3)")
    timing.add_argument("--threads", type=_int_arg(1), default=None,
                        help="torch CPU threads while timing (default: torch's setting; 1 is steadier on a "
                             "busy machine)")

    ood = _study_parser(
        sub, "ood", "AUROC of OOD detection on defended answers (the paper's Figure 5, left)",
        "AUROC of the maximum probability of the defended answers for telling the target's test images "
        "(ID) from out-of-distribution images, for ModelGuard-S, ModelGuard-W and MAD at each eps, with "
        "None and Top-1 as reference lines. OOD sets: 'photos' (default), patches of matplotlib's sample "
        "photograph and elevation map, never seen in training; 'oe-photos', other crops of the photographs "
        "the target's Outlier Exposure trained on (optimistic, for comparison).", _ood)
    ood.add_argument("--eps", type=_eps_arg, nargs="+", default=[0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0],
                     help="L1 budgets, each in [0, 2] (default: 0.25 0.5 ... 2.0)")
    ood.add_argument("--ood", default="photos", choices=["photos", "oe-photos"], help="OOD set (default: photos)")
    ood.add_argument("--ood-count", dest="ood_count", type=_int_arg(1), default=1000,
                     help="OOD images (default: 1000)")

    growth = _study_parser(
        sub, "growth", "ModelGuard-S centroids along the attacker's queries (the paper's Figure 5, right)",
        "Number of ModelGuard-S centroids after each prefix of the KnockoffNets query stream (the "
        "attacker's pool in the seeded order every attack uses), for each eps.", _growth)
    growth.add_argument("--eps", type=_eps_arg, nargs="+", default=[0.5, 1.0, 1.5],
                        help="L1 budgets, each in [0, 2] (default: 0.5 1.0 1.5)")
    growth.add_argument("--checkpoints", type=_int_arg(1), default=20,
                        help="prefix lengths at which the centroids are counted (default: 20)")
    growth.add_argument("--budget", type=_int_arg(0), default=0,
                        help="queries in the stream (default 0: the whole attacker pool)")
    growth.add_argument("--query-seed", dest="query_seed", type=int, default=42,
                        help="seed of the query order, AttackConfig.query_seed (default: 42)")

    qpi = _study_parser(
        sub, "qpi", "ordered vs non-ordered ModelGuard-S under 2-QPI (the paper's Table 6)",
        "Attacks ModelGuard-S with order 'first' (Algorithm 1) and 'nearest' (non-ordered incremental "
        "quantization) by KnockoffNets 1-QPI and 2-QPI; reports the predictions changed in the second pass, "
        "the recovery distance on them of the first pass and of the average, and both extraction "
        "accuracies. Finished attacks are cached under results/cache.", _qpi, plot=False)
    qpi.add_argument("--eps", type=_eps_arg, default=1.0, help="L1 budget of ModelGuard-S, in [0, 2] (default: 1.0)")
    qpi.add_argument("--budget", type=_int_arg(0), default=0,
                     help="images the attacker queries (default 0: the whole attacker pool)")
    qpi.add_argument("--epochs", type=_int_arg(1), default=None,
                     help="substitute training epochs (default: the [attack] table's, else 30)")


def _run_study(args: argparse.Namespace, name: str, compute, plot=None, title: str = "",
               float_format: str = ".4f", extra: dict | None = None) -> int:
    """Prepares the setup, runs `compute(setup, cache, config)` -> (header, rows), writes the table, its record
    and `plot(header, rows, png, title=...)` to results/<dataset>/<name>.*, and prints the table and where it
    went. `extra` goes into the JSON record beside the settings."""
    import dataclasses
    import time
    from pathlib import Path

    from .experiments.cache import Cache
    from .experiments.config import ConfigError
    from .experiments.report import markdown, versions, write_outputs
    from .experiments.setup import prepare
    from .experiments.studies import StudyError

    started = time.perf_counter()
    try:
        config = _config(args, _SETUP_KEYS)
    except ConfigError as err:
        print(f"modelguard-fast {name}: {err}", file=sys.stderr)
        return 2
    cache = Cache(Path(config.results_dir) / "cache")
    setup = prepare(config.dataset, cache, device=config.device, seed=config.seed,
                    target_epochs=config.target_epochs, data_root=config.data_root or None)
    try:
        header, rows = compute(setup, cache, config)
    except StudyError as err:
        print(f"modelguard-fast {name}: {err}", file=sys.stderr)
        return 2
    folder = Path(config.results_dir) / config.dataset
    options = {k: v for k, v in vars(args).items() if k != "handler"}
    record = {"study": name, "config": dataclasses.asdict(config), "options": options, **(extra or {}),
              "versions": versions(), "seconds": time.perf_counter() - started}
    write_outputs(folder, name, header, rows, record, float_format)
    written = f"{folder}/{name}.{{md,csv,json}}"
    if plot is not None:
        plot(header, rows, folder / f"{name}.png", title=f"{config.dataset}: {title}")
        written += f" and {folder}/{name}.png"
    print(f"{markdown(header, rows, float_format)}\n\nWritten to {written} in {time.perf_counter() - started:.0f} s.")
    return 0


def _timing(args: argparse.Namespace) -> int:
    from .experiments import plots, studies

    return _run_study(args, "timing", lambda setup, cache, config: studies.response_times(
        setup, args.batch_sizes, eps=args.eps, repeats=args.repeats, warmup=args.warmup, device=config.device,
        threads=args.threads),
        plots.plot_response_times, "response time per query", float_format=".3g")


def _ood(args: argparse.Namespace) -> int:
    from .experiments import plots, studies

    return _run_study(args, "ood", lambda setup, cache, config: studies.ood_auroc(
        setup, args.eps, ood=args.ood, ood_count=args.ood_count, seed=config.seed), plots.plot_ood_auroc,
        f"AUROC of max probability, OOD set {args.ood!r}")


def _growth(args: argparse.Namespace) -> int:
    from .experiments import plots, studies

    return _run_study(args, "growth", lambda setup, cache, config: studies.centroid_growth(
        setup, args.eps, checkpoints=args.checkpoints, budget=args.budget, query_seed=args.query_seed),
        plots.plot_centroid_growth, "ModelGuard-S centroids along the KnockoffNets queries")


def _qpi(args: argparse.Namespace) -> int:
    from .experiments import studies

    def compute(setup, cache, config):
        attack = config.attack_config()
        attack = attack if args.epochs is None else attack.replace(epochs=args.epochs)
        return studies.qpi_study(setup, cache, attack, budget=args.budget, eps=args.eps, seed=config.seed,
                                 device=config.device)

    return _run_study(args, "qpi", compute)


def main(argv: list[str] | None = None) -> int:
    """Runs a subcommand; a bad setting or a missing dataset is reported in one line (exit status 2), not a
    traceback."""
    from .data.local import DatasetNotFoundError
    from .experiments.config import ConfigError
    from .experiments.studies import StudyError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.handler(args)
    except (ConfigError, StudyError, DatasetNotFoundError) as err:
        print(f"modelguard-fast {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
