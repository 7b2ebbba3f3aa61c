"""Which student to train: named presets or a configuration file, built beside the teacher.

A student is any :class:`~fasthmr_ros.models.regressor.HandMeshRegressor` the registry can
build from a configuration dict (``kind`` selects the backbone family: ``"vit"`` presets here,
``"timm"`` backbones from :mod:`fasthmr_ros.models.students`, with optional ImageNet weights).
Its MANO layer is a copy of the teacher's, so both produce meshes of the same hand model; the
head's mean parameters (the ``init_*`` buffers HaMeR loads from ``mano_mean_params.npz``) are
copied from the teacher too, since a fresh head would otherwise start from a flat hand.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from fasthmr_ros.models.decoder_head import HeadConfig
from fasthmr_ros.models.registry import build_regressor_from_config
from fasthmr_ros.models.regressor import HandMeshRegressor, RegressorConfig
from fasthmr_ros.models.vit import ViTConfig

#: Mean-parameter buffers of HaMeR's head (not learned; the dataset's mean MANO parameters).
HEAD_MEAN_BUFFERS: tuple[str, ...] = ("init_hand_pose", "init_betas", "init_cam")


def _vit_student(embed_dim: int, depth: int, num_heads: int) -> dict[str, Any]:
    config = RegressorConfig(
        backbone=ViTConfig(embed_dim=embed_dim, depth=depth, num_heads=num_heads),
        head=HeadConfig(context_dim=embed_dim),
    )
    return {"kind": "vit", **config.to_dict()}


#: ViTPose-style students with HaMeR's head (the teacher is ViT-H: 1280 wide, 32 blocks).
VIT_STUDENTS: dict[str, dict[str, Any]] = {
    "vit-tiny": _vit_student(192, 12, 3),
    "vit-small": _vit_student(384, 12, 6),
    "vit-base": _vit_student(768, 12, 12),
}


def timm_student_names() -> tuple[str, ...]:
    """The timm backbones Fast-HaMeR distilled into (any timm model with features works)."""
    from fasthmr_ros.models.students import STUDENT_BACKBONES

    return STUDENT_BACKBONES


def known_student_names() -> list[str]:
    """Student names :func:`resolve_student_config` knows by heart."""
    return [*VIT_STUDENTS, *timm_student_names()]


def _timm_config(name: str) -> dict[str, Any]:
    """A timm student configuration; ``context_dim`` is fixed when the backbone is built."""
    from fasthmr_ros.models.students import StudentConfig

    return StudentConfig(backbone=name).to_dict()


def resolve_student_config(spec: str | Path) -> dict[str, Any]:
    """A student configuration dict from a name or a ``.yaml``/``.json`` file.

    Names are the ViT presets (:data:`VIT_STUDENTS`) or timm model names (e.g.
    ``mobilenetv3_large_100``; whether timm knows the name is checked when the student is
    built).
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"student configuration file {path} does not exist")
        raw = path.read_text(encoding="utf-8")
        try:
            data = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from None
        if not isinstance(data, dict) or "kind" not in data:
            raise ValueError(
                f"{path} must hold a regressor configuration mapping with a 'kind' (e.g. "
                "{'kind': 'vit', 'backbone': {...}, 'head': {...}})"
            )
        return data
    if text in VIT_STUDENTS:
        return copy.deepcopy(VIT_STUDENTS[text])
    if not text or any(c in text for c in "/\\ "):
        raise ValueError(
            f"unknown student {text!r}: give one of {', '.join(known_student_names())} (or "
            "another timm model name), or a configuration file (.yaml/.json)"
        )
    return _timm_config(text)


def same_architecture(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two student configurations describe one architecture.

    A timm configuration made from a name does not know its head's ``context_dim`` until the
    backbone is built, so that entry is not compared.
    """

    def canonical(config: dict[str, Any]) -> dict[str, Any]:
        config = copy.deepcopy(dict(config))
        if config.get("kind") == "timm" and isinstance(config.get("head"), dict):
            config["head"].pop("context_dim", None)
        return config

    return canonical(first) == canonical(second)


def student_for_teacher(
    config: dict[str, Any], teacher: HandMeshRegressor
) -> HandMeshRegressor:
    """Build a fresh student with the teacher's MANO model and head mean parameters.

    A timm student is built from its backbone name (its width is read off the backbone); other
    kinds go through the model registry.
    """
    mano = copy.deepcopy(teacher.mano)
    if config.get("kind") == "timm":
        from fasthmr_ros.models.students import StudentConfig, build_student

        student = build_student(StudentConfig.from_dict(dict(config)), mano)
    else:
        student = build_regressor_from_config(dict(config), mano)
    copy_head_weights(teacher, student, names=HEAD_MEAN_BUFFERS)
    return student


def load_pretrained_backbone(student: HandMeshRegressor, weights: str | Path | None) -> None:
    """Load ImageNet weights into a timm student's backbone.

    Args:
        student: a timm student (``kind: timm``).
        weights: a local weights file of the timm model (its classification checkpoint), or
            ``None`` to let timm fetch its default pretrained weights (needs the network).

    """
    if dict(student.config).get("kind") != "timm":
        raise ValueError(
            "pretrained backbone weights exist for timm students only; this student is "
            f"{dict(student.config).get('kind')!r}"
        )
    import timm

    backbone = student.backbone
    overlay = None
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"backbone weights file {path} does not exist")
        overlay = {"file": str(path)}
    try:
        pretrained = timm.create_model(
            backbone.name, pretrained=True, features_only=True,
            out_indices=(backbone.out_index,), pretrained_cfg_overlay=overlay,
        )
    except (OSError, RuntimeError, ValueError) as exc:
        where = f"from {weights}" if weights is not None else "(download)"
        raise ValueError(
            f"cannot load pretrained weights for {backbone.name} {where}: {exc}. Without "
            "network access, download the timm weights elsewhere and pass the file"
        ) from None
    backbone.body.load_state_dict(pretrained.state_dict())


def copy_head_weights(
    teacher: HandMeshRegressor,
    student: HandMeshRegressor,
    names: tuple[str, ...] | None = None,
) -> list[str]:
    """Copy MANO-head entries of equal shape from teacher to student.

    Args:
        teacher: the source of the weights.
        student: the model receiving them (changed in place).
        names: entry names inside ``mano_head`` to copy; ``None`` copies every entry whose
            shape matches (with a student of another width, the cross-attention's key/value
            projection differs and stays fresh).

    Returns:
        The copied entry names.

    """
    source = teacher.mano_head.state_dict()
    target = student.mano_head.state_dict()
    wanted = list(target) if names is None else list(names)
    copied = []
    with torch.no_grad():
        for name in wanted:
            if name in source and name in target and source[name].shape == target[name].shape:
                target[name].copy_(source[name])
                copied.append(name)
    return copied
