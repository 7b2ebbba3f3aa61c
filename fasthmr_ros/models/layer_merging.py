"""Error-constrained layer merging (FastHMR's ECLM): fold runs of ViT blocks into one block.

A run of adjacent blocks ``low..high`` (inclusive) becomes one block at index ``low``; the
others are deleted. Which tensors merge (:data:`MERGED_TENSORS`): the attention and MLP
projections, weights and biases (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``). The
LayerNorms (``norm1``, ``norm2``) are the lowest block's, as in the SLM reference code. Rules:

* ``sum``: FastHMR's Eq. 4 (task arithmetic), ``theta_low + sum_k (theta_{low+k} - theta_low)``;
* ``top``: the top block's tensors (what the SLM reference code effectively computes: it takes
  every delta against the already-updated block);
* ``mean``: the average of the run (SLM's ablation).

:func:`sliding_window_search` is FastHMR's Algorithm 1: from the last block downwards, grow a
window while the error of the merged model stays under the budget, commit the largest window
that passed, and continue below it; the error is measured against the *original* model with
every committed window applied, so the budget is global. Unlike the paper's listing, a window
still open when the search reaches block 0 is committed too.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

#: Merge rules (see the module docstring).
RULES: tuple[str, ...] = ("sum", "top", "mean")
#: Tensors of a block that merging combines; every other tensor comes from the lowest block.
MERGED_TENSORS: tuple[str, ...] = (
    "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
)

Range = tuple[int, int]


def merge_tensors(tensors: Sequence[torch.Tensor], rule: str) -> torch.Tensor:
    """Combine one tensor of every block of a run (lowest first) by ``rule``."""
    if rule == "sum":
        base = tensors[0]
        return base + sum((t - base for t in tensors[1:]), torch.zeros_like(base))
    if rule == "top":
        return tensors[-1].clone()
    if rule == "mean":
        return torch.stack(list(tensors)).mean(dim=0)
    raise ValueError(f"unknown layer merge rule '{rule}'; choose one of {', '.join(RULES)}")


def merge_block_run(blocks: Sequence[nn.Module], rule: str) -> nn.Module:
    """One new block standing for ``blocks`` (a run, lowest first); the inputs are untouched."""
    merged = copy.deepcopy(blocks[0])
    states = [dict(block.named_parameters()) for block in blocks]
    with torch.no_grad():
        for name, parameter in merged.named_parameters():
            if name in MERGED_TENSORS and name in states[0]:
                parameter.copy_(merge_tensors([s[name].detach() for s in states], rule))
    return merged


def check_ranges(ranges: Sequence[Range], depth: int, field: str = "layers.merge") -> None:
    """Raise ``ValueError`` (naming ``field``) unless ``ranges`` are valid for ``depth`` blocks.

    Valid: pairs ``[low, high]`` with ``0 <= low < high < depth``, not overlapping.
    """
    previous_high = -1
    for index, (low, high) in enumerate(sorted(ranges)):
        if not 0 <= low < high < depth:
            raise ValueError(
                f"{field}[{index}] = [{low}, {high}] is not a run of blocks: need "
                f"0 <= first < last < {depth} (this ViT has {depth} blocks, numbered from 0)"
            )
        if low <= previous_high:
            raise ValueError(f"{field}: the run [{low}, {high}] overlaps the one before it")
        previous_high = high


def merged_block_list(blocks: Sequence[nn.Module], ranges: Sequence[Range],
                      rule: str) -> nn.ModuleList:
    """The block list with every range folded (blocks outside the ranges are shared)."""
    check_ranges(ranges, len(blocks))
    starts = {low: high for low, high in ranges}
    out, index = [], 0
    while index < len(blocks):
        if index in starts:
            high = starts[index]
            out.append(merge_block_run(blocks[index : high + 1], rule))
            index = high + 1
        else:
            out.append(blocks[index])
            index += 1
    return nn.ModuleList(out)


def fold_blocks(vit: nn.Module, ranges: Sequence[Range], rule: str = "sum") -> None:
    """Fold ``ranges`` (inclusive, original block indices) of ``vit.blocks`` in place."""
    if ranges:
        vit.blocks = merged_block_list(list(vit.blocks), ranges, rule)


@contextlib.contextmanager
def blocks_folded(vit: nn.Module, ranges: Sequence[Range], rule: str) -> Iterator[None]:
    """Run ``vit`` with ``ranges`` folded inside the ``with`` block, then restore it."""
    original = vit.blocks
    vit.blocks = merged_block_list(list(original), ranges, rule)
    try:
        yield
    finally:
        vit.blocks = original


def sliding_window_search(
    depth: int,
    error_of: Callable[[list[Range]], float],
    tau: float,
    on_trial: Callable[[Range, float, bool], None] | None = None,
) -> list[Range]:
    """FastHMR's Algorithm 1: the block runs to fold, highest first.

    Args:
        depth: number of blocks of the original model.
        error_of: error (e.g. mm) of the original model with the given runs folded, against
            the original model's own outputs.
        tau: the budget: a trial passes when its error is below ``tau``.
        on_trial: called with ``(run, error, passed)`` after every trial (progress, logs).

    """
    committed: list[Range] = []
    high, low = depth - 1, depth - 2
    while low >= 0:
        error = error_of([*committed, (low, high)])
        passed = error < tau
        if on_trial is not None:
            on_trial((low, high), error, passed)
        if passed:
            low -= 1
        elif low + 1 != high:
            committed.append((low + 1, high))
            high, low = low, low - 1
        else:
            high, low = high - 1, low - 1
    if low + 1 != high:  # the window that passed down to block 0 (the paper forgets it)
        committed.append((low + 1, high))
    return committed
