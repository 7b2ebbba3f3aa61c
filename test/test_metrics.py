"""FreiHAND-protocol metrics on hand-made cases and against a per-sample scipy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from fasthmr_ros.pipeline.metrics import (
    AUC_THRESHOLDS_M,
    apply_procrustes_transform,
    evaluate_hands,
    f_score,
    keypoint_distances,
    mean_keypoint_error,
    pck_auc,
    procrustes_align,
    procrustes_transform,
    root_relative_mpjpe,
    teacher_agreement,
)


def _hand_like(rng: np.random.Generator, count: int, points: int) -> np.ndarray:
    """Random clouds about the size of a hand, 0.5 m in front of the camera."""
    return rng.normal(scale=0.04, size=(count, points, 3)) + np.array([0.0, 0.0, 0.5])


def _similarity(points: np.ndarray, rotation: np.ndarray, scale: float, shift) -> np.ndarray:
    return scale * points @ rotation.T + np.asarray(shift)


def _reference_align(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-sample reference written from FreiHAND's description, with scipy's solver."""
    gt_mean, pred_mean = gt.mean(0), pred.mean(0)
    g, p = gt - gt_mean, pred - pred_mean
    g_norm = np.linalg.norm(g) + 1e-8
    p_norm = np.linalg.norm(p) + 1e-8
    rot, s = orthogonal_procrustes(g / g_norm, p / p_norm)
    return (p / p_norm) @ rot.T * s * g_norm + gt_mean


