"""Hand reconstruction metrics, computed exactly as the FreiHAND evaluation script computes them.

Reference: ``eval.py`` of github.com/lmb-freiburg/freihand (re-used unchanged by the HO3D
challenge, github.com/shreyashampali/ho3d, and by DexYCB's ``hpe_eval.py``). Each point set is
one sample, in metres; results are reported in millimetres.

**Procrustes alignment** (:func:`procrustes_align`, FreiHAND's ``align_w_scale``): both sets are
centred on their means, each is divided by its Frobenius norm plus ``1e-8``, and
``R, s = scipy.linalg.orthogonal_procrustes(reference, points)`` is solved, i.e.
``U, w, Vt = svd(referenceᵀ · points)``, ``R = U · Vt``, ``s = sum(w)``. The aligned prediction
is ``(points · Rᵀ) · s · ‖reference‖ + mean(reference)``. This is the optimal similarity
transform (rotation, isotropic scale, translation) **with reflections allowed**: ``R`` is any
orthogonal matrix, ``det(R)`` may be ``-1``, so a mirrored prediction aligns perfectly and
scores zero error. HMR-style ``compute_similarity_transform`` (4D-Humans) instead forces
``det(R) = +1``; we follow FreiHAND. A prediction that collapses to one point (e.g. all zeros)
is well defined: its normalised set is zero, ``s = 0``, and every aligned point lands on the
reference mean (FreiHAND's README quotes 4.87 cm aligned keypoint error for all-zero
predictions). The epsilon also means an identical prediction is shrunk by about
``2e-8 / ‖reference‖``: a few nanometres of error, reproduced as the script computes it.

**Vertices** are aligned with their own Procrustes transform when the prediction has the
reference's vertex count (MANO topology, 778); otherwise the joints' transform is re-used via
FreiHAND's ``align_by_trafo`` (:func:`apply_procrustes_transform`), quirk included: it re-centres
the vertices on their own mean before adding the joints' mean offset.

**Errors** are Euclidean distances per keypoint; like FreiHAND's ``EvalUtil`` each keypoint is
averaged over the samples first, then the keypoint means are averaged (all keypoints visible).

**F-score** at a threshold ``t`` is computed on vertices only, per sample: for every reference
vertex the distance to the nearest predicted vertex and vice versa; the share of each below
``t`` (strict ``<``); ``F = 2·P·R / (P + R)`` (0 when both are 0); averaged over samples.
FreiHAND reports it unaligned and after alignment; papers quote the aligned value (``f5``,
``f15`` here). FreiHAND computes nearest-neighbour distances with Open3D; a k-d tree gives the
same exact Euclidean distances.

**AUC** of the PCK curve over ``linspace(0, 0.05, 100)`` m uses ``<=`` (as ``EvalUtil``),
trapezoidal integration normalised by the threshold range, per keypoint, then averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

#: Thresholds (metres) of the F-scores FreiHAND reports.
FSCORE_THRESHOLDS_M: tuple[float, float] = (0.005, 0.015)
#: PCK thresholds (metres) of FreiHAND's AUC: ``linspace(0, 0.05, 100)``.
AUC_THRESHOLDS_M: np.ndarray = np.linspace(0.0, 0.05, 100)
#: Added to each set's norm before dividing, as FreiHAND does.
NORM_EPSILON: float = 1e-8

ProgressWrapper = Callable[[Iterable[int]], Iterable[int]]


@dataclass(frozen=True)
class ProcrustesTransform:
    """FreiHAND's ``return_trafo`` tuple ``(R, s, s1, t1 - t2)`` for one sample.

    ``rotation`` is orthogonal (it may be a reflection), ``scale`` is the Procrustes scale of
    the normalised sets, ``reference_norm`` the reference's Frobenius norm (plus epsilon) and
    ``offset`` the reference mean minus the aligned set's mean.
    """

    rotation: np.ndarray
    scale: float
    reference_norm: float
    offset: np.ndarray


def _as_point_sets(name: str, points: np.ndarray | Iterable) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim < 2 or array.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., K, 3), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_same_shape(reference: np.ndarray, points: np.ndarray) -> None:
    if reference.shape != points.shape:
        raise ValueError(
            f"reference and prediction shapes differ: {reference.shape} vs {points.shape}"
        )


def _solve_procrustes(
    reference: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batched ``align_w_scale`` internals: normalised sets, R, s, norms and means."""
    ref_mean = reference.mean(axis=-2, keepdims=True)
    pts_mean = points.mean(axis=-2, keepdims=True)
    ref_centred = reference - ref_mean
    pts_centred = points - pts_mean
    ref_norm = np.linalg.norm(ref_centred, axis=(-2, -1), keepdims=True) + NORM_EPSILON
    pts_norm = np.linalg.norm(pts_centred, axis=(-2, -1), keepdims=True) + NORM_EPSILON
    ref_unit = ref_centred / ref_norm
    pts_unit = pts_centred / pts_norm
    # scipy.linalg.orthogonal_procrustes(A, B): U, w, Vt = svd(A^T B); R = U Vt; s = sum(w).
    u, w, vt = np.linalg.svd(np.swapaxes(ref_unit, -1, -2) @ pts_unit)
    rotation = u @ vt
    scale = w.sum(axis=-1)
    return pts_unit, rotation, scale, ref_norm, ref_mean, pts_mean


