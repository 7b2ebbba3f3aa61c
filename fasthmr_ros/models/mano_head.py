"""HaMeR's MANO regression head: a transformer decoder with one query token.

A single zero token is embedded, refined by pre-norm layers of self-attention, cross-attention
to the backbone tokens and a feed-forward net, then decoded into 6D joint rotations, MANO shape
and a weak-perspective camera, each added to mean parameters stored as buffers. Attribute names
follow the official checkpoint (``transformer.transformer.layers.N.{0,1,2}``, ``decpose``,
``decshape``, ``deccam``, ``init_*``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fasthmr_ros.models.constants import NUM_BETAS, NUM_MANO_JOINTS
from fasthmr_ros.models.rotation import rot6d_to_rotmat


@dataclass(frozen=True)
class HeadConfig:
    """Architecture of the decoder head; the defaults are HaMeR's."""

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
        self.to_q = nn.Linear(cfg.dim, inner, bias=False)
        self.to_kv = nn.Linear(cfg.context_dim, inner * 2, bias=False)
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


class ManoHead(nn.Module):
    """Decode backbone features into MANO rotations, shape and a weak-perspective camera."""

    def __init__(self, cfg: HeadConfig = HeadConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer = TokenDecoder(cfg)
        self.decpose = nn.Linear(cfg.dim, NUM_MANO_JOINTS * 6)
        self.decshape = nn.Linear(cfg.dim, NUM_BETAS)
        self.deccam = nn.Linear(cfg.dim, 3)
        identity6d = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).repeat(NUM_MANO_JOINTS)
        self.register_buffer("init_hand_pose", identity6d[None].clone())
        self.register_buffer("init_betas", torch.zeros(1, NUM_BETAS))
        self.register_buffer("init_cam", torch.tensor([[4.0, 0.0, 0.0]]))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map (B, C, h, w) features to ``global_orient``, ``hand_pose``, ``betas``, ``cam``.

        ``features`` may also be a token set (B, M, C) of any length M (a token-merged ViT):
        the cross-attention reads it as the context directly.
        """
        b = features.shape[0]
        context = features if features.ndim == 3 else features.flatten(2).transpose(1, 2)
        token = self.transformer(context)
        pose6d = self.decpose(token) + self.init_hand_pose
        betas = self.decshape(token) + self.init_betas
        cam = self.deccam(token) + self.init_cam
        rotmats = rot6d_to_rotmat(pose6d).reshape(b, NUM_MANO_JOINTS, 3, 3)
        return {
            "global_orient": rotmats[:, :1],
            "hand_pose": rotmats[:, 1:],
            "betas": betas,
            "cam": cam,
        }
