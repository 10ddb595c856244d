"""`modelguard-fast codebook inspect|export|import`: operations on a shared (Redis) codebook."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    """Adds the `codebook` subcommand and its three actions to the top-level subparsers `sub`."""
    codebook = sub.add_parser(
        "codebook", help="inspect, export or import a ModelGuard-S codebook shared through Redis",
        description="Operations on a ModelGuard-S codebook in a RedisStore (see the README, "
                    "'Shared codebooks (Redis)'). Every centroid read is validated.")
    actions = codebook.add_subparsers(dest="action", required=True, metavar="ACTION")

    def store_args(parser):
        parser.add_argument("--url", required=True, help="redis:// or rediss:// URL of the server")
        parser.add_argument("--name", required=True, help="the codebook's name (one per protected model)")
        parser.add_argument("--timeout", type=float, default=5.0, help="socket timeout in seconds (default: 5)")

    inspect = actions.add_parser("inspect", help="settings, format version and per-class centroid counts",
                                 description="Prints the codebook's settings, format version and centroids "
                                             "per class, after validating every centroid.")
    store_args(inspect)
    inspect.set_defaults(handler=run, action_handler=_inspect)

    export = actions.add_parser("export", help="write the codebook to a snapshot (.npz)",
                                description="Writes the codebook to a snapshot that ModelGuardS.load reads.")
    store_args(export)
    export.add_argument("--out", required=True, help="snapshot path to write (.npz)")
    export.set_defaults(handler=run, action_handler=_export)

    imp = actions.add_parser(
        "import", help="fill a new (empty) codebook name from a snapshot or a journal",
        description="Copies a snapshot (ModelGuardS.save) or a journal into the codebook NAME, which must be "
                    "empty; the copy is one atomic append. A journal's settings are given with the options "
                    "below and must be those it was written with.")
    store_args(imp)
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--snapshot", help="snapshot written by ModelGuardS.save")
    source.add_argument("--journal", help="journal file of a ModelGuardS(journal=...)")
    imp.add_argument("--num-classes", dest="num_classes", type=int, help="journal's num_classes")
    imp.add_argument("--eps", type=float, default=1.0, help="journal's eps (default: 1.0)")
    imp.add_argument("--dtype", default="float32", help="journal's dtype (default: float32)")
    imp.add_argument("--sum-tol", dest="sum_tol", type=float, default=None, help="journal's sum_tol")
    imp.set_defaults(handler=run, action_handler=_import)


def _store(args):
    from .redis import RedisStore

    return RedisStore(args.url, args.name, socket_timeout=args.timeout, connect_timeout=args.timeout)


def _guard(args):
    """A guard on the existing codebook, opened with the settings recorded under the name."""
    from ..defenses.modelguard_s import ModelGuardS
    from .base import StoreError
    from .redis import inspect_settings

    settings = inspect_settings(args.url, args.name, socket_timeout=args.timeout, connect_timeout=args.timeout)
    if settings is None:
        raise StoreError(f"there is no codebook named {args.name!r} at that server")
    return ModelGuardS(settings.pop("num_classes"), **settings, store=_store(args))


def _inspect(args) -> int:
    guard = _guard(args)
    counts = guard.centroid_counts
    print(f"codebook {args.name!r}: {guard.codebook_store.describe()}")
    print(f"format version {guard.codebook_store.format_version}; settings {guard.codebook_store.settings()}")
    print(f"centroids: {int(counts.sum())} (all valid)")
    print("per class: " + " ".join(f"{c}:{n}" for c, n in enumerate(counts.tolist())))
    guard.close()
    return 0


def _export(args) -> int:
    guard = _guard(args)
    guard.save(args.out)
    print(f"wrote {guard.num_centroids} centroids of {args.name!r} to {args.out}")
    guard.close()
    return 0


def _import(args) -> int:
    from ..defenses.modelguard_s import ModelGuardS
    from ..params import DEFAULT_SUM_TOL

    if args.snapshot is not None:
        guard = ModelGuardS.load(args.snapshot, store=_store(args))
        source = args.snapshot
    else:
        if args.num_classes is None:
            raise ValueError("--journal needs --num-classes (and --eps, --dtype, --sum-tol if not the defaults)")
        sum_tol = DEFAULT_SUM_TOL if args.sum_tol is None else args.sum_tol
        journaled = ModelGuardS(args.num_classes, eps=args.eps, dtype=args.dtype, sum_tol=sum_tol,
                                journal=args.journal)
        try:
            copy = ModelGuardS(args.num_classes, eps=args.eps, dtype=args.dtype, sum_tol=sum_tol)
            copy.load_state_dict(journaled.state_dict())
        finally:
            journaled.close()
        guard = copy._copy_into(_store(args))
        source = args.journal
    print(f"imported {guard.num_centroids} centroids from {source} into {args.name!r}")
    guard.close()
    return 0


def run(args: argparse.Namespace) -> int:
    """Runs the action; untrustworthy or unreachable stores and bad sources exit 2 with the reason."""
    from ..persistence import JournalError, SnapshotError
    from .base import StoreError, StoreUnavailable

    try:
        return args.action_handler(args)
    except (StoreError, StoreUnavailable, JournalError, SnapshotError, ValueError, OSError) as err:
        print(f"modelguard-fast codebook {args.action}: {err}", file=sys.stderr)
        return 2
