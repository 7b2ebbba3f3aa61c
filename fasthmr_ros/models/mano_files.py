"""Reading MANO hand model files safely, converting them, and writing synthetic ones.

The official ``MANO_RIGHT.pkl`` (https://mano.is.tue.mpg.de, non-commercial licence, never
shipped with this package) is a Python 2 pickle holding ``chumpy`` objects and a
``scipy.sparse`` matrix. Unpickling it the usual way needs chumpy installed and runs whatever
code the file names. :func:`load_mano_file` instead uses a restricted unpickler that only
rebuilds plain numpy arrays: chumpy and scipy objects become inert stand-ins whose pickled state
is turned into arrays afterwards, and any other import the file asks for is refused with
:class:`UnsafeFileError` before it happens. :func:`convert_mano` writes a clean ``.npz`` (no
pickles) that this package and ``smplx`` (``ext='npz'``) both load.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fasthmr_ros.models.constants import (
    MANO_PARENTS,
    NUM_BETAS,
    NUM_FACES,
    NUM_HAND_POSE_JOINTS,
    NUM_MANO_JOINTS,
    NUM_VERTICES,
)
from fasthmr_ros.models.pickle_names import pickled_under
from fasthmr_ros.models.safe_pickle import ArraysOnlyUnpickler, UnsafePickleError

_log = logging.getLogger(__name__)

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
_INTEGER_KEYS = ("kintree_table", "f")
_WHERE_MANO_COMES_FROM = (
    "MANO is not shipped with fasthmr_ros (non-commercial licence): register at "
    "https://mano.is.tue.mpg.de, download the MANO models and point this package at the "
    "folder holding MANO_RIGHT.pkl"
)
_ZIP_MAGIC = b"PK\x03\x04"
#: Largest dense matrix a pickled sparse matrix may expand to (elements).
_MAX_DENSE_ELEMENTS = 50_000_000


#: Raised when a pickle asks to import or call something a MANO file never needs.
UnsafeFileError = UnsafePickleError


# ---------------------------------------------------------------------------------------------
# Restricted unpickling


class _PickledObject:
    """Inert stand-in for an instance of a class the file names but that is never imported."""

    module = ""
    name = ""
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    @classmethod
    def qualified_name(cls) -> str:
        return f"{cls.module}.{cls.name}"


class _ChumpyObject(_PickledObject):
    """Stand-in for a ``chumpy`` object; its state holds the array (``x``) or an expression."""


class _SparseMatrix(_PickledObject):
    """Stand-in for a ``scipy.sparse`` matrix; its state holds the compressed arrays."""


_SPARSE_CLASSES = frozenset(
    f"{fmt}_{kind}" for fmt in ("csc", "csr", "coo") for kind in ("matrix", "array")
)


class _RestrictedUnpickler(ArraysOnlyUnpickler):
    """Arrays-only unpickling plus inert stand-ins for chumpy and scipy.sparse objects."""

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, source, kind="a MANO file")
        self._stand_ins: dict[tuple[str, str], type[_PickledObject]] = {}
        for kind in (set, frozenset, object):
            self.allowed["builtins", kind.__name__] = kind
        self.allowed["copyreg", "_reconstructor"] = self._reconstruct_object

    def resolve_unknown(self, module: str, name: str) -> Any:
        """Inert stand-ins for chumpy and scipy.sparse classes; refuse everything else."""
        if module == "chumpy" or module.startswith("chumpy."):
            return self._stand_in(module, name, _ChumpyObject)
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return self._stand_in(module, name, _SparseMatrix)
        return super().resolve_unknown(module, name)

    def _stand_in(
        self, module: str, name: str, base: type[_PickledObject]
    ) -> type[_PickledObject]:
        key = (module, name)
        if key not in self._stand_ins:
            self._stand_ins[key] = type(name, (base,), {"module": module, "name": name})
        return self._stand_ins[key]

    def _reconstruct_object(self, cls: Any, base: Any, state: Any) -> _PickledObject:
        """Protocol 0/1 object creation (``copy_reg._reconstructor``), for stand-ins only."""
        if cls not in self._stand_ins.values() or base is not object or state is not None:
            raise self.refusal(f"calls copy_reg._reconstructor({cls!r}, {base!r}, ...)")
        return cls()


# ---------------------------------------------------------------------------------------------
# Turning unpickled values into plain arrays


def _sparse_to_dense(matrix: _SparseMatrix) -> np.ndarray:
    """Expand a pickled csc/csr/coo matrix from its state, with bounds checks."""
    state = matrix.state if isinstance(matrix.state, dict) else {}
    shape = state.get("_shape", state.get("shape"))
    fmt = matrix.name[:3]
    try:
        rows, cols = (int(n) for n in shape)
        data = np.asarray(state["data"])
        if fmt == "coo":
            coords = state.get("coords", (state.get("row"), state.get("col")))
            row_ids, col_ids = (np.asarray(c, dtype=np.int64) for c in coords)
        else:
            indptr = np.asarray(state["indptr"], dtype=np.int64)
            minor = np.asarray(state["indices"], dtype=np.int64)
            major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            row_ids, col_ids = (minor, major) if fmt == "csc" else (major, minor)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"malformed {matrix.qualified_name()} state ({exc})") from exc
    if not 0 < rows * cols <= _MAX_DENSE_ELEMENTS or data.dtype.kind not in "biuf":
        raise ValueError(f"implausible {matrix.qualified_name()}: shape {shape}, {data.dtype}")
    if not (len(data) == len(row_ids) == len(col_ids)):
        raise ValueError(f"malformed {matrix.qualified_name()}: index and data lengths differ")
    if len(data) and (
        row_ids.min() < 0 or col_ids.min() < 0 or row_ids.max() >= rows or col_ids.max() >= cols
    ):
        raise ValueError(f"malformed {matrix.qualified_name()}: index out of range")
    dense = np.zeros((rows, cols), dtype=np.float64)
    np.add.at(dense, (row_ids, col_ids), data)
    return dense


def _evaluate_chumpy(obj: _ChumpyObject, depth: int) -> np.ndarray:
    """Value of a pickled chumpy node: a plain ``Ch`` or a pure re-indexing of one."""
    state = obj.state if isinstance(obj.state, dict) else {}
    if obj.name == "Ch" and "x" in state:
        return _to_array(state["x"], depth + 1)
    if obj.name == "Select" and {"a", "idxs"} <= state.keys():
        result = _to_array(state["a"], depth + 1).ravel()[_to_array(state["idxs"], depth + 1)]
        shape = state.get("preferred_shape")
        return result.reshape(shape) if shape is not None else result
    if obj.name == "Reshape" and {"a", "newshape"} <= state.keys():
        return _to_array(state["a"], depth + 1).reshape(state["newshape"])
    if obj.name == "transpose" and "a" in state:
        return np.transpose(_to_array(state["a"], depth + 1), axes=state.get("axes"))
    raise ValueError(
        f"it is a chumpy expression ({obj.qualified_name()}) that cannot be evaluated without "
        "chumpy; re-save the file with plain numpy arrays"
    )


def _to_array(value: Any, depth: int = 0) -> np.ndarray:
    """Convert an unpickled value into a plain (non-object) numpy array."""
    if depth > 32:
        raise ValueError("chumpy expression nested too deeply")
    if isinstance(value, _ChumpyObject):
        array = _evaluate_chumpy(value, depth)
    elif isinstance(value, _SparseMatrix):
        array = _sparse_to_dense(value)
    else:
        array = np.asarray(value)
    if array.dtype.hasobject:
        raise ValueError("it holds Python objects, not numbers or text")
    return array


def _plain_arrays(raw: Mapping[Any, Any], source: Path) -> dict[str, np.ndarray]:
    """Plain arrays for every entry; required ones must convert, others are dropped if not."""
    arrays: dict[str, np.ndarray] = {}
    problems = []
    for key, value in raw.items():
        try:
            arrays[str(key)] = _to_array(value)
        except (ValueError, TypeError, IndexError) as exc:
            if key in REQUIRED_SHAPES:
                problems.append(f"'{key}': {exc}")
            else:
                _log.debug("%s: dropping '%s' (%s)", source, key, exc)
    if problems:
        raise ValueError(f"{source}: cannot read MANO arrays: " + "; ".join(problems))
    return arrays


def check_mano_arrays(
    arrays: Mapping[str, np.ndarray], source: str | os.PathLike[str]
) -> dict[str, np.ndarray]:
    """Validate required keys, shapes and values; normalise integer arrays to int64.

    Raises ``ValueError`` listing every missing, misshapen or invalid array of ``source``.
    """
    problems = [f"'{key}' is missing" for key in REQUIRED_SHAPES if key not in arrays]
    for key, shape in REQUIRED_SHAPES.items():
        array = arrays.get(key)
        if array is None:
            continue
        if array.shape != shape:
            problems.append(f"'{key}' has shape {array.shape}, expected {shape}")
        elif key in _INTEGER_KEYS and array.dtype.kind not in "iu":
            problems.append(f"'{key}' must hold integers, not {array.dtype}")
        elif key not in _INTEGER_KEYS and (
            array.dtype.kind not in "biuf" or not np.all(np.isfinite(array))
        ):
            problems.append(f"'{key}' must hold finite numbers")
    faces = arrays.get("f")
    if not problems and (faces.min() < 0 or faces.max() >= NUM_VERTICES):
        problems.append(f"'f' indexes vertices outside 0..{NUM_VERTICES - 1}")
    if problems:
        raise ValueError(
            f"{source} is not a usable MANO right-hand file: " + "; ".join(problems)
            + ". Expected the official MANO_RIGHT.pkl or an .npz written by "
            "`fasthmr convert-mano`."
        )
    checked = {key: np.asarray(arrays[key]) for key in REQUIRED_SHAPES}
    for key in _INTEGER_KEYS:
        checked[key] = checked[key].astype(np.int64)
    checked.update((key, value) for key, value in arrays.items() if key not in checked)
    return checked


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as exc:
        raise UnsafeFileError(
            f"refusing to load {path}: it contains pickled object arrays, which a MANO .npz "
            f"never needs ({exc}); the file may be malicious or is not a MANO file"
        ) from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: corrupt or truncated .npz file ({exc})") from exc


def _read_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        with path.open("rb") as file:
            raw = _RestrictedUnpickler(file, path).load()
    except UnsafeFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a hostile/broken stream
        raise ValueError(
            f"{path}: cannot read it as a MANO pickle ({type(exc).__name__}: {exc}); the file "
            "is truncated, corrupt or not a MANO file"
        ) from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a MANO pickle holds a dict, this one a {type(raw).__name__}")
    return _plain_arrays(raw, path)


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
        ValueError: the file is corrupt, or required arrays are missing or malformed (all
            problems are listed in one message).

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MANO file {path} does not exist. {_WHERE_MANO_COMES_FROM}.")
    with path.open("rb") as file:
        magic = file.read(len(_ZIP_MAGIC))
    if not magic:
        raise ValueError(f"{path} is empty, not a MANO file")
    arrays = _read_npz(path) if magic == _ZIP_MAGIC else _read_pickle(path)
    return check_mano_arrays(arrays, path)


def find_mano_file(mano_dir: str | os.PathLike[str]) -> Path:
    """Locate the right-hand MANO file.

    Args:
        mano_dir: a ``MANO_RIGHT.pkl`` / ``.npz`` file, a folder holding one, or a folder with a
            ``mano/`` subfolder holding one (smplx's layout). A converted ``.npz`` is preferred
            over the pickle when both are present.

    Raises:
        FileNotFoundError: nothing suitable was found; the message says where MANO comes from.

    """
    root = Path(mano_dir)
    if root.is_file():
        return root
    candidates = [
        folder / f"{MANO_RIGHT_STEM}{suffix}"
        for folder in (root, root / "mano")
        for suffix in (".npz", ".pkl")
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = (
        f"no MANO_RIGHT.npz or MANO_RIGHT.pkl in {root} or {root / 'mano'}"
        if root.is_dir()
        else f"{root} does not exist"
    )
    raise FileNotFoundError(f"MANO right-hand model not found: {where}. {_WHERE_MANO_COMES_FROM}.")


def convert_mano(src: str | os.PathLike[str], dst_npz: str | os.PathLike[str]) -> Path:
    """Write MANO as a clean ``.npz`` (no pickles) that this package and smplx both load.

    Args:
        src: anything :func:`find_mano_file` accepts.
        dst_npz: output path; must end in ``.npz`` (for smplx in a folder, name it
            ``MANO_RIGHT.npz``).

    Returns:
        The path written.

    """
    dst = Path(dst_npz)
    if dst.suffix != ".npz":
        raise ValueError(f"output {dst} must end in .npz")
    arrays = load_mano_file(find_mano_file(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial")
    try:
        with partial.open("wb") as file:
            np.savez(file, **arrays)
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)
    return dst


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

    owner = np.arange(NUM_VERTICES) * NUM_MANO_JOINTS // NUM_VERTICES
    along = rng.uniform(0, 1, NUM_VERTICES)[:, None]
    radius = np.where(owner == 0, 0.03, 0.008)[:, None]
    v_template = joints[owner] + along * (bone_ends[owner] - joints[owner])
    v_template += radius * rng.normal(size=(NUM_VERTICES, 3)) / np.sqrt(3)

    weights = np.zeros((NUM_VERTICES, NUM_MANO_JOINTS))
    weights[np.arange(NUM_VERTICES), owner] = 0.8 + 0.2 * along[:, 0]
    has_parent = owner > 0
    weights[has_parent.nonzero()[0], parents[owner[has_parent]]] = 0.2 * (1 - along[has_parent, 0])
    weights /= weights.sum(axis=1, keepdims=True)

    J_regressor = np.zeros((NUM_MANO_JOINTS, NUM_VERTICES))
    for joint in range(NUM_MANO_JOINTS):
        nearest = np.argsort(np.linalg.norm(v_template - joints[joint], axis=1))[:8]
        J_regressor[joint, nearest] = rng.uniform(0.5, 1.0, len(nearest))
    J_regressor /= J_regressor.sum(axis=1, keepdims=True)

    shapedirs = 0.003 * rng.normal(size=(NUM_MANO_JOINTS, 3, NUM_BETAS))[owner]
    shapedirs[:, :, 0] = 0.05 * v_template  # first shape component scales the hand
    first = np.arange(NUM_FACES) % NUM_VERTICES
    step = 1 + np.arange(NUM_FACES) // NUM_VERTICES
    faces = np.stack([first, (first + step) % NUM_VERTICES, (first + 2 * step) % NUM_VERTICES], 1)
    kintree_table = np.stack([parents, np.arange(NUM_MANO_JOINTS)]).astype(np.int64)
    kintree_table[0, 0] = 2**32 - 1  # as in the official files: uint32 "-1"
    return {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": 0.001 * rng.normal(size=REQUIRED_SHAPES["posedirs"]),
        "J_regressor": J_regressor,
        "weights": weights,
        "kintree_table": kintree_table,
        "f": faces.astype(np.uint32),
        "hands_components": np.linalg.qr(rng.normal(size=(_NUM_POSE_COEFFS,) * 2))[0],
        "hands_mean": 0.1 * rng.normal(size=_NUM_POSE_COEFFS),
        "J": J_regressor @ v_template,
        "bs_style": np.array("lbs"),
        "bs_type": np.array("lrotmin"),
    }


class _Ch:
    """Pickles like chumpy's plain ``Ch``: class global plus its ``__dict__`` as state."""

    def __init__(self, x: np.ndarray) -> None:
        self.__dict__.update(
            x=x, _dirty_vars={"x"}, _itr=None, _make_dense=False, _make_sparse=False,
            _depends_on_deps={},
        )


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
    path.parent.mkdir(parents=True, exist_ok=True)
    if not chumpy_like:
        with path.open("wb") as file:
            pickle.dump(arrays, file, protocol=2)
        return path
    from scipy import sparse

    with pickled_under("chumpy.ch", Ch=_Ch):
        content: dict[str, Any] = dict(arrays)
        content.update((key, _Ch(arrays[key])) for key in ("v_template", "shapedirs", "J"))
        content["J_regressor"] = sparse.csc_matrix(arrays["J_regressor"])
        content.update(bs_style="lbs", bs_type="lrotmin")
        with path.open("wb") as file:
            pickle.dump(content, file, protocol=2)
    return path
