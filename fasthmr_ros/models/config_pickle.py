"""Training configurations inside checkpoints, read as inert plain data.

PyTorch Lightning pickles a model's ``save_hyperparameters()`` into ``hyper_parameters``. HaMeR
and 4D-Humans (HMR2.0) train from Hydra, so their files hold omegaconf ``DictConfig`` /
``ListConfig`` objects; older trainers pickle yacs ``CfgNode`` objects. Neither library is
imported here, and no class or function named by the file is ever called:

* yacs and omegaconf (2.0-2.3) classes unpickle into stand-ins that only record their pickled
  state, which :meth:`InertGlobals.to_plain` then turns into dicts, lists and scalars
  (interpolations such as ``"${a.b}"`` and ``"???"`` stay the unresolved strings they are;
  enum members become their values, paths become strings);
* the globals such configurations legitimately name without calling (``typing.Any``, builtin
  types, enum and dataclass types in node metadata) become inert type references;
* an enum member is pickled as "call the enum class with the value". Such a call is accepted,
  and recorded as the value without being made, only as an omegaconf node's value or a
  ``DictConfig`` key, only with one scalar argument, only for a class named like one
  (``CapWords``) from a module outside the refused list, and for an ``EnumNode`` only for the
  node's own enum type;
* everything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, an unknown function
  called anywhere, a reference to a callable in the state dict) is refused, naming the global
  and where it was found.

Use :func:`pickled_globals` on the file's pickle, register :meth:`InertGlobals.safe_globals`
with ``torch.serialization.safe_globals`` around ``torch.load(weights_only=True)``, and pass
the result through :meth:`InertGlobals.to_plain`.
"""

from __future__ import annotations

import _compat_pickle
import collections
import pathlib
import pickletools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from fasthmr_ros.models.safe_pickle import UnsafePickleError

#: omegaconf 2.0-2.3 classes whose pickled state is configuration data.
OMEGACONF_CONTAINERS = {
    "omegaconf.dictconfig.DictConfig": "dict",
    "omegaconf.listconfig.ListConfig": "list",
}
OMEGACONF_METADATA = ("omegaconf.base.Metadata", "omegaconf.base.ContainerMetadata")
OMEGACONF_VALUE_NODES = tuple(
    f"omegaconf.nodes.{name}"
    for name in (
        "AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode", "BytesNode",
        "PathNode", "UnionNode", "InterpolationResultNode",
    )
)
OMEGACONF_ENUM_NODE = "omegaconf.nodes.EnumNode"
YACS_CONFIG_NODE = "yacs.config.CfgNode"
#: Builtin types that configuration metadata names (never called).
BUILTIN_TYPES = frozenset(
    f"builtins.{name}"
    for name in (
        "bool", "int", "float", "complex", "str", "bytes", "bytearray", "dict", "list",
        "tuple", "set", "frozenset", "object",
    )
)
PATH_CLASSES = {
    f"{module}.{name}": flavour
    for module in ("pathlib", "pathlib._local")
    for name, flavour in (
        ("Path", pathlib.PurePosixPath), ("PosixPath", pathlib.PurePosixPath),
        ("PurePath", pathlib.PurePosixPath), ("PurePosixPath", pathlib.PurePosixPath),
        ("WindowsPath", pathlib.PureWindowsPath), ("PureWindowsPath", pathlib.PureWindowsPath),
    )
}
DEFAULT_DICT = "collections.defaultdict"
#: Builds ``Optional[int]``-style type hints in node metadata (recorded, never called).
TYPE_SUBSCRIPT = "operator.getitem"
#: Globals torch's weights-only unpickler decides about itself (tensors, dtypes, ...).
TORCH_DECIDES = ("torch.", "numpy.")
TORCH_DECIDES_EXACT = frozenset(
    {"collections.OrderedDict", "collections.Counter", "_codecs.encode", "builtins.set",
     "builtins.bytearray", "builtins.complex"}
)
#: Modules whose globals a configuration never names; refused on sight, with a clear error.
REFUSED_MODULES = frozenset(
    {
        "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy",
        "pickle", "_pickle", "pickletools", "marshal", "code", "codeop", "ctypes",
        "functools", "operator", "io", "_io", "socket", "pty", "webbrowser",
        "multiprocessing", "asyncio", "types", "signal", "tempfile", "glob", "copyreg",
        "_codecs", "inspect", "threading", "_thread", "gc", "platform", "pdb", "timeit",
        "trace", "profile", "cProfile", "doctest", "unittest", "site", "zipimport", "urllib",
        "http", "ftplib", "smtplib", "xmlrpc", "socketserver", "select", "mmap", "fcntl",
        "posixpath", "ntpath", "genericpath", "ast", "dis", "compileall", "py_compile",
        "zipfile", "tarfile", "logging", "atexit", "contextlib", "weakref", "dataclasses",
        "copy", "enum", "collections", "pathlib", "typing", "omegaconf", "yacs", "hydra",
        "setuptools", "pip", "distutils", "sqlite3", "dbm", "shelve",
    }
)


