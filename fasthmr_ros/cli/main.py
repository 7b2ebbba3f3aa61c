"""The ``fasthmr`` command: one sub-command per module in :mod:`fasthmr_ros.cli`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Each entry is a module in this package with ``register(subparsers)``; the parser it adds
# must set ``func`` (called with the parsed namespace, returning an exit code).
COMMAND_MODULES: tuple[str, ...] = (
    # run
    "hands",
    "bodies",
    "node",
    "publish_images",
    "bag",
    # model files
    "assets",
    "convert_models",
    # acceleration
    "export",
    "engine",
    "bench",
    "merge",
    # training and evaluation
    "distill",
    "evaluate",
)


class CommandError(RuntimeError):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="fasthmr",
        description="Fast 3D hand and body meshes from images (HaMeR / Fast-HaMeR, FastHMR).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"fasthmr_ros.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fasthmr`` command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"fasthmr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    # Re-import under the package name so CommandError is one class for every sub-command.
    from fasthmr_ros.cli.main import main as _main

    sys.exit(_main())
