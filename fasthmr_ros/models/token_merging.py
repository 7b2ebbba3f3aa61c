"""Mask-guided token merging (FastHMR's Mask-ToMe) for the ViT backbone.

ToMe's bipartite soft matching (Bolya et al., ICLR 2023), as FastHMR applies it to HMR ViTs:

* **Where:** between the attention residual and the MLP of each of the first ``layers`` blocks
  (ToMe's placement; with HMR2.0's 192 tokens and merges [40, 40, 22] it reproduces FastHMR's
  52.8 GMACs).
* **How many:** ``per_layer`` merges per block until ``keep`` tokens remain
  (:func:`merge_schedule`; 192 -> 90 is [40, 40, 22]). The count is fixed, never
  image-dependent, so every crop of a batch has the same token count and shapes stay static
  (ONNX, TensorRT, CUDA graphs).
* **Matching:** tokens alternate into sets A (even positions) and B (odd positions); the
  metric is the cosine similarity of the attention keys averaged over heads; every A token
  picks its most similar B token and the ``r`` best pairs merge.
* **Merging:** a size-weighted average (``size`` counts the patches a token stands for), the
  sizes add up; unmerged A tokens come first, then all B tokens. It is computed as one matmul
  with a one-hot assignment matrix (no scatter-add, which ONNX Runtime's CPU provider lacks in
  fp16), so exported graphs run on every runtime and precision.
* **Proportional attention:** later blocks add ``log(size)`` to the attention logits on the key
  axis, so a token standing for ``s`` patches weighs as ``s`` copies.
* **Mask:** with a foreground flag per token, a pair with a foreground token gets similarity
  ``-inf`` (FastHMR's Fig. 3 masks A rows and B columns), so only background merges with
  background. The flag of a merged token is the OR of its parts. When the background is too
  small for the fixed merge count, the remaining merges fall on the least-bad ``-inf`` pairs,
  i.e. on foreground tokens: FastHMR's crowd failure mode, the price of a static token count.

There is no un-merging: HaMeR's and HMR2.0's heads cross-attend to the backbone tokens, so they
read the reduced set directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenMergeSettings:
    """A token-merging schedule for one ViT.

    Attributes:
        keep: tokens left after the last merging block.
        per_layer: merges per block (fewer in the last block if ``keep`` is reached).
        layers: merging happens in blocks ``0 .. layers-1``.
        use_mask: whether foreground tokens are protected (needs a foreground flag per token;
            without one, plain ToMe).

    """

    keep: int
    per_layer: int
    layers: int
    use_mask: bool = False

    def schedule(self, tokens: int) -> list[int]:
        """Merges per block for an input of ``tokens`` tokens (see :func:`merge_schedule`)."""
        return merge_schedule(tokens, self.keep, self.per_layer, self.layers)


@dataclass
class TokenState:
    """What travels with the tokens through merging blocks.

    Attributes:
        size: (B, N) float patches each token stands for (``None``: all ones, unmerged).
        foreground: (B, N) bool per-token foreground flag, or ``None`` (plain ToMe).
        source: (B, N, N0) float provenance (row i: which original tokens token i holds), or
            ``None`` when not tracked (it is only for tests and visualisation).

    """

    size: torch.Tensor | None = None
    foreground: torch.Tensor | None = None
    source: torch.Tensor | None = None


def merge_schedule(tokens: int, keep: int, per_layer: int, layers: int) -> list[int]:
    """Merges in each of the first ``layers`` blocks taking ``tokens`` down to ``keep``.

    Each block merges ``per_layer`` tokens, at most half of its tokens (the size of set A), and
    no more than needed to reach ``keep``: 192 tokens, keep 90, 40 per layer, 3 layers gives
    [40, 40, 22]. Raises ``ValueError`` when the blocks cannot reach ``keep``.
    """
    if not 1 <= keep <= tokens:
        raise ValueError(f"keep must be between 1 and the token count {tokens}, got {keep}")
    if per_layer < 0 or layers < 0:
        raise ValueError(f"per_layer and layers must be >= 0, got {per_layer}, {layers}")
    schedule, current = [], tokens
    for _ in range(layers):
        r = min(per_layer, current // 2, current - keep)
        schedule.append(r)
        current -= r
    if current != keep:
        raise ValueError(
            f"{layers} blocks merging at most {per_layer} tokens each cannot take {tokens} "
            f"tokens down to {keep} (they reach {current}); raise per_layer or layers"
        )
    return schedule


def proportional_bias(size: torch.Tensor | None) -> torch.Tensor | None:
    """Additive attention bias ``log(size)`` on the key axis (B, 1, 1, N), or ``None``."""
    if size is None:
        return None
    return size.log()[:, None, None, :]


def bipartite_merge(
    x: torch.Tensor, keys: torch.Tensor, r: int, state: TokenState
) -> tuple[torch.Tensor, TokenState]:
    """Merge ``r`` token pairs of ``x`` (B, N, C) by bipartite soft matching.

    Args:
        x: the tokens after the attention residual.
        keys: (B, N, D) attention keys averaged over heads (the similarity metric).
        r: how many tokens to remove (at most N // 2).
        state: sizes, foreground flags and provenance of the tokens (updated copies returned).

    Returns:
        ``(B, N - r, C)`` tokens (unmerged A tokens, then B tokens) and their new state.

    """
    if r <= 0:
        return x, state
    b, n, c = x.shape
    if r > n // 2:
        raise ValueError(f"cannot merge {r} of {n} tokens in one block (at most {n // 2})")
    metric = keys / keys.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    a_metric, b_metric = metric[:, ::2], metric[:, 1::2]
    scores = a_metric @ b_metric.transpose(1, 2)  # (B, Na, Nb)
    if state.foreground is not None:
        fg_a, fg_b = state.foreground[:, ::2], state.foreground[:, 1::2]
        blocked = fg_a[:, :, None] | fg_b[:, None, :]
        scores = scores.masked_fill(blocked, float("-inf"))
    node_max, node_idx = scores.max(dim=-1)  # best B partner of every A token
    na, nb = a_metric.shape[1], b_metric.shape[1]
    order = node_max.argsort(dim=-1, descending=True)  # the r best A tokens move
    rank = order.argsort(dim=-1)  # where each A token stands in that order
    # Output slot of every input token, inputs ordered [A tokens, B tokens]: unmerged A
    # tokens first (in rank order), then the B tokens, which also receive the moved A tokens.
    target_a = torch.where(rank < r, (na - r) + node_idx, rank - r)
    target_b = (na - r) + torch.arange(nb, device=x.device).expand(b, nb)
    target = torch.cat([target_a, target_b], dim=1)  # (B, N)
    slots = torch.arange(n - r, device=x.device)
    # One-hot assignment (B, N - r, N): merging is one matmul, which every runtime (ONNX
    # Runtime, TensorRT in fp16) runs, unlike scatter-add.
    assign = (target[:, None, :] == slots[None, :, None]).to(x.dtype)

    def ab(values: torch.Tensor) -> torch.Tensor:
        return torch.cat([values[:, ::2], values[:, 1::2]], dim=1)

    size = state.size if state.size is not None else x.new_ones(b, n)
    sizes = ab(size)[..., None]
    new_size = (assign @ sizes)[..., 0]
    merged_x = (assign @ (ab(x) * sizes)) / new_size[..., None]
    new_state = TokenState(size=new_size)
    if state.foreground is not None:
        flags = assign @ ab(state.foreground[..., None].to(x.dtype))
        new_state.foreground = flags[..., 0] > 0
    if state.source is not None:
        new_state.source = assign @ ab(state.source)
    return merged_x, new_state
