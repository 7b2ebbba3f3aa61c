"""Where the real photographs of ``shared/data/hands`` are (optional; never copied here)."""

from __future__ import annotations

import os
from pathlib import Path


def photo_dir() -> Path:
    """``$FASTHMR_HANDS_DIR``, else ``shared/data/hands`` in or beside the checkout."""
    if os.environ.get("FASTHMR_HANDS_DIR"):
        return Path(os.environ["FASTHMR_HANDS_DIR"])
    repo = Path(__file__).resolve().parents[1]
    for candidate in (repo / "shared", repo.parent / "shared", repo.parent.parent / "shared"):
        if (candidate / "data" / "hands").is_dir():
            return candidate / "data" / "hands"
    return repo.parent / "shared" / "data" / "hands"


PHOTO_DIR = photo_dir()
