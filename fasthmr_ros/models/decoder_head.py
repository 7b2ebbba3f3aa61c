"""The transformer-decoder regression head of HaMeR (MANO) and HMR2.0 (SMPL): one query token.

Both models use the same decoder, parameterised by the output layout (:class:`OutputLayout`).
A single zero token is embedded, refined by pre-norm layers of self-attention, cross-attention
to the backbone tokens and a feed-forward net, then decoded into 6D joint rotations, shape
and a weak-perspective camera, each added to mean parameters stored as buffers. Attribute names
follow the official checkpoint (``transformer.transformer.layers.N.{0,1,2}``, ``decpose``,
``decshape``, ``deccam``, ``init_*``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fasthmr_ros.models.constants import NUM_BETAS, NUM_MANO_JOINTS, NUM_SMPL_JOINTS
from fasthmr_ros.models.rotation import rot6d_to_rotmat


@dataclass(frozen=True)
class HeadConfig:
    """Architecture of the decoder head; the defaults are HaMeR's and HMR2.0's."""

    dim: int = 1024
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 1024
    context_dim: int = 1280

    def to_dict(self) -> dict:
        """Return a plain dict (for checkpoints and YAML)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadConfig:
        """Build from :meth:`to_dict` output."""
        return cls(**data)


class PreNorm(nn.Module):
    """LayerNorm on the query stream before ``fn``; the context is passed through untouched."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        """Apply ``fn(norm(x), **kwargs)``."""
        return self.fn(self.norm(x), **kwargs)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, _ = x.shape
    return x.reshape(b, n, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class DecoderSelfAttention(nn.Module):
    """Self-attention over the query tokens (no qkv bias)."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        inner = cfg.heads * cfg.dim_head
        self.heads = cfg.heads
        self.to_qkv = nn.Linear(cfg.dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, cfg.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend among the query tokens."""
        q, k, v = (_split_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        return self.to_out(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class DecoderCrossAttention(nn.Module):
    """Attention from the query tokens to the backbone tokens."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        inner = cfg.heads * cfg.dim_head
        self.heads = cfg.heads
        # Defined in the official modules' order (to_kv first), so state dicts list alike.
        self.to_kv = nn.Linear(cfg.context_dim, inner * 2, bias=False)
        self.to_q = nn.Linear(cfg.dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, cfg.dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Attend from ``x`` (B, N, dim) to ``context`` (B, M, context_dim)."""
        q = _split_heads(self.to_q(x), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.to_kv(context).chunk(2, dim=-1))
        return self.to_out(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class FeedForward(nn.Module):
    """Linear, GELU, Linear (indices 0 and 3 as in the checkpoint's Sequential with dropouts)."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(cfg.dim, cfg.mlp_dim),
            nn.GELU(),
            nn.Identity(),
            nn.Linear(cfg.mlp_dim, cfg.dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward net token-wise."""
        return self.net(x)


class CrossAttentionStack(nn.Module):
    """``depth`` layers of [self-attention, cross-attention, feed-forward], each residual."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(cfg.dim, DecoderSelfAttention(cfg)),
                    PreNorm(cfg.dim, DecoderCrossAttention(cfg)),
                    PreNorm(cfg.dim, FeedForward(cfg)),
                ]
            )
            for _ in range(cfg.depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Refine query tokens ``x`` against ``context``."""
        for self_attn, cross_attn, feed_forward in self.layers:
            x = x + self_attn(x)
            x = x + cross_attn(x, context=context)
            x = x + feed_forward(x)
        return x


class TokenDecoder(nn.Module):
    """Embeds the constant query token and runs the cross-attention stack."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.to_token_embedding = nn.Linear(1, cfg.dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, 1, cfg.dim))
        self.transformer = CrossAttentionStack(cfg)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """Return the refined query token (B, dim) for ``context`` (B, M, context_dim)."""
        token = context.new_zeros(context.shape[0], 1, 1)
        x = self.to_token_embedding(token) + self.pos_embedding
        return self.transformer(x, context=context)[:, 0]


@dataclass(frozen=True)
class OutputLayout:
    """What a head decodes: one mesh model's joint rotations (root first), shape and camera.

    The outputs are ``global_orient`` (B, 1, 3, 3), ``<pose_name>`` (B, num_joints - 1, 3, 3),
    ``betas`` (B, num_betas) and ``cam`` (B, 3); the mean-parameter buffers are named
    ``init_<pose_name>``, ``init_betas`` and ``init_cam`` as in the official checkpoints.
    """

    pose_name: str
    num_joints: int
    num_betas: int = NUM_BETAS
    default_cam: tuple[float, float, float] = (4.0, 0.0, 0.0)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Output names, in the order engines return them."""
        return ("global_orient", self.pose_name, "betas", "cam")

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each output without the batch axis."""
        return {
            "global_orient": (1, 3, 3),
            self.pose_name: (self.num_joints - 1, 3, 3),
            "betas": (self.num_betas,),
            "cam": (3,),
        }


#: HaMeR's MANO head: 16 joints (wrist + 15), mean parameters ``init_hand_pose``.
HAND_LAYOUT = OutputLayout(pose_name="hand_pose", num_joints=NUM_MANO_JOINTS)
#: HMR2.0's SMPL head: 24 joints (pelvis + 23), mean parameters ``init_body_pose``.
BODY_LAYOUT = OutputLayout(pose_name="body_pose", num_joints=NUM_SMPL_JOINTS,
                           default_cam=(0.9, 0.0, 0.0))


class DecoderHead(nn.Module):
    """Decode backbone features into joint rotations, shape and a weak-perspective camera.

    ``layout`` says which mesh model the outputs drive (:data:`HAND_LAYOUT` for HaMeR's MANO
    head, :data:`BODY_LAYOUT` for HMR2.0's SMPL head); the decoder itself is the same.
    """

    def __init__(self, cfg: HeadConfig = HeadConfig(), layout: OutputLayout = HAND_LAYOUT) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = layout
        self.transformer = TokenDecoder(cfg)
        self.decpose = nn.Linear(cfg.dim, layout.num_joints * 6)
        self.decshape = nn.Linear(cfg.dim, layout.num_betas)
        self.deccam = nn.Linear(cfg.dim, 3)
        identity6d = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).repeat(layout.num_joints)
        self.register_buffer(self.pose_buffer_name, identity6d[None].clone())
        self.register_buffer("init_betas", torch.zeros(1, layout.num_betas))
        self.register_buffer("init_cam", torch.tensor([layout.default_cam]))

    @property
    def pose_buffer_name(self) -> str:
        """Name of the mean 6D pose buffer (``init_hand_pose`` or ``init_body_pose``)."""
        return f"init_{self.layout.pose_name}"

    @property
    def init_pose(self) -> torch.Tensor:
        """Mean pose (1, 6 * num_joints) in 6D."""
        return getattr(self, self.pose_buffer_name)

    def set_mean_params(
        self, pose6d: torch.Tensor, betas: torch.Tensor, cam: torch.Tensor
    ) -> None:
        """Overwrite the mean parameters (6D pose, shape, camera) the decoders add to."""
        with torch.no_grad():
            self.init_pose.copy_(torch.as_tensor(pose6d).reshape(self.init_pose.shape))
            self.init_betas.copy_(torch.as_tensor(betas).reshape(self.init_betas.shape))
            self.init_cam.copy_(torch.as_tensor(cam).reshape(self.init_cam.shape))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map (B, C, h, w) features to the layout's outputs.

        ``features`` may also be a token set (B, M, C) of any length M (a token-merged ViT):
        the cross-attention reads it as the context directly.
        """
        b = features.shape[0]
        context = features if features.ndim == 3 else features.flatten(2).transpose(1, 2)
        token = self.transformer(context)
        pose6d = self.decpose(token) + self.init_pose
        betas = self.decshape(token) + self.init_betas
        cam = self.deccam(token) + self.init_cam
        rotmats = rot6d_to_rotmat(pose6d).reshape(b, self.layout.num_joints, 3, 3)
        return {
            "global_orient": rotmats[:, :1],
            self.layout.pose_name: rotmats[:, 1:],
            "betas": betas,
            "cam": cam,
        }
