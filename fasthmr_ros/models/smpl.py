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
from dataclasses import dataclass

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

SMPL_LICENCE = "SMPL Model License (non-commercial), https://smpl.is.tue.mpg.de"


class SmplLayer(smplx.SMPLLayer):
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
        # smplx's linear blend skinning, restated for speed on CPUs (equal to smplx's
        # SMPLLayer.forward within float32 rounding, see the tests): one product adds the
        # shape and pose blend shapes, rest joints come from shape-space regressors, forward
        # kinematics runs one batched product per tree level, and the 19 extra joints read
        # only the vertices their regressor uses.
        d = self._derived()
        rot = torch.cat([global_orient, body_pose], dim=1).float()
        batch = rot.shape[0]
        betas = betas.float()
        identity = torch.eye(3, dtype=rot.dtype, device=rot.device)
        coefficients = torch.cat([betas, (rot[:, 1:] - identity).reshape(batch, -1)], dim=1)
        # A product then a sum, not addmm: on some CPUs (MKL on AMD) addmm rounds the
        # 217-term sums about 8x worse, at the same speed.
        v_posed = (d.template + coefficients @ d.blend_dirs).reshape(batch, -1, 3)
        rest_joints = d.joint_template + (betas @ d.joint_shape_dirs).reshape(batch, -1, 3)
        # Forward kinematics in tree-level order: every level's parents sit in the level
        # before, so one gather and one product per level pose the whole tree.
        ordered = rest_joints.index_select(1, d.order)
        offsets = ordered - rest_joints.index_select(1, d.order_parents) * d.root_mask
        local = torch.cat([rot.index_select(1, d.order), offsets[..., None]], dim=-1)
        bottom = d.bottom_row.expand(batch, local.shape[1], 1, 4)
        local = torch.cat([local, bottom], dim=2)  # (B, 24, 4, 4) in level order
        chain = [local[:, :1]]
        for (start, end), parents in zip(d.level_spans, d.level_parents, strict=True):
            chain.append(chain[-1].index_select(1, parents) @ local[:, start:end])
        posed = torch.cat(chain, dim=1).index_select(1, d.unorder)[:, :, :3]  # (B, 24, 3, 4)
        world, posed_joints = posed[..., :3], posed[..., 3]
        # Skinning transforms [R | t - R J] of every joint, blended per vertex.
        shift = posed_joints - (world @ rest_joints[..., None])[..., 0]
        transforms = torch.cat([world, shift[..., None]], dim=-1)  # (B, 24, 3, 4)
        num_joints, num_vertices = transforms.shape[1], v_posed.shape[1]
        # Vertex-major (V, B) order throughout, so no product copies its operands.
        blend = (self.lbs_weights @ transforms.transpose(0, 1).reshape(num_joints, -1)).reshape(
            -1, 3, 4)
        points = v_posed.transpose(0, 1).reshape(-1, 3, 1)
        vertices = ((blend[..., :3] @ points)[..., 0] + blend[..., 3]).reshape(
            num_vertices, batch, 3).transpose(0, 1)
        smplx_joints = self.vertex_joint_selector(vertices, posed_joints)
        openpose = smplx_joints.index_select(1, self.joint_map)
        extra = torch.einsum("jv,bvk->bjk", d.extra_weights,
                             vertices.index_select(1, d.extra_vertices))
        return vertices, torch.cat([openpose, extra], dim=1)

    def _derived(self) -> _DerivedSmpl:
        """Tensors derived from the SMPL buffers, rebuilt when a buffer changes.

        Loading a state dict copies into the buffers and ``.to()`` replaces them; both change
        the key, so derived tensors never go stale.
        """
        sources = (self.v_template, self.shapedirs, self.posedirs, self.J_regressor,
                   self.joint_regressor_extra, self.parents)
        key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in sources)
        cached = getattr(self, "_derived_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            derived = _DerivedSmpl.build(*sources)
        object.__setattr__(self, "_derived_cache", (key, derived))
        return derived


@dataclass(frozen=True)
class _DerivedSmpl:
    template: torch.Tensor  # (1, V*3) rest vertices
    blend_dirs: torch.Tensor  # (10 + 207, V*3) shape then pose blend shapes
    joint_template: torch.Tensor  # (1, 24, 3) rest joints of the mean shape
    joint_shape_dirs: torch.Tensor  # (10, 24*3) rest joints per shape coefficient
    order: torch.Tensor  # joints in tree-level order (root first)
    order_parents: torch.Tensor  # the parent of each joint of ``order`` (the root: itself)
    root_mask: torch.Tensor  # (1, 24, 1): 0 for the root (its offset is its position)
    unorder: torch.Tensor  # the inverse permutation of ``order``
    level_spans: tuple[tuple[int, int], ...]  # each level's slice of ``order`` (after the root)
    level_parents: tuple[torch.Tensor, ...]  # per level: its parents' places in the level before
    bottom_row: torch.Tensor  # (1, 1, 1, 4) = [0, 0, 0, 1]
    extra_vertices: torch.Tensor  # vertices the extra-joint regressor reads
    extra_weights: torch.Tensor  # (19, len(extra_vertices))

    @classmethod
    def build(
        cls, v_template: torch.Tensor, shapedirs: torch.Tensor, posedirs: torch.Tensor,
        j_regressor: torch.Tensor, extra_regressor: torch.Tensor, parents: torch.Tensor,
    ) -> _DerivedSmpl:
        device = v_template.device
        num_betas = shapedirs.shape[-1]
        shape_dirs = shapedirs.reshape(-1, num_betas).T
        joint_shape_dirs = torch.einsum("jv,vck->kjc", j_regressor, shapedirs)
        parent_list = parents.tolist()
        depth = [0] * len(parent_list)
        for k in range(1, len(parent_list)):
            depth[k] = depth[parent_list[k]] + 1
        levels = [[k for k in range(len(parent_list)) if depth[k] == level]
                  for level in range(max(depth) + 1)]
        order = [k for level in levels for k in level]
        spans, level_parents, start = [], [], 1
        for previous, level in zip(levels[:-1], levels[1:], strict=True):
            spans.append((start, start + len(level)))
            level_parents.append(torch.tensor([previous.index(parent_list[k]) for k in level],
                                              device=device))
            start += len(level)
        used = torch.nonzero(extra_regressor.abs().sum(dim=0) > 0).reshape(-1)
        mask = torch.ones(1, len(order), 1, dtype=v_template.dtype, device=device)
        mask[0, 0] = 0.0
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=v_template.dtype, device=device)
        return cls(
            template=v_template.reshape(1, -1),
            blend_dirs=torch.cat([shape_dirs, posedirs], dim=0).contiguous(),
            joint_template=(j_regressor @ v_template)[None],
            joint_shape_dirs=joint_shape_dirs.reshape(num_betas, -1).contiguous(),
            order=torch.tensor(order, device=device),
            order_parents=torch.tensor([max(parent_list[k], 0) for k in order], device=device),
            root_mask=mask,
            unorder=torch.argsort(torch.tensor(order, device=device)),
            level_spans=tuple(spans),
            level_parents=tuple(level_parents),
            bottom_row=bottom.reshape(1, 1, 1, 4),
            extra_vertices=used,
            extra_weights=extra_regressor[:, used].contiguous(),
        )


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
