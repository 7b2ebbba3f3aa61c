"""Unpickling that never runs code: numpy arrays and plain containers only.

A pickle can name any importable callable and call it while loading. The unpickler here resolves
only the few globals numpy's own pickles need to rebuild arrays and scalars (under their numpy
1.x and 2.x module paths, and Python 2 names as the stock unpickler maps them), and refuses
everything else with an error naming the global. File formats that hold other objects (MANO's
chumpy arrays) extend it with inert stand-ins by overriding :meth:`resolve_unknown`.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked to import or call something that plain data never needs."""


def _numpy_reconstructors() -> dict[str, Callable[..., Any]]:
    """The functions numpy's own pickles call, taken from numpy itself (1.x and 2.x alike)."""
    array = np.zeros(2)
    return {
        "multiarray._reconstruct": array.__reduce_ex__(2)[0],
        "multiarray.scalar": np.float64(0).__reduce_ex__(2)[0],
        "numeric._frombuffer": array.__reduce_ex__(5)[0],
    }


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Resolves numpy's array-rebuilding globals and nothing else.

    Args:
        file: the open binary stream.
        source: the file's path, for messages.
        kind: what the file should be, for messages (``"a MANO file"``).

    """

    def __init__(self, file: io.BufferedIOBase, source: Path, kind: str) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.kind = kind
        self.allowed: dict[tuple[str, str], Any] = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): self._encode_latin1,
        }
        for package in ("numpy.core", "numpy._core"):
            for qualified, function in _numpy_reconstructors().items():
                module, name = qualified.split(".")
                self.allowed[f"{package}.{module}", name] = function

    def find_class(self, module: str, name: str) -> Any:
        """Return an allow-listed global; anything else goes to :meth:`resolve_unknown`."""
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[module, name]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in self.allowed:
            return self.allowed[module, name]
        return self.resolve_unknown(module, name)

    def resolve_unknown(self, module: str, name: str) -> Any:
        """Refuse a global that is not allow-listed (subclasses may return stand-ins)."""
        raise self.refusal(f"asks for the global '{module}.{name}'")

    def refusal(self, what: str) -> UnsafePickleError:
        """The error for a file that ``what`` (e.g. "calls os.system")."""
        return UnsafePickleError(
            f"refusing to load {self.source}: it {what}, which {self.kind} never needs; the "
            f"file may be malicious or is not {self.kind}"
        )

    def _encode_latin1(self, text: Any, encoding: Any = "latin1") -> bytes:
        """``_codecs.encode`` as Python 3 pickles of ``bytes`` use it: latin-1 text only."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise self.refusal(f"calls _codecs.encode({type(text).__name__}, {encoding!r})")
        return text.encode("latin1")
