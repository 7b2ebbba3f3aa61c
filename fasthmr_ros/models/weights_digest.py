"""SHA-256 digests of model weights (names, dtypes, shapes and bytes of every tensor).

Engine caches key exported graphs on them (:func:`fasthmr_ros.engines.onnx_export.fingerprint`)
and merge plans name the checkpoint they were made for with one
(:func:`fasthmr_ros.models.merge_plan.backbone_sha256`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch


def update_with_tensors(digest: hashlib._Hash, tensors: Mapping[str, torch.Tensor]) -> None:
    """Feed every tensor of ``tensors`` (sorted by name) into ``digest``."""
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        data = tensor.detach().to("cpu").contiguous()
        digest.update(str(data.dtype).encode() + str(tuple(data.shape)).encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 of ``tensors`` (see :func:`update_with_tensors`)."""
    digest = hashlib.sha256()
    update_with_tensors(digest, tensors)
    return digest.hexdigest()
