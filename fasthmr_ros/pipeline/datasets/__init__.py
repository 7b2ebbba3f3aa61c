"""Dataset readers: FreiHAND, HO3D v2/v3 and unlabelled image/video folders."""

from fasthmr_ros.pipeline.datasets.freihand import (
    FREIHAND_VERSIONS,
    FreiHAND,
    load_annotation_array,
    load_freihand_ground_truth,
)
from fasthmr_ros.pipeline.datasets.ho3d import HO3D, opengl_to_optical
from fasthmr_ros.pipeline.datasets.media import MediaFolder, MediaFrame
from fasthmr_ros.pipeline.datasets.restricted_pickle import (
    UnsafePickleError,
    load_restricted_pickle,
)
from fasthmr_ros.pipeline.datasets.sample import (
    DatasetFormatError,
    HandSample,
    ManoParameters,
    project_points,
    read_rgb_image,
    tight_box,
)

__all__ = [
    "FREIHAND_VERSIONS",
    "HO3D",
    "DatasetFormatError",
    "FreiHAND",
    "HandSample",
    "ManoParameters",
    "MediaFolder",
    "MediaFrame",
    "UnsafePickleError",
    "load_annotation_array",
    "load_freihand_ground_truth",
    "load_restricted_pickle",
    "opengl_to_optical",
    "project_points",
    "read_rgb_image",
    "tight_box",
]
