"""fasthmr_ros: fast 3D hand and body meshes from camera images, for ROS 2.

The stable entry points for users' code are :func:`load_hand_regressor` and
:func:`load_body_regressor`.
"""

from __future__ import annotations

import pkgutil
from typing import TYPE_CHECKING, Any

# A source checkout on sys.path (tests, ``python -m fasthmr_ros`` in the repository) hides the
# installed copy, which holds the modules rosidl generates (fasthmr_ros.msg and its type
# support libraries, installed by colcon or scripts/setup-ros.sh): every fasthmr_ros folder on
# sys.path contributes submodules, the first one's own modules win.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
__all__ = ["__version__", "load_body_regressor", "load_hand_regressor"]

if TYPE_CHECKING:  # pragma: no cover
    import torch


def load_hand_regressor(
    checkpoint: Any, mano_dir: Any = None, device: Any = "cpu", merge_plan: Any = None
) -> torch.nn.Module:
    """Load a HaMeR-compatible hand mesh regressor (teacher or student) in eval mode.

    Args:
        checkpoint: the official ``hamer.ckpt``, its ``_DATA`` or ``hamer_ckpts`` folder, or a
            student checkpoint written by this package.
        mano_dir: optional folder holding ``MANO_RIGHT.pkl`` (or a converted ``.npz``); without
            it the MANO buffers stored inside the checkpoint are used.
        device: a torch device string such as ``"cpu"`` or ``"cuda:0"``.
        merge_plan: optional FastHMR merge plan for the ViT teacher (a JSON file, its dict or a
            ``MergePlan``; see :mod:`fasthmr_ros.models.merge_plan`): folds blocks and merges
            tokens, training-free. ``None`` or ``"none"``: the model as trained.

    Returns:
        A ``torch.nn.Module`` whose forward maps normalised crops ``(B, 3, 256, 256)`` to a dict
        with ``vertices``, ``joints``, ``cam``, ``global_orient``, ``hand_pose`` and ``betas``.

    """
    from fasthmr_ros.models.checkpoint import load_hand_regressor as _load

    return _load(checkpoint, mano_dir=mano_dir, device=device, merge_plan=merge_plan)


def load_body_regressor(
    checkpoint: Any, smpl_dir: Any = None, device: Any = "cpu", merge_plan: Any = None
) -> torch.nn.Module:
    """Load an HMR2.0-compatible body mesh regressor in eval mode.

    Args:
        checkpoint: HMR2.0's ``epoch=35-step=1000000.ckpt``, 4D-Humans' cache folder holding
            ``logs/train/multiruns/hmr2/0/checkpoints/`` (``~/.cache/4DHumans``), or a body
            checkpoint written by this package.
        smpl_dir: optional folder holding ``SMPL_NEUTRAL.pkl`` (or a converted ``.npz``), or
            4D-Humans' ``data/`` folder; without it the SMPL buffers stored inside the
            checkpoint are used.
        device: a torch device string such as ``"cpu"`` or ``"cuda:0"``.
        merge_plan: optional FastHMR merge plan (a JSON path or the same dict) applied to the
            ViT at load time (see :mod:`fasthmr_ros.models.merge_plan`).

    Returns:
        A ``torch.nn.Module`` whose forward maps normalised crops ``(B, 3, 256, 256)`` to a dict
        with ``vertices`` (B, 6890, 3), ``joints`` (B, 44, 3), ``cam`` (B, 3),
        ``global_orient`` (B, 1, 3, 3), ``body_pose`` (B, 23, 3, 3) and ``betas`` (B, 10).

    """
    from fasthmr_ros.models.checkpoint import load_body_regressor as _load

    return _load(checkpoint, smpl_dir=smpl_dir, device=device, merge_plan=merge_plan)