class RefusedObjectError(UnsafePickleError):
    """A checkpoint names something that is neither plain data nor configuration.

    Attributes:
        qualified: the global, as ``module.name``.
        location: where in the checkpoint it was found (``hyper_parameters.cfg.x``), or
            ``""`` when it was refused before loading.

    """

    def __init__(self, qualified: str, location: str = "") -> None:
        where = f" (at {location})" if location else ""
        super().__init__(f"the object {qualified}{where}")
        self.qualified = qualified
        self.location = location


def canonical_name(module: str, name: str) -> str:
    """``module.name`` with Python 2 names mapped as the stock unpickler maps them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[module, name]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


def _spellings(module: str, name: str) -> set[str]:
    """Every ``module.name`` under which torch's unpickler may look the global up."""
    names = {f"{module}.{name}", canonical_name(module, name)}
    torch_names = getattr(torch._utils, "NAME_MAPPING", {})
    torch_modules = getattr(torch._utils, "IMPORT_MAPPING", {})
    if (module, name) in torch_names:
        names.add(".".join(torch_names[module, name]))
    elif module in torch_modules:
        names.add(f"{torch_modules[module]}.{name}")
    return names


def pickled_globals(pickle_bytes: bytes) -> set[tuple[str, str]]:
    """The ``(module, name)`` pairs a pickle's GLOBAL opcodes name (nothing is loaded)."""
    found: set[tuple[str, str]] = set()
    try:
        for opcode, arg, _ in pickletools.genops(pickle_bytes):
            if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str) and " " in arg:
                module, name = arg.split(" ", 1)
                found.add((module, name))
    except (ValueError, EOFError):
        pass  # A damaged stream: torch.load reports it.
    return found


class _StandIn:
    """Base of every class handed to torch's unpickler in place of a named global."""

    qualified = ""
    kind = ""


class _TypeReference(_StandIn):
    """A class or function the file names: never called; calling it records the call."""

    kind = "type"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Call:  # type: ignore[misc]
        return _Call(cls, args)


