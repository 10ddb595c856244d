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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelguard-fast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
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
