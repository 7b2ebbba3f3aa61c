"""Rotation representations: the heads' 6D form (PyTorch) and the messages' forms (numpy).

The numpy conversions turn rotation matrices into unit quaternions and rotation vectors for
results and messages: vectorised over any number of rotations, so a frame's rotations convert
in one call of a few array operations.
"""

from __future__ import annotations

import numpy as np
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


def _shepperd_coefficients() -> tuple[np.ndarray, np.ndarray]:
    """``(9, 16)`` and ``(16,)``: the four candidates of Shepperd's method, linear in ``R``."""
    signs = np.zeros((4, 4, 3, 3))
    offset = np.zeros((4, 4))
    diagonal = np.eye(3)
    for k in range(3):  # candidate k: x, y or z the largest component
        i, j = (k + 1) % 3, (k + 2) % 3
        signs[k, k] = 2.0 * np.diag(diagonal[k]) - np.eye(3)  # 1 + R_kk - R_ii - R_jj
        offset[k, k] = 1.0
        signs[k, i, i, k] = signs[k, i, k, i] = 1.0  # R_ik + R_ki
        signs[k, j, j, k] = signs[k, j, k, j] = 1.0  # R_jk + R_kj
        signs[k, 3, j, i], signs[k, 3, i, j] = 1.0, -1.0  # R_ji - R_ij
    # Candidate w (1 + trace the largest): the vector part is the skew part of R.
    signs[3, 3] = np.eye(3)
    offset[3, 3] = 1.0
    signs[3, 0, 2, 1], signs[3, 0, 1, 2] = 1.0, -1.0
    signs[3, 1, 0, 2], signs[3, 1, 2, 0] = 1.0, -1.0
    signs[3, 2, 1, 0], signs[3, 2, 0, 1] = 1.0, -1.0
    return signs.reshape(16, 9).T.copy(), offset.reshape(16)


_SHEPPERD_MATRIX, _SHEPPERD_OFFSET = _shepperd_coefficients()


def matrix_to_quaternion(matrices: np.ndarray) -> np.ndarray:
    """Convert rotation matrices ``(..., 3, 3)`` to unit quaternions ``(..., 4)`` as x, y, z, w.

    Shepperd's method: of the four expressions of ``4 q_k q`` through the matrix entries (one
    for each component ``k`` of x, y, z, w), each rotation takes the one whose ``k``-th entry
    ``4 q_k^2`` is largest, which keeps the normalisation away from zero for every rotation.
    The result has ``w >= 0`` (``q`` and ``-q`` are the same rotation). A matrix that is nearly
    but not exactly orthonormal (float32 network output) gives the normalised quaternion of
    its expression.

    Raises:
        ValueError: for a matrix with a non-finite entry or a determinant that is not positive
            (a reflection or a degenerate frame is no rotation).

    """
    m = np.asarray(matrices, dtype=np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape (..., 3, 3), got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("rotation matrices hold non-finite values")
    determinants = np.linalg.det(m).reshape(-1)
    if not (determinants > 0.0).all():
        index = int(np.argmin(determinants))
        raise ValueError(f"rotation matrix {index} is not a rotation: determinant "
                         f"{determinants[index]:.3g} (a reflection or a degenerate frame)")
    batch = m.shape[:-2]
    candidates = (m.reshape(-1, 9) @ _SHEPPERD_MATRIX + _SHEPPERD_OFFSET).reshape(-1, 4, 4)
    best = np.argmax(candidates.reshape(-1, 16)[:, ::5], axis=-1)  # the entries 4 q_k^2
    quaternion = candidates[np.arange(len(candidates)), best]
    quaternion *= np.copysign(1.0, quaternion[:, 3:]) / np.linalg.norm(
        quaternion, axis=-1, keepdims=True)
    return quaternion.reshape(*batch, 4)


def quaternion_to_rotvec(quaternions: np.ndarray) -> np.ndarray:
    """Convert unit quaternions ``(..., 4)`` (x, y, z, w) to rotation vectors ``(..., 3)``.

    The vector is the axis times the angle in [0, pi] (radians); near the identity a series
    keeps it exact to float64 rounding.
    """
    q = np.asarray(quaternions, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"quaternions must have shape (..., 4), got {q.shape}")
    batch, q = q.shape[:-1], q.reshape(-1, 4)
    sign = np.copysign(1.0, q[:, 3])  # the quaternion with w >= 0
    sine = np.linalg.norm(q[:, :3], axis=-1)  # sin(angle / 2)
    angle = 2.0 * np.arctan2(sine, sign * q[:, 3])
    # angle / sin(angle / 2) = 2 + angle^2 / 12 + 7 angle^4 / 2880 + ... near the identity.
    squared = angle * angle
    scale = 2.0 + squared * (1.0 / 12.0 + squared * (7.0 / 2880.0))
    np.divide(angle, sine, out=scale, where=angle >= 1e-3)
    return (q[:, :3] * (sign * scale)[:, None]).reshape(*batch, 3)


def matrix_to_rotvec(matrices: np.ndarray) -> np.ndarray:
    """Convert rotation matrices ``(..., 3, 3)`` to rotation vectors ``(..., 3)`` (radians)."""
    return quaternion_to_rotvec(matrix_to_quaternion(matrices))
