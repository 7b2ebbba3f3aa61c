"""The MANO hand's :class:`MeshModelInfo` (no torch, no smplx: cheap to import)."""

from __future__ import annotations

import numpy as np

from fasthmr_ros.models.constants import HAND_SKELETON, JOINT_NAMES, NUM_VERTICES
from fasthmr_ros.models.mesh_model import HAND, MODEL_MANO, MeshModelInfo

#: Licence note of the MANO model data (never shipped with this package).
MANO_LICENCE = "MANO licence (non-commercial research only; mano.is.tue.mpg.de)"


def mano_info(faces: np.ndarray) -> MeshModelInfo:
    """Describe the MANO hand as the package uses it: 778 vertices, 21 OpenPose-order joints.

    MANO's parameters travel in their own named fields, so ``parameter_names`` is empty.
    """
    return MeshModelInfo(
        name=MODEL_MANO,
        kind=HAND,
        num_vertices=NUM_VERTICES,
        faces=np.asarray(faces, dtype=np.int64),
        joint_names=JOINT_NAMES,
        bones=HAND_SKELETON,
        licence=MANO_LICENCE,
    )