class _Call:
    """A call the file asked for and that was not made: ``function(*args)``."""

    def __init__(self, function: type[_StandIn], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args


class _ConfigObject(_StandIn):
    """An omegaconf object: keeps the state the file gives it and nothing else."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _ConfigObject:
        instance = super().__new__(cls)
        instance.args = args + tuple(kwargs.values())  # omegaconf pickles pass none
        instance.state = {}
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # everything was recorded by __new__

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _PathValue(_StandIn):
    """A pickled ``pathlib`` path: becomes its string (pure path arithmetic, no file access)."""

    kind = "path"
    flavour: type[pathlib.PurePath] = pathlib.PurePosixPath

    def __new__(cls, *parts: Any) -> Any:  # type: ignore[misc]
        if all(isinstance(part, str) for part in parts):
            return str(cls.flavour(*parts))
        return _Call(cls, parts)


class _DefaultDict(_StandIn):
    """``collections.defaultdict(factory)``: a plain dict; the factory must be a plain type."""

    kind = "defaultdict"

    def __new__(cls, *args: Any) -> Any:  # type: ignore[misc]
        factory = args[0] if args else None
        if factory is not None and not (
            isinstance(factory, type) and issubclass(factory, _StandIn)
            and factory.qualified in BUILTIN_TYPES
        ):
            return _Call(cls, args)
        return {}


class _YacsConfigNode(_StandIn):
    """``yacs.config.CfgNode``: unpickles into a plain ``OrderedDict``."""

    kind = "yacs"

    def __new__(cls, *args: Any, **kwargs: Any) -> collections.OrderedDict:  # type: ignore[misc]
        return collections.OrderedDict()


def _classify(qualified: str) -> tuple[type[_StandIn], str] | None:
    """The stand-in base and kind for a global; ``None`` for torch's own; raise to refuse."""
    if qualified in TORCH_DECIDES_EXACT or qualified.startswith(TORCH_DECIDES):
        return None
    if qualified in OMEGACONF_CONTAINERS:
        return _ConfigObject, OMEGACONF_CONTAINERS[qualified]
    if qualified in OMEGACONF_METADATA:
        return _ConfigObject, "metadata"
    if qualified in OMEGACONF_VALUE_NODES:
        return _ConfigObject, "node"
    if qualified == OMEGACONF_ENUM_NODE:
        return _ConfigObject, "enum_node"
    if qualified == YACS_CONFIG_NODE:
        return _YacsConfigNode, "yacs"
    if qualified in PATH_CLASSES:
        return _PathValue, "path"
    if qualified == DEFAULT_DICT:
        return _DefaultDict, "defaultdict"
    if qualified in BUILTIN_TYPES or qualified in ("typing.Any", TYPE_SUBSCRIPT):
        return _TypeReference, "inert_type"
    if qualified.startswith("typing."):
        return _TypeReference, "inert_type"
    module = qualified.rsplit(".", 1)[0]
    if module.split(".")[0] in REFUSED_MODULES:
        raise RefusedObjectError(qualified)
    return _TypeReference, "type"


class InertGlobals:
    """The stand-ins for the globals one checkpoint names, and their conversion to plain data.

    Args:
        names: the ``(module, name)`` pairs of :func:`pickled_globals`.

    Raises:
        RefusedObjectError: for a global from a module no configuration names (``os``,
            ``builtins.eval``, ``subprocess``, ...).

    """

    def __init__(self, names: Iterable[tuple[str, str]]) -> None:
        self.stand_ins: dict[str, type[_StandIn]] = {}
        by_qualified: dict[str, type[_StandIn]] = {}
        for module, name in sorted(names):
            qualified = canonical_name(module, name)
            if qualified not in by_qualified:
                chosen = _classify(qualified)
                if chosen is None:
                    continue
                base, kind = chosen
                attributes: dict[str, Any] = {"qualified": qualified, "kind": kind}
                if base is _PathValue:
                    attributes["flavour"] = PATH_CLASSES[qualified]
                by_qualified[qualified] = type(name, (base,), attributes)
            for spelling in _spellings(module, name):
                self.stand_ins[spelling] = by_qualified[qualified]

    def safe_globals(self) -> list[tuple[type, str]]:
        """The ``(stand-in, "module.name")`` pairs for ``torch.serialization.safe_globals``."""
        return [(stand_in, name) for name, stand_in in self.stand_ins.items()]

    def to_plain(self, value: Any, location: str = "") -> Any:
        """``value`` with every configuration object turned into dicts, lists and scalars.

        Raises:
            RefusedObjectError: for a call or a callable outside the places configurations
                hold them (see the module's docstring).

        """
        return _Converter().plain(value, location)


def _is_stand_in_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, _StandIn)


