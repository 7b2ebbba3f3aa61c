"""``fasthmr convert-mano`` / ``convert-smpl``: official model pickles to clean ``.npz`` files."""

from __future__ import annotations

import argparse
from pathlib import Path

from fasthmr_ros.cli.main import CommandError

# command -> (model, file, website, where the file may sit)
_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "convert-mano": (
        "MANO right-hand", "MANO_RIGHT", "https://mano.is.tue.mpg.de",
        "MANO_RIGHT.pkl, or a folder holding it (directly or in a mano/ subfolder)",
    ),
    "convert-smpl": (
        "neutral SMPL", "SMPL_NEUTRAL", "https://smpl.is.tue.mpg.de",
        "SMPL_NEUTRAL.pkl, or a folder holding it (directly or in a smpl/ subfolder, as in "
        "4D-Humans' data/ folder)",
    ),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert-mano`` and ``convert-smpl`` sub-commands."""
    for command, (model, stem, site, where) in _COMMANDS.items():
        parser = subparsers.add_parser(
            command,
            help=f"convert {stem}.pkl into a pickle-free .npz (loads without chumpy)",
            description=(
                f"Read the official {model} model ({stem}.pkl from {site}; its chumpy and scipy "
                "objects are read as plain arrays and nothing in the file is executed) and "
                "write an .npz without pickles that fasthmr_ros and smplx (ext='npz') load. "
                "The file is checked for the expected arrays and shapes first."
            ),
        )
        parser.add_argument("src", help=where)
        parser.add_argument(
            "dst", nargs="?", help="output .npz (default: next to the source file, suffix .npz)"
        )
        parser.set_defaults(func=_run, spec_name=command)


def _run(args: argparse.Namespace) -> int:
    from fasthmr_ros.models.mano_files import MANO_FILE
    from fasthmr_ros.models.model_files import convert_model_file, find_model_file
    from fasthmr_ros.models.smpl_files import SMPL_FILE

    spec = MANO_FILE if args.spec_name == "convert-mano" else SMPL_FILE
    try:
        src = find_model_file(spec, args.src)
        dst = Path(args.dst) if args.dst else src.with_suffix(".npz")
        written = convert_model_file(spec, src, dst)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB) from {src}")
    return 0
