"""The SMPL files HMR2.0 needs: reading them safely, converting, and writing synthetic ones.

4D-Humans' ``data/`` folder holds three files:

* ``smpl/SMPL_NEUTRAL.pkl`` - the neutral SMPL model (https://smpl.is.tue.mpg.de,
  non-commercial licence, never shipped with this package): a pickle of chumpy objects and a
  ``scipy.sparse`` joint regressor, read by :mod:`fasthmr_ros.models.model_files` without
  running code from it;
* ``SMPL_to_J19.pkl`` - a pickled (19, 6890) array regressing HMR2.0's 19 extra joints;
* ``smpl_mean_params.npz`` - SPIN's mean pose (144 numbers, 24 joints in 6D), shape and camera,
  the head's starting point.

The official checkpoint also carries all of them (``smpl.*`` and ``smpl_head.init_*``
buffers), so none is required to run it. :func:`convert_smpl` writes a pickle-free ``.npz``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fasthmr_ros.models.constants import (
    NUM_BETAS,
    NUM_SMPL_BODY_JOINTS,
    NUM_SMPL_EXTRA_JOINTS,
    NUM_SMPL_FACES,
    NUM_SMPL_JOINTS,
    NUM_SMPL_VERTICES,
    SMPL_PARENTS,
)
from fasthmr_ros.models.model_files import (
    ModelFileSpec,
    convert_model_file,
    find_model_file,
    load_model_file,
    read_array_file,
    read_npz,
    synthetic_skinned_mesh,
    write_chumpy_like_pickle,
)

SMPL_NEUTRAL_STEM = "SMPL_NEUTRAL"
JOINT_REGRESSOR_EXTRA_NAME = "SMPL_to_J19.pkl"
MEAN_PARAMS_NAME = "smpl_mean_params.npz"

#: The neutral SMPL file.
SMPL_FILE = ModelFileSpec(
    model="SMPL",
    title="SMPL neutral",
    stem=SMPL_NEUTRAL_STEM,
    subfolder="smpl",
    required_shapes={
        "v_template": (NUM_SMPL_VERTICES, 3),
        "shapedirs": (NUM_SMPL_VERTICES, 3, NUM_BETAS),
        "posedirs": (NUM_SMPL_VERTICES, 3, 9 * NUM_SMPL_BODY_JOINTS),
        "J_regressor": (NUM_SMPL_JOINTS, NUM_SMPL_VERTICES),
        "weights": (NUM_SMPL_VERTICES, NUM_SMPL_JOINTS),
        "kintree_table": (2, NUM_SMPL_JOINTS),
        "f": (NUM_SMPL_FACES, 3),
    },
    num_vertices=NUM_SMPL_VERTICES,
    where_from=(
        "SMPL is not shipped with fasthmr_ros (non-commercial licence): register at "
        "https://smpl.is.tue.mpg.de, download SMPL for Python (basicModel_neutral_lbs_10_207_0_"
        "v1.0.0.pkl), save it as SMPL_NEUTRAL.pkl and point this package at its folder (or at "
        "4D-Humans' data/ folder, which holds smpl/SMPL_NEUTRAL.pkl)"
    ),
    convert_command="convert-smpl",
)
_J19_SHAPE = (NUM_SMPL_EXTRA_JOINTS, NUM_SMPL_VERTICES)
_MEAN_SHAPES = {"pose": (6 * NUM_SMPL_JOINTS,), "shape": (NUM_BETAS,), "cam": (3,)}


@dataclass(frozen=True)
class SmplFiles:
    """What an SMPL folder provides; absent files are ``None``."""

    model: Path
    joint_regressor_extra: Path | None
    mean_params: Path | None


def load_smpl_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load the neutral SMPL model as plain numpy arrays without running code from the file.

    Args:
        path: the official ``SMPL_NEUTRAL.pkl`` or an ``.npz`` written by :func:`convert_smpl`.

    Returns:
        ``v_template (6890,3)``, ``shapedirs (6890,3,10)``, ``posedirs (6890,3,207)``,
        ``J_regressor (24,6890)`` (dense), ``weights (6890,24)``, ``kintree_table (2,24)`` and
        ``f (13776,3)`` (int64), plus any other plain arrays the file holds.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeFileError: the file asks to import or call anything not needed for arrays.
        ValueError: the file is corrupt, or required arrays are missing or malformed.

    """
    return load_model_file(SMPL_FILE, path)


