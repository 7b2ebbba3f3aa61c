"""Default hand detector: MediaPipe's bundled hand and pose models, nothing downloaded.

Two MediaPipe graphs of the legacy ``solutions`` API run on every frame; both load ``.tflite``
files shipped inside the ``mediapipe`` wheel (0.10.18 bundles the palm detector and hand
landmark models, lite and full, and the pose detector with the *full* pose landmark model; the
Tasks API would need separately downloaded ``.task`` bundles):

- palm detection + hand landmarks give 21 landmarks per hand (already in OpenPose hand order)
  and a handedness label;
- pose landmarks give, for each arm, the wrist and the index, pinky and thumb knuckles: a hand
  box hung on a known arm, which still exists when the hand itself is occluded or too small
  for the palm detector. Such a box with no palm match is looked at again through a crop, where
  the hand is large enough for the hand landmark model.

An optional tile search (``search_tiles``) runs palm detection + hand landmarks again on
overlapping square tiles of the frame: the palm detector sees the whole frame at 192x192, so
a hand far from the camera may be too small for it, but not inside a tile. Each tile pass costs
about as much as the full-frame pass, so the search is off by default. What it finds is
admitted only when confirmed by the hand landmark model (a strict hand-presence threshold and
a confident hand classifier) and when it overlaps no hand already found
(:func:`~fasthmr_ros.pipeline.hand_fusion.add_unseen_hands`).

Sides: MediaPipe's handedness label assumes a mirrored (selfie) image, so for an ordinary,
unmirrored camera the hand is the opposite one. The pose model's left/right are the person's
own sides as seen in the image, so they flip for mirrored input. ``mirrored_input`` selects the
convention; both were checked on real photographs (see ``test/test_detect_real_images.py``).

Not thread-safe: use one detector per thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fasthmr_ros.pipeline.hand_fusion import (
    add_unseen_hands,
    fuse_hand_boxes,
    hand_box_from_arm,
    hand_box_from_keypoints,
    match_boxes,
    suppress_duplicates,
)
from fasthmr_ros.pipeline.results import LEFT, RIGHT, HandBox
from fasthmr_ros.pipeline.tiling import square_tiles

#: BlazePose landmark ids of (wrist, pinky knuckle, index knuckle, thumb) for each arm.
POSE_ARM_LANDMARKS: dict[str, tuple[int, int, int, int]] = {
    LEFT: (15, 17, 19, 21),
    RIGHT: (16, 18, 20, 22),
}
#: Crop side (in tight-box sides) used to look again at a pose box the palm detector missed.
REFINE_CROP_SCALE = 2.5
#: Smallest refine crop or search tile in pixels; a smaller one is upsampled to this size.
REFINE_MIN_CROP = 128
#: Shortest frame side the tile search works on: a thinner strip would be cut into very many
#: tiny tiles, none with room for a hand and the context the hand models need.
MIN_SEARCH_FRAME_SIDE = 64
#: Side of the palm detector's square input (full and lite models): frames no larger than
#: this are already seen at full resolution, so the tile search skips them, and its tiles
#: are never smaller (a smaller tile would only be upsampled).
PALM_DETECTOR_INPUT = 192

_HAND_MODELS = {0: "hand_landmark_lite.tflite", 1: "hand_landmark_full.tflite"}
_PALM_MODELS = {0: "palm_detection_lite.tflite", 1: "palm_detection_full.tflite"}
_POSE_MODELS = {
    0: "pose_landmark_lite.tflite",
    1: "pose_landmark_full.tflite",
    2: "pose_landmark_heavy.tflite",
}


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check a frame and return it as a C-contiguous ``(H, W, 3)`` uint8 RGB array.

    A grayscale frame (``(H, W)`` or ``(H, W, 1)``) is expanded to three equal channels. Empty
    frames, other channel counts and other dtypes raise ``ValueError`` naming the fix.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"image must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 RGB, got dtype {image.dtype}; convert 16-bit or float frames "
            "to 8 bits first (e.g. cv2.convertScaleAbs or (img * 255).astype(np.uint8))"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        if image.size == 0:
            raise ValueError(f"image is empty (shape {image.shape}); pass a decoded camera frame")
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must have shape (H, W, 3) RGB or (H, W) grayscale, got {image.shape}; "
            "drop an alpha channel with image[..., :3] (and convert BGR(A) to RGB)"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape}); pass a decoded camera frame")
    return np.ascontiguousarray(image)


def bundled_model_dir() -> Path:
    """Directory of the ``mediapipe`` package whose ``modules/`` holds the bundled models."""
    try:
        import mediapipe
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the default hand detector needs MediaPipe: pip install 'fasthmr_ros[detect]' "
            "(mediapipe==0.10.18), or pass hand boxes from another source"
        ) from error
    return Path(mediapipe.__file__).resolve().parent


def _require_bundled(relative: str) -> None:
    path = bundled_model_dir() / "modules" / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"MediaPipe model {relative} is not in the installed wheel ({path}); this package "
            "never downloads models at run time: choose a model complexity whose file is "
            "bundled (hand 0 or 1, pose 1 in mediapipe 0.10.18) or copy the file there"
        )


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


@dataclass
class PoseLandmarks:
    """MediaPipe Pose's 33 BlazePose landmarks of one person.

    ``image`` in pixels of the frame, ``world`` in metres (origin between the hips, axes those
    of the camera: x right, y down, z away from the camera), ``visibility`` 0-1 per landmark.
    """

    image: np.ndarray  # (33, 2)
    world: np.ndarray  # (33, 3)
    visibility: np.ndarray  # (33,)
    #: ``(H, W)`` float32 0-1 person mask when the graph runs with ``segmentation``.
    mask: np.ndarray | None = None


class MediaPipePose:
    """The bundled MediaPipe Pose graph (one person per call), shared by hands and bodies.

    Args:
        model_complexity: pose landmark model; only 1 (full) is bundled in 0.10.18.
        min_confidence: person detection and pose presence threshold.
        video_mode: track the person from the previous frame (consecutive frames only).
        segmentation: also return the person's segmentation mask (a little slower).

    """

    def __init__(
        self,
        *,
        model_complexity: int = 1,
        min_confidence: float = 0.5,
        video_mode: bool = False,
        segmentation: bool = False,
    ) -> None:
        if model_complexity not in _POSE_MODELS:
            raise ValueError(f"pose_model_complexity must be 0, 1 or 2, got {model_complexity}")
        self.model_complexity = int(model_complexity)
        self.min_confidence = _check_unit("min_pose_confidence", min_confidence)
        self.video_mode = bool(video_mode)
        self.segmentation = bool(segmentation)
        _require_bundled("pose_detection/pose_detection.tflite")
        _require_bundled(f"pose_landmark/{_POSE_MODELS[self.model_complexity]}")
        from mediapipe.python.solutions import pose as mp_pose

        self._graph: Any = mp_pose.Pose(
            static_image_mode=not self.video_mode,
            model_complexity=self.model_complexity,
            min_detection_confidence=self.min_confidence,
            min_tracking_confidence=self.min_confidence,
            enable_segmentation=self.segmentation,
        )

    def landmarks(self, image_rgb: np.ndarray) -> PoseLandmarks | None:
        """The landmarks of the most prominent person in the frame, or ``None``."""
        if self._graph is None:
            raise RuntimeError("the pose graph was closed; create a new MediaPipePose")
        rgb = as_rgb_uint8(image_rgb)
        result = self._graph.process(rgb)
        if result.pose_landmarks is None:
            return None
        height, width = rgb.shape[:2]
        marks = result.pose_landmarks.landmark
        image = np.array([[p.x * width, p.y * height] for p in marks], dtype=np.float64)
        visibility = np.array([p.visibility for p in marks], dtype=np.float64)
        if result.pose_world_landmarks is not None:
            world = np.array(
                [[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark], dtype=np.float64
            )
        else:  # pragma: no cover - the legacy graph always fills both
            world = np.full((len(marks), 3), np.nan)
        mask = None
        if self.segmentation and result.segmentation_mask is not None:
            mask = np.asarray(result.segmentation_mask, dtype=np.float32)
        return PoseLandmarks(image=image, world=world, visibility=visibility, mask=mask)

    def close(self) -> None:
        """Release the graph."""
        if self._graph is not None:
            self._graph.close()
        self._graph = None


class MediaPipeHandDetector:
    """Hand boxes with side, score and 21 landmarks from MediaPipe hands + pose.

    Args:
        max_hands: most hands returned per frame (best scores first).
        min_detection_confidence: palm detector score threshold.
        min_landmark_confidence: hand-presence threshold of the hand landmark model.
        hand_model_complexity: 0 (lite) or 1 (full) palm and hand landmark models.
        use_pose: also run the pose model and add or confirm hands from the arms.
        min_pose_confidence: person detection and pose presence threshold.
        min_arm_visibility: pose visibility a wrist and its knuckles need to make a box.
        pose_model_complexity: pose landmark model; only 1 (full) is bundled in 0.10.18.
        refine_pose_hands: look again, through a crop, at arm boxes the palm detector missed.
        search_tiles: also search overlapping square tiles of the frame for hands too small
            for the full-frame pass (costs about one full-frame pass per tile: 12 tiles on a
            640x480 frame with the default tile settings).
        search_tile_fraction: tile side as a fraction of the frame's shorter side; a hand is
            found reliably when it spans at least about a third of a tile.
        search_tile_overlap: least overlap of neighbouring tiles, as a fraction of the side.
        search_min_presence: hand-presence threshold of the hand landmark model for hands
            found in tiles (strict: most of what a zoomed-in palm detector adds is not a hand).
        search_min_handedness: hand-classifier score a hand found in a tile needs.
        search_max_overlap: a hand found in a tile is dropped when it overlaps a hand already
            found by this share of the smaller box (same hand, part of it, or an interlaced
            hand whose side the landmark model cannot read).
        mirrored_input: frames are mirrored (selfie view) rather than from an ordinary camera.
        video_mode: let MediaPipe track landmarks from the previous frame (faster on streams;
            frames must then be consecutive images of one camera).
        duplicate_iou: IoU above which two hand-landmark boxes are the same hand.
        arm_match_overlap: share of the smaller box covered by the intersection above which a
            hand-landmark box and an arm box are the same hand.
        palm_side_min_score: hand-classifier score above which its side beats the arm's.
        pose_box_scale: half side of an arm box in wrist-to-knuckle distances.
        pose: a :class:`MediaPipePose` to share (e.g. with a person detector) instead of
            creating one; the caller then owns it (``close`` leaves it open).

    """

    def __init__(
        self,
        *,
        max_hands: int = 4,
        min_detection_confidence: float = 0.5,
        min_landmark_confidence: float = 0.5,
        hand_model_complexity: int = 1,
        use_pose: bool = True,
        min_pose_confidence: float = 0.5,
        min_arm_visibility: float = 0.5,
        pose_model_complexity: int = 1,
        refine_pose_hands: bool = True,
        search_tiles: bool = False,
        search_tile_fraction: float = 0.5,
        search_tile_overlap: float = 0.25,
        search_min_presence: float = 0.9,
        search_min_handedness: float = 0.9,
        search_max_overlap: float = 0.25,
        mirrored_input: bool = False,
        video_mode: bool = False,
        duplicate_iou: float = 0.5,
        arm_match_overlap: float = 0.5,
        palm_side_min_score: float = 0.9,
        pose_box_scale: float = 1.0,
        pose: MediaPipePose | None = None,
    ) -> None:
        if int(max_hands) < 1:
            raise ValueError(f"max_hands must be at least 1, got {max_hands}")
        if hand_model_complexity not in _HAND_MODELS:
            raise ValueError(
                f"hand_model_complexity must be 0 (lite) or 1 (full), got {hand_model_complexity}"
            )
        if pose_model_complexity not in _POSE_MODELS:
            raise ValueError(
                f"pose_model_complexity must be 0, 1 or 2, got {pose_model_complexity}"
            )
        if pose_box_scale <= 0:
            raise ValueError(f"pose_box_scale must be positive, got {pose_box_scale}")
        if not 0.0 < search_tile_fraction <= 1.0:
            raise ValueError(
                f"search_tile_fraction must be in (0, 1], got {search_tile_fraction}"
            )
        if not 0.0 <= search_tile_overlap <= 0.9:
            raise ValueError(f"search_tile_overlap must be in [0, 0.9], got {search_tile_overlap}")
        self.max_hands = int(max_hands)
        self.min_detection_confidence = _check_unit(
            "min_detection_confidence", min_detection_confidence
        )
        self.min_landmark_confidence = _check_unit(
            "min_landmark_confidence", min_landmark_confidence
        )
        self.min_pose_confidence = _check_unit("min_pose_confidence", min_pose_confidence)
        self.min_arm_visibility = _check_unit("min_arm_visibility", min_arm_visibility)
        self.duplicate_iou = _check_unit("duplicate_iou", duplicate_iou)
        self.arm_match_overlap = _check_unit("arm_match_overlap", arm_match_overlap)
        self.palm_side_min_score = float(palm_side_min_score)
        self.hand_model_complexity = int(hand_model_complexity)
        self.pose_model_complexity = int(pose_model_complexity)
        self.use_pose = bool(use_pose)
        self.refine_pose_hands = bool(refine_pose_hands)
        self.mirrored_input = bool(mirrored_input)
        self.video_mode = bool(video_mode)
        self.pose_box_scale = float(pose_box_scale)
        self.search_tiles = bool(search_tiles)
        self.search_tile_fraction = float(search_tile_fraction)
        self.search_tile_overlap = float(search_tile_overlap)
        self.search_min_presence = _check_unit("search_min_presence", search_min_presence)
        self.search_min_handedness = _check_unit("search_min_handedness", search_min_handedness)
        self.search_max_overlap = _check_unit("search_max_overlap", search_max_overlap)

        _require_bundled(f"palm_detection/{_PALM_MODELS[self.hand_model_complexity]}")
        _require_bundled(f"hand_landmark/{_HAND_MODELS[self.hand_model_complexity]}")

        from mediapipe.python.solutions import hands as mp_hands

        self._hands = mp_hands.Hands(
            static_image_mode=not self.video_mode,
            max_num_hands=self.max_hands,
            model_complexity=self.hand_model_complexity,
            min_detection_confidence=self.min_detection_confidence,
            min_tracking_confidence=self.min_landmark_confidence,
        )
        self._pose: MediaPipePose | None = None
        self._owns_pose = pose is None
        self._refiner: Any = None
        self._searcher: Any = None
        if self.search_tiles:
            self._searcher = mp_hands.Hands(
                static_image_mode=True,
                max_num_hands=self.max_hands,
                model_complexity=self.hand_model_complexity,
                min_detection_confidence=self.min_detection_confidence,
                min_tracking_confidence=self.search_min_presence,
            )
        if self.use_pose:
            self._pose = pose or MediaPipePose(
                model_complexity=self.pose_model_complexity,
                min_confidence=self.min_pose_confidence,
                video_mode=self.video_mode,
            )
            if self.refine_pose_hands:
                self._refiner = mp_hands.Hands(
                    static_image_mode=True,
                    max_num_hands=2,
                    model_complexity=self.hand_model_complexity,
                    min_detection_confidence=self.min_detection_confidence,
                    min_tracking_confidence=self.min_landmark_confidence,
                )

    # -- public API ---------------------------------------------------------------------------

    def detect(self, image_rgb: np.ndarray) -> list[HandBox]:
        """Detect hands in an ``(H, W, 3)`` uint8 RGB frame (grayscale is accepted too).

        Returns tight boxes in pixels, best score first, at most ``max_hands``. ``source`` is
        ``"palm"`` (hand landmark model only), ``"pose"`` (from an arm only, no keypoints) or
        ``"fused"`` (both).
        """
        self._check_open()
        rgb = as_rgb_uint8(image_rgb)
        palm = self._palm_boxes(self._hands, rgb, offset=(0.0, 0.0), scale=1.0)
        if self._searcher is not None:
            palm = add_unseen_hands(
                palm, self._tile_boxes(rgb), self.search_min_handedness, self.search_max_overlap
            )
        if self._pose is None:
            return palm[: self.max_hands]
        arms = self._arm_boxes(rgb)
        if self._refiner is not None:
            matched = {j for _, j in match_boxes(palm, arms, self.arm_match_overlap)}
            for j, arm in enumerate(arms):
                if j not in matched:
                    palm.extend(self._look_again(rgb, arm))
            palm = suppress_duplicates(palm, self.duplicate_iou)
        fused = fuse_hand_boxes(palm, arms, self.arm_match_overlap, self.palm_side_min_score)
        return fused[: self.max_hands]

    def palm_boxes(self, image_rgb: np.ndarray) -> list[HandBox]:
        """Hands found by the palm detector and hand landmark model alone (for diagnosis)."""
        self._check_open()
        return self._palm_boxes(self._hands, as_rgb_uint8(image_rgb), (0.0, 0.0), 1.0)

    def tile_boxes(self, image_rgb: np.ndarray) -> list[HandBox]:
        """Every hand the tile search finds, before it is checked against other hands.

        For diagnosis; needs ``search_tiles``. Duplicates from overlapping tiles are kept.
        """
        self._check_open()
        if self._searcher is None:
            raise RuntimeError(
                "tile boxes need the tile search: create the detector with search_tiles=True"
            )
        return self._tile_boxes(as_rgb_uint8(image_rgb))

    def arm_boxes(self, image_rgb: np.ndarray) -> list[HandBox]:
        """Hand boxes hung on the arms of the pose model alone (for diagnosis)."""
        self._check_open()
        if self._pose is None:
            raise RuntimeError("arm boxes need the pose model: create the detector with use_pose")
        return self._arm_boxes(as_rgb_uint8(image_rgb))

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for graph in (self._hands, self._refiner, self._searcher):
            if graph is not None:
                graph.close()
        if self._pose is not None and self._owns_pose:
            self._pose.close()
        self._hands = self._pose = self._refiner = self._searcher = None

    def __enter__(self) -> MediaPipeHandDetector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._hands is None:
            raise RuntimeError("the detector was closed; create a new MediaPipeHandDetector")

    # -- sources ------------------------------------------------------------------------------

    def _side_from_handedness(self, label: str) -> str:
        """MediaPipe's label is the side in a mirrored image: flip it for ordinary cameras."""
        side = RIGHT if label.lower() == "right" else LEFT
        if self.mirrored_input:
            return side
        return LEFT if side == RIGHT else RIGHT

    def _side_from_pose(self, arm: str) -> str:
        """Pose sides are the person's own sides in the image: flip them for mirrored input."""
        if not self.mirrored_input:
            return arm
        return LEFT if arm == RIGHT else RIGHT

    def _palm_boxes(
        self, graph: Any, rgb: np.ndarray, offset: tuple[float, float], scale: float
    ) -> list[HandBox]:
        """Run a hands graph; landmarks are mapped by ``offset + pixel / scale``."""
        result = graph.process(rgb)
        height, width = rgb.shape[:2]
        boxes: list[HandBox] = []
        landmarks = result.multi_hand_landmarks or []
        handedness = result.multi_handedness or []
        # Metric landmarks (metres, hand-centred, camera axes): what the landmark fit needs.
        world = getattr(result, "multi_hand_world_landmarks", None) or [None] * len(landmarks)
        for hand, label, metric in zip(landmarks, handedness, world, strict=True):
            points = np.array([[p.x * width, p.y * height] for p in hand.landmark])
            points = points / scale + np.asarray(offset)
            category = label.classification[0]
            box = hand_box_from_keypoints(
                points, self._side_from_handedness(category.label), category.score,
                world_landmarks=None if metric is None else np.array(
                    [[p.x, p.y, p.z] for p in metric.landmark]),
            )
            if box is not None:
                boxes.append(box)
        return boxes

    def _arm_boxes(self, rgb: np.ndarray) -> list[HandBox]:
        """Hand boxes hung on the arms found by the pose model."""
        assert self._pose is not None
        marks = self._pose.landmarks(rgb)
        if marks is None:
            return []
        height, width = rgb.shape[:2]
        boxes: list[HandBox] = []
        for arm, ids in POSE_ARM_LANDMARKS.items():
            visibility = [float(marks.visibility[i]) for i in ids]
            if min(visibility[:3]) < self.min_arm_visibility:
                continue
            wrist, pinky, index, thumb = (marks.image[i] for i in ids)
            box = hand_box_from_arm(
                wrist, index, pinky, thumb,
                side=self._side_from_pose(arm),
                score=float(np.mean(visibility)),
                image_size=(height, width),
                scale=self.pose_box_scale,
            )
            if box is not None:
                boxes.append(box)
        return boxes

    def _look_again(self, rgb: np.ndarray, arm: HandBox) -> list[HandBox]:
        """Run the hand landmark model on a crop around an arm box the palm detector missed."""
        height, width = rgb.shape[:2]
        centre = 0.5 * (arm.xyxy[:2] + arm.xyxy[2:])
        half = 0.5 * REFINE_CROP_SCALE * max(arm.x2 - arm.x1, arm.y2 - arm.y1)
        x1, y1 = (int(max(0.0, np.floor(c - half))) for c in centre)
        x2 = int(min(width, np.ceil(centre[0] + half)))
        y2 = int(min(height, np.ceil(centre[1] + half)))
        found = self._boxes_in_window(self._refiner, rgb, (x1, y1, x2, y2))
        return [found[i] for i, _ in match_boxes(found, [arm], self.arm_match_overlap)]

    def _tile_boxes(self, rgb: np.ndarray) -> list[HandBox]:
        """Hands found by the search graph in each tile of the frame, in frame pixels."""
        height, width = rgb.shape[:2]
        if max(height, width) <= PALM_DETECTOR_INPUT or min(height, width) < MIN_SEARCH_FRAME_SIDE:
            return []
        tiles = square_tiles(
            height, width, self.search_tile_fraction, self.search_tile_overlap,
            min_side=PALM_DETECTOR_INPUT,
        )
        return [
            box for tile in tiles for box in self._boxes_in_window(self._searcher, rgb, tile.xyxy)
        ]

    def _boxes_in_window(
        self, graph: Any, rgb: np.ndarray, window: tuple[int, int, int, int]
    ) -> list[HandBox]:
        """Run a hands graph on ``rgb[y1:y2, x1:x2]``, upsampled to at least REFINE_MIN_CROP."""
        x1, y1, x2, y2 = window
        if x2 - x1 < 2 or y2 - y1 < 2:
            return []
        crop = rgb[y1:y2, x1:x2]
        scale = max(1.0, REFINE_MIN_CROP / min(crop.shape[:2]))
        if scale > 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        return self._palm_boxes(graph, np.ascontiguousarray(crop), offset=(x1, y1), scale=scale)
