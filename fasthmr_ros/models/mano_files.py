"""The MANO hand model file: reading it safely, converting it, and writing synthetic ones.

The official ``MANO_RIGHT.pkl`` (https://mano.is.tue.mpg.de, non-commercial licence, never
shipped with this package) is a Python 2 pickle holding ``chumpy`` objects and a
``scipy.sparse`` matrix; :mod:`fasthmr_ros.models.model_files` reads it without running code
from it. :func:`convert_mano` writes a clean ``.npz`` (no pickles) that this package and
``smplx`` (``ext='npz'``) both load.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fasthmr_ros.models.constants import (
    MANO_PARENTS,
    NUM_BETAS,
    NUM_FACES,
    NUM_HAND_POSE_JOINTS,
    NUM_MANO_JOINTS,
    NUM_VERTICES,
)
from fasthmr_ros.models.model_files import (
    ModelFileSpec,
    UnsafeFileError,
    check_model_arrays,
    convert_model_file,
    find_model_file,
    load_model_file,
    synthetic_skinned_mesh,
    write_chumpy_like_pickle,
)

MANO_RIGHT_STEM = "MANO_RIGHT"
_NUM_POSE_COEFFS = 3 * NUM_HAND_POSE_JOINTS
#: Arrays every MANO file must provide, with their shapes (smplx's key names).
REQUIRED_SHAPES: dict[str, tuple[int, ...]] = {
    "v_template": (NUM_VERTICES, 3),
    "shapedirs": (NUM_VERTICES, 3, NUM_BETAS),
    "posedirs": (NUM_VERTICES, 3, 9 * NUM_HAND_POSE_JOINTS),
    "J_regressor": (NUM_MANO_JOINTS, NUM_VERTICES),
    "weights": (NUM_VERTICES, NUM_MANO_JOINTS),
    "kintree_table": (2, NUM_MANO_JOINTS),
    "f": (NUM_FACES, 3),
    "hands_components": (_NUM_POSE_COEFFS, _NUM_POSE_COEFFS),
    "hands_mean": (_NUM_POSE_COEFFS,),
}
#: The MANO right-hand file.
MANO_FILE = ModelFileSpec(
    model="MANO",
    title="MANO right-hand",
    stem=MANO_RIGHT_STEM,
    subfolder="mano",
    required_shapes=REQUIRED_SHAPES,
    num_vertices=NUM_VERTICES,
    where_from=(
        "MANO is not shipped with fasthmr_ros (non-commercial licence): register at "
        "https://mano.is.tue.mpg.de, download the MANO models and point this package at the "
        "folder holding MANO_RIGHT.pkl"
    ),
    convert_command="convert-mano",
)

__all__ = [
    "MANO_FILE",
    "REQUIRED_SHAPES",
    "UnsafeFileError",
    "check_mano_arrays",
    "convert_mano",
    "find_mano_file",
    "load_mano_file",
    "make_synthetic_mano",
    "write_synthetic_mano",
]


def check_mano_arrays(
    arrays: Mapping[str, np.ndarray], source: str | os.PathLike[str]
) -> dict[str, np.ndarray]:
    """Validate MANO arrays (see :func:`~fasthmr_ros.models.model_files.check_model_arrays`)."""
    return check_model_arrays(MANO_FILE, arrays, source)


def load_mano_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a MANO right-hand model as plain numpy arrays without running code from the file.

    Args:
        path: the official ``MANO_RIGHT.pkl`` or an ``.npz`` written by :func:`convert_mano`.

    Returns:
        Arrays under smplx's key names: ``v_template (778,3)``, ``shapedirs (778,3,10)``,
        ``posedirs (778,3,135)``, ``J_regressor (16,778)`` (dense), ``weights (778,16)``,
        ``kintree_table (2,16)`` and ``f (1538,3)`` (int64), ``hands_components (45,45)``,
        ``hands_mean (45,)``, plus any other plain arrays the file holds.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeFileError: the file asks to import or call anything not needed for arrays.
        ValueError: the file is corrupt, or required arrays are missing or malformed.

    """
    return load_model_file(MANO_FILE, path)


