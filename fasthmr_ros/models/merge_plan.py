"""Merge plans: what FastHMR's training-free acceleration does to a loaded ViT teacher.

A plan is a JSON file (or the same dict in Python)::

    {"format": "fasthmr-merge-plan/1",
     "layers": {"merge": [[27, 31]], "rule": "sum"},
     "tokens": {"keep": 90, "per_layer": 40, "layers": 3, "mask": "foreground"},
     "checkpoint_sha256": "..."}

* ``layers.merge``: inclusive runs of blocks (original indices), each folded into one block at
  its first index; ``rule`` is ``sum`` (FastHMR's Eq. 4, the default), ``top`` or ``mean``
  (:mod:`fasthmr_ros.models.layer_merging` says which tensors merge).
* ``tokens``: ToMe-style merging in the first ``layers`` blocks, ``per_layer`` merges each,
  until ``keep`` tokens remain; ``mask``: ``"foreground"`` protects foreground tokens (the
  pipeline passes a per-token flag), ``"none"`` is plain ToMe
  (:mod:`fasthmr_ros.models.token_merging`).
* ``checkpoint_sha256`` (optional): :func:`backbone_sha256` of the unmerged backbone; a plan
  applied to another checkpoint is refused.

Both sections are optional. :func:`apply_merge_plan` takes any model whose ViT is the model
itself or its ``backbone`` attribute (hand and body regressors alike), so every loader applies a
plan with one call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fasthmr_ros.models.layer_merging import RULES, Range, check_ranges, fold_blocks
from fasthmr_ros.models.token_merging import TokenMergeSettings, merge_schedule
from fasthmr_ros.models.vit import VisionTransformer
from fasthmr_ros.models.weights_digest import tensors_sha256

#: The ``format`` field of every plan.
PLAN_FORMAT = "fasthmr-merge-plan/1"
#: Values of ``tokens.mask``.
MASK_MODES: tuple[str, ...] = ("foreground", "none")
#: Attribute under which an applied plan is recorded on the ViT.
APPLIED_ATTRIBUTE = "merge_plan"


class MergePlanError(ValueError):
    """A malformed plan, or one that does not fit the model; names the bad field."""


@dataclass(frozen=True)
class TokenPlan:
    """The ``tokens`` section of a plan."""

    keep: int
    per_layer: int
    layers: int
    mask: str = "foreground"

    @property
    def settings(self) -> TokenMergeSettings:
        """The ViT's token-merging settings."""
        return TokenMergeSettings(self.keep, self.per_layer, self.layers,
                                  use_mask=self.mask == "foreground")

    def to_dict(self) -> dict[str, Any]:
        """The section as JSON-ready data."""
        return {"keep": self.keep, "per_layer": self.per_layer, "layers": self.layers,
                "mask": self.mask}


