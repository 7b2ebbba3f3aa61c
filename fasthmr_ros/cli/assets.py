"""``fasthmr make-test-assets``: random-weights checkpoint and synthetic MANO files."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``make-test-assets`` sub-command."""
    parser = subparsers.add_parser(
        "make-test-assets",
        help="write a random-weights checkpoint (official layout) and synthetic MANO files",
    )
    parser.add_argument("dir", help="output folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    raise NotImplementedError
