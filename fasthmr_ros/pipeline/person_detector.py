"""Default person detector: MediaPipe's bundled Pose model, several people per frame.

MediaPipe's legacy Pose graph (bundled in the wheel, nothing downloaded) finds one person per
call. To find several, the detector runs it again on the frame with every person found so far
painted over (the pixels of their segmentation mask, slightly dilated, filled with the frame's
mean colour), until it finds nobody new or ``max_people`` are found. When the painted frame
shows nobody new, the left and right ``search_window`` shares of it are tried as crops: the
Pose detector letterboxes its input to a square, so a person who is small or cut by the frame
edge (on ``test1.jpg`` of the shared photos, a woman seen from behind) is found in a crop but
not in the whole frame. Each try costs one Pose run (20-60 ms on 2 CPU cores).

Every :class:`~fasthmr_ros.pipeline.results.PersonBox` carries the 33 image landmarks
(pixels), the 33 world landmarks (metres, camera axes, origin between the hips) and their
visibilities; its box encloses the visible landmarks with a margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from fasthmr_ros.pipeline.hand_fusion import iou_matrix
from fasthmr_ros.pipeline.mediapipe_detector import MediaPipePose, PoseLandmarks, as_rgb_uint8
from fasthmr_ros.pipeline.pose_landmarks import LEFT_SHOULDER, NOSE, RIGHT_SHOULDER
from fasthmr_ros.pipeline.results import PersonBox


def person_box_from_landmarks(
    marks: PoseLandmarks,
    image_size: tuple[int, int],
    min_visibility: float = 0.5,
    margin: float = 0.1,
    source: str = "pose",
) -> PersonBox | None:
    """The box around a person's visible landmarks, or ``None`` when too few are visible.

    The box is enlarged by ``margin`` of its size on every side, reaches above the nose by half
    the nose-to-shoulder distance (the landmarks stop at the eyes) and is clipped to the image
    (``image_size`` is ``(height, width)``).
    """
    height, width = image_size
    visible = marks.visibility >= min_visibility
    points = marks.image[visible & np.isfinite(marks.image).all(axis=1)]
    if len(points) < 4:
        return None
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    if visible[NOSE] and visible[LEFT_SHOULDER] and visible[RIGHT_SHOULDER]:
        shoulders = 0.5 * (marks.image[LEFT_SHOULDER] + marks.image[RIGHT_SHOULDER])
        y1 = min(y1, marks.image[NOSE, 1] - 0.5 * abs(shoulders[1] - marks.image[NOSE, 1]))
    pad_x, pad_y = margin * (x2 - x1), margin * (y2 - y1)
    x1, x2 = max(0.0, x1 - pad_x), min(float(width), x2 + pad_x)
    y1, y2 = max(0.0, y1 - pad_y), min(float(height), y2 + pad_y)
    if x2 - x1 < 2.0 or y2 - y1 < 2.0:
        return None
    return PersonBox(
        float(x1), float(y1), float(x2), float(y2),
        score=float(np.mean(marks.visibility)),
        keypoints_2d=marks.image.copy(),
        world_landmarks=marks.world.copy(),
        visibility=marks.visibility.copy(),
        source=source,
    )


class MediaPipePersonDetector:
    """People with boxes and 33 BlazePose landmarks from the bundled MediaPipe Pose model.

    Args:
        max_people: most people returned per frame (each costs one more Pose run).
        min_confidence: person detection and pose presence threshold.
        min_visibility: landmark visibility counted for the box (and for the fit).
        box_margin: margin added around the visible landmarks, as a share of the box size.
        duplicate_iou: a person overlapping one already found by this IoU is the same person
            seen again through the paint (the search stops).
        mask_threshold: segmentation score above which a pixel belongs to a found person.
        mask_dilation: the painted mask grows by this share of the person box's diagonal
            (hair and loose clothes the mask misses would be found as a new person).
        search_window: width share of the side crops tried when the painted frame shows
            nobody new (0 turns the side search off).
        model_complexity: pose landmark model; only 1 (full) is bundled in 0.10.18.
        crop_margin: :meth:`landmarks_in_boxes` runs Pose on each external box enlarged by
            this share of its size on every side.
        pose: a :class:`~fasthmr_ros.pipeline.mediapipe_detector.MediaPipePose` to share (it
            must run in static-image mode: painting people over breaks video tracking); the
            caller then owns it.

    """

    def __init__(
        self,
        *,
        max_people: int = 4,
        min_confidence: float = 0.5,
        min_visibility: float = 0.5,
        box_margin: float = 0.1,
        duplicate_iou: float = 0.3,
        mask_threshold: float = 0.5,
        mask_dilation: float = 0.03,
        search_window: float = 0.5,
        model_complexity: int = 1,
        crop_margin: float = 0.2,
        pose: MediaPipePose | None = None,
    ) -> None:
        if int(max_people) < 1:
            raise ValueError(f"max_people must be at least 1, got {max_people}")
        if not 0.0 <= box_margin <= 1.0:
            raise ValueError(f"box_margin must be in [0, 1], got {box_margin}")
        if pose is not None and (pose.video_mode or not pose.segmentation):
            raise ValueError(
                "the person detector paints found people over and runs Pose again, which needs "
                "a MediaPipePose with video_mode=False and segmentation=True"
            )
        self.max_people = int(max_people)
        self.min_visibility = float(min_visibility)
        self.box_margin = float(box_margin)
        self.duplicate_iou = float(duplicate_iou)
        self._owns_pose = pose is None
        if not 0.0 <= search_window <= 1.0:
            raise ValueError(f"search_window must be in [0, 1], got {search_window}")
        self.search_window = float(search_window)
        if not 0.0 <= crop_margin <= 1.0:
            raise ValueError(f"crop_margin must be in [0, 1], got {crop_margin}")
        self.crop_margin = float(crop_margin)
        self.mask_threshold = float(mask_threshold)
        self.mask_dilation = float(mask_dilation)
        self.pose = pose or MediaPipePose(
            model_complexity=model_complexity, min_confidence=min_confidence, segmentation=True
        )

    def detect(self, image_rgb: np.ndarray) -> list[PersonBox]:
        """Find up to ``max_people`` people in an ``(H, W, 3)`` uint8 RGB frame, best first."""
        rgb = as_rgb_uint8(image_rgb)
        height, width = rgb.shape[:2]
        fill = rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8)
        work = rgb
        people: list[PersonBox] = []
        while len(people) < self.max_people:
            found = self._find_new(work, people, (height, width))
            if found is None:
                break
            marks, person = found
            people.append(person)
            if len(people) == self.max_people:
                break
            if work is rgb:
                work = rgb.copy()
            work[self._paint_mask(marks, person, (height, width))] = fill
        people.sort(key=lambda p: p.score, reverse=True)
        return people

    def _find_new(
        self, work: np.ndarray, people: list[PersonBox], image_size: tuple[int, int]
    ) -> tuple[PoseLandmarks, PersonBox] | None:
        """Run Pose on the (painted) frame, then on its side windows, until a new person."""
        height, width = image_size
        side = int(round(self.search_window * width))
        windows = [(0, width)]
        if people and 0 < side < width:
            windows += [(0, side), (width - side, width)]
        for x1, x2 in windows:
            marks = self._pose_in_window(work, (x1, 0, x2, height))
            if marks is None:
                continue
            person = person_box_from_landmarks(
                marks, image_size, self.min_visibility, self.box_margin
            )
            if person is not None and not self._seen(person, people):
                person.mask = marks.mask
                return marks, person
        return None

    def _pose_in_window(
        self, rgb: np.ndarray, window: tuple[int, int, int, int]
    ) -> PoseLandmarks | None:
        """Run Pose on the pixel window ``(x1, y1, x2, y2)``; landmarks and mask in the frame."""
        height, width = rgb.shape[:2]
        x1, y1, x2, y2 = window
        whole = (x1, y1, x2, y2) == (0, 0, width, height)
        marks = self.pose.landmarks(rgb if whole else np.ascontiguousarray(rgb[y1:y2, x1:x2]))
        if marks is None or whole:
            return marks
        marks.image += np.array([x1, y1], dtype=marks.image.dtype)
        if marks.mask is not None:
            full = np.zeros((height, width), dtype=np.float32)
            full[y1:y2, x1:x2] = marks.mask
            marks.mask = full
        return marks

    def landmarks_in_boxes(
        self, image_rgb: np.ndarray, people: Sequence[PersonBox]
    ) -> list[PersonBox]:
        """Give boxes from another detector (a topic, ``--boxes``) MediaPipe Pose landmarks.

        For each person without world landmarks, Pose runs once on the box enlarged by
        ``crop_margin`` of its size on every side (clipped to the frame): the crop shows the
        person large and alone, as the side-window search does. The person keeps its box, score
        and source and gains the 33 image and world landmarks, their visibilities and the
        segmentation mask. A person Pose finds nothing in is returned unchanged (estimators
        that need landmarks then skip it and say why); people that already have landmarks
        are returned as they are.
        """
        rgb = as_rgb_uint8(image_rgb)
        height, width = rgb.shape[:2]
        refined = []
        for person in people:
            if person.world_landmarks is not None:
                refined.append(person)
                continue
            pad_x = self.crop_margin * (person.x2 - person.x1)
            pad_y = self.crop_margin * (person.y2 - person.y1)
            x1, y1 = max(0, int(person.x1 - pad_x)), max(0, int(person.y1 - pad_y))
            x2 = min(width, int(np.ceil(person.x2 + pad_x)))
            y2 = min(height, int(np.ceil(person.y2 + pad_y)))
            marks = self._pose_in_window(rgb, (x1, y1, x2, y2)) if (
                x2 - x1 >= 2 and y2 - y1 >= 2) else None
            if marks is None:
                refined.append(person)
                continue
            refined.append(replace(person, keypoints_2d=marks.image.copy(),
                                   world_landmarks=marks.world.copy(),
                                   visibility=marks.visibility.copy(), mask=marks.mask))
        return refined

    def _paint_mask(
        self, marks: PoseLandmarks, person: PersonBox, image_size: tuple[int, int]
    ) -> np.ndarray:
        """Pixels to paint over: the dilated segmentation mask (the box if there is none)."""
        height, width = image_size
        if marks.mask is None or marks.mask.shape != (height, width):
            mask = np.zeros((height, width), dtype=bool)
            x1, y1 = int(person.x1), int(person.y1)
            mask[y1:int(np.ceil(person.y2)), x1:int(np.ceil(person.x2))] = True
            return mask
        mask = (marks.mask > self.mask_threshold).astype(np.uint8)
        radius = int(round(self.mask_dilation * float(np.hypot(person.x2 - person.x1,
                                                                person.y2 - person.y1))))
        if radius > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
            mask = cv2.dilate(mask, kernel)
        return mask.astype(bool)

    def _seen(self, person: PersonBox, people: list[PersonBox]) -> bool:
        if not people:
            return False
        overlap = iou_matrix(person.xyxy[None], np.stack([p.xyxy for p in people]))
        return bool(overlap.max() >= self.duplicate_iou)

    def close(self) -> None:
        """Release the Pose graph (unless it was shared in)."""
        if self._owns_pose:
            self.pose.close()

    def __enter__(self) -> MediaPipePersonDetector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
