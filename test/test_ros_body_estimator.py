"""The body node's estimator from its parameters: the HMR2.0 network through the shared loader."""

from __future__ import annotations

import logging

import pytest

from fasthmr_ros.ros.body_node import build_body_estimator
from fasthmr_ros.ros.parameters import BODY_NODE_PARAMETERS, ParameterError, ParameterSet

LOG = logging.getLogger("test")


def _params(**values) -> ParameterSet:
    params = ParameterSet(BODY_NODE_PARAMETERS)
    params.initialize(values)
    return params


def test_hmr2_estimator_loads_the_checkpoint_on_the_engine(body_assets):
    pytest.importorskip("onnxruntime")
    from fasthmr_ros.pipeline.hmr2_estimator import Hmr2BodyEstimator

    for engine in ("torch", "onnxruntime"):
        estimator = build_body_estimator(
            _params(estimator="hmr2", checkpoint=str(body_assets.root), engine=engine,
                    smpl_dir=str(body_assets.smpl_dir)), LOG)
        assert isinstance(estimator, Hmr2BodyEstimator)
        assert estimator.info.name == "smpl" and estimator.info.num_vertices == 6890


def test_hmr2_estimator_errors_name_the_parameter(body_assets, tmp_path):
    with pytest.raises(ParameterError, match="needs the 'checkpoint' parameter"):
        build_body_estimator(_params(estimator="hmr2"), LOG)
    with pytest.raises(ParameterError, match="cannot load the model"):
        build_body_estimator(_params(estimator="hmr2", checkpoint=str(tmp_path / "none.ckpt")),
                             LOG)
    plan = tmp_path / "plan.json"
    plan.write_text('{"format": "fasthmr-merge-plan/1", "layers": {"merge": [[0, 1]], '
                    '"rule": "sum"}}')
    estimator = build_body_estimator(
        _params(estimator="hmr2", checkpoint=str(body_assets.root), merge_plan=str(plan)), LOG)
    assert estimator.info.name == "smpl"
