"""One-Euro filter on known signals, and per-track smoothing of hand results."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fasthmr_ros.pipeline.results import RIGHT, HandResult
from fasthmr_ros.pipeline.smoothing import (
    DEFAULT_ARTICULATION,
    DEFAULT_TRANSLATION,
    HandSmoother,
    OneEuroFilter,
    OneEuroParameters,
    smoothing_factor,
)

FPS = 30.0


def run(filt: OneEuroFilter, samples: np.ndarray, fps: float = FPS) -> np.ndarray:
    return np.stack([filt(x, i / fps) for i, x in enumerate(samples)])


def test_smoothing_factor_matches_the_first_order_low_pass():
    # alpha = 1 / (1 + tau / dt), tau = 1 / (2 pi fc)
    assert smoothing_factor(1.0, 1 / 30) == pytest.approx(1 / (1 + 30 / (2 * math.pi)))
    assert smoothing_factor(1e9, 1 / 30) == pytest.approx(1.0)


def test_first_sample_passes_through_and_constant_signal_is_unchanged():
    filt = OneEuroFilter(min_cutoff=0.5, beta=2.0)
    x = np.random.default_rng(0).normal(size=(21, 3))
    out = run(filt, np.repeat(x[None], 50, axis=0))
    np.testing.assert_array_equal(out[0], x)
    np.testing.assert_allclose(out, np.repeat(x[None], 50, axis=0), rtol=0, atol=1e-12)


def test_output_is_a_new_array():
    filt = OneEuroFilter()
    x = np.zeros(3)
    y = filt(x, 0.0)
    y += 1
    assert (x == 0).all()


def test_noise_is_reduced_at_rest():
    rng = np.random.default_rng(1)
    noisy = 0.5 + rng.normal(0.0, 0.01, size=(300, 21, 3))
    out = run(OneEuroFilter(min_cutoff=1.0, beta=0.0), noisy)
    # First-order low-pass at 1 Hz, 30 fps: variance ratio alpha / (2 - alpha) ~ 0.09.
    residual = (out[60:] - 0.5).std()
    assert residual < 0.4 * 0.01
    assert residual > 0.1 * 0.01  # it is a low-pass, not a constant


@pytest.mark.parametrize("min_cutoff", [0.5, 1.0, 3.0])
def test_ramp_lag_is_the_time_constant_without_beta(min_cutoff):
    speed = 0.4  # units per second
    t = np.arange(200) / FPS
    out = run(OneEuroFilter(min_cutoff=min_cutoff, beta=0.0), speed * t[:, None])
    lag = speed * t[-1] - out[-1, 0]
    assert lag == pytest.approx(speed / (2 * math.pi * min_cutoff), rel=1e-3)


@pytest.mark.parametrize("speed", [0.2, 1.0, 5.0])
def test_beta_bounds_the_ramp_lag(speed):
    beta, min_cutoff = 2.0, 1.0
    t = np.arange(300) / FPS
    out = run(OneEuroFilter(min_cutoff=min_cutoff, beta=beta, d_cutoff=1.0), speed * t[:, None])
    lag = speed * t[-1] - out[-1, 0]
    expected = speed / (2 * math.pi * (min_cutoff + beta * speed))
    assert lag == pytest.approx(expected, rel=0.02)
    assert lag < 1 / (2 * math.pi * beta)
    no_beta = speed * t[-1] - run(OneEuroFilter(min_cutoff=min_cutoff), speed * t[:, None])[-1, 0]
    assert lag < no_beta


def test_irregular_frame_times_are_handled():
    filt = OneEuroFilter(min_cutoff=1.0)
    rng = np.random.default_rng(2)
    stamps = np.cumsum(rng.uniform(0.01, 0.1, size=100))
    outs = [filt(np.array([2.0 * s]), s) for s in stamps]
    lags = [2.0 * s - o[0] for s, o in zip(stamps, outs, strict=True)]
    assert lags[0] == 0.0
    assert all(0.0 <= lag < 2.0 / (2 * math.pi) * 1.5 for lag in lags)


def test_repeated_stamp_returns_the_previous_estimate_and_backwards_time_restarts():
    filt = OneEuroFilter(min_cutoff=1.0)
    filt(np.array([0.0]), 0.0)
    a = filt(np.array([1.0]), 0.1)
    np.testing.assert_array_equal(filt(np.array([5.0]), 0.1), a)
    np.testing.assert_array_equal(filt(np.array([7.0]), 0.05), [7.0])


def test_shared_cutoff_keeps_a_linear_family_in_the_family():
    # Every element gets the same weights, so base * s(t) filters to base * s_filtered.
    base = np.random.default_rng(3).normal(size=(778, 3))
    filt = OneEuroFilter(min_cutoff=1.0, beta=5.0)
    for i in range(40):
        out = filt(base * (1.0 + 0.5 * math.sin(i / 4)), i / FPS)
        ratio = out / base
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-9)


def test_bad_inputs_and_parameters_are_rejected():
    filt = OneEuroFilter()
    filt(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="shape"):
        filt(np.zeros(4), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        filt(np.array([0.0, np.nan, 0.0]), 0.2)
    with pytest.raises(ValueError, match="stamp"):
        filt(np.zeros(3), float("nan"))
    for kwargs in ({"min_cutoff": 0.0}, {"d_cutoff": -1.0}, {"beta": -0.1}):
        with pytest.raises(ValueError):
            OneEuroFilter(**kwargs)


def hand_result(track_id: int | None, offset: np.ndarray, rng: np.random.Generator) -> HandResult:
    cam_t = np.array([0.0, 0.0, 0.6]) + offset
    local = rng.normal(0.0, 0.03, size=(799, 3))
    return HandResult(
        side=RIGHT, score=0.9, box=np.array([0.0, 0.0, 10.0, 10.0]),
        keypoints_2d=np.zeros((21, 2)),
        joints=(local[:21] + cam_t).astype(np.float32),
        vertices=(local[21:] + cam_t).astype(np.float32),
        global_orient=np.eye(3), hand_pose=np.tile(np.eye(3), (15, 1, 1)),
        betas=np.zeros(10), cam_t=cam_t.astype(np.float32), wrist_rotation=np.eye(3),
        track_id=track_id,
    )


def test_hand_smoother_filters_each_track_separately():
    smoother = HandSmoother(
        translation=OneEuroParameters(min_cutoff=1.0), articulation=OneEuroParameters(1.0)
    )
    rng = np.random.default_rng(4)
    shape_a = hand_result(1, np.zeros(3), rng)
    shape_b = hand_result(2, np.zeros(3), rng)
    depth_noise = rng.normal(0.0, 0.01, size=(120, 3))
    out_a, out_b = [], []
    for i in range(120):
        a = dataclasses.replace(shape_a, cam_t=shape_a.cam_t + depth_noise[i].astype(np.float32),
                                joints=shape_a.joints + depth_noise[i].astype(np.float32),
                                vertices=shape_a.vertices + depth_noise[i].astype(np.float32))
        out_a.append(smoother(a, i / FPS))
        out_b.append(smoother(shape_b, i / FPS))
    # Track b never moved: untouched by a's motion.
    for result in out_b:
        np.testing.assert_allclose(result.vertices, shape_b.vertices, atol=1e-6)
    # Track a: translation jitter reduced; the hand shape around cam_t is kept.
    cam = np.stack([r.cam_t for r in out_a[30:]])
    assert cam.std(axis=0).max() < 0.4 * 0.01
    for result in out_a:
        np.testing.assert_allclose(result.vertices - result.cam_t,
                                   shape_a.vertices - shape_a.cam_t, atol=1e-5)
        assert result.vertices.dtype == np.float32 and result.cam_t.dtype == np.float32
    assert smoother.track_ids == [1, 2]


def test_untracked_results_pass_through_and_stale_tracks_are_forgotten():
    rng = np.random.default_rng(5)
    smoother = HandSmoother(forget_after=1.0)
    untracked = hand_result(None, np.zeros(3), rng)
    assert smoother(untracked, 0.0) is untracked
    smoother(hand_result(3, np.zeros(3), rng), 0.0)
    smoother(hand_result(4, np.zeros(3), rng), 1.5)
    assert smoother.track_ids == [4]
    first = hand_result(4, np.array([0.1, 0.0, 0.0]), rng)
    smoother.forget(4)
    out = smoother(first, 1.6)  # a forgotten id starts again: passes through
    np.testing.assert_array_equal(out.vertices, first.vertices)


@pytest.mark.parametrize("params", [DEFAULT_TRANSLATION, DEFAULT_ARTICULATION])
def test_default_parameters_reduce_millimetre_jitter_and_lag_under_a_centimetre(params):
    rng = np.random.default_rng(6)
    filt = params.make()
    jitter = rng.normal(0.0, 0.004, size=(300, 3))  # 4 mm at rest
    out = run(filt, jitter)
    assert out[30:].std() < 0.6 * 0.004
    for speed in (0.1, 0.5, 2.0):  # metres per second
        t = np.arange(90) / FPS
        lag = speed * t[-1] - run(params.make(), speed * t[:, None])[-1, 0]
        assert 0.0 < lag < 0.01
