"""``fasthmr convert-mano``: turn the official MANO pickle into a clean ``.npz``."""

from __future__ import annotations

import argparse
from pathlib import Path

from fasthmr_ros.cli.main import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert-mano`` sub-command."""
    parser = subparsers.add_parser(
        "convert-mano",
        help="convert MANO_RIGHT.pkl into a pickle-free .npz (loads without chumpy)",
        description=(
            "Read the official MANO right-hand model (MANO_RIGHT.pkl from "
            "https://mano.is.tue.mpg.de; its chumpy and scipy objects are read as plain arrays "
            "and nothing in the file is executed) and write an .npz without pickles that "
            "fasthmr_ros and smplx (ext='npz') load. The file is checked for the expected "
            "arrays and shapes first."
        ),
    )
    parser.add_argument(
        "src", help="MANO_RIGHT.pkl, or a folder holding it (directly or in a mano/ subfolder)"
    )
    parser.add_argument(
        "dst", nargs="?", help="output .npz (default: next to the source file, suffix .npz)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from fasthmr_ros.models.mano_files import convert_mano, find_mano_file

    try:
        src = find_mano_file(args.src)
        dst = Path(args.dst) if args.dst else src.with_suffix(".npz")
        written = convert_mano(src, dst)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB) from {src}")
    return 0
