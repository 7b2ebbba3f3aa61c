"""The SMPL body model as HMR2.0 uses it: smplx's ``SMPLLayer`` with 44 output joints.

The layer takes rotation matrices and returns 6890 vertices and HMR2.0's 44 joints: smplx's 24
SMPL joints and 21 vertex joints, mapped to the 25 OpenPose BODY_25 joints (``joint_map``), then
19 joints regressed from the vertices (``joint_regressor_extra``, from ``SMPL_to_J19.pkl``).
Buffer names equal the ``smpl.*`` entries of the official checkpoint, so the SMPL model embedded
there can be loaded directly.
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
    BODY_JOINT_NAMES,
    BODY_SKELETON,
    NUM_SMPL_JOINTS,
    NUM_SMPL_VERTICES,
    SMPL_TO_OPENPOSE,
)
from fasthmr_ros.models.mesh_model import BODY, MODEL_SMPL, MeshModelInfo
from fasthmr_ros.models.skinning import SkinnedLayer, derived_from_buffers

SMPL_LICENCE = "SMPL Model License (non-commercial), https://smpl.is.tue.mpg.de"


class SmplLayer(SkinnedLayer, smplx.SMPLLayer):
    """Neutral SMPL mapping rotation matrices and shape to vertices and HMR2.0's 44 joints."""

    def __init__(
        self, model_data: Mapping[str, np.ndarray], joint_regressor_extra: np.ndarray
    ) -> None:
        """Build from arrays in smplx's file layout and the (19, 6890) extra-joint regressor."""
        struct = Struct(**{key: np.asarray(value) for key, value in model_data.items()})
        # smplx prints a warning about SMPL's 10 shape components on every construction.
        with contextlib.redirect_stdout(io.StringIO()):
            super().__init__(model_path="", data_struct=struct, gender="neutral", num_betas=10)
        self.register_buffer(
            "joint_regressor_extra",
            torch.as_tensor(np.asarray(joint_regressor_extra), dtype=torch.float32),
        )
        self.register_buffer("joint_map", torch.tensor(SMPL_TO_OPENPOSE, dtype=torch.long))

    @property
    def faces_array(self) -> np.ndarray:
        """Triangles (13776, 3) int64."""
        return self.faces_tensor.detach().cpu().numpy().astype(np.int64)

    @property
    def info(self) -> MeshModelInfo:
        """SMPL's structure with HMR2.0's 44 joints and the OpenPose skeleton."""
        return MeshModelInfo(
            name=MODEL_SMPL,
            kind=BODY,
            num_vertices=NUM_SMPL_VERTICES,
            faces=self.faces_array,
            joint_names=BODY_JOINT_NAMES,
            bones=BODY_SKELETON,
            licence=SMPL_LICENCE,
        )

    def forward(  # type: ignore[override]
        self, global_orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose the body.

        Args:
            global_orient: (B, 1, 3, 3) root (pelvis) rotation.
            body_pose: (B, 23, 3, 3) joint rotations.
            betas: (B, 10) shape.

        Returns:
            ``vertices`` (B, 6890, 3) and ``joints`` (B, 44, 3) in metres.

        """
        vertices, posed_joints = self.skin(torch.cat([global_orient, body_pose], dim=1), betas)
        smplx_joints = self.vertex_joint_selector(vertices, posed_joints)
        openpose = smplx_joints.index_select(1, self.joint_map)
        # The 19 extra joints read only the vertices their regressor uses.
        used, weights = derived_from_buffers(self, "_extra_joints_cache",
                                             (self.joint_regressor_extra,), _used_vertices)
        extra = torch.einsum("jv,bvk->bjk", weights, vertices.index_select(1, used))
        return vertices, torch.cat([openpose, extra], dim=1)


def _used_vertices(regressor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The vertices a joint regressor (J, V) reads, and its (J, used) weights for them."""
    used = torch.nonzero(regressor.abs().sum(dim=0) > 0).reshape(-1)
    return used, regressor[:, used].contiguous()


def smpl_data_from_buffers(buffers: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Rebuild smplx file-layout arrays from the ``smpl.*`` buffers of a checkpoint.

    ``buffers`` are keyed without the ``smpl.`` prefix. ``posedirs`` is stored there flattened
    to (207, 20670) and is reshaped back to (6890, 3, 207).
    """

    def arr(name: str) -> np.ndarray:
        return buffers[name].detach().cpu().numpy()

    parents = arr("parents").astype(np.int64)
    return {
        "v_template": arr("v_template"),
        "shapedirs": arr("shapedirs"),
        "posedirs": arr("posedirs").T.reshape(NUM_SMPL_VERTICES, 3, -1),
        "J_regressor": arr("J_regressor"),
        "weights": arr("lbs_weights"),
        "kintree_table": np.stack([parents, np.arange(NUM_SMPL_JOINTS)]),
        "f": arr("faces_tensor").astype(np.int64),
    }
