"""The MANO hand model as HaMeR uses it: smplx's ``MANOLayer`` plus fingertips, OpenPose order.

The layer takes rotation matrices, adds no mean pose (predicted rotations are absolute) and
returns 778 vertices and 21 joints: MANO's 16 joints and five fingertip vertices, reordered to
the OpenPose hand order. Buffer names equal the ``mano.*`` entries of the official checkpoint, so
the MANO model embedded there can be loaded directly.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping

import numpy as np
import smplx
import torch
from smplx.utils import Struct

from fasthmr_ros.models.constants import (
    FINGERTIP_VERTEX_IDS,
    MANO_TO_OPENPOSE,
    NUM_MANO_JOINTS,
    NUM_VERTICES,
)
from fasthmr_ros.models.mano_info import mano_info
from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.models.skinning import SkinnedLayer

#: Number of PCA components of the official layer; only the buffer shape depends on it.
NUM_PCA_COMPONENTS = 6


class ManoLayer(SkinnedLayer, smplx.MANOLayer):
    """Right-hand MANO layer mapping rotation matrices and shape to vertices and 21 joints."""

    def __init__(self, model_data: Mapping[str, np.ndarray]) -> None:
        """Build from arrays in smplx's file layout (see :func:`mano_data_from_buffers`)."""
        struct = Struct(**{key: np.asarray(value) for key, value in model_data.items()})
        # smplx prints a warning about MANO's 10 shape components on every construction.
        with contextlib.redirect_stdout(io.StringIO()):
            super().__init__(
                model_path="",
                data_struct=struct,
                is_rhand=True,
                use_pca=True,
                num_pca_comps=NUM_PCA_COMPONENTS,
                flat_hand_mean=False,
                create_body_pose=False,
            )
        self.register_buffer(
            "extra_joints_idxs", torch.tensor(FINGERTIP_VERTEX_IDS, dtype=torch.long)
        )
        self.register_buffer("joint_map", torch.tensor(MANO_TO_OPENPOSE, dtype=torch.long))

    @property
    def faces_array(self) -> np.ndarray:
        """Triangles (1538, 3) int64, right-hand winding."""
        return self.faces_tensor.detach().cpu().numpy().astype(np.int64)

    @property
    def info(self) -> MeshModelInfo:
        """The MANO model's structure (:class:`MeshModelInfo`)."""
        return mano_info(self.faces_array)

    def forward(  # type: ignore[override]
        self, global_orient: torch.Tensor, hand_pose: torch.Tensor, betas: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose the hand.

        Args:
            global_orient: (B, 1, 3, 3) root rotation.
            hand_pose: (B, 15, 3, 3) joint rotations.
            betas: (B, 10) shape.

        Returns:
            ``vertices`` (B, 778, 3) and ``joints`` (B, 21, 3) in metres, OpenPose order.

        """
        # smplx's MANOLayer forward, restated (models/skinning.py; equal within float32
        # rounding).
        vertices, posed_joints = self.skin(torch.cat([global_orient, hand_pose], dim=1), betas)
        tips = vertices.index_select(1, self.extra_joints_idxs)
        joints = torch.cat([posed_joints, tips], dim=1).index_select(1, self.joint_map)
        return vertices, joints


def mano_data_from_buffers(buffers: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Rebuild smplx file-layout arrays from the ``mano.*`` buffers of a checkpoint.

    ``buffers`` are keyed without the ``mano.`` prefix. ``posedirs`` is stored there already
    flattened to (135, 2334) and is reshaped back to (778, 3, 135).
    """
    def arr(name: str) -> np.ndarray:
        return buffers[name].detach().cpu().numpy()

    parents = arr("parents").astype(np.int64)
    posedirs = arr("posedirs")
    # The checkpoint keeps only the PCA rows the layer uses; the file layout has all 45.
    components = np.zeros((45, 45), dtype=np.float32)
    stored = arr("hand_components")
    components[: stored.shape[0]] = stored
    return {
        "v_template": arr("v_template"),
        "shapedirs": arr("shapedirs"),
        "posedirs": posedirs.T.reshape(NUM_VERTICES, 3, -1),
        "J_regressor": arr("J_regressor"),
        "weights": arr("lbs_weights"),
        "kintree_table": np.stack([parents, np.arange(NUM_MANO_JOINTS)]),
        "f": arr("faces_tensor").astype(np.int64),
        "hands_components": components,
        "hands_mean": arr("hand_mean"),
    }

