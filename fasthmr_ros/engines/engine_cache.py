"""On-disk cache of built engines, keyed by what makes an engine valid.

A serialized TensorRT engine runs only with the TensorRT version and the GPU it was built
with, and it freezes the model, the precision and the optimisation profile. The cache key
holds all of them (:class:`EngineCacheKey`); the file name is a digest of the key, and a
``.json`` file beside each engine records the key in readable form.

:class:`EngineCache` loads an engine or builds it on a miss. A file that cannot be
deserialized (a truncated write, a foreign file, bit rot: TensorRT returns ``None`` or raises)
is deleted with a warning and rebuilt. Writes go to a temporary file that replaces the target
in one step, so an interrupted build never leaves a half-written engine behind.

The cache folder defaults to ``~/.cache/fasthmr_ros/engines`` (``$XDG_CACHE_HOME`` replaces
``~/.cache``; ``$FASTHMR_CACHE`` replaces the whole package root). Timing caches (TensorRT's
kernel measurements, reusable across models on one GPU and TensorRT version) live in the same
folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from fasthmr_ros.engines.base import EngineError

LOGGER = logging.getLogger(__name__)

#: Bump when the cache layout or the meaning of a key field changes.
CACHE_FORMAT = 1
#: Suffix of serialized engine files.
ENGINE_SUFFIX = ".engine"
_CHUNK = 1 << 22

T = TypeVar("T")


def default_engine_dir() -> Path:
    """``engines`` in the package cache root: ``~/.cache/fasthmr_ros/engines`` by default.

    The root honours ``$FASTHMR_CACHE`` and ``$XDG_CACHE_HOME`` (see
    :func:`fasthmr_ros.engines.onnx_export.default_cache_dir`); exported ONNX graphs live in
    ``onnx`` beside it.
    """
    from fasthmr_ros.engines.onnx_export import default_cache_dir

    return default_cache_dir() / "engines"


def _update_with_file(digest: hashlib._Hash, path: Path) -> None:
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)


def onnx_external_data_files(onnx_path: str | os.PathLike) -> list[Path]:
    """Files holding the external data (weights) of an ONNX model, sorted, without duplicates.

    ONNX files over 2 GB (the fp32 ViT-H teacher) keep their weights beside the graph; those
    files are part of the model and of its hash.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors.extend(attr.t for attr in node.attribute if attr.HasField("t"))
    base = Path(onnx_path).parent
    locations = set()
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            if "location" in entries:
                locations.add(entries["location"])
    return [base / location for location in sorted(locations)]


_HASH_MEMO: dict[tuple, str] = {}


