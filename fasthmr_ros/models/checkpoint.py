"""Loading hand regressors from the official HaMeR checkpoint and from this package's files.

Nothing in a checkpoint is ever executed: files are read with ``torch.load(weights_only=True)``
and the only non-tensor class allowed is yacs' ``CfgNode`` (HaMeR's pickled training
configuration), which is rebuilt as a plain ``OrderedDict`` without importing yacs.

Accepted inputs:

* the official layout ``_DATA/hamer_ckpts/checkpoints/hamer.ckpt`` with ``model_config.yaml``
  one folder up (pass the file, the ``hamer_ckpts`` folder or the ``_DATA`` folder);
* a bare ``hamer.ckpt`` (the architecture is then derived from the weights' shapes);
* a checkpoint written by this package (``fasthmr_format`` key; students included).
"""

from __future__ import annotations

import collections
import logging
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from fasthmr_ros.models.decoder_head import HeadConfig
from fasthmr_ros.models.mano import ManoLayer, mano_data_from_buffers
from fasthmr_ros.models.mano_files import check_mano_arrays, find_mano_file, load_mano_file
from fasthmr_ros.models.regressor import HandMeshRegressor, RegressorConfig, build_hand_regressor
from fasthmr_ros.models.vit import VIT_HUGE, ViTConfig

#: Width of one attention head in HaMeR's ViT-H (1280 / 16); head counts follow from it.
VIT_HEAD_WIDTH = VIT_HUGE.embed_dim // VIT_HUGE.num_heads

log = logging.getLogger(__name__)

#: Format tag of checkpoints written by this package.
FASTHMR_FORMAT = "fasthmr_ros.hand_regressor/1"
#: Official layout, relative to the ``_DATA`` folder.
OFFICIAL_CHECKPOINT = Path("hamer_ckpts/checkpoints/hamer.ckpt")
OFFICIAL_CONFIG = Path("hamer_ckpts/model_config.yaml")
#: Checkpoint entries that inference does not use.
IGNORED_PREFIXES = ("discriminator.",)
IGNORED_KEYS = ("initialized",)

EXPECTED_LAYOUT = (
    "Expected HaMeR's checkpoint (the official download's "
    "_DATA/hamer_ckpts/checkpoints/hamer.ckpt with model_config.yaml beside the checkpoints "
    "folder; pass the file or the _DATA folder), or a checkpoint written by fasthmr_ros "
    "('fasthmr make-test-assets', 'fasthmr distill')."
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with what is wrong and what was expected."""


class _YacsConfigNode:
    """Stand-in for ``yacs.config.CfgNode``: unpickles into a plain ``OrderedDict``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> collections.OrderedDict:  # type: ignore[misc]
        return collections.OrderedDict()


def resolve_checkpoint(checkpoint: str | Path) -> tuple[Path, Path | None]:
    """Find the checkpoint file and its ``model_config.yaml`` (``None`` if absent)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        candidates = [
            path / OFFICIAL_CHECKPOINT,
            path / "_DATA" / OFFICIAL_CHECKPOINT,
            path / "checkpoints" / "hamer.ckpt",
            path / "hamer.ckpt",
        ]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CheckpointError(f"no hamer.ckpt found in folder {path}. {EXPECTED_LAYOUT}")
        path = found
    elif not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist. {EXPECTED_LAYOUT}")
    for config in (path.parent.parent / "model_config.yaml", path.parent / "model_config.yaml"):
        if config.is_file():
            return path, config
    return path, None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file without executing anything stored in it."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (not a zip archive; truncated or another "
            f"kind of file). {EXPECTED_LAYOUT}"
        )
    try:
        with torch.serialization.safe_globals([(_YacsConfigNode, "yacs.config.CfgNode")]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        match = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"the object {match.group(1)}" if match else "an object that is not plain data"
        raise CheckpointError(
            f"{path} contains {what}, which could run code when loaded; refusing to load it. "
            f"Only tensors, plain containers and yacs configurations are accepted. "
            f"{EXPECTED_LAYOUT}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path} could not be read ({exc}); the file is probably truncated or corrupt: "
            "download it again."
        ) from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dict.")
    return dict(data)


def _state_dict_of(data: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    state = data.get("state_dict", data)
    if not isinstance(state, Mapping) or not any(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(f"{path} has no tensors in a 'state_dict'. {EXPECTED_LAYOUT}")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _count_indices(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(indices) + 1 if indices else 0


def _shape(state: Mapping[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{path} lacks '{key}'. {EXPECTED_LAYOUT}")
    return tuple(state[key].shape)


def derive_hamer_config(
    state: Mapping[str, torch.Tensor], yaml_config: Mapping[str, Any] | None, path: Path
) -> RegressorConfig:
    """Derive the architecture from HaMeR's weights (and ``model_config.yaml`` when present).

    Widths and depths follow from tensor shapes; head counts, which shapes cannot tell, come
    from the YAML (``MODEL.MANO_HEAD.TRANSFORMER_DECODER``) or HaMeR's defaults.
    """
    model = (yaml_config or {}).get("MODEL", {}) or {}
    backbone_type = str((model.get("BACKBONE") or {}).get("TYPE", "vit")).lower()
    if backbone_type != "vit":
        raise CheckpointError(f"{path}: backbone type '{backbone_type}' is not HaMeR's 'vit'.")
    decoder = ((model.get("MANO_HEAD") or {}).get("TRANSFORMER_DECODER")) or {}
    embed_dim = _shape(state, "backbone.pos_embed", path)[-1]
    vit = ViTConfig(
        embed_dim=embed_dim,
        depth=_count_indices(state, r"backbone\.blocks\.(\d+)\."),
        num_heads=max(1, embed_dim // VIT_HEAD_WIDTH),
    )
    prefix = "mano_head.transformer.transformer.layers.0."
    inner = _shape(state, prefix + "1.fn.to_q.weight", path)[0]
    dim_head = int(decoder.get("dim_head", HeadConfig().dim_head))
    head = HeadConfig(
        dim=_shape(state, "mano_head.transformer.pos_embedding", path)[-1],
        depth=_count_indices(state, r"mano_head\.transformer\.transformer\.layers\.(\d+)\."),
        heads=int(decoder.get("heads", inner // dim_head)),
        dim_head=dim_head,
        mlp_dim=_shape(state, prefix + "2.fn.net.0.weight", path)[0],
        context_dim=_shape(state, prefix + "1.fn.to_kv.weight", path)[1],
    )
    if head.heads * head.dim_head != inner:
        raise CheckpointError(
            f"{path}: model_config.yaml says {head.heads} heads x {head.dim_head} but the "
            f"weights have an attention width of {inner}."
        )
    return RegressorConfig(backbone=vit, head=head)


def check_state_dict(
    model_state: Mapping[str, torch.Tensor],
    file_state: Mapping[str, torch.Tensor],
    path: Path,
) -> None:
    """Raise one :class:`CheckpointError` listing missing, unexpected and mismatched keys."""
    used = {
        k: v
        for k, v in file_state.items()
        if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)
    }
    missing = sorted(set(model_state) - set(used))
    unexpected = sorted(set(used) - set(model_state))
    mismatched = sorted(
        f"{k}: file {tuple(used[k].shape)} vs model {tuple(model_state[k].shape)}"
        for k in set(used) & set(model_state)
        if used[k].shape != model_state[k].shape
    )
    if not (missing or unexpected or mismatched):
        return

    def listing(title: str, items: list[str]) -> str:
        shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
        return f"{len(items)} {title} [{shown}]"

    parts = [
        listing(title, items)
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("keys with wrong shapes", mismatched),
        )
        if items
    ]
    raise CheckpointError(f"{path} does not match the model: " + "; ".join(parts) + ". "
                          + EXPECTED_LAYOUT)


def _mano_buffers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("mano."):]: v for k, v in state.items() if k.startswith("mano.")}


def build_mano(
    state: Mapping[str, torch.Tensor], mano_dir: str | Path | None, path: Path
) -> ManoLayer:
    """MANO from ``mano_dir`` when given, otherwise from the checkpoint's ``mano.*`` buffers."""
    if mano_dir is not None:
        return ManoLayer(load_mano_file(find_mano_file(mano_dir)))
    buffers = _mano_buffers(state)
    if not buffers:
        raise CheckpointError(
            f"{path} carries no MANO model (no 'mano.*' buffers); pass mano_dir pointing at a "
            "folder with MANO_RIGHT.pkl (mano.is.tue.mpg.de)."
        )
    try:
        data = mano_data_from_buffers(buffers)
    except KeyError as exc:
        raise CheckpointError(f"{path}: MANO buffer 'mano.{exc.args[0]}' is missing.") from None
    try:
        data = check_mano_arrays(data, f"the MANO buffers of {path}")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    mano = ManoLayer(data)
    check_state_dict(mano.state_dict(), buffers, path)
    mano.load_state_dict(buffers)
    return mano


def _network_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("mano.")}


