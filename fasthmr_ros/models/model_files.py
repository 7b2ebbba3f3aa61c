"""Reading the pickled model files of MANO and SMPL safely, converting them, writing test ones.

The official model files (``MANO_RIGHT.pkl``, ``SMPL_NEUTRAL.pkl``; non-commercial licences,
never shipped with this package) are Python 2 pickles holding ``chumpy`` objects and
``scipy.sparse`` matrices. Unpickling them the usual way needs chumpy installed and runs whatever
code the file names. :func:`load_model_file` instead uses a restricted unpickler that only
rebuilds plain numpy arrays: chumpy and scipy objects become inert stand-ins whose pickled state
is turned into arrays afterwards, and any other import the file asks for is refused with
:class:`UnsafeFileError` before it happens. :func:`convert_model_file` writes a clean ``.npz``
(no pickles) that this package and ``smplx`` (``ext='npz'``) both load.

What differs between the models (file name, required arrays and shapes, where the file comes
from) is one :class:`ModelFileSpec`; :mod:`fasthmr_ros.models.mano_files` and
:mod:`fasthmr_ros.models.smpl_files` hold theirs.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fasthmr_ros.models.safe_pickle import ArraysOnlyUnpickler, UnsafePickleError

_log = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"
#: Largest dense matrix a pickled sparse matrix may expand to (elements).
_MAX_DENSE_ELEMENTS = 50_000_000
#: Arrays that hold indices, not numbers to compute with.
_INTEGER_KEYS = ("kintree_table", "f")

#: Raised when a pickle asks to import or call something a model file never needs.
UnsafeFileError = UnsafePickleError


@dataclass(frozen=True)
class ModelFileSpec:
    """What one kind of model file must hold and how to talk about it.

    Attributes:
        model: short name in messages (``"MANO"``).
        title: what the file is (``"MANO right-hand"``).
        stem: file name without suffix (``"MANO_RIGHT"``).
        subfolder: smplx's subfolder for the model (``"mano"``).
        required_shapes: arrays every file must provide, under smplx's key names.
        num_vertices: vertex count (faces must index below it).
        where_from: where a user gets the file (the licence forbids shipping it).
        convert_command: the ``fasthmr`` command that writes the ``.npz``.

    """

    model: str
    title: str
    stem: str
    subfolder: str
    required_shapes: Mapping[str, tuple[int, ...]]
    num_vertices: int
    where_from: str
    convert_command: str

    @property
    def kind(self) -> str:
        """What the file should be, for messages (``"a MANO file"``)."""
        return f"a {self.model} file"


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

    def __init__(self, file: io.BufferedIOBase, source: Path, kind: str) -> None:
        super().__init__(file, source, kind=kind)
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


def _plain_arrays(
    raw: Mapping[Any, Any], source: Path, spec: ModelFileSpec
) -> dict[str, np.ndarray]:
    """Plain arrays for every entry; required ones must convert, others are dropped if not."""
    arrays: dict[str, np.ndarray] = {}
    problems = []
    for key, value in raw.items():
        try:
            arrays[str(key)] = _to_array(value)
        except (ValueError, TypeError, IndexError) as exc:
            if key in spec.required_shapes:
                problems.append(f"'{key}': {exc}")
            else:
                _log.debug("%s: dropping '%s' (%s)", source, key, exc)
    if problems:
        raise ValueError(f"{source}: cannot read {spec.model} arrays: " + "; ".join(problems))
    return arrays


def check_model_arrays(
    spec: ModelFileSpec, arrays: Mapping[str, np.ndarray], source: str | os.PathLike[str]
) -> dict[str, np.ndarray]:
    """Validate required keys, shapes and values; normalise integer arrays to int64.

    Raises ``ValueError`` listing every missing, misshapen or invalid array of ``source``.
    """
    required = spec.required_shapes
    problems = [f"'{key}' is missing" for key in required if key not in arrays]
    for key, shape in required.items():
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
    if not problems and (faces.min() < 0 or faces.max() >= spec.num_vertices):
        problems.append(f"'f' indexes vertices outside 0..{spec.num_vertices - 1}")
    if problems:
        raise ValueError(
            f"{source} is not a usable {spec.title} file: " + "; ".join(problems)
            + f". Expected the official {spec.stem}.pkl or an .npz written by "
            f"`fasthmr {spec.convert_command}`."
        )
    checked = {key: np.asarray(arrays[key]) for key in required}
    for key in _INTEGER_KEYS:
        if key in checked:
            checked[key] = checked[key].astype(np.int64)
    checked.update((key, value) for key, value in arrays.items() if key not in checked)
    return checked


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` without unpickling (``what`` names the file in messages)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as exc:
        raise UnsafeFileError(
            f"refusing to load {path}: it contains pickled object arrays, which {what} "
            f"never needs ({exc}); the file may be malicious or is not {what}"
        ) from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: corrupt or truncated .npz file ({exc})") from exc


def read_model_pickle(path: Path, kind: str, model: str) -> Any:
    """Unpickle ``path`` with the restricted unpickler; anything unsafe is refused."""
    try:
        with path.open("rb") as file:
            return _RestrictedUnpickler(file, path, kind).load()
    except UnsafeFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a hostile/broken stream
        raise ValueError(
            f"{path}: cannot read it as a {model} pickle ({type(exc).__name__}: {exc}); the "
            f"file is truncated, corrupt or not {kind}"
        ) from exc


def _read_pickle(path: Path, spec: ModelFileSpec) -> dict[str, np.ndarray]:
    raw = read_model_pickle(path, spec.kind, spec.model)
    if not isinstance(raw, dict):
        raise ValueError(
            f"{path}: a {spec.model} pickle holds a dict, this one a {type(raw).__name__}"
        )
    return _plain_arrays(raw, path, spec)


def read_array_file(path: str | os.PathLike[str], kind: str, model: str) -> np.ndarray:
    """One plain array from a pickle (``SMPL_to_J19.pkl``) or a one-array ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with path.open("rb") as file:
        magic = file.read(len(_ZIP_MAGIC))
    if magic == _ZIP_MAGIC:
        arrays = read_npz(path, kind)
        if len(arrays) != 1:
            raise ValueError(f"{path}: expected one array, found {sorted(arrays)}")
        return next(iter(arrays.values()))
    raw = read_model_pickle(path, kind, model)
    try:
        return _to_array(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not {kind} ({exc})") from exc


def load_model_file(spec: ModelFileSpec, path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a model file as plain numpy arrays without running code from the file.

    Args:
        spec: which model the file holds.
        path: the official pickle or an ``.npz`` written by :func:`convert_model_file`.

    Returns:
        The arrays of ``spec.required_shapes`` (dense, integer ones int64) plus any other
        plain arrays the file holds.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeFileError: the file asks to import or call anything not needed for arrays.
        ValueError: the file is corrupt, or required arrays are missing or malformed (all
            problems are listed in one message).

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{spec.model} file {path} does not exist. {spec.where_from}.")
    with path.open("rb") as file:
        magic = file.read(len(_ZIP_MAGIC))
    if not magic:
        raise ValueError(f"{path} is empty, not {spec.kind}")
    arrays = read_npz(path, spec.kind) if magic == _ZIP_MAGIC else _read_pickle(path, spec)
    return check_model_arrays(spec, arrays, path)


def find_model_file(spec: ModelFileSpec, folder: str | os.PathLike[str]) -> Path:
    """Locate a model file: the file itself, in ``folder`` or in ``folder/<subfolder>``.

    A converted ``.npz`` is preferred over the pickle when both are present.

    Raises:
        FileNotFoundError: nothing suitable was found; the message says where the model comes
            from.

    """
    root = Path(folder)
    if root.is_file():
        return root
    for candidate in (
        directory / f"{spec.stem}{suffix}"
        for directory in (root, root / spec.subfolder)
        for suffix in (".npz", ".pkl")
    ):
        if candidate.is_file():
            return candidate
    where = (
        f"no {spec.stem}.npz or {spec.stem}.pkl in {root} or {root / spec.subfolder}"
        if root.is_dir()
        else f"{root} does not exist"
    )
    raise FileNotFoundError(f"{spec.title} model not found: {where}. {spec.where_from}.")


def convert_model_file(
    spec: ModelFileSpec, src: str | os.PathLike[str], dst_npz: str | os.PathLike[str]
) -> Path:
    """Write a model file as a clean ``.npz`` (no pickles) that this package and smplx load.

    Args:
        spec: which model the file holds.
        src: anything :func:`find_model_file` accepts.
        dst_npz: output path; must end in ``.npz``.

    Returns:
        The path written.

    """
    dst = Path(dst_npz)
    if dst.suffix != ".npz":
        raise ValueError(f"output {dst} must end in .npz")
    arrays = load_model_file(spec, find_model_file(spec, src))
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
# Synthetic models for tests (structurally valid, never the real ones)


def synthetic_skinned_mesh(
    rng: np.random.Generator,
    joints: np.ndarray,
    bone_ends: np.ndarray,
    parents: np.ndarray,
    radius: np.ndarray,
    num_vertices: int,
    num_faces: int,
    num_betas: int,
) -> dict[str, np.ndarray]:
    """A random skinned mesh around a skeleton, in smplx's file layout.

    Each vertex belongs to one joint's bone (from ``joints[j]`` towards ``bone_ends[j]``,
    scattered by ``radius[j]``), is skinned to it and its parent, and the joint regressor
    averages the vertices nearest each joint; the first shape component scales the mesh.

    Returns:
        ``v_template``, ``weights``, ``J_regressor``, ``shapedirs`` and ``f`` (uint32).

    """
    num_joints = len(joints)
    owner = np.arange(num_vertices) * num_joints // num_vertices
    along = rng.uniform(0, 1, num_vertices)[:, None]
    v_template = joints[owner] + along * (bone_ends[owner] - joints[owner])
    v_template += radius[owner][:, None] * rng.normal(size=(num_vertices, 3)) / np.sqrt(3)

    weights = np.zeros((num_vertices, num_joints))
    weights[np.arange(num_vertices), owner] = 0.8 + 0.2 * along[:, 0]
    has_parent = parents[owner] >= 0
    weights[has_parent.nonzero()[0], parents[owner[has_parent]]] = 0.2 * (1 - along[has_parent, 0])
    weights /= weights.sum(axis=1, keepdims=True)

    J_regressor = np.zeros((num_joints, num_vertices))
    for joint in range(num_joints):
        nearest = np.argsort(np.linalg.norm(v_template - joints[joint], axis=1))[:8]
        J_regressor[joint, nearest] = rng.uniform(0.5, 1.0, len(nearest))
    J_regressor /= J_regressor.sum(axis=1, keepdims=True)

    shapedirs = 0.003 * rng.normal(size=(num_joints, 3, num_betas))[owner]
    shapedirs[:, :, 0] = 0.05 * v_template  # first shape component scales the mesh
    first = np.arange(num_faces) % num_vertices
    step = 1 + np.arange(num_faces) // num_vertices
    faces = np.stack([first, (first + step) % num_vertices, (first + 2 * step) % num_vertices], 1)
    return {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "J_regressor": J_regressor,
        "weights": weights,
        "f": faces.astype(np.uint32),
    }



class ChumpyLike:
    """Pickles like chumpy's plain ``Ch``: class global plus its ``__dict__`` as state."""

    def __init__(self, x: np.ndarray) -> None:
        self.__dict__.update(
            x=x, _dirty_vars={"x"}, _itr=None, _make_dense=False, _make_sparse=False,
            _depends_on_deps={},
        )


def write_chumpy_like_pickle(
    path: Path,
    arrays: Mapping[str, Any],
    chumpy_keys: tuple[str, ...],
    sparse_keys: tuple[str, ...],
) -> Path:
    """Pickle ``arrays`` as the official model files are (chumpy is never imported).

    ``chumpy_keys`` become objects of the global ``chumpy.ch.Ch`` and ``sparse_keys``
    ``scipy.sparse`` csc matrices.
    """
    from scipy import sparse

    from fasthmr_ros.models.pickle_names import pickled_under

    path.parent.mkdir(parents=True, exist_ok=True)
    with pickled_under("chumpy.ch", Ch=ChumpyLike):
        content: dict[str, Any] = dict(arrays)
        content.update((key, ChumpyLike(arrays[key])) for key in chumpy_keys)
        content.update((key, sparse.csc_matrix(arrays[key])) for key in sparse_keys)
        content.update(bs_style="lbs", bs_type="lrotmin")
        with path.open("wb") as file:
            pickle.dump(content, file, protocol=2)
    return path