def find_smpl_file(smpl_dir: str | os.PathLike[str]) -> Path:
    """Locate ``SMPL_NEUTRAL.npz``/``.pkl``: the file, in ``smpl_dir`` or in ``smpl_dir/smpl``."""
    return find_model_file(SMPL_FILE, smpl_dir)


def find_smpl_files(smpl_dir: str | os.PathLike[str]) -> SmplFiles:
    """Locate the SMPL model, and ``SMPL_to_J19.pkl`` and the mean parameters near it.

    The two other files are looked for beside the model and one folder up. ``smpl_dir`` is a
    folder holding ``SMPL_NEUTRAL.pkl`` (or the file itself), or 4D-Humans' ``data/`` folder
    (``smpl/SMPL_NEUTRAL.pkl`` with the two other files beside ``smpl/``).
    """
    model = find_smpl_file(smpl_dir)
    folders = [model.parent, model.parent.parent]

    def beside(name: str) -> Path | None:
        return next((f / name for f in folders if (f / name).is_file()), None)

    return SmplFiles(model, beside(JOINT_REGRESSOR_EXTRA_NAME), beside(MEAN_PARAMS_NAME))


def load_joint_regressor_extra(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``SMPL_to_J19.pkl`` (a pickled array; nothing else is accepted) as (19, 6890)."""
    array = read_array_file(path, kind="an SMPL_to_J19 regressor", model="SMPL_to_J19")
    if array.shape != _J19_SHAPE or array.dtype.kind not in "biuf" or not np.isfinite(
        array
    ).all():
        raise ValueError(
            f"{path} is not HMR2.0's SMPL_to_J19 regressor: expected finite numbers of shape "
            f"{_J19_SHAPE}, got {array.dtype} {array.shape}"
        )
    return array.astype(np.float32)


def load_mean_params(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read ``smpl_mean_params.npz``: ``pose`` (144,) 6D, ``shape`` (10,), ``cam`` (3,)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    arrays = read_npz(path, "an SMPL mean-parameter file")
    problems = [
        f"'{key}' {'missing' if key not in arrays else f'has shape {arrays[key].shape}'}"
        for key, shape in _MEAN_SHAPES.items()
        if key not in arrays or arrays[key].shape != shape
    ]
    if problems:
        raise ValueError(
            f"{path} is not SPIN's smpl_mean_params.npz (expected pose (144,), shape (10,), "
            f"cam (3,)): " + "; ".join(problems)
        )
    return {key: arrays[key].astype(np.float32) for key in _MEAN_SHAPES}


def convert_smpl(src: str | os.PathLike[str], dst_npz: str | os.PathLike[str]) -> Path:
    """Write SMPL as a clean ``.npz`` (for smplx in a folder, name it ``SMPL_NEUTRAL.npz``)."""
    return convert_model_file(SMPL_FILE, src, dst_npz)


# ---------------------------------------------------------------------------------------------
# Synthetic SMPL for tests

#: Rough T-pose joint positions (metres, y up) of the 24 SMPL joints.
_TPOSE_JOINTS = np.array([
    [0, 0, 0], [0.06, -0.09, 0], [-0.06, -0.09, 0], [0, 0.11, 0],
    [0.1, -0.47, 0], [-0.1, -0.47, 0], [0, 0.24, 0], [0.09, -0.87, 0],
    [-0.09, -0.87, 0], [0, 0.3, 0], [0.12, -0.92, 0.12], [-0.12, -0.92, 0.12],
    [0, 0.51, 0], [0.08, 0.41, 0], [-0.08, 0.41, 0], [0, 0.6, 0.03],
    [0.18, 0.43, 0], [-0.18, 0.43, 0], [0.43, 0.43, 0], [-0.43, 0.43, 0],
    [0.68, 0.43, 0], [-0.68, 0.43, 0], [0.77, 0.43, 0], [-0.77, 0.43, 0],
])
#: SMPL joint each of the 19 extra joints sits on (ankles ... head), for the synthetic J19.
_J19_ANCHORS = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15, 0, 9, 6, 15, 15)


def make_synthetic_smpl(seed: int = 0) -> dict[str, np.ndarray]:
    """Structurally valid, random SMPL arrays (real sizes and kinematic tree), body-like bones.

    Also returns ``joint_regressor_extra`` (19, 6890) and SPIN-like mean parameters
    (``mean_pose`` (144,), ``mean_shape`` (10,), ``mean_cam`` (3,)); the writers put them in
    their own files.
    """
    rng = np.random.default_rng(seed)
    parents = np.array(SMPL_PARENTS)
    children = {int(p): j for j, p in reversed(list(enumerate(parents))) if p >= 0}
    bone_ends = np.array([
        _TPOSE_JOINTS[children[j]] if j in children else _TPOSE_JOINTS[j] + [0, 0.05, 0.03]
        for j in range(NUM_SMPL_JOINTS)
    ])
    radius = np.full(NUM_SMPL_JOINTS, 0.05)
    radius[[0, 3, 6, 9]] = 0.12  # torso
    mesh = synthetic_skinned_mesh(
        rng, _TPOSE_JOINTS, bone_ends, parents, radius, NUM_SMPL_VERTICES, NUM_SMPL_FACES,
        NUM_BETAS,
    )
    kintree_table = np.stack([parents, np.arange(NUM_SMPL_JOINTS)]).astype(np.int64)
    kintree_table[0, 0] = 2**32 - 1  # as in the official files: uint32 "-1"
    j19 = mesh["J_regressor"][list(_J19_ANCHORS)] * rng.uniform(0.9, 1.1, _J19_SHAPE)
    j19 /= j19.sum(axis=1, keepdims=True)
    # SPIN's mean pose: the root turned 180 degrees about x (upright in the camera frame, y
    # down), the joints near rest; in 6D (first two columns of each rotation).
    mean_pose = np.tile([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], NUM_SMPL_JOINTS)
    mean_pose[:6] = [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    mean_pose[6:] += 0.05 * rng.normal(size=mean_pose.size - 6)
    return {
        **mesh,
        "posedirs": 0.001 * rng.normal(size=SMPL_FILE.required_shapes["posedirs"]),
        "kintree_table": kintree_table,
        "J": mesh["J_regressor"] @ mesh["v_template"],
        "joint_regressor_extra": j19,
        "mean_pose": mean_pose,
        "mean_shape": 0.1 * rng.normal(size=NUM_BETAS),
        "mean_cam": np.array([0.9, 0.0, 0.0]),
    }


_SEPARATE = ("joint_regressor_extra", "mean_pose", "mean_shape", "mean_cam")


def write_synthetic_smpl(
    directory: str | os.PathLike[str], seed: int = 0, chumpy_like: bool = True
) -> SmplFiles:
    """Write a synthetic 4D-Humans ``data/`` folder at ``directory``.

    Writes ``smpl/SMPL_NEUTRAL.pkl`` (chumpy-like objects and a sparse joint regressor as in
    the official file when ``chumpy_like``, else plain arrays), ``SMPL_to_J19.pkl`` and
    ``smpl_mean_params.npz`` from :func:`make_synthetic_smpl`; chumpy is never imported.
    """
    root = Path(directory)
    arrays = make_synthetic_smpl(seed)
    model = {k: v for k, v in arrays.items() if k not in _SEPARATE}
    path = root / "smpl" / f"{SMPL_NEUTRAL_STEM}.pkl"
    if chumpy_like:
        write_chumpy_like_pickle(
            path, model, chumpy_keys=("v_template", "shapedirs", "J"),
            sparse_keys=("J_regressor",),
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            pickle.dump(model, file, protocol=2)
    j19 = root / JOINT_REGRESSOR_EXTRA_NAME
    with j19.open("wb") as file:
        pickle.dump(arrays["joint_regressor_extra"], file, protocol=2)
    mean = root / MEAN_PARAMS_NAME
    np.savez(
        mean, pose=arrays["mean_pose"], shape=arrays["mean_shape"], cam=arrays["mean_cam"]
    )
    return SmplFiles(path, j19, mean)
