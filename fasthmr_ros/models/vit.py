"""Plain Vision Transformer backbone in the ViTPose layout used by HaMeR and HMR2.0.

Parameter names follow the official checkpoints (``patch_embed.proj``, ``pos_embed``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``last_norm``) so the official
weights load with a strict key check. The network is used for inference only: stochastic depth
(drop-path) is a training device and is deliberately absent, so the model cannot be left in a
noisy mode by accident.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fasthmr_ros.models.token_merging import (
    TokenMergeSettings,
    TokenState,
    bipartite_merge,
    proportional_bias,
)


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a ViT backbone; the defaults are HaMeR's ViT-H/16 (ViTPose-H)."""

    img_size: tuple[int, int] = (256, 192)  # (height, width) of the input window
    patch_size: int = 16
    patch_padding: int = 2  # ViTPose pads the patch convolution by 2
    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, columns) at the native input size."""
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    def to_dict(self) -> dict:
        """Return a plain dict (for checkpoints and YAML)."""
        out = asdict(self)
        out["img_size"] = list(self.img_size)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ViTConfig:
        """Build from :meth:`to_dict` output."""
        values = dict(data)
        if "img_size" in values:
            values["img_size"] = tuple(values["img_size"])
        return cls(**values)


#: HaMeR's and HMR2.0's backbone.
VIT_HUGE = ViTConfig()


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the token axis of ``x`` (B, N, C)."""
        return self.attend(x)[0]

    def attend(
        self, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention output and the keys averaged over heads (B, N, C / heads).

        ``bias`` (broadcastable to (B, heads, N, N)) is added to the logits: token merging's
        proportional attention passes ``log(size)`` on the key axis.
        """
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if bias is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), k.mean(dim=1)


class Mlp(nn.Module):
    """Two-layer perceptron with exact GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP token-wise."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: attention then MLP, each with a residual."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = SelfAttention(dim, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block on tokens (B, N, C)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_merging(
        self, x: torch.Tensor, merges: int, state: TokenState
    ) -> tuple[torch.Tensor, TokenState]:
        """Run the block with ``merges`` token merges between attention and MLP.

        This is ToMe's placement; attention is proportional (``log(size)`` bias). Returns the
        fewer tokens and their state.
        """
        attended, keys = self.attn.attend(self.norm1(x), proportional_bias(state.size))
        x, state = bipartite_merge(x + attended, keys, merges, state)
        return x + self.mlp(self.norm2(x)), state


class PatchEmbed(nn.Module):
    """Strided convolution that turns an image into a grid of patch tokens."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            3,
            cfg.embed_dim,
            kernel_size=cfg.patch_size,
            stride=cfg.patch_size,
            padding=cfg.patch_padding,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, 3, H, W) images to (B, C, h, w) patch features."""
        return self.proj(x)


class VisionTransformer(nn.Module):
    """ViT backbone returning a feature map ``(B, embed_dim, rows, cols)``.

    The position embedding holds one extra slot in front (a class-token slot from ViTPose
    pre-training). There is no class token in the sequence; the slot is broadcast-added to every
    token: ``tokens + pos_embed[:, 1:] + pos_embed[:, :1]``. An input of another size than
    ``cfg.img_size`` gets a bicubically resized position embedding (a training-free speed-up
    whose accuracy cost must be measured).

    With :attr:`token_merging` set (by a merge plan, :mod:`fasthmr_ros.models.merge_plan`) the
    first blocks merge tokens (:mod:`fasthmr_ros.models.token_merging`) and ``forward`` returns
    the reduced token set ``(B, M, C)`` instead of a feature map; the heads' cross-attention
    reads either. ``foreground`` ``(B, rows*cols)`` bool then protects foreground tokens.
    """

    #: Token merging schedule, or ``None`` (every block sees every token).
    token_merging: TokenMergeSettings | None = None

    def __init__(self, cfg: ViTConfig = VIT_HUGE) -> None:
        super().__init__()
        self.cfg = cfg
        rows, cols = cfg.grid
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Parameter(torch.zeros(1, rows * cols + 1, cfg.embed_dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.last_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @property
    def out_channels(self) -> int:
        """Channels of the returned feature map."""
        return self.cfg.embed_dim

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """Return the (1, rows*cols, C) embedding added to the tokens of a rows x cols grid."""
        pos = self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        native_rows, native_cols = self.cfg.grid
        if (rows, cols) == (native_rows, native_cols):
            return pos
        grid = pos.reshape(1, native_rows, native_cols, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, foreground: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Map (B, 3, H, W) to (B, C, H', W') features, or (B, M, C) tokens when merging."""
        if self.token_merging is None:
            if foreground is not None:
                raise ValueError("a foreground mask was given but this ViT merges no tokens "
                                 "(no merge plan with tokens.mask is applied)")
            feats = self.patch_embed(x)
            b, c, rows, cols = feats.shape
            tokens = feats.flatten(2).transpose(1, 2) + self.position_embedding(rows, cols)
            for block in self.blocks:
                tokens = block(tokens)
            tokens = self.last_norm(tokens)
            return tokens.transpose(1, 2).reshape(b, c, rows, cols)
        return self.forward_tokens(x, foreground)[0]

    def forward_tokens(
        self,
        x: torch.Tensor,
        foreground: torch.Tensor | None = None,
        track_source: bool = False,
    ) -> tuple[torch.Tensor, TokenState]:
        """Final tokens (B, M, C) and their :class:`TokenState` under :attr:`token_merging`.

        ``foreground`` (B, rows*cols) marks tokens that must never be merged (used only when
        the schedule's ``use_mask`` is set); ``track_source`` records which input tokens every
        output token holds (``state.source``, (B, M, rows*cols)).
        """
        feats = self.patch_embed(x)
        b, _, rows, cols = feats.shape
        tokens = feats.flatten(2).transpose(1, 2) + self.position_embedding(rows, cols)
        n = int(tokens.shape[1])  # a constant under tracing: merged graphs have static counts
        settings = self.token_merging
        schedule = settings.schedule(n) if settings is not None else []
        state = TokenState()
        if settings is not None and settings.use_mask and foreground is not None:
            if foreground.ndim != 2 or int(foreground.shape[1]) != n:
                raise ValueError(f"foreground must have shape (batch, {n}) (one flag per token), "
                                 f"got {tuple(foreground.shape)}")
            state.foreground = foreground.to(device=tokens.device) > 0
        if track_source:
            state.source = torch.eye(n, device=tokens.device, dtype=tokens.dtype).expand(
                b, n, n)
        for index, block in enumerate(self.blocks):
            if index < len(schedule):
                tokens, state = block.forward_merging(tokens, schedule[index], state)
            elif state.size is not None:
                tokens, state = block.forward_merging(tokens, 0, state)
            else:
                tokens = block(tokens)
        return self.last_norm(tokens), state
