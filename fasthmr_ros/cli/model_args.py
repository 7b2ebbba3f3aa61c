"""What the commands that load a hand model share: option help, ``--device`` and loading.

``--checkpoint``, ``--mano-dir``, ``--merge-plan`` and ``--device`` mean the same in every
command that takes them (``hands``, ``export onnx``, ``engine build``, ``bench``, ``distill``).
This module holds their help texts, checks ``--device`` before anything is loaded, and turns
every way loading a checkpoint can fail into one :class:`~fasthmr_ros.cli.main.CommandError`
naming the file.
"""

from __future__ import annotations

from typing import Any

import torch

from fasthmr_ros.cli.main import CommandError

#: Help of a ``--checkpoint`` option (any regressor: teacher or student).
CHECKPOINT_HELP = "hamer.ckpt, its _DATA or hamer_ckpts folder, or a student checkpoint"
#: Help of ``--mano-dir``.
MANO_DIR_HELP = "folder with MANO_RIGHT.pkl (default: MANO stored in the checkpoint)"
#: Help of ``--merge-plan``.
MERGE_PLAN_HELP = (
    "FastHMR merge plan (JSON) for a ViT teacher: folds blocks and merges background tokens, "
    "training-free; write one with 'fasthmr merge calibrate' (default: none)"
)
#: Help of ``--smpl-dir``.
SMPL_DIR_HELP = (
    "folder with SMPL_NEUTRAL.pkl, or 4D-Humans' data/ folder (default: SMPL stored in the "
    "checkpoint)"
)
#: Printed before and after the output of a run on random-weights test assets.
RANDOM_WEIGHTS_WARNING = (
    "WARNING: this checkpoint was written by 'fasthmr make-test-assets': its weights are RANDOM "
    "and its MANO model is synthetic. The meshes below are meaningless; use the official "
    "hamer.ckpt (or a trained student) for real results."
)


def parse_device_arg(text: str) -> torch.device:
    """The torch device named by ``--device``; :class:`CommandError` if unusable here."""
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as exc:
        raise CommandError(f"--device {text}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(
            f"--device {text}: CUDA is not available on this machine; use --device cpu"
        )
    return device


def add_merge_plan_argument(parser: Any) -> None:
    """Add ``--merge-plan PLAN.json`` to ``parser`` (an argparse parser or argument group)."""
    parser.add_argument("--merge-plan", metavar="PLAN.json", help=MERGE_PLAN_HELP)


def load_model(
    checkpoint: str,
    mano_dir: str | None = None,
    device: str = "cpu",
    what: str = "the model",
    merge_plan: str | None = None,
    smpl_dir: str | None = None,
    body: bool = False,
) -> Any:
    """Load a hand regressor (or, with ``body``, an HMR2.0 body regressor) for a command.

    ``what`` names the model in the error message (e.g. ``"the teacher"``); ``merge_plan`` is
    ``--merge-plan``; ``smpl_dir`` is ``--smpl-dir`` (bodies only). Raises
    :class:`CommandError` for a missing, unreadable or mismatched checkpoint, MANO/SMPL folder
    or merge plan.
    """
    from fasthmr_ros import load_body_regressor, load_hand_regressor

    try:
        if body:
            return load_body_regressor(checkpoint, smpl_dir=smpl_dir, device=device,
                                       merge_plan=merge_plan)
        return load_hand_regressor(checkpoint, mano_dir=mano_dir, device=device,
                                   merge_plan=merge_plan)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CommandError(f"cannot load {what} from {checkpoint}: {exc}") from None