def procrustes_align(reference: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Align ``points`` to ``reference`` as FreiHAND's ``align_w_scale`` does.

    Args:
        reference: ground truth, shape ``(K, 3)`` or batched ``(N, K, 3)``.
        points: prediction with the same shape.

    Returns:
        The aligned prediction, same shape (float64).

    """
    reference = _as_point_sets("reference", reference)
    points = _as_point_sets("points", points)
    _check_same_shape(reference, points)
    pts_unit, rotation, scale, ref_norm, ref_mean, _ = _solve_procrustes(reference, points)
    aligned = (pts_unit @ np.swapaxes(rotation, -1, -2)) * scale[..., None, None]
    return aligned * ref_norm + ref_mean


def procrustes_transform(reference: np.ndarray, points: np.ndarray) -> ProcrustesTransform:
    """FreiHAND's ``align_w_scale(..., return_trafo=True)`` for one ``(K, 3)`` pair."""
    reference = _as_point_sets("reference", reference)
    points = _as_point_sets("points", points)
    _check_same_shape(reference, points)
    if reference.ndim != 2:
        raise ValueError(f"procrustes_transform takes one (K, 3) set, got {reference.shape}")
    _, rotation, scale, ref_norm, ref_mean, pts_mean = _solve_procrustes(reference, points)
    return ProcrustesTransform(
        rotation=rotation,
        scale=float(scale),
        reference_norm=float(ref_norm.reshape(())),
        offset=(ref_mean - pts_mean).reshape(3),
    )


def apply_procrustes_transform(points: np.ndarray, transform: ProcrustesTransform) -> np.ndarray:
    """Apply a joints' transform to another set, exactly as FreiHAND's ``align_by_trafo``.

    The set is centred on **its own** mean, rotated and scaled, then shifted by the joints'
    ``offset`` and by its own mean again. This is what the script does for predictions whose
    mesh is not MANO's; it differs from applying the similarity transform itself unless the
    set's mean equals the joints' mean.
    """
    points = _as_point_sets("points", points)
    if points.ndim != 2:
        raise ValueError(f"apply_procrustes_transform takes one (V, 3) set, got {points.shape}")
    own_mean = points.mean(axis=0)
    scaled = (points - own_mean) @ transform.rotation.T * transform.scale
    return scaled * transform.reference_norm + transform.offset + own_mean


def keypoint_distances(reference: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Euclidean distance per keypoint: ``(..., K, 3)`` pairs to ``(..., K)``."""
    reference = _as_point_sets("reference", reference)
    points = _as_point_sets("points", points)
    _check_same_shape(reference, points)
    return np.sqrt(np.sum(np.square(reference - points), axis=-1))


def mean_keypoint_error(distances: np.ndarray) -> float:
    """``EvalUtil`` mean: average each keypoint over samples, then over keypoints.

    Args:
        distances: ``(N, K)`` per-sample, per-keypoint distances.

    """
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 2 or distances.shape[0] == 0:
        raise ValueError(f"distances must have shape (N>0, K), got {distances.shape}")
    return float(distances.mean(axis=0).mean())


def pck_auc(distances: np.ndarray, thresholds: np.ndarray = AUC_THRESHOLDS_M) -> float:
    """Area under the PCK curve, as ``EvalUtil.get_measures`` (``<=``, trapezoids, normalised).

    Args:
        distances: ``(N, K)`` per-sample, per-keypoint distances in metres.
        thresholds: increasing thresholds in metres.

    """
    distances = np.asarray(distances, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if distances.ndim != 2 or distances.shape[0] == 0:
        raise ValueError(f"distances must have shape (N>0, K), got {distances.shape}")
    pck = np.stack([(distances <= t).mean(axis=0) for t in thresholds], axis=0)  # (T, K)
    widths = np.diff(thresholds)[:, None]
    area = np.sum((pck[1:] + pck[:-1]) * widths, axis=0) / 2.0
    norm = float(np.sum(widths)) if thresholds.size > 1 else 0.0
    if norm <= 0.0:
        raise ValueError("AUC thresholds must span a positive range")
    return float(np.mean(area / norm))


def root_relative_mpjpe(reference: np.ndarray, points: np.ndarray, root: int = 0) -> float:
    """Mean joint error after subtracting joint ``root`` (the wrist) from each set, in metres."""
    reference = _as_point_sets("reference", reference)
    points = _as_point_sets("points", points)
    _check_same_shape(reference, points)
    ref_rel = reference - reference[..., root : root + 1, :]
    pts_rel = points - points[..., root : root + 1, :]
    distances = keypoint_distances(ref_rel, pts_rel)
    return float(distances.reshape(-1, distances.shape[-1]).mean(axis=0).mean())


@dataclass(frozen=True)
class FScore:
    """F-score of one sample at one threshold.

    ``precision`` is the share of predicted vertices closer than the threshold to the
    reference and ``recall`` the share of reference vertices closer than it to the prediction
    (FreiHAND's script names these two the other way round; F is symmetric).
    """

    f: float
    precision: float
    recall: float


def _fscore_from_distances(
    reference_to_pred: np.ndarray, pred_to_reference: np.ndarray, threshold: float
) -> FScore:
    if reference_to_pred.size == 0 or pred_to_reference.size == 0:
        return FScore(0.0, 0.0, 0.0)
    recall = float(np.count_nonzero(reference_to_pred < threshold)) / reference_to_pred.size
    precision = float(np.count_nonzero(pred_to_reference < threshold)) / pred_to_reference.size
    total = precision + recall
    f = 2.0 * precision * recall / total if total > 0 else 0.0
    return FScore(f, precision, recall)


def nearest_distances(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each point of ``source`` ``(A, 3)``, the distance to the nearest point of ``target``."""
    source = _as_point_sets("source", source)
    target = _as_point_sets("target", target)
    if source.ndim != 2 or target.ndim != 2:
        raise ValueError("nearest_distances takes two single point sets (A, 3) and (B, 3)")
    if source.shape[0] == 0 or target.shape[0] == 0:
        return np.zeros((0,), dtype=np.float64)
    distances, _ = cKDTree(target).query(source, k=1)
    return np.asarray(distances, dtype=np.float64)


def f_score(reference: np.ndarray, points: np.ndarray, threshold: float) -> FScore:
    """FreiHAND's ``calculate_fscore`` for one sample: strict ``<`` at ``threshold`` metres."""
    return _fscore_from_distances(
        nearest_distances(reference, points), nearest_distances(points, reference), threshold
    )


def _f_scores(reference: np.ndarray, points: np.ndarray) -> list[float]:
    ref_to_pred = nearest_distances(reference, points)
    pred_to_ref = nearest_distances(points, reference)
    return [_fscore_from_distances(ref_to_pred, pred_to_ref, t).f for t in FSCORE_THRESHOLDS_M]


@dataclass
class HandEvaluation:
    """FreiHAND-protocol results over a set of samples (millimetres; F-scores in [0, 1]).

    Mesh fields are ``None`` when no vertices were given. ``pa_mpvpe_mm`` and ``mpvpe_mm`` are
    ``None`` when the predicted mesh does not have the reference's vertex count (FreiHAND
    reports -1 then). ``f5``/``f15`` are after alignment, as papers quote them.
    """

    count: int
    pa_mpjpe_mm: float
    mpjpe_rr_mm: float
    mpjpe_mm: float
    auc_pa_joints: float
    pa_mpvpe_mm: float | None = None
    mpvpe_mm: float | None = None
    auc_pa_vertices: float | None = None
    f5: float | None = None
    f15: float | None = None
    f5_unaligned: float | None = None
    f15_unaligned: float | None = None
    vertex_alignment: str | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Plain dictionary, ready for JSON."""
        return asdict(self)


def _identity_progress(indices: Iterable[int]) -> Iterator[int]:
    yield from indices


def evaluate_hands(
    reference_joints: np.ndarray,
    pred_joints: np.ndarray,
    reference_vertices: np.ndarray | None = None,
    pred_vertices: np.ndarray | None = None,
    progress: ProgressWrapper | None = None,
) -> HandEvaluation:
    """Evaluate predictions against a reference with FreiHAND's protocol.

    Args:
        reference_joints: ``(N, 21, 3)`` metres (ground truth, or the teacher).
        pred_joints: ``(N, 21, 3)`` metres, same joint order.
        reference_vertices: ``(N, V, 3)`` metres, or ``None`` for joints only.
        pred_vertices: ``(N, V', 3)`` metres; needed when ``reference_vertices`` is given.
        progress: optional wrapper around the per-sample loop (e.g. ``tqdm``).

    Returns:
        The metrics; see :class:`HandEvaluation`.

    """
    ref_j = _as_point_sets("reference joints", reference_joints)
    pred_j = _as_point_sets("predicted joints", pred_joints)
    if ref_j.ndim != 3:
        raise ValueError(f"joints must have shape (N, K, 3), got {ref_j.shape}")
    _check_same_shape(ref_j, pred_j)
    count = ref_j.shape[0]
    if count == 0:
        raise ValueError("nothing to evaluate: zero samples")

    aligned_j = procrustes_align(ref_j, pred_j)
    pa_joint_dist = keypoint_distances(ref_j, aligned_j)
    result = HandEvaluation(
        count=count,
        pa_mpjpe_mm=1000.0 * mean_keypoint_error(pa_joint_dist),
        mpjpe_rr_mm=1000.0 * root_relative_mpjpe(ref_j, pred_j),
        mpjpe_mm=1000.0 * mean_keypoint_error(keypoint_distances(ref_j, pred_j)),
        auc_pa_joints=pck_auc(pa_joint_dist),
    )
    if reference_vertices is None and pred_vertices is None:
        return result
    if reference_vertices is None or pred_vertices is None:
        raise ValueError("give both reference and predicted vertices, or neither")
    ref_v = _as_point_sets("reference vertices", reference_vertices)
    pred_v = _as_point_sets("predicted vertices", pred_vertices)
    if ref_v.ndim != 3 or pred_v.ndim != 3:
        raise ValueError(
            f"vertices must have shape (N, V, 3), got {ref_v.shape} and {pred_v.shape}"
        )
    if ref_v.shape[0] != count or pred_v.shape[0] != count:
        raise ValueError(
            f"vertex sets count {ref_v.shape[0]} (reference) and {pred_v.shape[0]} "
            f"(prediction) samples but the joints count {count}"
        )

    same_topology = ref_v.shape == pred_v.shape
    if same_topology:
        aligned_v = procrustes_align(ref_v, pred_v)
        pa_vert_dist = keypoint_distances(ref_v, aligned_v)
        result.pa_mpvpe_mm = 1000.0 * mean_keypoint_error(pa_vert_dist)
        result.mpvpe_mm = 1000.0 * mean_keypoint_error(keypoint_distances(ref_v, pred_v))
        result.auc_pa_vertices = pck_auc(pa_vert_dist)
        result.vertex_alignment = "own"
    else:
        aligned_v = np.stack(
            [
                apply_procrustes_transform(pred_v[i], procrustes_transform(ref_j[i], pred_j[i]))
                for i in range(count)
            ]
        )
        result.vertex_alignment = "joints"

    wrap = progress or _identity_progress
    unaligned, aligned = [], []
    for i in wrap(range(count)):
        unaligned.append(_f_scores(ref_v[i], pred_v[i]))
        aligned.append(_f_scores(ref_v[i], aligned_v[i]))
    unaligned_mean = np.mean(np.asarray(unaligned), axis=0)
    aligned_mean = np.mean(np.asarray(aligned), axis=0)
    result.f5, result.f15 = (float(v) for v in aligned_mean)
    result.f5_unaligned, result.f15_unaligned = (float(v) for v in unaligned_mean)
    return result


def teacher_agreement(
    student_joints: np.ndarray,
    teacher_joints: np.ndarray,
    student_vertices: np.ndarray | None = None,
    teacher_vertices: np.ndarray | None = None,
    progress: ProgressWrapper | None = None,
) -> HandEvaluation:
    """Measure how closely a student reproduces its teacher (for unlabelled footage).

    This is the FreiHAND protocol with the teacher's outputs as the reference;
    ``pa_mpjpe_mm`` is the headline number.
    """
    return evaluate_hands(
        teacher_joints, student_joints, teacher_vertices, student_vertices, progress=progress
    )