def find_mano_file(mano_dir: str | os.PathLike[str]) -> Path:
    """Locate the right-hand MANO file.

    Args:
        mano_dir: a ``MANO_RIGHT.pkl`` / ``.npz`` file, a folder holding one, or a folder with a
            ``mano/`` subfolder holding one (smplx's layout). A converted ``.npz`` is preferred
            over the pickle when both are present.

    Raises:
        FileNotFoundError: nothing suitable was found; the message says where MANO comes from.

    """
    return find_model_file(MANO_FILE, mano_dir)


def convert_mano(src: str | os.PathLike[str], dst_npz: str | os.PathLike[str]) -> Path:
    """Write MANO as a clean ``.npz`` (for smplx in a folder, name it ``MANO_RIGHT.npz``)."""
    return convert_model_file(MANO_FILE, src, dst_npz)


# ---------------------------------------------------------------------------------------------
# Synthetic MANO for tests


def make_synthetic_mano(seed: int = 0) -> dict[str, np.ndarray]:
    """Structurally valid, random MANO arrays (real sizes and kinematic tree), hand-like bones.

    Joints are laid out as a flat hand (metres); each vertex belongs to one joint's bone and is
    skinned to it and its parent; the joint regressor averages the vertices nearest each joint.
    """
    rng = np.random.default_rng(seed)
    parents = np.array(MANO_PARENTS)
    # MANO joint order: wrist, index, middle, pinky, ring, thumb (three joints per finger).
    finger_bases = np.array(
        [[0.09, 0.02, 0], [0.095, 0, 0], [0.08, -0.04, 0], [0.09, -0.02, 0], [0.03, 0.04, 0]]
    )
    finger_dirs = np.array([[1, 0.05, 0], [1, 0, 0], [1, -0.15, 0], [1, -0.07, 0], [0.6, 0.8, 0]])
    finger_dirs /= np.linalg.norm(finger_dirs, axis=1, keepdims=True)
    joints = np.zeros((NUM_MANO_JOINTS, 3))
    bone_ends = np.zeros((NUM_MANO_JOINTS, 3))
    bone_ends[0] = finger_bases[1]
    for finger in range(5):
        for segment in range(3):
            joint = 1 + 3 * finger + segment
            joints[joint] = finger_bases[finger] + 0.03 * segment * finger_dirs[finger]
            bone_ends[joint] = joints[joint] + 0.03 * finger_dirs[finger]

    radius = np.full(NUM_MANO_JOINTS, 0.008)
    radius[0] = 0.03
    mesh = synthetic_skinned_mesh(
        rng, joints, bone_ends, parents, radius, NUM_VERTICES, NUM_FACES, NUM_BETAS
    )
    kintree_table = np.stack([parents, np.arange(NUM_MANO_JOINTS)]).astype(np.int64)
    kintree_table[0, 0] = 2**32 - 1  # as in the official files: uint32 "-1"
    return {
        **mesh,
        "posedirs": 0.001 * rng.normal(size=REQUIRED_SHAPES["posedirs"]),
        "kintree_table": kintree_table,
        "hands_components": np.linalg.qr(rng.normal(size=(_NUM_POSE_COEFFS,) * 2))[0],
        "hands_mean": 0.1 * rng.normal(size=_NUM_POSE_COEFFS),
        "J": mesh["J_regressor"] @ mesh["v_template"],
        "bs_style": np.array("lbs"),
        "bs_type": np.array("lrotmin"),
    }


def write_synthetic_mano(
    directory: str | os.PathLike[str], seed: int = 0, chumpy_like: bool = True
) -> Path:
    """Write a synthetic ``MANO_RIGHT.pkl`` with the arrays of :func:`make_synthetic_mano`.

    Args:
        directory: output folder (created if needed).
        seed: random seed; the same seed gives the same arrays.
        chumpy_like: pickle like the official file: ``v_template``, ``shapedirs`` and ``J`` as
            objects of the global ``chumpy.ch.Ch`` (state ``{'x': array, ...}``) and
            ``J_regressor`` as a ``scipy.sparse`` csc matrix; chumpy is never imported. When
            false, every entry is a plain numpy array.

    Returns:
        The path of the written pickle.

    """
    arrays = make_synthetic_mano(seed)
    path = Path(directory) / f"{MANO_RIGHT_STEM}.pkl"
    if not chumpy_like:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            pickle.dump(arrays, file, protocol=2)
        return path
    return write_chumpy_like_pickle(
        path, arrays, chumpy_keys=("v_template", "shapedirs", "J"), sparse_keys=("J_regressor",)
    )
