"""Mesh and skeleton drawing with OpenCV."""

from __future__ import annotations

import numpy as np

from fasthmr_ros.pipeline.overlay import SIDE_COLORS, draw_hands, draw_mesh, draw_skeleton
from fasthmr_ros.pipeline.results import CameraIntrinsics, HandResult

K = CameraIntrinsics(fx=200.0, fy=200.0, cx=80.0, cy=60.0)


def quad(z: float, half: float, tilt: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A square of side ``2 half`` centred on the optical axis at depth ``z``."""
    verts = np.array(
        [[-half, -half, z - tilt], [half, -half, z + tilt], [half, half, z + tilt],
         [-half, half, z - tilt]]
    )
    return verts, np.array([[0, 1, 2], [0, 2, 3]])


def test_mesh_covers_its_projection_only():
    img = np.zeros((120, 160, 3), np.uint8)
    verts, faces = quad(z=1.0, half=0.1)  # projects to 80 +- 20, 60 +- 20
    draw_mesh(img, verts, faces, K, (0, 0, 255), alpha=1.0)
    assert img[60, 80, 2] > 200 and img[60, 80, 0] == 0  # facing the light: full colour
    assert img[45, 65].any() and img[75, 95].any()
    assert not img[30, 40].any() and not img[100, 150].any()


def test_near_triangles_cover_far_ones_whatever_the_face_order():
    near, faces = quad(z=1.0, half=0.05)  # small, facing the camera: bright
    far, _ = quad(z=2.0, half=0.2, tilt=0.15)  # large and tilted: darker
    for verts, all_faces in (
        (np.concatenate([near, far]), np.concatenate([faces, faces + 4])),
        (np.concatenate([far, near]), np.concatenate([faces, faces + 4])),  # far listed first
    ):
        img = np.zeros((120, 160, 3), np.uint8)
        draw_mesh(img, verts, all_faces, K, (0, 0, 250), alpha=1.0)
        centre = int(img[60, 80, 2])
        ring = int(img[60, 80 + 15, 2])  # only the far quad there
        assert centre > ring > 0


def test_points_behind_the_camera_are_skipped():
    img = np.zeros((120, 160, 3), np.uint8)
    verts, faces = quad(z=-1.0, half=0.1)
    draw_mesh(img, verts, faces, K, (0, 0, 255), alpha=1.0)
    assert not img.any()


def test_wireframe_draws_edges_not_faces():
    img = np.zeros((120, 160, 3), np.uint8)
    verts, faces = quad(z=1.0, half=0.1)
    draw_mesh(img, verts, faces, K, (0, 255, 0), alpha=1.0, wireframe=True)
    assert img[40, 80, 1] > 0  # top edge at v = 60 - 20
    assert not img[50, 90].any()  # inside, off the diagonal


def test_skeleton_and_hands_in_side_colours():
    kp = np.stack([np.linspace(20, 140, 21), np.full(21, 60.0)], axis=1)
    kp[3] = np.nan
    img = np.zeros((120, 160, 3), np.uint8)
    draw_skeleton(img, kp, (255, 0, 0))
    assert img[60, 20].any() and img[60, 140].any()

    verts, faces = quad(z=1.0, half=0.1)
    mesh = np.zeros((778, 3))
    mesh[:4] = verts
    mesh[4:] = verts[0]  # degenerate rest: zero-area triangles
    all_faces = np.zeros((1538, 3), np.int64)
    all_faces[:2] = faces

    def hand(side: str, shift: float) -> HandResult:
        v = mesh + [shift, 0, 0]
        return HandResult(
            side=side, score=0.9, box=np.array([10.0, 10.0, 50.0, 50.0]),
            keypoints_2d=np.full((21, 2), np.nan), joints=np.zeros((21, 3)), vertices=v,
            global_orient=np.eye(3), hand_pose=np.zeros((15, 3, 3)), betas=np.zeros(10),
            cam_t=np.zeros(3), wrist_rotation=np.eye(3),
        )

    base = np.zeros((120, 160, 3), np.uint8)
    out = draw_hands(base, [hand("right", -0.2), hand("left", 0.2)], all_faces, K)
    assert not base.any()  # input untouched
    right_px, left_px = out[60, 40].astype(int), out[60, 120].astype(int)
    assert right_px.any() and left_px.any()
    r, g = np.array(SIDE_COLORS["right"]), np.array(SIDE_COLORS["left"])
    assert np.argmax(right_px) == np.argmax(r) and np.argmax(left_px) == np.argmax(g)
