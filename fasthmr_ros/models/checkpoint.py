"""Loading mesh regressors: the official HaMeR and HMR2.0 checkpoints and this package's files.

One loader serves hands and bodies; what differs between them (file layout, key prefixes,
mesh model) is a :class:`CheckpointFamily` (:data:`HAMER`, :data:`HMR2`).

Nothing in a checkpoint is ever executed: files are read with ``torch.load(weights_only=True)``
and the only non-tensor objects allowed are training configurations (Lightning's
``hyper_parameters``: omegaconf ``DictConfig``/``ListConfig`` as Hydra trainers such as HaMeR's
and HMR2.0's pickle them, or yacs ``CfgNode``), which become plain dicts, lists and scalars
without importing omegaconf or yacs (see :mod:`fasthmr_ros.models.config_pickle`). Anything
else that could run code is refused with an error naming it.

The generic pieces, for every model family (hands, bodies, students):
:func:`read_checkpoint` (the whole file as plain data), :func:`read_state_and_hyper_parameters`
(weights and training configuration), :func:`state_dict_of` and :func:`check_state_dict`
(one error listing missing, unexpected and mis-shaped keys).

Accepted inputs:

* HaMeR's official layout ``_DATA/hamer_ckpts/checkpoints/hamer.ckpt`` with
  ``model_config.yaml`` one folder up (pass the file, the ``hamer_ckpts`` folder or the
  ``_DATA`` folder);
* HMR2.0's official layout (4D-Humans' ``~/.cache/4DHumans``):
  ``logs/train/multiruns/hmr2/0/checkpoints/epoch=35-step=1000000.ckpt`` with
  ``model_config.yaml`` beside ``checkpoints/`` (pass the file or the folder holding ``logs/``);
* a bare ``.ckpt`` (the architecture is then derived from the weights' shapes);
* a checkpoint written by this package (``fasthmr_format`` key; students included).
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from fasthmr_ros.models.config_pickle import InertGlobals, RefusedObjectError, pickled_globals
from fasthmr_ros.models.decoder_head import HeadConfig
from fasthmr_ros.models.mano import ManoLayer, mano_data_from_buffers
from fasthmr_ros.models.mano_files import check_mano_arrays, find_mano_file, load_mano_file
from fasthmr_ros.models.model_files import check_model_arrays
from fasthmr_ros.models.regressor import (
    BodyMeshRegressor,
    HandMeshRegressor,
    MeshRegressor,
    RegressorConfig,
    build_body_regressor,
    build_hand_regressor,
)
from fasthmr_ros.models.smpl import SmplLayer, smpl_data_from_buffers
from fasthmr_ros.models.smpl_files import (
    SMPL_FILE,
    find_smpl_files,
    load_joint_regressor_extra,
    load_smpl_file,
)
from fasthmr_ros.models.vit import VIT_HUGE, ViTConfig

#: Width of one attention head in HaMeR's ViT-H (1280 / 16); head counts follow from it.
VIT_HEAD_WIDTH = VIT_HUGE.embed_dim // VIT_HUGE.num_heads

log = logging.getLogger(__name__)

#: Format tag of checkpoints written by this package.
FASTHMR_FORMAT = "fasthmr_ros.hand_regressor/1"
FASTHMR_BODY_FORMAT = "fasthmr_ros.body_regressor/1"
#: Official layout, relative to the ``_DATA`` folder.
OFFICIAL_CHECKPOINT = Path("hamer_ckpts/checkpoints/hamer.ckpt")
OFFICIAL_CONFIG = Path("hamer_ckpts/model_config.yaml")
#: HMR2.0's official layout, relative to 4D-Humans' cache folder (``~/.cache/4DHumans``).
HMR2_OFFICIAL_RUN = Path("logs/train/multiruns/hmr2/0")
HMR2_OFFICIAL_CHECKPOINT = HMR2_OFFICIAL_RUN / "checkpoints" / "epoch=35-step=1000000.ckpt"
#: Checkpoint entries that inference does not use.
IGNORED_PREFIXES = ("discriminator.",)
IGNORED_KEYS = ("initialized",)

EXPECTED_LAYOUT = (
    "Expected HaMeR's checkpoint (the official download's "
    "_DATA/hamer_ckpts/checkpoints/hamer.ckpt with model_config.yaml beside the checkpoints "
    "folder; pass the file or the _DATA folder), or a checkpoint written by fasthmr_ros "
    "('fasthmr make-test-assets', 'fasthmr distill')."
)


HMR2_EXPECTED_LAYOUT = (
    "Expected HMR2.0's checkpoint (4D-Humans' download: "
    f"{HMR2_OFFICIAL_CHECKPOINT} with model_config.yaml beside the checkpoints folder; pass "
    "the file or the folder holding logs/), or a body checkpoint written by fasthmr_ros "
    "('fasthmr make-test-assets')."
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with what is wrong and what was expected."""