def _network_keys(model: HandMeshRegressor) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("mano.")}


def _without_weights(build: Callable[[], HandMeshRegressor], empty: bool) -> HandMeshRegressor:
    """Build the model; with ``empty``, its network on the meta device (no memory, no init).

    ViT-H's random initialisation costs seconds and a second 2.5 GB copy of the weights next to
    the checkpoint's; an empty network then takes the checkpoint's tensors themselves. Builders
    that need real tensors while constructing (timm backbones) are built normally.
    """
    if not empty:
        return build()
    with torch.device("meta"):
        return build()


def load_hand_regressor(
    checkpoint: str | Path,
    mano_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> HandMeshRegressor:
    """Load a hand regressor in eval mode (see :func:`fasthmr_ros.load_hand_regressor`)."""
    path, config_path = resolve_checkpoint(checkpoint)
    data = read_checkpoint(path)
    state = _state_dict_of(data, path)
    mano = build_mano(state, mano_dir, path)
    if data.get("fasthmr_format") == FASTHMR_FORMAT:
        from fasthmr_ros.models.registry import build_regressor_from_config

        config_dict = dict(data["config"])
        empty = config_dict.get("kind", "vit") == "vit"

        def build() -> HandMeshRegressor:
            return build_regressor_from_config(config_dict, mano)
    else:
        yaml_config = None
        if config_path is not None:
            with open(config_path, encoding="utf-8") as stream:
                yaml_config = yaml.safe_load(stream)
        embedded = data.get("fasthmr_config")
        config = (
            RegressorConfig.from_dict(embedded)
            if isinstance(embedded, Mapping)
            else derive_hamer_config(state, yaml_config, path)
        )
        empty = True

        def build() -> HandMeshRegressor:
            return build_hand_regressor(config, mano)

    model = _without_weights(build, empty)
    network_state = _network_state(state)
    check_state_dict(_network_keys(model), network_state, path)
    # A model built without weights takes the checkpoint's tensors as they are (no second copy).
    model.load_state_dict(network_state, strict=False, assign=empty)
    model.is_test_asset = bool(data.get("fasthmr_test_asset", False))
    if model.is_test_asset:
        log.warning("%s is a test asset: RANDOM weights, the meshes mean nothing", path)
    return model.eval().to(device)