def _join(location: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{location}[{key}]"
    return f"{location}.{key}" if location else str(key)


class _Converter:
    """One walk over a loaded checkpoint (tracks containers in progress to stop cycles)."""

    def __init__(self) -> None:
        self.active: set[int] = set()

    def plain(self, value: Any, location: str) -> Any:
        if isinstance(value, (torch.Tensor, str, bytes, int, float, complex, type(None))):
            return value
        if isinstance(value, _Call):
            raise RefusedObjectError(value.function.qualified, location)
        if _is_stand_in_class(value):
            return self._type_name(value, location)
        if isinstance(value, (dict, list, tuple, set, frozenset, _ConfigObject)):
            if id(value) in self.active:
                raise RefusedObjectError("a self-referencing structure", location)
            self.active.add(id(value))
            try:
                return self._container(value, location)
            finally:
                self.active.discard(id(value))
        return value  # what torch's own unpickler allowed: dtypes, devices, sizes, ...

    def _container(self, value: Any, location: str) -> Any:
        if isinstance(value, collections.OrderedDict):
            result = collections.OrderedDict(
                (self.plain(k, location), self.plain(v, _join(location, k)))
                for k, v in value.items()
            )
            # A state dict's _metadata (module versions), yacs' bookkeeping: checked, kept.
            result.__dict__.update(self.plain(dict(vars(value)), location))
            return result
        if isinstance(value, dict):
            return {
                self.plain(k, location): self.plain(v, _join(location, k))
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [self.plain(v, _join(location, i)) for i, v in enumerate(value)]
            return items if isinstance(value, list) else type(value)(items)
        return self._config_object(value, location)

    def _type_name(self, value: type[_StandIn], location: str) -> str:
        """A class named outside node metadata: plain types become their names."""
        if value.kind == "type":
            raise RefusedObjectError(value.qualified, location)
        return value.qualified

    def _type_expression(self, value: Any, location: str) -> str:
        """A type in node metadata (``typing.Any``, a dataclass, ``Optional[int]``): its name."""
        if _is_stand_in_class(value):
            return value.qualified
        if isinstance(value, _Call) and value.function.qualified == TYPE_SUBSCRIPT:
            return "[".join(self._type_expression(a, location) for a in value.args) + "]"
        if isinstance(value, tuple):
            return ", ".join(self._type_expression(a, location) for a in value)
        if value is None:
            return "None"
        return str(self.plain(value, location))

    def _metadata(self, value: Any, location: str) -> dict[str, Any]:
        """Check a node's metadata (types, flags, key) and return it as plain data."""
        if not isinstance(value, _ConfigObject) or value.kind != "metadata":
            self.plain(value, location)
            return {}
        self._no_arguments(value, location)
        state = value.state if isinstance(value.state, Mapping) else {}
        result: dict[str, Any] = {}
        for key, item in state.items():
            where = _join(location, key)
            if key in ("ref_type", "object_type", "key_type", "element_type"):
                result[key] = self._type_expression(item, where)
            elif key == "key" and isinstance(item, _Call):
                result[key] = self._enum_member_value(item, where)
            else:
                result[key] = self.plain(item, where)
        return result

    def _no_arguments(self, value: _ConfigObject, location: str) -> None:
        if value.args:
            raise RefusedObjectError(f"{value.qualified} called with arguments", location)

    def _config_object(self, value: _ConfigObject, location: str) -> Any:
        self._no_arguments(value, location)
        if value.kind == "metadata":
            return self._metadata(value, location)
        state = value.state
        if not isinstance(state, Mapping):
            return self.plain(state, location)
        self._metadata(state.get("_metadata"), _join(location, "_metadata"))
        parent = state.get("_parent")
        if parent is not None and not isinstance(parent, _ConfigObject):
            self.plain(parent, _join(location, "_parent"))
        for key, item in state.items():
            if key not in ("_metadata", "_parent", "_content", "_val", "enum_type", "fields"):
                self.plain(item, _join(location, key))  # version-specific extras: dropped
        if value.kind in ("dict", "list"):
            return self._content(value.kind, state.get("_content"), location)
        member = state.get("_val")
        if value.kind == "enum_node" and isinstance(member, _Call):
            if member.function is not state.get("enum_type"):
                raise RefusedObjectError(member.function.qualified, location)
            self.plain(state.get("fields") or {}, _join(location, "fields"))
        if isinstance(member, _Call):
            return self._enum_member_value(member, location)
        return self.plain(member, location)

    def _content(self, kind: str, content: Any, location: str) -> Any:
        if content is None or isinstance(content, str):
            return content  # None, "???" or an unresolved "${...}" interpolation
        if kind == "list":
            if not isinstance(content, list):
                return self.plain(content, location)
            return [self.plain(v, _join(location, i)) for i, v in enumerate(content)]
        if not isinstance(content, Mapping):
            return self.plain(content, location)
        result = {}
        for key, item in content.items():
            key = self._key(key, location)
            result[key] = self.plain(item, _join(location, key))
        return result

    def _key(self, key: Any, location: str) -> Any:
        """A ``DictConfig`` key; enum-member keys become their values."""
        if isinstance(key, _Call):
            return self._enum_member_value(key, location)
        return self.plain(key, location)

    def _enum_member_value(self, call: _Call, location: str) -> Any:
        """The value of an enum member ``EnumClass(value)`` (the call is never made)."""
        name = call.function.qualified.rsplit(".", 1)[-1]
        if (
            call.function.kind != "type"
            or not name[:1].isupper()
            or len(call.args) != 1
            or not isinstance(call.args[0], (str, int, float, bool))
        ):
            raise RefusedObjectError(call.function.qualified, location)
        return call.args[0]


def config_stand_in_names() -> Iterator[str]:
    """The configuration classes this module reads (for documentation and messages)."""
    yield YACS_CONFIG_NODE
    yield from OMEGACONF_CONTAINERS
    yield from OMEGACONF_METADATA
    yield from OMEGACONF_VALUE_NODES
    yield OMEGACONF_ENUM_NODE
