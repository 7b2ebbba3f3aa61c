"""Which student to train: named presets or a configuration file, built beside the teacher.

A student is any :class:`~fasthmr_ros.models.regressor.HandMeshRegressor` the registry can
build from a configuration dict (``kind`` selects the backbone family: ``"vit"`` here, timm
backbones from :mod:`fasthmr_ros.models.students`). Its MANO layer is a copy of the teacher's,
so both produce meshes of the same hand model; the head's mean parameters (the ``init_*``
buffers HaMeR loads from ``mano_mean_params.npz``) are copied from the teacher too, since a
fresh head would otherwise start from a flat hand.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from fasthmr_ros.models.mano_head import HeadConfig
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


def known_student_names() -> list[str]:
    """Names :func:`resolve_student_config` accepts (timm students when that module exists)."""
    names = list(VIT_STUDENTS)
    try:
        from fasthmr_ros.models import students
    except ImportError:
        return names
    presets = getattr(students, "STUDENT_PRESETS", None) or getattr(students, "STUDENTS", None)
    if isinstance(presets, dict):
        names += [str(name) for name in presets]
    return names


def _timm_preset(name: str) -> dict[str, Any] | None:
    try:
        from fasthmr_ros.models import students
    except ImportError:
        return None
    presets = getattr(students, "STUDENT_PRESETS", None) or getattr(students, "STUDENTS", None)
    if isinstance(presets, dict) and name in presets:
        preset = presets[name]
        return dict(preset.to_dict() if hasattr(preset, "to_dict") else preset)
    return None


def resolve_student_config(spec: str | Path) -> dict[str, Any]:
    """A student configuration dict from a preset name or a ``.yaml``/``.json`` file."""
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
    preset = _timm_preset(text)
    if preset is not None:
        return preset
    raise ValueError(
        f"unknown student {text!r}: give one of {', '.join(known_student_names())} or a "
        "configuration file (.yaml/.json)"
    )


def build_student(config: dict[str, Any], teacher: HandMeshRegressor) -> HandMeshRegressor:
    """Build a fresh student with the teacher's MANO model and head mean parameters."""
    student = build_regressor_from_config(dict(config), copy.deepcopy(teacher.mano))
    copy_head_weights(teacher, student, names=HEAD_MEAN_BUFFERS)
    return student


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
