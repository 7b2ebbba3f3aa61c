"""Where the package keeps what it builds once and reuses: ``$FASTHMR_CACHE`` or ``~/.cache``.

Exported ONNX graphs, TensorRT engines and the compacted Anny mesh models all live under one
root so users have one folder to clear or to mount read-only in a container.
"""

from __future__ import annotations

import os
from pathlib import Path


def package_cache_dir() -> Path:
    """The package cache root: ``$FASTHMR_CACHE``, else ``$XDG_CACHE_HOME/fasthmr_ros``.

    ``$XDG_CACHE_HOME`` defaults to ``~/.cache``.
    """
    root = os.environ.get("FASTHMR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fasthmr_ros"
    )
    return Path(root)
