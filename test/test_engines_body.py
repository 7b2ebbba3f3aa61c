"""The HMR2.0 body network on every engine, through the same export and cache code as hands."""

from __future__ import annotations

import pytest
import torch

from fasthmr_ros import load_body_regressor
from fasthmr_ros.engines.base import EngineError, create_engine

BODY_OUTPUTS = ("global_orient", "body_pose", "betas", "cam")


@pytest.fixture(scope="module")
def body_regressor(body_assets):
    return load_body_regressor(body_assets.yacs_checkpoint)


def _close(got: dict, expected: dict, atol: float) -> None:
    for key in ("vertices", "joints", *BODY_OUTPUTS):
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=atol, msg=key)


def test_torch_engine_equals_the_model(body_regressor) -> None:
    engine = create_engine(body_regressor, "torch")
    crops = torch.randn(3, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = body_regressor(crops)
    _close(engine(crops), expected, 1e-6)
    assert engine.info.name == "smpl" and engine.network_outputs == BODY_OUTPUTS


def test_onnxruntime_engine_matches_torch(body_regressor, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    import onnx

    engine = create_engine(body_regressor, "onnxruntime", cache_dir=str(tmp_path))
    crops = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = body_regressor(crops)
    _close(engine(crops), expected, 1e-4)
    graphs = list(tmp_path.rglob("*.onnx"))
    assert len(graphs) == 1
    names = [o.name for o in onnx.load(str(graphs[0]), load_external_data=False).graph.output]
    assert names == list(BODY_OUTPUTS)
    # The same cache serves a second engine without exporting again.
    mtime = graphs[0].stat().st_mtime_ns
    create_engine(body_regressor, "onnxruntime", cache_dir=str(tmp_path))
    assert graphs[0].stat().st_mtime_ns == mtime


def test_body_graph_runs_batches_it_was_not_traced_with(body_regressor, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    engine = create_engine(body_regressor, "onnxruntime", cache_dir=str(tmp_path))
    crops = torch.randn(5, 3, 256, 256)
    with torch.no_grad():
        expected = body_regressor(crops)
    _close(engine(crops), expected, 1e-4)


def test_tensorrt_engine_needs_a_gpu(body_regressor) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the TensorRT engine tests cover it")
    with pytest.raises(EngineError):
        create_engine(body_regressor, "tensorrt")


def test_graph_and_engine_signatures_accept_the_body_layout(body_regressor, tmp_path) -> None:
    """The TensorRT runner's I/O check and the ONNX signature check know both layouts."""
    pytest.importorskip("onnx")
    from fasthmr_ros.engines.onnx_export import check_graph_signature, export_onnx
    from fasthmr_ros.engines.tensorrt import check_engine_io

    check_engine_io(["crops"], list(reversed(BODY_OUTPUTS)))
    with pytest.raises(EngineError, match="body_pose"):
        check_engine_io(["crops"], ["global_orient", "hand_pose", "body_pose", "cam"])
    path = export_onnx(body_regressor, tmp_path / "body.onnx")
    check_graph_signature(path)
