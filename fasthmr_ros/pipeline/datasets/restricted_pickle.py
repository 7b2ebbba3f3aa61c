"""Load annotation pickles without running code: numpy arrays and plain containers only.

HO3D stores its per-frame annotations as Python 2 pickles (``meta/*.pkl``); they are read with
:class:`fasthmr_ros.models.safe_pickle.ArraysOnlyUnpickler`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from fasthmr_ros.models.safe_pickle import ArraysOnlyUnpickler, UnsafePickleError

__all__ = ["UnsafePickleError", "load_restricted_pickle"]


def load_restricted_pickle(path: Path | str) -> Any:
    """Unpickle ``path`` allowing numpy arrays and plain containers only.

    Python 2 pickles are decoded with ``latin1``, as numpy arrays from Python 2 require.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open("rb") as handle:
        try:
            return ArraysOnlyUnpickler(handle, path, kind="an annotation file").load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise pickle.UnpicklingError(f"{path} is not a readable pickle: {exc}") from exc