@dataclass(frozen=True)
class MergePlan:
    """A parsed, validated merge plan (see the module docstring)."""

    merge: tuple[Range, ...] = ()
    rule: str = "sum"
    tokens: TokenPlan | None = None
    checkpoint_sha256: str | None = None
    source: str = field(default="merge plan", compare=False)

    @property
    def uses_mask(self) -> bool:
        """Whether the network needs a foreground flag per token."""
        return self.tokens is not None and self.tokens.mask == "foreground"

    @property
    def blocks_removed(self) -> int:
        """How many blocks the layer merges delete."""
        return sum(high - low for low, high in self.merge)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (the file format)."""
        data: dict[str, Any] = {"format": PLAN_FORMAT}
        if self.merge:
            data["layers"] = {"merge": [list(r) for r in self.merge], "rule": self.rule}
        if self.tokens is not None:
            data["tokens"] = self.tokens.to_dict()
        if self.checkpoint_sha256:
            data["checkpoint_sha256"] = self.checkpoint_sha256
        return data

    def describe(self) -> str:
        """One line for logs: ``"blocks [27-31] sum, tokens 192->90 (mask)"``."""
        parts = []
        if self.merge:
            runs = ", ".join(f"{low}-{high}" for low, high in self.merge)
            parts.append(f"blocks [{runs}] folded ({self.rule}, -{self.blocks_removed})")
        if self.tokens is not None:
            parts.append(f"tokens keep {self.tokens.keep} ({self.tokens.per_layer}/layer in "
                         f"{self.tokens.layers} layers, mask {self.tokens.mask})")
        return "; ".join(parts) or "identity (no merges)"


def _int_field(section: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    if key not in section:
        raise MergePlanError(f"{where}: '{key}' is missing")
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MergePlanError(f"{where}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _reject_unknown(section: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise MergePlanError(f"{where}: unknown field(s) {', '.join(unknown)}; known: "
                             f"{', '.join(known)}")


def _section(data: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MergePlanError(f"{source}: '{key}' must be an object, got {type(value).__name__}")
    return value


def _parse_ranges(value: Any, where: str) -> tuple[Range, ...]:
    if not isinstance(value, list):
        raise MergePlanError(f"{where} must be a list of [first, last] block pairs, got "
                             f"{value!r}")
    ranges = []
    for index, item in enumerate(value):
        if (not isinstance(item, (list, tuple)) or len(item) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
            raise MergePlanError(f"{where}[{index}] must be a pair of block indices "
                                 f"[first, last], got {item!r}")
        ranges.append((int(item[0]), int(item[1])))
    try:
        check_ranges(ranges, depth=max((h for _, h in ranges), default=0) + 1, field=where)
    except ValueError as exc:
        raise MergePlanError(str(exc)) from None
    return tuple(sorted(ranges, reverse=True))


def plan_from_dict(data: Mapping[str, Any], source: str = "merge plan") -> MergePlan:
    """Validate ``data`` and return the :class:`MergePlan`; errors name the bad field."""
    if not isinstance(data, Mapping):
        raise MergePlanError(f"{source} must be a JSON object, got {type(data).__name__}")
    _reject_unknown(data, ("format", "layers", "tokens", "checkpoint_sha256"), source)
    if data.get("format") != PLAN_FORMAT:
        raise MergePlanError(f"{source}: 'format' must be \"{PLAN_FORMAT}\", got "
                             f"{data.get('format')!r}")
    merge: tuple[Range, ...] = ()
    rule = "sum"
    layers = _section(data, "layers", source)
    if layers is not None:
        _reject_unknown(layers, ("merge", "rule"), f"{source}: layers")
        merge = _parse_ranges(layers.get("merge", []), f"{source}: layers.merge")
        rule = layers.get("rule", "sum")
        if rule not in RULES:
            raise MergePlanError(f"{source}: layers.rule must be one of {', '.join(RULES)}, "
                                 f"got {rule!r}")
    tokens = None
    section = _section(data, "tokens", source)
    if section is not None:
        where = f"{source}: tokens"
        _reject_unknown(section, ("keep", "per_layer", "layers", "mask"), where)
        mask = section.get("mask", "foreground")
        if mask is None:
            mask = "none"
        if mask not in MASK_MODES:
            raise MergePlanError(f"{where}.mask must be one of {', '.join(MASK_MODES)}, got "
                                 f"{mask!r}")
        tokens = TokenPlan(keep=_int_field(section, "keep", where, 1),
                           per_layer=_int_field(section, "per_layer", where, 0),
                           layers=_int_field(section, "layers", where, 0), mask=mask)
    sha = data.get("checkpoint_sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                            or any(c not in "0123456789abcdef" for c in sha.lower())):
        raise MergePlanError(f"{source}: checkpoint_sha256 must be 64 hex digits, got {sha!r}")
    return MergePlan(merge=merge, rule=rule, tokens=tokens,
                     checkpoint_sha256=sha.lower() if sha else None, source=source)


def load_merge_plan(plan: MergePlan | Mapping[str, Any] | str | Path | None) -> MergePlan | None:
    """A :class:`MergePlan` from a plan, its dict or a JSON file.

    ``None``, ``"none"`` and ``""`` give ``None`` (no plan).
    """
    if plan is None or isinstance(plan, MergePlan):
        return plan
    if isinstance(plan, Mapping):
        return plan_from_dict(plan)
    text = str(plan).strip()
    if text.lower() in ("", "none"):
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise MergePlanError(f"merge plan file {path} does not exist (write one with "
                             "'fasthmr merge calibrate', or pass 'none')")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MergePlanError(f"merge plan {path} is not readable JSON: {exc}") from None
    return plan_from_dict(data, source=f"merge plan {path}")


def save_merge_plan(plan: MergePlan, path: str | Path) -> Path:
    """Write ``plan`` as JSON to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def find_vit(model: nn.Module) -> VisionTransformer:
    """The ViT of ``model``: the model itself or its ``backbone``.

    Raises :class:`MergePlanError` if it has none (students have CNN backbones).
    """
    if isinstance(model, VisionTransformer):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, VisionTransformer):
        return backbone
    kind = type(backbone).__name__ if backbone is not None else type(model).__name__
    raise MergePlanError(f"merge plans apply to ViT teachers (HaMeR, HMR2.0); this model's "
                         f"backbone is a {kind}")