def _hmr_style_align(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Umeyama similarity with det(R) fixed to +1 (4D-Humans), to show the difference."""
    mu_g, mu_p = gt.mean(0), pred.mean(0)
    g, p = gt - mu_g, pred - mu_p
    u, w, vt = np.linalg.svd(p.T @ g)
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt))
    rot = vt.T @ d @ u.T
    scale = np.trace(rot @ (p.T @ g)) / np.sum(p**2)
    return scale * p @ rot.T + mu_g


def test_identical_sets_score_perfectly():
    rng = np.random.default_rng(0)
    joints = _hand_like(rng, 4, 21)
    verts = _hand_like(rng, 4, 778)
    result = evaluate_hands(joints, joints.copy(), verts, verts.copy())
    assert result.count == 4
    assert result.mpjpe_mm == 0.0 and result.mpvpe_mm == 0.0
    # FreiHAND adds 1e-8 to both norms, which shrinks an identical set by about 2e-8/|g|:
    # nanometres, reproduced exactly.
    for value in (result.pa_mpjpe_mm, result.pa_mpvpe_mm):
        assert value == pytest.approx(0.0, abs=1e-4)
    reference = np.stack([_reference_align(j, j) for j in joints])
    np.testing.assert_allclose(procrustes_align(joints, joints), reference, atol=1e-15)
    assert result.mpjpe_rr_mm == 0.0
    assert result.f5 == result.f15 == result.f5_unaligned == result.f15_unaligned == 1.0
    # Those nanometres miss only the 0 mm threshold of the PCK curve.
    assert result.auc_pa_joints == pytest.approx(1.0 - 0.5 / 99)
    assert result.vertex_alignment == "own"


def test_known_similarity_transform_vanishes_after_alignment():
    rng = np.random.default_rng(1)
    joints = _hand_like(rng, 3, 21)
    verts = _hand_like(rng, 3, 778)
    rotation = Rotation.from_euler("xyz", [30, -50, 110], degrees=True).as_matrix()
    moved_j = _similarity(joints, rotation, 1.7, [0.1, -0.2, 0.3])
    moved_v = _similarity(verts, rotation, 1.7, [0.1, -0.2, 0.3])
    np.testing.assert_allclose(procrustes_align(joints, moved_j), joints, atol=1e-8)
    transform = procrustes_transform(joints[0], moved_j[0])
    assert np.linalg.det(transform.rotation) == pytest.approx(1.0)
    result = evaluate_hands(joints, moved_j, verts, moved_v)
    assert result.pa_mpjpe_mm < 1e-4 and result.pa_mpvpe_mm < 1e-4
    assert result.f5 == 1.0
    assert result.mpjpe_mm > 100.0  # unaligned: the transform is still there
    assert result.f5_unaligned < 0.05


def test_reflected_prediction_is_aligned_like_freihand_does():
    """FreiHAND's Procrustes allows reflections: a mirror image scores zero error."""
    rng = np.random.default_rng(2)
    joints = _hand_like(rng, 1, 21)[0]
    mirrored = joints * np.array([-1.0, 1.0, 1.0]) + np.array([0.05, 0.0, 0.0])
    aligned = procrustes_align(joints, mirrored)
    np.testing.assert_allclose(aligned, joints, atol=1e-8)
    assert np.linalg.det(procrustes_transform(joints, mirrored).rotation) == pytest.approx(-1.0)
    # A proper-rotation-only alignment cannot undo the mirror: the choice matters.
    hmr_error = keypoint_distances(joints, _hmr_style_align(joints, mirrored)).mean()
    assert hmr_error > 0.01


def test_alignment_matches_scipy_reference_per_sample():
    rng = np.random.default_rng(3)
    gt = _hand_like(rng, 6, 21)
    pred = gt + rng.normal(scale=0.01, size=gt.shape)
    pred[2] *= np.array([1.0, -1.0, 1.0])  # one mirrored sample
    batched = procrustes_align(gt, pred)
    for i in range(len(gt)):
        np.testing.assert_allclose(batched[i], _reference_align(gt[i], pred[i]), atol=1e-12)


def test_all_zero_prediction_collapses_onto_the_reference_mean():
    rng = np.random.default_rng(4)
    gt = _hand_like(rng, 2, 21)
    aligned = procrustes_align(gt, np.zeros_like(gt))
    assert np.all(np.isfinite(aligned))
    np.testing.assert_allclose(aligned, np.broadcast_to(gt.mean(1, keepdims=True), gt.shape))


def test_fscore_threshold_is_strict():
    # Points far apart so each one's nearest neighbour is its own counterpart. Offsets sit on
    # zero coordinates so the distances are exact in floating point.
    gt = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-1.0, 0, 0]])
    offsets = np.array([[0, 0.005, 0], [0, 0, 0.004], [0.0051, 0, 0], [0, 0, 0]])
    pred = gt + offsets
    assert f_score(gt, pred, 0.005).f == pytest.approx(0.5)  # 0.005 itself does not count
    assert f_score(gt, pred, 0.0050000001).f == pytest.approx(0.75)
    assert f_score(gt, pred, 0.015).f == 1.0
    at_boundary = gt + np.array([[0, 0.015, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert f_score(gt, at_boundary, 0.015).f == pytest.approx(0.75)


def test_fscore_precision_and_recall_directions():
    gt = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    pred = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    score = f_score(gt, pred, 0.005)
    assert score.precision == 1.0  # every predicted point is near the ground truth
    assert score.recall == 0.5  # half the ground truth is covered
    assert score.f == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert f_score(gt, pred + 10.0, 0.005).f == 0.0


def test_auc_matches_freihand_definition():
    thresholds = AUC_THRESHOLDS_M
    assert pck_auc(np.zeros((3, 21))) == pytest.approx(1.0)
    # Every error equals the last threshold: PCK (<=) is 1 only at that threshold.
    expected = 0.5 * (thresholds[-1] - thresholds[-2]) / (thresholds[-1] - thresholds[0])
    assert pck_auc(np.full((3, 21), 0.05)) == pytest.approx(expected)
    assert pck_auc(np.full((3, 21), 0.06)) == 0.0


def test_mean_is_per_keypoint_then_over_keypoints():
    distances = np.array([[1.0, 2.0], [3.0, 6.0]])
    assert mean_keypoint_error(distances) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="shape"):
        mean_keypoint_error(np.zeros(3))


def test_root_relative_mpjpe_ignores_translation_only():
    rng = np.random.default_rng(5)
    gt = _hand_like(rng, 3, 21)
    shifted = gt + np.array([0.2, -0.1, 0.05])
    assert root_relative_mpjpe(gt, shifted) == pytest.approx(0.0, abs=1e-15)
    bent = shifted.copy()
    bent[:, 8] += np.array([0.0, 0.021, 0.0])  # index tip 21 mm off in every sample
    assert root_relative_mpjpe(gt, bent) == pytest.approx(0.021 / 21)


def test_other_topology_reuses_joint_transform_like_align_by_trafo():
    rng = np.random.default_rng(6)
    gt_j = _hand_like(rng, 2, 21)
    gt_v = _hand_like(rng, 2, 778)
    pred_j = gt_j + rng.normal(scale=0.005, size=gt_j.shape)
    pred_v = _hand_like(rng, 2, 500)
    transform = procrustes_transform(gt_j[0], pred_j[0])
    # FreiHAND: R, s, s1, t = trafo; (v - mean(v)) R^T s s1 + t + mean(v).
    ours = apply_procrustes_transform(pred_v[0], transform)
    mean_v = pred_v[0].mean(0)
    expected = (pred_v[0] - mean_v) @ transform.rotation.T * transform.scale
    expected = expected * transform.reference_norm + transform.offset + mean_v
    np.testing.assert_allclose(ours, expected, atol=1e-15)
    result = evaluate_hands(gt_j, pred_j, gt_v, pred_v)
    assert result.vertex_alignment == "joints"
    assert result.pa_mpvpe_mm is None and result.mpvpe_mm is None
    assert result.f5 is not None and 0.0 <= result.f15 <= 1.0


def test_evaluation_matches_reference_on_noisy_predictions():
    rng = np.random.default_rng(7)
    gt_j, gt_v = _hand_like(rng, 5, 21), _hand_like(rng, 5, 778)
    rot = Rotation.from_euler("z", 20, degrees=True).as_matrix()
    pred_j = _similarity(gt_j + rng.normal(scale=0.004, size=gt_j.shape), rot, 0.9, [0, 0, 0.1])
    pred_v = _similarity(gt_v + rng.normal(scale=0.004, size=gt_v.shape), rot, 0.9, [0, 0, 0.1])
    result = evaluate_hands(gt_j, pred_j, gt_v, pred_v)

    ref_j = np.stack([_reference_align(g, p) for g, p in zip(gt_j, pred_j, strict=True)])
    ref_v = np.stack([_reference_align(g, p) for g, p in zip(gt_v, pred_v, strict=True)])
    pa_j = np.linalg.norm(ref_j - gt_j, axis=-1).mean() * 1000
    pa_v = np.linalg.norm(ref_v - gt_v, axis=-1).mean() * 1000
    assert result.pa_mpjpe_mm == pytest.approx(pa_j, rel=1e-9)
    assert result.pa_mpvpe_mm == pytest.approx(pa_v, rel=1e-9)

    def brute_f(g, p, t):
        d = np.linalg.norm(g[:, None] - p[None], axis=-1)
        recall, precision = np.mean(d.min(1) < t), np.mean(d.min(0) < t)
        return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)

    f5 = np.mean([brute_f(g, p, 0.005) for g, p in zip(gt_v, ref_v, strict=True)])
    f15 = np.mean([brute_f(g, p, 0.015) for g, p in zip(gt_v, ref_v, strict=True)])
    assert result.f5 == pytest.approx(f5) and result.f15 == pytest.approx(f15)
    assert 0.0 < result.f5 < result.f15 <= 1.0
    # A 4 mm Gaussian per axis gives about 4*sqrt(8/pi) = 6.4 mm mean point error.
    assert 4.0 < result.pa_mpjpe_mm < 9.0


def test_teacher_agreement_uses_teacher_as_reference():
    rng = np.random.default_rng(8)
    teacher = _hand_like(rng, 3, 21)
    student = teacher + rng.normal(scale=0.002, size=teacher.shape)
    same = teacher_agreement(teacher, teacher)
    assert same.pa_mpjpe_mm == pytest.approx(0.0, abs=1e-4) and same.f5 is None
    diff = teacher_agreement(student, teacher)
    assert diff.pa_mpjpe_mm == pytest.approx(
        evaluate_hands(teacher, student).pa_mpjpe_mm, rel=1e-12
    )
    assert diff.pa_mpjpe_mm > 0.5


def test_bad_inputs_raise_clear_errors():
    good = np.zeros((2, 21, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate_hands(good, np.zeros((3, 21, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., K, 3\)"):
        procrustes_align(np.zeros((21, 2)), np.zeros((21, 2)))
    with pytest.raises(ValueError, match="NaN"):
        evaluate_hands(good, np.full((2, 21, 3), math.nan))
    with pytest.raises(ValueError, match="both"):
        evaluate_hands(good, good, np.zeros((2, 778, 3)), None)
    with pytest.raises(ValueError, match="zero samples"):
        evaluate_hands(np.zeros((0, 21, 3)), np.zeros((0, 21, 3)))
