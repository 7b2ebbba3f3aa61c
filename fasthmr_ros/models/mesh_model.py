"""One interface for every parametric mesh model the package speaks: MANO, SMPL and Anny.

A mesh model is described by :class:`MeshModelInfo`: its name (the ``model`` field of the
``MeshTopology`` message), whether it is a hand or a body, its vertex count and triangles, its
joint set and skeleton, and the names of its own parameters (the layout of a result's generic
``model_params`` vector). Every model implementation (``ManoLayer``, the SMPL layer, the Anny
hand and body models) exposes one through an ``info`` attribute; nothing downstream assumes a
vertex count or a joint count of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

#: Model names, as the ``model`` field of ``MeshTopology`` carries them.
MODEL_MANO = "mano"
MODEL_SMPL = "smpl"
MODEL_ANNY_HAND = "anny_hand"
MODEL_ANNY_BODY = "anny_body"

HAND = "hand"
BODY = "body"


@dataclass(frozen=True)
class MeshModelInfo:
    """The constant structure of one mesh model."""

    name: str
    kind: str
    num_vertices: int
    faces: np.ndarray = field(repr=False)
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    parameter_names: tuple[str, ...] = ()
    licence: str = ""

    def __post_init__(self) -> None:
        if self.kind not in (HAND, BODY):
            raise ValueError(f"mesh model kind must be '{HAND}' or '{BODY}', got {self.kind!r}")
        faces = np.asarray(self.faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"{self.name}: faces must be (F, 3), got {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= self.num_vertices):
            raise ValueError(
                f"{self.name}: faces index vertices {faces.min()}..{faces.max()}, outside "
                f"0..{self.num_vertices - 1}"
            )
        for parent, child in self.bones:
            if not (0 <= parent < len(self.joint_names) and 0 <= child < len(self.joint_names)):
                raise ValueError(f"{self.name}: bone ({parent}, {child}) names a missing joint")
        object.__setattr__(self, "faces", faces.astype(np.int64, copy=False))

    @property
    def num_joints(self) -> int:
        """Number of joints in :attr:`joint_names` order."""
        return len(self.joint_names)


@runtime_checkable
class MeshModel(Protocol):
    """Anything that reconstructs meshes of one model exposes that model's structure."""

    @property
    def info(self) -> MeshModelInfo:
        """The model's constant structure."""
        ...