def backbone_sha256(model: nn.Module) -> str:
    """SHA-256 of the ViT backbone's weights (what ``checkpoint_sha256`` holds)."""
    return tensors_sha256(find_vit(model).state_dict())


def apply_merge_plan(model: nn.Module, plan: MergePlan | Mapping[str, Any] | str | Path | None,
                     ) -> nn.Module:
    """Apply ``plan`` to the ViT of ``model`` (a regressor or a ViT) in place; return ``model``.

    Layer runs are folded, then token merging is switched on. The plan is recorded on the ViT
    (``merge_plan``) and in ``model.config["merge_plan"]`` (so exported graphs and engine caches
    depend on it). Raises :class:`MergePlanError` for a malformed plan, one made for another
    checkpoint (``checkpoint_sha256``), ranges outside the ViT, a token schedule that cannot
    reach ``keep``, or a ViT that already has a plan.
    """
    parsed = load_merge_plan(plan)
    if parsed is None:
        return model
    vit = find_vit(model)
    if getattr(vit, APPLIED_ATTRIBUTE, None) is not None:
        raise MergePlanError("this model already has a merge plan applied; load the checkpoint "
                             "again to apply another one")
    if parsed.checkpoint_sha256 is not None:
        actual = backbone_sha256(vit)
        if actual != parsed.checkpoint_sha256:
            raise MergePlanError(
                f"{parsed.source} was made for another checkpoint (checkpoint_sha256 "
                f"{parsed.checkpoint_sha256[:16]}..., this model's backbone is {actual[:16]}...); "
                "calibrate a plan for this checkpoint with 'fasthmr merge calibrate', or drop "
                "checkpoint_sha256 from the plan to apply it anyway"
            )
    depth = len(vit.blocks)
    try:
        check_ranges(parsed.merge, depth, field=f"{parsed.source}: layers.merge")
    except ValueError as exc:
        raise MergePlanError(str(exc)) from None
    if parsed.tokens is not None:
        rows, cols = vit.cfg.grid
        t = parsed.tokens
        try:
            merge_schedule(rows * cols, t.keep, t.per_layer, min(t.layers, depth))
        except ValueError as exc:
            raise MergePlanError(f"{parsed.source}: tokens: {exc}") from None
        if t.layers > depth - parsed.blocks_removed:
            raise MergePlanError(f"{parsed.source}: tokens.layers {t.layers} exceeds the "
                                 f"{depth - parsed.blocks_removed} blocks left after merging")
    fold_blocks(vit, parsed.merge, parsed.rule)
    if parsed.tokens is not None:
        vit.token_merging = parsed.tokens.settings
    setattr(vit, APPLIED_ATTRIBUTE, parsed)
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        config["merge_plan"] = parsed.to_dict()
    return model


def applied_plan(model: nn.Module) -> MergePlan | None:
    """The plan applied to ``model``'s ViT, or ``None`` (also for non-ViT models)."""
    backbone = model if isinstance(model, VisionTransformer) else getattr(model, "backbone", None)
    return getattr(backbone, APPLIED_ATTRIBUTE, None)


def needs_foreground(model: nn.Module) -> bool:
    """Whether ``model``'s network takes a per-token foreground flag (a plan with a mask)."""
    plan = applied_plan(model)
    return plan is not None and plan.uses_mask