def _file_state(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def hash_onnx_model(onnx_path: str | os.PathLike) -> str:
    """SHA-256 (hex) of an ONNX model: the graph file's bytes and its external data files.

    The hash does not depend on the file's name or folder, only on its content. Within one
    process the result is remembered while the files' sizes and modification times stay the
    same (hashing the 2.5 GB fp32 ViT-H takes seconds).
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist; export one first "
                                "('fasthmr export onnx').")
    data_files = onnx_external_data_files(path)
    state = tuple(_file_state(p) for p in [path, *data_files] if p.is_file())
    if state in _HASH_MEMO:
        return _HASH_MEMO[state]
    digest = hashlib.sha256()
    _update_with_file(digest, path)
    for data_file in data_files:
        if not data_file.is_file():
            raise FileNotFoundError(
                f"ONNX file {path} keeps weights in {data_file.name}, which is missing; keep the "
                "external data file beside the .onnx file."
            )
        digest.update(f"\0external:{data_file.name}\0".encode())
        _update_with_file(digest, data_file)
    _HASH_MEMO[state] = digest.hexdigest()
    return _HASH_MEMO[state]


def slug(text: str) -> str:
    """``text`` reduced to a file-name-safe form (``"NVIDIA H200"`` -> ``"nvidia-h200"``)."""
    cleaned = re.sub(r"[^0-9a-zA-Z.]+", "-", text).strip("-.").lower()
    return cleaned or "unknown"


@dataclass(frozen=True)
class EngineCacheKey:
    """Everything a built engine depends on.

    Attributes:
        model_sha256: :func:`hash_onnx_model` of the source ONNX file. It covers the merge
            plan of a FastHMR-accelerated teacher: the plan changes the weights (layer merges)
            and is stored in the graph's metadata (token merges), so two plans never share an
            engine.
        tensorrt_version: ``tensorrt.__version__`` of the builder.
        gpu_name: the GPU's name (``torch.cuda.get_device_name``).
        compute_capability: ``"major.minor"`` of the GPU (two GPUs may share a name).
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        input_shapes: (min, opt, max) shape of the network input in the optimisation profile.
        build_options: anything else that changes the engine (workspace size, how the ONNX
            file was converted), as sorted ``(name, value)`` pairs.

    """

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    build_options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """The key as plain JSON-compatible data (with the cache format)."""
        data = asdict(self)
        data["input_shapes"] = [list(shape) for shape in self.input_shapes]
        data["build_options"] = dict(self.build_options)
        data["cache_format"] = CACHE_FORMAT
        return data

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON form of the key."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def file_stem(self) -> str:
        """Engine file name without suffix: a readable prefix and 24 hex digits of the digest."""
        prefix = f"{self.precision}-{slug(self.gpu_name)}-trt{slug(self.tensorrt_version)}"
        return f"{prefix}-{self.digest()[:24]}"


def make_build_options(**options: object) -> tuple[tuple[str, str], ...]:
    """Build options as the sorted ``(name, str(value))`` pairs :class:`EngineCacheKey` keeps."""
    return tuple(sorted((name, str(value)) for name, value in options.items()))


@dataclass(frozen=True)
class CachedEngine(Generic[T]):
    """An engine from the cache: the deserialized object, its file and whether it was built."""

    engine: T
    path: Path
    key: EngineCacheKey
    built: bool


class CorruptEngineError(EngineError):
    """A freshly built engine could not be deserialized (a builder or runtime fault)."""


def write_atomically(path: Path, chunks: Iterable[bytes | memoryview] | bytes) -> None:
    """Write ``chunks`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            if isinstance(chunks, (bytes, bytearray, memoryview)):
                stream.write(chunks)
            else:
                for chunk in chunks:
                    stream.write(chunk)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class EngineCache:
    """A folder of serialized engines, each under the digest of its :class:`EngineCacheKey`.

    Args:
        directory: the cache folder (created when first written); default
            :func:`default_engine_dir`.

    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_engine_dir()

    def engine_path(self, key: EngineCacheKey) -> Path:
        """Where the engine for ``key`` lives."""
        return self.directory / f"{key.file_stem}{ENGINE_SUFFIX}"

    def timing_cache_path(self, tensorrt_version: str, gpu_name: str,
                          compute_capability: str) -> Path:
        """The timing cache shared by every model built with one TensorRT version on one GPU."""
        return self.directory / (
            f"timing-trt{tensorrt_version}-{slug(gpu_name)}-sm{slug(compute_capability)}.cache"
        )

    def _metadata_path(self, engine_path: Path) -> Path:
        return engine_path.with_suffix(".json")

    @contextlib.contextmanager
    def _locked(self, key: EngineCacheKey) -> Iterator[None]:
        """Hold an exclusive lock on ``key``'s engine (other processes wait, then load it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_path = self.engine_path(key).with_suffix(".lock")
        with open(lock_path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def remove(self, key: EngineCacheKey) -> bool:
        """Delete the engine (and its metadata) for ``key``; True if a file was removed."""
        path = self.engine_path(key)
        existed = path.exists()
        path.unlink(missing_ok=True)
        self._metadata_path(path).unlink(missing_ok=True)
        return existed

    def _load(self, key: EngineCacheKey, deserialize: Callable[[bytes], T | None]) -> T | None:
        """The cached engine, or None when missing; a corrupt file is deleted (with a warning)."""
        path = self.engine_path(key)
        if not path.is_file():
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason: str = f"cannot be read ({exc})"
        else:
            try:
                engine = deserialize(data) if data else None
            except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
                reason = f"deserialization raised {type(exc).__name__}: {exc}"
            else:
                if engine is not None:
                    return engine
                reason = "empty file" if not data else "deserialization returned nothing"
        LOGGER.warning("engine cache file %s is corrupt (%s): deleting it and rebuilding",
                       path, reason)
        self.remove(key)
        return None

    def load_or_build(
        self,
        key: EngineCacheKey,
        build: Callable[[], bytes | memoryview],
        deserialize: Callable[[bytes], T | None],
        force_rebuild: bool = False,
        source: str = "",
    ) -> CachedEngine[T]:
        """Return the engine for ``key``, building and storing it on a miss.

        Args:
            key: what the engine depends on.
            build: builds the engine and returns its serialized bytes (TensorRT's
                ``IHostMemory`` works: it supports the buffer protocol).
            deserialize: turns bytes into an engine; returns ``None`` (or raises) for bytes it
                cannot read, as ``tensorrt.Runtime.deserialize_cuda_engine`` does.
            force_rebuild: delete any cached engine first.
            source: where the model came from, recorded in the metadata file.

        Two processes asking for the same key build it once: the second waits for the first
        (a file lock beside the engine) and then loads the result.

        Raises:
            CorruptEngineError: when the bytes just built cannot be deserialized.

        """
        with self._locked(key):
            return self._load_or_build(key, build, deserialize, force_rebuild, source)

    def _load_or_build(
        self,
        key: EngineCacheKey,
        build: Callable[[], bytes | memoryview],
        deserialize: Callable[[bytes], T | None],
        force_rebuild: bool,
        source: str,
    ) -> CachedEngine[T]:
        path = self.engine_path(key)
        if force_rebuild and self.remove(key):
            LOGGER.info("removed cached engine %s (rebuild requested)", path)
        engine = self._load(key, deserialize)
        if engine is not None:
            LOGGER.info("loaded cached engine %s", path)
            return CachedEngine(engine=engine, path=path, key=key, built=False)
        plan = build()
        data = bytes(memoryview(plan))
        write_atomically(path, data)
        metadata = {**key.to_dict(), "key_digest": key.digest(), "source": source,
                    "size_bytes": len(data)}
        write_atomically(self._metadata_path(path),
                         (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode())
        try:
            engine = deserialize(data)
        except Exception as exc:  # noqa: BLE001
            engine = None
            LOGGER.debug("deserializing the new engine raised %r", exc)
        if engine is None:
            self.remove(key)
            raise CorruptEngineError(
                f"the engine just built for {source or key.model_sha256[:12]} cannot be "
                "deserialized; check the TensorRT log above (out of memory, or a TensorRT "
                "runtime that differs from the builder)."
            )
        LOGGER.info("built engine %s (%.1f MB)", path, len(data) / 1e6)
        return CachedEngine(engine=engine, path=path, key=key, built=True)