@dataclass(frozen=True)
class CheckpointFamily:
    """What distinguishes one kind of official checkpoint (HaMeR's, HMR2.0's) for the loader.

    Attributes:
        name: the model's name in messages.
        official_paths: checkpoint paths relative to a folder the user may pass.
        file_name: checkpoint file name inside a bare folder (a glob pattern).
        head_attribute: key prefix of the head (``mano_head``, ``smpl_head``).
        mesh_model_attribute: key prefix of the mesh model buffers (``mano``, ``smpl``).
        yaml_head_key: ``model_config.yaml`` section of the head (``MANO_HEAD``).
        format_tag: ``fasthmr_format`` of this package's files of that kind.
        expected_layout: the help text appended to errors.

    """

    name: str
    official_paths: tuple[Path, ...]
    file_name: str
    head_attribute: str
    mesh_model_attribute: str
    yaml_head_key: str
    format_tag: str
    expected_layout: str

    @property
    def mesh_prefix(self) -> str:
        """State-dict prefix of the mesh model's buffers."""
        return f"{self.mesh_model_attribute}."


HAMER = CheckpointFamily(
    name="HaMeR",
    official_paths=(
        OFFICIAL_CHECKPOINT,
        Path("_DATA") / OFFICIAL_CHECKPOINT,
        Path("checkpoints/hamer.ckpt"),
        Path("hamer.ckpt"),
    ),
    file_name="hamer.ckpt",
    head_attribute=HandMeshRegressor.head_attribute,
    mesh_model_attribute=HandMeshRegressor.mesh_model_attribute,
    yaml_head_key="MANO_HEAD",
    format_tag=FASTHMR_FORMAT,
    expected_layout=EXPECTED_LAYOUT,
)
HMR2 = CheckpointFamily(
    name="HMR2.0",
    official_paths=(
        HMR2_OFFICIAL_CHECKPOINT,  # from the cache folder
        Path("4DHumans") / HMR2_OFFICIAL_CHECKPOINT,  # from ~/.cache
        HMR2_OFFICIAL_CHECKPOINT.relative_to(HMR2_OFFICIAL_RUN),  # from the run folder
    ),
    file_name="*.ckpt",
    head_attribute=BodyMeshRegressor.head_attribute,
    mesh_model_attribute=BodyMeshRegressor.mesh_model_attribute,
    yaml_head_key="SMPL_HEAD",
    format_tag=FASTHMR_BODY_FORMAT,
    expected_layout=HMR2_EXPECTED_LAYOUT,
)


def resolve_checkpoint(
    checkpoint: str | Path, family: CheckpointFamily = HAMER
) -> tuple[Path, Path | None]:
    """Find the checkpoint file and its ``model_config.yaml`` (``None`` if absent)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        found = next((path / c for c in family.official_paths if (path / c).is_file()), None)
        if found is None:
            # A folder holding exactly one checkpoint (directly or in checkpoints/).
            loose = sorted({*path.glob(family.file_name),
                            *path.glob(f"checkpoints/{family.file_name}")})
            found = loose[0] if len(loose) == 1 else None
        if found is None:
            what = "hamer.ckpt" if family is HAMER else f"{family.name} checkpoint"
            raise CheckpointError(
                f"no {what} found in folder {path}. {family.expected_layout}"
            )
        path = found
    elif not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist. {family.expected_layout}")
    for config in (path.parent.parent / "model_config.yaml", path.parent / "model_config.yaml"):
        if config.is_file():
            return path, config
    return path, None


def _pickle_bytes(path: Path) -> bytes:
    """The object pickle of a zip checkpoint (``<archive>/data.pkl``), ``b""`` if none."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        return archive.read(names[0]) if names else b""


