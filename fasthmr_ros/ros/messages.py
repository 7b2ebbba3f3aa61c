"""ROS 2 message types from the package's own ``.msg`` files, via ``rosbags``.

The ``.msg`` files in ``msg/`` are the single source of truth for every transport: ``rosbags``
parses them into a typestore (next to the standard ROS 2 Jazzy types, which are wire-identical
to Humble for every type used here) and encodes and decodes CDR with it. Nothing in this package
restates a message's fields by hand.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

#: ROS package that owns the messages in ``msg/``.
PACKAGE = "fasthmr_ros"

# Numpy dtypes of the ROS primitive types (``bool`` and ``byte`` travel as one byte).
_NUMPY_DTYPES: dict[str, type] = {
    "bool": np.bool_,
    "byte": np.uint8,
    "char": np.uint8,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float32": np.float32,
    "float64": np.float64,
}

_lock = threading.Lock()
_default_store: Any = None


class MessageDefinitionError(RuntimeError):
    """The package's ``.msg`` files could not be found or parsed."""


def find_msg_dir() -> Path:
    """Locate the folder holding this package's ``.msg`` files.

    Looked up in order: ``$FASTHMR_MSG_DIR``; ``msg/`` next to the Python package (a source
    checkout); ``share/fasthmr_ros/msg`` under ``$AMENT_PREFIX_PATH`` entries and under
    ``sys.prefix`` (a colcon or pip install).
    """
    candidates: list[Path] = []
    if os.environ.get("FASTHMR_MSG_DIR"):
        candidates.append(Path(os.environ["FASTHMR_MSG_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / "msg")
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / "msg")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.msg")):
            return path
    raise MessageDefinitionError(
        "cannot find the fasthmr_ros .msg files; looked in "
        + ", ".join(str(p) for p in candidates)
        + ". Run from a source checkout, install the package, or set FASTHMR_MSG_DIR"
    )


def load_typestore(msg_dir: Path | None = None) -> Any:
    """Build a ``rosbags`` typestore with the ROS 2 standard types and this package's messages.

    Args:
        msg_dir: folder of ``.msg`` files; found with :func:`find_msg_dir` when omitted.

    Raises:
        MessageDefinitionError: when no ``.msg`` file is found or one does not parse.

    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    folder = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    files = sorted(folder.glob("*.msg"))
    if not files:
        raise MessageDefinitionError(f"no .msg files in {folder}")
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for path in files:
        try:
            types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
        except Exception as exc:  # rosbags raises several parser error types
            raise MessageDefinitionError(f"cannot parse {path}: {exc}") from exc
    store.register(types)
    return store


def typestore() -> Any:
    """Return the process-wide typestore (built on first use)."""
    global _default_store
    with _lock:
        if _default_store is None:
            _default_store = load_typestore()
        return _default_store


def package_message_types(store: Any | None = None) -> list[str]:
    """Return the full names (``fasthmr_ros/msg/X``) of this package's messages."""
    store = store if store is not None else typestore()
    return sorted(n for n in store.fielddefs if n.startswith(f"{PACKAGE}/msg/"))


def serialize(message: Any, msgtype: str, store: Any | None = None) -> bytes:
    """Encode a message as little-endian CDR with its 4-byte encapsulation header."""
    store = store if store is not None else typestore()
    return bytes(store.serialize_cdr(message, msgtype))


def deserialize(raw: bytes | memoryview, msgtype: str, store: Any | None = None) -> Any:
    """Decode CDR bytes (with encapsulation header) into a message object.

    Numeric arrays come back as numpy views on ``raw`` (no copy).
    """
    store = store if store is not None else typestore()
    return store.deserialize_cdr(raw, msgtype)


def dds_type_name(msgtype: str) -> str:
    """Return the DDS type name ROS 2 uses for a message: ``pkg::msg::dds_::Name_``."""
    parts = msgtype.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"message type must look like 'pkg/msg/Name', got {msgtype!r}")
    package, kind, name = parts
    return f"{package}::{kind}::dds_::{name}_"


def type_hash(msgtype: str, store: Any | None = None) -> str:
    """Return the RIHS01 type hash (``RIHS01_<sha256>``) that Iron and later announce."""
    store = store if store is not None else typestore()
    return str(store.hash_rihs01(msgtype))


def new_message(msgtype: str, store: Any | None = None, **fields: Any) -> Any:
    """Create a message, filling every field not given with its ROS default value.

    Defaults are those of ``rosidl``: zero numbers, empty strings, empty sequences, fixed arrays
    of zeros and default-constructed nested messages.

    Raises:
        TypeError: when a keyword is not a field of ``msgtype``.

    """
    store = store if store is not None else typestore()
    try:
        _, fielddefs = store.fielddefs[msgtype]
    except KeyError:
        raise KeyError(f"unknown message type {msgtype!r}") from None
    names = [name for name, _ in fielddefs]
    unknown = set(fields) - set(names)
    if unknown:
        raise TypeError(f"{msgtype} has no field(s) {sorted(unknown)}; its fields are {names}")
    values = {
        name: fields[name] if name in fields else _default_value(desc, store)
        for name, desc in fielddefs
    }
    return store.types[msgtype](**values)


def _default_value(desc: tuple[Any, Any], store: Any) -> Any:
    from rosbags.interfaces import Nodetype

    kind, spec = desc
    if kind == Nodetype.BASE:
        name = spec[0]
        if name == "string":
            return ""
        if name == "bool":
            return False
        if name in ("float32", "float64"):
            return 0.0
        return 0
    if kind == Nodetype.NAME:
        return new_message(spec, store)
    sub, length = spec
    if kind == Nodetype.ARRAY:
        if sub[0] == Nodetype.BASE and sub[1][0] in _NUMPY_DTYPES:
            return np.zeros(length, dtype=_NUMPY_DTYPES[sub[1][0]])
        return [_default_value(sub, store) for _ in range(length)]
    # Sequence: empty (numpy for numeric elements, as rosbags decodes them).
    if sub[0] == Nodetype.BASE and sub[1][0] in _NUMPY_DTYPES:
        return np.zeros(0, dtype=_NUMPY_DTYPES[sub[1][0]])
    return []


def stamp_to_ns(stamp: Any) -> int:
    """Convert a ``builtin_interfaces/Time`` to integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def time_from_ns(nanoseconds: int, store: Any | None = None) -> Any:
    """Build a ``builtin_interfaces/Time`` from integer nanoseconds since the epoch."""
    store = store if store is not None else typestore()
    sec, nanosec = divmod(int(nanoseconds), 1_000_000_000)
    return store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def make_header(stamp: Any, frame_id: str, store: Any | None = None) -> Any:
    """Build a ``std_msgs/Header``; ``stamp`` is a Time message or integer nanoseconds."""
    store = store if store is not None else typestore()
    if isinstance(stamp, (int, np.integer)):
        stamp = time_from_ns(int(stamp), store)
    return store.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)
