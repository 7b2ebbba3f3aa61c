"""Rotation representations used by the regression heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """Convert the continuous 6D representation (Zhou et al., CVPR 2019) to rotation matrices.

    The six numbers of each rotation are its first two columns ``a1 = x[0:3]`` and
    ``a2 = x[3:6]``; Gram-Schmidt makes them orthonormal and the cross product gives the third.
    This is HaMeR's convention, including the normalisation epsilon of ``F.normalize``.

    Args:
        x: ``(..., 6 * K)`` tensor; every six consecutive values are one rotation.

    Returns:
        ``(N, 3, 3)`` rotation matrices with ``N = x.numel() // 6``.

    """
    pairs = x.reshape(-1, 2, 3)
    a1 = pairs[:, 0]
    a2 = pairs[:, 1]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)

