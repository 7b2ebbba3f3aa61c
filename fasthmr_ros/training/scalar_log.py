"""TensorBoard scalars, or a one-time warning when TensorBoard is not installed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

LOG = logging.getLogger(__name__)

MISSING_TENSORBOARD = (
    "TensorBoard is not installed, so no training curves are written (training continues). "
    "Install it with: pip install 'fasthmr_ros[train]'  (or: pip install tensorboard)"
)
_warned = False


class ScalarLog:
    """Writes scalars to a TensorBoard log folder; does nothing (after one warning) without it.

    Args:
        log_dir: the event-file folder, or ``None`` for no logging at all.

    """

    def __init__(self, log_dir: Path | str | None) -> None:
        global _warned
        self.writer = None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        if self.log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if not _warned:
                LOG.warning(MISSING_TENSORBOARD)
                _warned = True
            return
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    @property
    def active(self) -> bool:
        """Whether scalars are being written."""
        return self.writer is not None

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        """Log ``values`` at ``step`` under ``prefix/name``."""
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}" if prefix else name, float(value), step)

    def flush(self) -> None:
        """Write pending events to disk."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
