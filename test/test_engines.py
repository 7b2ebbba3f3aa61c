"""Engine interface, PyTorch engine and CUDA-graph bucketing (CPU; GPU calls skip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fasthmr_ros.engines import base
from fasthmr_ros.engines.base import (
    EngineError,
    EngineRegressor,
    check_crops,
    create_engine,
    create_runner,
    register_engine,
)
from fasthmr_ros.engines.network import NetworkModule, window_size
from fasthmr_ros.engines.torch_engine import (
    Chunk,
    TorchRunner,
    bucket_for,
    check_buckets,
    pad_rows,
    plan_chunks,
    run_bucketed,
)
from fasthmr_ros.models.regressor import NETWORK_OUTPUTS, REGRESSOR_OUTPUTS

NO_CUDA = "needs a CUDA GPU (none on this machine); the bucketing around it is tested on CPU"


def crops(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, 256, 256, generator=torch.Generator().manual_seed(seed))


def max_diff(a: dict, b: dict, keys=NETWORK_OUTPUTS) -> float:
    return max(float((a[k].detach().float() - b[k].detach().float()).abs().max()) for k in keys)


# --- interface ------------------------------------------------------------------------------


def test_engine_regressor_matches_regressor(hand_regressor):
    engine = create_engine(hand_regressor, "torch", "fp32", "cpu")
    x = crops(3, seed=11)
    with torch.inference_mode():
        expected = hand_regressor(x)
    got = engine(x)
    assert set(got) == set(REGRESSOR_OUTPUTS)
    for key in REGRESSOR_OUTPUTS:
        assert got[key].dtype == torch.float32
        assert torch.equal(got[key], expected[key]), key
    assert engine.faces is hand_regressor.faces or np.array_equal(engine.faces,
                                                                   hand_regressor.faces)
    assert engine.is_test_asset is True
    assert engine.config == hand_regressor.config
    assert engine.name == "torch-fp32-cpu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "no-such-engine"}, "unknown engine 'no-such-engine'"),
        ({"precision": "int4"}, "unknown precision 'int4'"),
        ({"precision": "fp16"}, "fp16 on CUDA only"),
        ({"frobnicate": 1}, "has no option(s) frobnicate"),
        ({"cuda_graphs": True}, "needs device='cuda'"),
        ({"device": "tpu"}, "invalid device"),
    ],
)
def test_create_engine_errors_name_the_fix(hand_regressor, kwargs, message):
    with pytest.raises(EngineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_engine(hand_regressor, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_device_without_cuda_is_a_clear_error(hand_regressor):
    with pytest.raises(EngineError, match="CUDA is not available"):
        create_engine(hand_regressor, "torch", device="cuda")


def test_register_engine_plugs_a_new_name_in(hand_regressor):
    def factory(regressor, precision, device, **options):
        return TorchRunner(regressor, precision=precision, device=device, **options)

    register_engine("torch-again", factory)
    try:
        assert "torch-again" in base.available_engines()
        engine = create_engine(hand_regressor, "torch-again")
        x = crops(2, seed=3)
        assert max_diff(engine(x), hand_regressor(x)) == 0.0
    finally:
        base._FACTORIES.pop("torch-again")


def test_missing_engine_module_is_reported(monkeypatch, tmp_path):
    monkeypatch.setitem(base._BUILTIN_MODULES, "absent", "fasthmr_ros.engines.no_such_module")
    with pytest.raises(EngineError, match="engine 'absent' is not part of this installation"):
        base._factory("absent")
    # An engine module whose optional dependency is missing names the package to install.
    (tmp_path / "engine_with_missing_dep.py").write_text("import package_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(base._BUILTIN_MODULES, "needs-dep", "engine_with_missing_dep")
    with pytest.raises(EngineError, match="needs the Python package 'package_not_installed_xyz'"):
        base._factory("needs-dep")


def test_runner_with_wrong_outputs_is_caught(hand_regressor):
    class DropsARow:
        """An engine that loses the last crop of the batch (a real failure mode to detect)."""

        name = "drops-a-row"

        def run(self, x):
            return TorchRunner(hand_regressor).run(x[:-1])

    engine = EngineRegressor(DropsARow(), hand_regressor)
    with pytest.raises(EngineError, match=r"drops-a-row: output 'global_orient' has shape"):
        engine(crops(2, seed=0))
    assert isinstance(DropsARow(), base.NetworkRunner)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (np.zeros((1, 3, 256, 256), np.float32), TypeError, "torch.Tensor"),
        (torch.zeros(3, 256, 256), ValueError, r"crops\[None\]"),
        (torch.zeros(1, 3, 256, 192), ValueError, r"\(B, 3, 256, 256\)"),
        (torch.zeros(0, 3, 256, 256), ValueError, "B >= 1"),
        (torch.zeros(1, 3, 256, 256, dtype=torch.float64), TypeError, "float32"),
    ],
)
def test_check_crops(bad, error, message):
    with pytest.raises(error, match=message):
        check_crops(bad)


# --- torch engine -------------------------------------------------------------------------------


def test_torch_engine_batch_equivalence(hand_regressor):
    runner = create_runner(hand_regressor, "torch")
    x = crops(4, seed=5)
    whole = runner.run(x)
    for i in range(4):
        single = runner.run(x[i : i + 1])
        assert max_diff({k: v[i : i + 1] for k, v in whole.items()}, single) < 1e-5


def test_torch_bf16_autocast_on_cpu_stays_close(hand_regressor):
    x = crops(2, seed=6)
    fp32 = create_runner(hand_regressor, "torch", "fp32").run(x)
    bf16 = create_runner(hand_regressor, "torch", "bf16").run(x)
    assert all(v.dtype == torch.float32 for v in bf16.values())
    difference = max_diff(fp32, bf16)
    assert 0.0 < difference < 0.05


def test_torch_compile_eager_backend_matches(hand_regressor):
    x = crops(2, seed=7)
    runner = create_runner(hand_regressor, "torch", compile=True, compile_backend="eager")
    assert "compile" in runner.name
    assert max_diff(runner.run(x), hand_regressor.forward_network(x)) < 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_graphs_match_eager(hand_regressor, precision):
    runner = create_runner(hand_regressor, "torch", precision, "cuda", cuda_graphs=True)
    x = crops(11, seed=8).cuda()
    expected = hand_regressor.cuda().forward_network(x)
    tolerance = 1e-4 if precision == "fp32" else 0.05
    assert max_diff(runner.run(x), expected) < tolerance
    assert set(runner.graphs.graphs) == {8, 4}


# --- bucketing (the logic around CUDA graphs) --------------------------------------------------


def test_buckets_and_chunks():
    buckets = check_buckets([8, 2, 1, 4, 4])
    assert buckets == (1, 2, 4, 8)
    assert [bucket_for(b, buckets) for b in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 8]
    assert plan_chunks(11, buckets) == [Chunk(0, 8, 8), Chunk(8, 11, 4)]
    assert plan_chunks(16, buckets) == [Chunk(0, 8, 8), Chunk(8, 16, 8)]
    assert plan_chunks(1, buckets) == [Chunk(0, 1, 1)]
    with pytest.raises(ValueError, match="positive integers"):
        check_buckets([0, 2])
    with pytest.raises(ValueError, match="batch must be >= 1"):
        bucket_for(0, buckets)


def test_pad_rows():
    x = crops(3, seed=1)
    padded = pad_rows(x, 4)
    assert padded.shape == (4, 3, 256, 256)
    assert torch.equal(padded[:3], x) and not padded[3].any()
    assert pad_rows(x, 3) is x
    with pytest.raises(ValueError, match="cannot pad"):
        pad_rows(x, 2)


def test_run_bucketed_equals_unpadded_run(hand_regressor):
    """Padding to buckets (as CUDA graphs need) leaves the real rows' results unchanged."""
    network = NetworkModule(hand_regressor).eval()
    seen: list[int] = []

    def run_bucket(batch: torch.Tensor) -> dict:
        seen.append(batch.shape[0])
        with torch.inference_mode():
            return network(batch)

    x = crops(11, seed=9)
    got = run_bucketed(x, (1, 2, 4, 8), run_bucket)
    with torch.inference_mode():
        expected = network(x)
    assert seen == [8, 4]
    assert all(got[k].shape[0] == 11 for k in NETWORK_OUTPUTS)
    assert max_diff(got, expected) < 1e-5


# --- input resolution ------------------------------------------------------------------------


def test_window_size():
    assert window_size(1.0) == (256, 192)
    assert window_size(0.75) == (192, 144)
    assert window_size(0.5) == (128, 96)
    for bad in (0.0, -1.0, 1.5):
        with pytest.raises(ValueError, match=r"input_scale must be in \(0, 1\]"):
            window_size(bad)


def test_reduced_resolution_uses_fewer_tokens(hand_regressor):
    x = crops(2, seed=10)
    full = NetworkModule(hand_regressor)
    assert max_diff(full(x), hand_regressor.forward_network(x)) == 0.0
    tokens: list[tuple[int, ...]] = []
    hook = hand_regressor.backbone.register_forward_hook(
        lambda module, args, out: tokens.append(tuple(out.shape))
    )
    try:
        reduced = create_runner(hand_regressor, "torch", input_scale=0.75).run(x)
    finally:
        hook.remove()
    assert tokens == [(2, hand_regressor.backbone.out_channels, 12, 9)]  # 108 tokens, not 192
    assert max_diff(reduced, full(x)) > 0.0