def _refusal(path: Path, what: str, expected: str) -> CheckpointError:
    return CheckpointError(
        f"{path} contains {what}, which could run code when loaded; refusing to load it. "
        "Only tensors, plain containers and training configurations (omegaconf DictConfig/"
        f"ListConfig, yacs CfgNode) are accepted. {expected}"
    )


def read_checkpoint(path: str | Path, expected: str = EXPECTED_LAYOUT) -> dict[str, Any]:
    """Read a checkpoint file as plain data, without executing anything stored in it.

    Training configurations pickled by Lightning (omegaconf ``DictConfig``/``ListConfig`` of
    omegaconf 2.0-2.3, yacs ``CfgNode``) come back as dicts, lists and scalars, unresolved
    interpolations as their ``"${...}"`` strings, enum members as their values and paths as
    strings; omegaconf and yacs are not imported.

    Args:
        path: the checkpoint file (a PyTorch zip archive).
        expected: what a valid file looks like, appended to every error message.

    Raises:
        CheckpointError: the file is missing, not a checkpoint, truncated, or names something
            that could run code (``os.system``, ``builtins.eval``, an unknown callable, ...).

    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (not a zip archive; truncated or another "
            f"kind of file). {expected}"
        )
    try:
        inert = InertGlobals(pickled_globals(_pickle_bytes(path)))
        with torch.serialization.safe_globals(inert.safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
        data = inert.to_plain(data)
    except RefusedObjectError as exc:
        raise _refusal(path, str(exc), expected) from None
    except pickle.UnpicklingError as exc:
        match = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"the object {match.group(1)}" if match else "an object that is not plain data"
        raise _refusal(path, what, expected) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path} could not be read ({exc}); the file is probably truncated or corrupt: "
            "download it again."
        ) from None
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dict.")
    return dict(data)


def state_dict_of(
    data: Mapping[str, Any], path: Path, expected: str = EXPECTED_LAYOUT
) -> dict[str, torch.Tensor]:
    """The tensors of a read checkpoint: its ``state_dict``, or the file itself if it has none."""
    state = data.get("state_dict", data)
    if not isinstance(state, Mapping) or not any(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(f"{path} has no tensors in a 'state_dict'. {expected}")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def read_state_and_hyper_parameters(
    path: str | Path, expected: str = EXPECTED_LAYOUT
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and the training configuration of a checkpoint, as plain data.

    Works for any model family (Lightning checkpoints of HaMeR, HMR2.0, this package's own
    files): the state dict's tensors and ``hyper_parameters`` (``{}`` when the file has none).
    See :func:`read_checkpoint` for what is accepted and refused.
    """
    path = Path(path)
    data = read_checkpoint(path, expected)
    hyper_parameters = data.get("hyper_parameters")
    if not isinstance(hyper_parameters, Mapping):
        hyper_parameters = {}
    return state_dict_of(data, path, expected), dict(hyper_parameters)


