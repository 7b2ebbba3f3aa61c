"""The one interface every body mesh estimator implements, and the estimator registry.

A *body estimator* turns people found in one image into body meshes in the camera optical
frame. The body pipeline (:mod:`fasthmr_ros.pipeline.body_pipeline`), ``fasthmr bodies``, the
bag tool and the body node call nothing else, so every estimator plugs in behind it:

- ``landmarks`` (:class:`~fasthmr_ros.pipeline.body_fit.LandmarkBodyFitter`, the permissive
  default): MediaPipe Pose's 33 landmarks fitted with the CC0 Anny body, analytically;
- ``hmr2`` (the HMR2.0 network from crops, SMPL; its own module): anything that maps crops to
  meshes.

Contract of :meth:`BodyEstimator.estimate`:

``image_rgb``
    ``(H, W, 3)`` uint8 RGB, the whole frame (network estimators crop it themselves).
``people``
    :class:`~fasthmr_ros.pipeline.results.PersonBox` list, best first. ``keypoints_2d``,
    ``world_landmarks`` and ``visibility`` are set when the person detector is MediaPipe Pose
    (the default) and ``None`` for external boxes. An estimator that needs what a box lacks
    skips that box (and says why in :attr:`BodyEstimator.skipped`); it never raises for one
    bad person.
``camera``
    The frame's :class:`~fasthmr_ros.pipeline.results.CameraIntrinsics` (from CameraInfo,
    an override, or the default focal for the image size: the caller resolves it).

It returns one :class:`~fasthmr_ros.pipeline.results.BodyResult` per person it could
reconstruct, in input order, each with ``box`` set to that person's box, ``joints`` /
``vertices`` in metres in the camera optical frame (``cam_t`` included), ``keypoints_2d`` the
joints projected with ``camera``, ``model`` the :attr:`BodyEstimator.info` name, and
``extras["person_index"]`` (``(1,)`` int) naming the input box it came from, so the caller
can carry a track id across. Fit quality goes into ``extras`` (the landmark fit sets
:data:`~fasthmr_ros.pipeline.results.FIT_RESIDUAL_M` and ``FIT_RESIDUAL_PX``, ``(1,)`` float32;
a network leaves them out and messages then carry -1). ``track_id`` is left ``None``: tracking
and smoothing are the pipeline's job (:class:`~fasthmr_ros.pipeline.temporal.MeshStream`).

:attr:`BodyEstimator.info` is the mesh model's constant structure
(:class:`~fasthmr_ros.models.mesh_model.MeshModelInfo`: name, vertex count, faces, joint names,
bones, parameter names): the ROS node publishes it as the ``bodies/topology`` message and the
overlays draw its faces. It must not change while the estimator lives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.results import BodyResult, CameraIntrinsics, PersonBox

#: Key of :attr:`BodyResult.extras` naming the input person box a result came from.
PERSON_INDEX = "person_index"


@runtime_checkable
class BodyEstimator(Protocol):
    """Image + camera + people -> body meshes (see the module docstring for the contract)."""

    @property
    def info(self) -> MeshModelInfo:
        """The mesh model's constant structure (published as the topology)."""
        ...

    @property
    def skipped(self) -> list[str]:
        """Why people of the last :meth:`estimate` call were skipped (one line each)."""
        ...

    def estimate(
        self,
        image_rgb: np.ndarray,
        people: Sequence[PersonBox],
        camera: CameraIntrinsics,
    ) -> list[BodyResult]:
        """Reconstruct the bodies of ``people`` in ``image_rgb``."""
        ...


#: Estimator factories by name: ``name -> factory(**options) -> BodyEstimator``. Estimators
#: register themselves on import (see :func:`register_body_estimator`).
_ESTIMATORS: dict[str, Callable[..., BodyEstimator]] = {}


def register_body_estimator(name: str, factory: Callable[..., BodyEstimator]) -> None:
    """Make ``factory`` available as ``--body-estimator NAME`` / parameter ``estimator``."""
    _ESTIMATORS[name] = factory


def body_estimator_names() -> list[str]:
    """Names of the estimators registered so far (the landmark fit is always there)."""
    _register_builtin()
    return sorted(_ESTIMATORS)


def create_body_estimator(name: str, **options: object) -> BodyEstimator:
    """Build the estimator registered as ``name`` with its ``options``."""
    _register_builtin()
    try:
        factory = _ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown body estimator {name!r}; choose one of {', '.join(sorted(_ESTIMATORS))}"
        ) from None
    return factory(**options)


def _register_builtin() -> None:
    if "landmarks" not in _ESTIMATORS:
        from fasthmr_ros.pipeline.body_fit import LandmarkBodyFitter

        register_body_estimator("landmarks", LandmarkBodyFitter)
    if "hmr2" not in _ESTIMATORS:
        from fasthmr_ros.pipeline.hmr2_estimator import create_hmr2_estimator

        register_body_estimator("hmr2", create_hmr2_estimator)
