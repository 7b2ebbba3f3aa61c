"""Linear blend skinning of the SMPL model family (SMPL, MANO), restated for speed on CPUs.

The same model as smplx's ``lbs`` (equal within float32 rounding, see the tests), computed with
fewer and larger products:

* one product adds the shape and the pose blend shapes (a sum, not ``addmm``: on some CPUs,
  MKL on AMD, ``addmm`` rounds these long sums several times worse at the same speed);
* rest joints come from shape-space joint regressors (the joint regressor applied to the
  template and to each shape direction once, not to every frame's vertices);
* forward kinematics runs one batched product per kinematic-tree level, not one per joint;
* skinning blends the joint transforms vertex-major, so no product copies its operands.

:class:`SkinnedLayer` gives an smplx layer (``SMPLLayer``, ``MANOLayer``) this forward as
:meth:`SkinnedLayer.skin`; the tensors it derives from the layer's buffers are rebuilt whenever
a buffer changes, so loading a state dict or moving the layer never leaves them stale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def derived_from_buffers(
    module: torch.nn.Module, attribute: str, sources: Sequence[torch.Tensor],
    build: Callable[..., T],
) -> T:
    """``build(*sources)``, cached on ``module`` until one of ``sources`` changes.

    Loading a state dict copies into the buffers (their version changes) and ``.to()`` replaces
    them (their storage changes): either rebuilds the cached value. It is built as ordinary
    tensors even when the first call runs under ``torch.inference_mode()``, so a later forward
    that autograd records (training through the mesh model) can use it.
    """
    key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in sources)
    cached = module.__dict__.get(attribute)
    if cached is not None and cached[0] == key:
        return cached[1]
    with torch.inference_mode(False), torch.no_grad():
        value = build(*sources)
    object.__setattr__(module, attribute, (key, value))
    return value


@dataclass(frozen=True)
class SkinningTensors:
    """What the restated forward reads, derived once from a layer's buffers."""

    template: torch.Tensor  # (1, V*3) rest vertices
    blend_dirs: torch.Tensor  # (betas + 9 (J-1), V*3) shape then pose blend shapes
    joint_template: torch.Tensor  # (1, J, 3) rest joints of the mean shape
    joint_shape_dirs: torch.Tensor  # (betas, J*3) rest joints per shape coefficient
    order: torch.Tensor  # joints in tree-level order (root first)
    order_parents: torch.Tensor  # the parent of each joint of ``order`` (the root: itself)
    root_mask: torch.Tensor  # (1, J, 1): 0 for the root (its offset is its position)
    unorder: torch.Tensor  # the inverse permutation of ``order``
    level_spans: tuple[tuple[int, int], ...]  # each level's slice of ``order`` (after the root)
    level_parents: tuple[torch.Tensor, ...]  # per level: its parents' places in the level before
    bottom_row: torch.Tensor  # (1, 1, 1, 4) = [0, 0, 0, 1]

    @classmethod
    def build(
        cls, v_template: torch.Tensor, shapedirs: torch.Tensor, posedirs: torch.Tensor,
        j_regressor: torch.Tensor, parents: torch.Tensor,
    ) -> SkinningTensors:
        """Derive from smplx's buffers: ``shapedirs`` (V, 3, betas), ``posedirs`` (P, V*3)."""
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
        )


def blend_skin(
    tensors: SkinningTensors, lbs_weights: torch.Tensor, rotations: torch.Tensor,
    betas: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a model: ``rotations`` (B, J, 3, 3) (root first), ``betas`` (B, betas).

    Returns:
        ``vertices`` (B, V, 3) and the posed joints (B, J, 3).

    """
    rot = rotations.float()
    batch = rot.shape[0]
    betas = betas.float()
    identity = torch.eye(3, dtype=rot.dtype, device=rot.device)
    coefficients = torch.cat([betas, (rot[:, 1:] - identity).reshape(batch, -1)], dim=1)
    v_posed = (tensors.template + coefficients @ tensors.blend_dirs).reshape(batch, -1, 3)
    rest_joints = tensors.joint_template + (betas @ tensors.joint_shape_dirs).reshape(
        batch, -1, 3)
    # Forward kinematics in tree-level order: every level's parents sit in the level before,
    # so one gather and one product per level pose the whole tree.
    ordered = rest_joints.index_select(1, tensors.order)
    offsets = ordered - rest_joints.index_select(1, tensors.order_parents) * tensors.root_mask
    local = torch.cat([rot.index_select(1, tensors.order), offsets[..., None]], dim=-1)
    bottom = tensors.bottom_row.expand(batch, local.shape[1], 1, 4)
    local = torch.cat([local, bottom], dim=2)  # (B, J, 4, 4) in level order
    chain = [local[:, :1]]
    for (start, end), parents in zip(tensors.level_spans, tensors.level_parents, strict=True):
        chain.append(chain[-1].index_select(1, parents) @ local[:, start:end])
    posed = torch.cat(chain, dim=1).index_select(1, tensors.unorder)[:, :, :3]  # (B, J, 3, 4)
    world, posed_joints = posed[..., :3], posed[..., 3]
    # Skinning transforms [R | t - R J] of every joint, blended per vertex.
    shift = posed_joints - (world @ rest_joints[..., None])[..., 0]
    transforms = torch.cat([world, shift[..., None]], dim=-1)  # (B, J, 3, 4)
    num_joints, num_vertices = transforms.shape[1], v_posed.shape[1]
    # Vertex-major (V, B) order throughout, so no product copies its operands.
    blend = (lbs_weights @ transforms.transpose(0, 1).reshape(num_joints, -1)).reshape(-1, 3, 4)
    points = v_posed.transpose(0, 1).reshape(-1, 3, 1)
    vertices = ((blend[..., :3] @ points)[..., 0] + blend[..., 3]).reshape(
        num_vertices, batch, 3).transpose(0, 1)
    return vertices, posed_joints


class SkinnedLayer:
    """Mixin for smplx layers: the restated forward of their buffers (:func:`blend_skin`)."""

    v_template: torch.Tensor
    shapedirs: torch.Tensor
    posedirs: torch.Tensor
    J_regressor: torch.Tensor
    parents: torch.Tensor
    lbs_weights: torch.Tensor

    def skin(
        self, rotations: torch.Tensor, betas: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``vertices`` (B, V, 3) and posed joints (B, J, 3) for ``rotations`` (B, J, 3, 3)."""
        module: Any = self
        tensors = derived_from_buffers(
            module, "_skinning_cache",
            (self.v_template, self.shapedirs, self.posedirs, self.J_regressor, self.parents),
            SkinningTensors.build,
        )
        return blend_skin(tensors, self.lbs_weights, rotations, betas)
