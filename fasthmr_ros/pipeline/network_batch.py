"""Running a mesh regressor on one crop batch: tensors in, checked float32 host arrays out.

Hands (:class:`~fasthmr_ros.pipeline.hand_pipeline.HandMeshPipeline`) and network bodies
(:class:`~fasthmr_ros.pipeline.hmr2_estimator.Hmr2BodyEstimator`) share this step; each passes
the output keys and shapes its regressor contract promises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def run_regressor(
    regressor: Callable[..., Mapping[str, Any]],
    batch: np.ndarray,
    device: str,
    expected: Mapping[str, tuple[int, ...]],
    contract: str,
    foreground: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Run ``regressor`` on ``batch`` (N, 3, 256, 256) and return its outputs as numpy arrays.

    Args:
        regressor: crops tensor in, dict of tensors (or arrays) out.
        batch: normalised crops.
        device: torch device the crops are moved to.
        expected: output key -> shape without the batch axis; every key is required.
        contract: the loader whose contract the regressor follows, for messages.
        foreground: optional per-token flags (N, tokens) for a network with a masked merge plan
            (passed as ``regressor(crops, foreground=...)``); ``None`` calls ``regressor(crops)``.

    Raises:
        ValueError: an output is missing or has the wrong shape.

    """
    import torch

    crops = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    with torch.inference_mode():
        if foreground is None:
            outputs = regressor(crops)
        else:
            flags = torch.from_numpy(np.ascontiguousarray(foreground)).to(device)
            outputs = regressor(crops, foreground=flags)
    missing = [k for k in expected if k not in outputs]
    if missing:
        raise ValueError(
            f"regressor output lacks {missing}; it must follow the {contract} contract "
            f"(keys {list(expected)})"
        )
    arrays = {}
    n = len(batch)
    for key, shape in expected.items():
        value = outputs[key]
        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu().numpy()
        arrays[key] = np.asarray(value, dtype=np.float32)
        if arrays[key].shape != (n, *shape):
            raise ValueError(f"regressor output {key!r} has shape {arrays[key].shape}, "
                             f"expected {(n, *shape)}")
    return arrays