def _count_indices(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(indices) + 1 if indices else 0


def _shape(state: Mapping[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"{path} lacks '{key}'. {EXPECTED_LAYOUT}")
    return tuple(state[key].shape)


def derive_vit_config(
    state: Mapping[str, torch.Tensor],
    yaml_config: Mapping[str, Any] | None,
    path: Path,
    family: CheckpointFamily = HAMER,
) -> RegressorConfig:
    """Derive the architecture from official weights (and ``model_config.yaml`` when present).

    Widths and depths follow from tensor shapes; head counts, which shapes cannot tell, come
    from the YAML (``MODEL.<MANO|SMPL>_HEAD.TRANSFORMER_DECODER``) or the published defaults.
    """
    model = (yaml_config or {}).get("MODEL", {}) or {}
    backbone_type = str((model.get("BACKBONE") or {}).get("TYPE", "vit")).lower()
    if backbone_type != "vit":
        raise CheckpointError(
            f"{path}: backbone type '{backbone_type}' is not {family.name}'s 'vit'."
        )
    decoder = ((model.get(family.yaml_head_key) or {}).get("TRANSFORMER_DECODER")) or {}
    head_key = family.head_attribute
    embed_dim = _shape(state, "backbone.pos_embed", path)[-1]
    vit = ViTConfig(
        embed_dim=embed_dim,
        depth=_count_indices(state, r"backbone\.blocks\.(\d+)\."),
        num_heads=max(1, embed_dim // VIT_HEAD_WIDTH),
    )
    prefix = f"{head_key}.transformer.transformer.layers.0."
    inner = _shape(state, prefix + "1.fn.to_q.weight", path)[0]
    dim_head = int(decoder.get("dim_head", HeadConfig().dim_head))
    head = HeadConfig(
        dim=_shape(state, f"{head_key}.transformer.pos_embedding", path)[-1],
        depth=_count_indices(
            state, re.escape(head_key) + r"\.transformer\.transformer\.layers\.(\d+)\."
        ),
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
    expected: str = EXPECTED_LAYOUT,
) -> None:
    """Raise one :class:`CheckpointError` listing missing, unexpected and mismatched keys.

    Entries inference never uses (``discriminator.*``, ``initialized``) are ignored; at most
    eight keys of each kind are named, with a count of the rest.
    """
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
                          + expected)


def _buffers(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _checked(check: Callable[[], dict], what: str) -> dict:
    try:
        return check()
    except KeyError as exc:
        raise CheckpointError(f"{what}: buffer '{exc.args[0]}' is missing.") from None
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def build_mano(
    state: Mapping[str, torch.Tensor], mano_dir: str | Path | None, path: Path
) -> ManoLayer:
    """MANO from ``mano_dir`` when given, otherwise from the checkpoint's ``mano.*`` buffers."""
    if mano_dir is not None:
        return ManoLayer(load_mano_file(find_mano_file(mano_dir)))
    buffers = _buffers(state, HAMER.mesh_prefix)
    if not buffers:
        raise CheckpointError(
            f"{path} carries no MANO model (no 'mano.*' buffers); pass mano_dir pointing at a "
            "folder with MANO_RIGHT.pkl (mano.is.tue.mpg.de)."
        )
    data = _checked(
        lambda: check_mano_arrays(mano_data_from_buffers(buffers), f"the MANO buffers of {path}"),
        f"{path}: MANO",
    )
    mano = ManoLayer(data)
    check_state_dict(mano.state_dict(), buffers, path)
    mano.load_state_dict(buffers)
    return mano


def build_smpl(
    state: Mapping[str, torch.Tensor], smpl_dir: str | Path | None, path: Path
) -> SmplLayer:
    """SMPL from ``smpl_dir`` when given, otherwise from the checkpoint's ``smpl.*`` buffers.

    ``smpl_dir`` is a folder holding ``SMPL_NEUTRAL.pkl`` or 4D-Humans' ``data/`` folder; the
    19-joint regressor comes from ``SMPL_to_J19.pkl`` found there, else from the checkpoint's
    ``smpl.joint_regressor_extra``.
    """
    buffers = _buffers(state, HMR2.mesh_prefix)
    if smpl_dir is not None:
        files = find_smpl_files(smpl_dir)
        if files.joint_regressor_extra is not None:
            extra = load_joint_regressor_extra(files.joint_regressor_extra)
        elif "joint_regressor_extra" in buffers:
            extra = buffers["joint_regressor_extra"].float().numpy()
        else:
            raise CheckpointError(
                f"no SMPL_to_J19.pkl beside {files.model} or one folder up, and {path} carries "
                "no 'smpl.joint_regressor_extra'; pass 4D-Humans' data/ folder as smpl_dir."
            )
        return SmplLayer(load_smpl_file(files.model), extra)
    if not buffers:
        raise CheckpointError(
            f"{path} carries no SMPL model (no 'smpl.*' buffers); pass smpl_dir pointing at a "
            "folder with SMPL_NEUTRAL.pkl (smpl.is.tue.mpg.de) or at 4D-Humans' data/ folder."
        )
    what = f"the SMPL buffers of {path}"
    data = _checked(
        lambda: check_model_arrays(SMPL_FILE, smpl_data_from_buffers(buffers), what),
        f"{path}: SMPL",
    )
    if "joint_regressor_extra" not in buffers:
        raise CheckpointError(f"{path}: buffer 'smpl.joint_regressor_extra' is missing.")
    smpl = SmplLayer(data, buffers["joint_regressor_extra"].float().numpy())
    check_state_dict(smpl.state_dict(), buffers, path, HMR2.expected_layout)
    smpl.load_state_dict(buffers)
    return smpl


def _without_weights(build: Callable[[], MeshRegressor], empty: bool) -> MeshRegressor:
    """Build the model; with ``empty``, its network on the meta device (no memory, no init).

    ViT-H's random initialisation costs seconds and a second 2.5 GB copy of the weights next to
    the checkpoint's; an empty network then takes the checkpoint's tensors themselves. Builders
    that need real tensors while constructing (timm backbones) are built normally.
    """
    if not empty:
        return build()
    with torch.device("meta"):
        return build()


def _load_regressor(
    family: CheckpointFamily,
    checkpoint: str | Path,
    mesh_dir: str | Path | None,
    device: str | torch.device,
    merge_plan: Any = None,
) -> MeshRegressor:
    """The one loading path of every regressor: resolve, read, mesh model, build, check, fill."""
    path, config_path = resolve_checkpoint(checkpoint, family)
    data = read_checkpoint(path, family.expected_layout)
    state = state_dict_of(data, path, family.expected_layout)
    _refuse_other_family(data, path, family)
    if family is HMR2:
        mesh_model: nn.Module = build_smpl(state, mesh_dir, path)
    else:
        mesh_model = build_mano(state, mesh_dir, path)
    if data.get("fasthmr_format") == family.format_tag:
        config_dict = dict(data["config"])
        empty = config_dict.get("kind", "vit") == "vit"

        def build() -> MeshRegressor:
            if family is HMR2:
                return build_body_regressor(RegressorConfig.from_dict(config_dict), mesh_model)
            from fasthmr_ros.models.registry import build_regressor_from_config

            return build_regressor_from_config(config_dict, mesh_model)
    else:
        yaml_config = None
        if config_path is not None:
            with open(config_path, encoding="utf-8") as stream:
                yaml_config = yaml.safe_load(stream)
        embedded = data.get("fasthmr_config")
        config = (
            RegressorConfig.from_dict(embedded)
            if isinstance(embedded, Mapping)
            else derive_vit_config(state, yaml_config, path, family)
        )
        empty = True
        builder = build_body_regressor if family is HMR2 else build_hand_regressor

        def build() -> MeshRegressor:
            return builder(config, mesh_model)

    model = _without_weights(build, empty)
    prefix = family.mesh_prefix
    network_state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    network_keys = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    check_state_dict(network_keys, network_state, path, family.expected_layout)
    # A model built without weights takes the checkpoint's tensors as they are (no second copy).
    model.load_state_dict(network_state, strict=False, assign=empty)
    model.is_test_asset = bool(data.get("fasthmr_test_asset", False))
    if model.is_test_asset:
        log.warning("%s is a test asset: RANDOM weights, the meshes mean nothing", path)
    if merge_plan is not None:
        from fasthmr_ros.models.merge_plan import apply_merge_plan

        apply_merge_plan(model, merge_plan)
    return model.eval().to(device)


def _refuse_other_family(data: Mapping[str, Any], path: Path, family: CheckpointFamily) -> None:
    """A clear error for a hand checkpoint given as a body one and vice versa."""
    other = HAMER if family is HMR2 else HMR2
    state = data.get("state_dict", data)
    if data.get("fasthmr_format") == other.format_tag or (
        isinstance(state, Mapping)
        and any(str(k).startswith(f"{other.head_attribute}.") for k in state)
    ):
        loader = "load_hand_regressor" if other is HAMER else "load_body_regressor"
        raise CheckpointError(
            f"{path} is a {other.name} checkpoint, not {family.name}'s; load it with "
            f"fasthmr_ros.{loader} (for the CLI: the hands commands take HaMeR checkpoints, the "
            f"bodies commands HMR2.0 ones). {family.expected_layout}"
        )


def load_hand_regressor(
    checkpoint: str | Path,
    mano_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    merge_plan: Any = None,
) -> HandMeshRegressor:
    """Load a hand regressor in eval mode (see :func:`fasthmr_ros.load_hand_regressor`)."""
    return _load_regressor(HAMER, checkpoint, mano_dir, device, merge_plan)  # type: ignore[return-value]


def load_body_regressor(
    checkpoint: str | Path,
    smpl_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    merge_plan: Any = None,
) -> BodyMeshRegressor:
    """Load a body regressor in eval mode (see :func:`fasthmr_ros.load_body_regressor`)."""
    return _load_regressor(HMR2, checkpoint, smpl_dir, device, merge_plan)  # type: ignore[return-value]
