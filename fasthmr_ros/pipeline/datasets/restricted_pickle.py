"""Load annotation pickles without running code: numpy arrays and plain containers only.

HO3D stores its per-frame annotations as Python 2 pickles (``meta/*.pkl``). A pickle can name
any importable callable; this loader resolves only the few globals numpy needs to rebuild
arrays and scalars, and refuses everything else with an error naming the global.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        # Protocol 5 rebuilds arrays from their raw buffer.
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        # Protocol-2 pickles written by Python 3 encode ``bytes`` with ``_codecs.encode``.
        ("_codecs", "encode"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something other than numpy arrays and plain containers."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: annotation pickles may only contain "
            "numpy arrays, numbers, strings and containers"
        )


def load_restricted_pickle(path: Path | str) -> Any:
    """Unpickle ``path`` allowing numpy arrays and plain containers only.

    Python 2 pickles are decoded with ``latin1``, as numpy arrays from Python 2 require.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open("rb") as handle:
        try:
            return _ArraysOnlyUnpickler(handle, encoding="latin1").load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise pickle.UnpicklingError(f"{path} is not a readable pickle: {exc}") from exc
