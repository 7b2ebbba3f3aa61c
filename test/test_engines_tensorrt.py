"""TensorRT engine: version branching, cache keys, corrupt caches, profiles, CLI, real build.

TensorRT and a GPU are absent on CI machines: everything around the TensorRT calls runs here
for real (file system, ONNX files, ONNX Runtime, threads); the calls that need TensorRT and a
GPU run in ``test_real_engine_build_and_run``, skipped with the reason when they are missing.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from fasthmr_ros.cli.main import main
from fasthmr_ros.engines.base import NETWORK_INPUT, EngineError, create_engine
from fasthmr_ros.engines.engine_cache import (
    CorruptEngineError,
    EngineCache,
    EngineCacheKey,
    default_engine_dir,
    hash_onnx_model,
    make_build_options,
)
from fasthmr_ros.engines.onnx_export import export_onnx
from fasthmr_ros.engines.onnx_precision import (
    FLOAT32_OPS,
    FP16_MAX,
    convert_model_precision,
    convert_onnx_precision,
)
from fasthmr_ros.engines.tensorrt import (
    TensorRTSettings,
    check_engine_io,
    engine_cache_key,
    settings_from_options,
)
from fasthmr_ros.engines.tensorrt_build import (
    TENSORRT_LOG_LEVELS,
    BatchProfile,
    BuildProgress,
    elapsed_spinner,
    network_flags,
    set_timing_cache,
)
from fasthmr_ros.engines.tensorrt_versions import (
    TensorRTVersion,
    UnsupportedTensorRTError,
    parse_tensorrt_version,
    plan_build,
    torch_dtype,
)
from fasthmr_ros.models.regressor import NETWORK_OUTPUTS

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA = torch.cuda.is_available()
VERSIONS = ("8.6.1", "10.3.0", "10.16.1", "11.4.0")


# --------------------------------------------------------------------------- versions, plans


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8.6.1", (8, 6, 1, 0)),
        ("8.6.2.3", (8, 6, 2, 3)),
        ("10.3.0", (10, 3, 0, 0)),
        ("10.16.1.11", (10, 16, 1, 11)),
        ("11.4.0.106", (11, 4, 0, 106)),
        ("10.3.0.post1", (10, 3, 0, 0)),
        ("10.0.0b6", (10, 0, 0, 0)),
        (" 11.4 ", (11, 4, 0, 0)),
    ],
)
def test_parse_tensorrt_version(text, expected):
    assert parse_tensorrt_version(text) == TensorRTVersion(*expected)


@pytest.mark.parametrize("text", ["", "ten", "10", "10.x", "v10.3.0", "10.3.0 beta"])
def test_parse_tensorrt_version_rejects_garbage(text):
    with pytest.raises(ValueError, match="MAJOR.MINOR"):
        parse_tensorrt_version(text)


def test_versions_order_numerically():
    assert parse_tensorrt_version("10.16.1") > parse_tensorrt_version("10.3.0")
    assert parse_tensorrt_version("11.0.0") > parse_tensorrt_version("10.16.1.11")


# (version, precision) -> explicit batch, strongly typed flag, builder flags, onnx precision,
# progress monitor
PLANS = {
    ("8.6.1", "fp32"): (True, False, (), "fp32", False),
    ("8.6.1", "fp16"): (True, False, ("FP16",), "fp32", False),
    ("10.3.0", "fp32"): (False, False, (), "fp32", True),
    ("10.3.0", "fp16"): (False, False, ("FP16",), "fp32", True),
    ("10.3.0", "bf16"): (False, False, ("BF16",), "fp32", True),
    ("10.16.1", "fp16"): (False, False, ("FP16",), "fp32", True),
    ("10.16.1", "bf16"): (False, False, ("BF16",), "fp32", True),
    ("11.4.0", "fp32"): (False, False, (), "fp32", True),
    ("11.4.0", "fp16"): (False, False, (), "fp16", True),
    ("11.4.0", "bf16"): (False, False, (), "bf16", True),
}


@pytest.mark.parametrize(("version", "precision"), sorted(PLANS))
def test_plan_build_per_version(version, precision):
    plan = plan_build(version, precision)
    explicit, strongly_typed_flag, flags, onnx_precision, monitor = PLANS[version, precision]
    assert plan.explicit_batch_flag is explicit
    assert plan.strongly_typed_flag is strongly_typed_flag
    assert plan.builder_flags == flags
    assert plan.onnx_precision == onnx_precision
    assert plan.strongly_typed is (onnx_precision != "fp32")
    assert plan.progress_monitor is monitor
    assert plan.precision == precision


def test_plan_falls_back_to_strong_typing_when_a_builder_flag_is_gone():
    # A 10.x build without the deprecated FP16 flag: strongly typed network from an fp16 ONNX.
    plan = plan_build("10.16.1", "fp16", has_builder_flag=lambda name: False)
    assert plan.builder_flags == ()
    assert plan.onnx_precision == "fp16"
    assert plan.strongly_typed_flag  # 10.x needs the flag; 11 is strongly typed always
    # 11.x never uses weak typing, even if a binding still reported the flag.
    assert plan_build("11.4.0", "fp16", has_builder_flag=lambda name: True).builder_flags == ()


def test_plan_rejects_what_a_version_cannot_do():
    with pytest.raises(UnsupportedTensorRTError, match="bf16"):
        plan_build("8.6.1", "bf16")
    with pytest.raises(UnsupportedTensorRTError, match="too old"):
        plan_build("8.5.2", "fp16")
    with pytest.raises(UnsupportedTensorRTError, match="fp16"):
        plan_build("8.6.1", "fp16", has_builder_flag=lambda name: False)
    with pytest.raises(ValueError, match="unknown precision"):
        plan_build("10.3.0", "int8")


def test_import_checks_the_installed_version(monkeypatch):
    from fasthmr_ros.engines.tensorrt_build import TensorRTUnavailableError, import_tensorrt

    old = types.ModuleType("tensorrt")
    old.__version__ = "8.5.2.2"  # JetPack 5.1: no longer supported
    monkeypatch.setitem(sys.modules, "tensorrt", old)
    with pytest.raises(TensorRTUnavailableError, match="too old.*JetPack 6.0"):
        import_tensorrt()
    current = types.ModuleType("tensorrt")
    current.__version__ = "10.3.0"
    monkeypatch.setitem(sys.modules, "tensorrt", current)
    assert import_tensorrt() is current
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    with pytest.raises(TensorRTUnavailableError, match="pip install tensorrt"):
        import_tensorrt()


def _flag_enum(**members: int) -> types.SimpleNamespace:
    """A stand-in for ``tensorrt`` holding only the network creation flags a version has."""
    return types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace(**members))


def test_network_flags_touch_only_flags_the_version_has():
    # Member values as in the bindings: EXPLICIT_BATCH = 0, STRONGLY_TYPED = 1 (10.x).
    trt8 = _flag_enum(EXPLICIT_BATCH=0)
    trt10 = _flag_enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt11 = _flag_enum(STRONGLY_TYPED=1)  # EXPLICIT_BATCH removed: reading it would raise
    assert network_flags(trt8, plan_build("8.6.1", "fp16")) == 1
    assert network_flags(trt10, plan_build("10.3.0", "fp16")) == 0
    typed = plan_build("10.16.1", "fp16", has_builder_flag=lambda name: False)
    assert network_flags(trt10, typed) == 1 << 1
    assert network_flags(trt11, plan_build("11.4.0", "fp16")) == 0
    assert network_flags(types.SimpleNamespace(NetworkDefinitionCreationFlag=object()),
                         plan_build("11.4.0", "bf16")) == 0
    with pytest.raises(UnsupportedTensorRTError, match="strongly typed"):
        network_flags(trt8, typed)


def test_torch_dtypes_by_tensorrt_name():
    data_type = enum.Enum("DataType", "FLOAT HALF BF16 INT32 INT64 BOOL FP8")
    assert torch_dtype(data_type.FLOAT) is torch.float32
    assert torch_dtype(data_type.HALF) is torch.float16
    assert torch_dtype(data_type.BF16) is torch.bfloat16
    assert torch_dtype(data_type.INT64) is torch.int64
    with pytest.raises(TypeError, match="FP8"):
        torch_dtype(data_type.FP8)


# --------------------------------------------------------------------------- profiles


def test_default_profile_covers_batch_1_to_8_tuned_at_4():
    profile = BatchProfile()
    assert profile.shapes() == ((1, 3, 256, 256), (4, 3, 256, 256), (8, 3, 256, 256))
    assert BatchProfile(opt_batch=1).shapes()[1] == (1, 3, 256, 256)
    assert TensorRTSettings().profile == profile


@pytest.mark.parametrize(
    ("opt", "largest"), [(0, 8), (9, 8), (4, 0), (5, 4), (2.0, 8), (True, 8)]
)
def test_invalid_profiles_are_rejected(opt, largest):
    with pytest.raises(ValueError, match="batch"):
        BatchProfile(opt_batch=opt, max_batch=largest)


def test_large_batches_run_in_chunks():
    profile = BatchProfile()
    assert profile.chunks(1) == [(0, 1)]
    assert profile.chunks(8) == [(0, 8)]
    assert profile.chunks(20) == [(0, 8), (8, 16), (16, 20)]
    with pytest.raises(ValueError, match="below"):
        profile.chunks(0)


def test_settings_from_engine_options():
    assert settings_from_options("fp16", {}).profile == BatchProfile(4, 8)
    assert settings_from_options("fp16", {"max_batch": 2}).profile == BatchProfile(2, 2)
    assert settings_from_options("fp32", {"max_batch": 16, "opt_batch": 1}).profile == \
        BatchProfile(1, 16)
    settings = settings_from_options("fp16", {"workspace_gib": 0.5})
    assert settings.workspace_bytes == 1 << 29
    with pytest.raises(EngineError, match="batch"):
        settings_from_options("fp16", {"max_batch": "many"})
    with pytest.raises(EngineError, match="opt"):
        settings_from_options("fp16", {"max_batch": 4, "opt_batch": 6})
    with pytest.raises(EngineError, match="workspace"):
        settings_from_options("fp16", {"workspace_gib": 0})
    with pytest.raises(EngineError, match="precision"):
        TensorRTSettings(precision="int8")


# --------------------------------------------------------------------------- cache keys


def _key(version="10.3.0", gpu="NVIDIA H200", capability="9.0", precision="fp16",
         model="a" * 64, **options) -> EngineCacheKey:
    settings = settings_from_options(precision, options)
    return engine_cache_key(model, version, gpu, capability, settings,
                            plan_build(version, precision))


def test_cache_key_is_stable():
    assert _key().digest() == _key().digest()
    assert _key().file_stem == _key().file_stem
    assert _key().file_stem.startswith("fp16-nvidia-h200-trt10.3.0-")
    # Independent of hash randomisation and of the process: the same key built in a fresh
    # interpreter with another hash seed has the same digest.
    key = _key()
    code = (
        "from fasthmr_ros.engines.engine_cache import EngineCacheKey\n"
        f"print(EngineCacheKey({key.model_sha256!r}, {key.tensorrt_version!r}, "
        f"{key.gpu_name!r}, {key.compute_capability!r}, {key.precision!r}, "
        f"{key.input_shapes!r}, {tuple(reversed(key.build_options))!r}).digest())\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, cwd=root)
    assert out.stdout.strip() == _key().digest()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "b" * 64},
        {"version": "10.16.1"},
        {"version": "11.4.0"},
        {"gpu": "Orin"},
        {"capability": "8.7"},
        {"precision": "fp32"},
        {"precision": "bf16"},
        {"max_batch": 16},
        {"opt_batch": 1},
        {"workspace_gib": 4},
    ],
)
def test_cache_key_changes_with_what_the_engine_depends_on(change):
    assert _key(**change).digest() != _key().digest()
    assert _key(**change).file_stem != _key().file_stem


def test_cache_key_records_readable_fields():
    data = _key(version="11.4.0").to_dict()
    assert data["tensorrt_version"] == "11.4.0"
    assert data["input_shapes"] == [[1, 3, 256, 256], [4, 3, 256, 256], [8, 3, 256, 256]]
    assert data["build_options"]["onnx_precision"] == "fp16"
    assert data["build_options"]["builder_flags"] == "none"
    assert data["cache_format"] >= 1
    assert make_build_options(b=1, a="x") == (("a", "x"), ("b", "1"))


@pytest.fixture(scope="module")
def network_onnx(hand_regressor, tmp_path_factory) -> Path:
    """The small test regressor's network exported as a single-file ONNX graph."""
    return export_onnx(hand_regressor, tmp_path_factory.mktemp("onnx") / "network.onnx")


def test_model_hash_depends_on_content_not_name(network_onnx, tmp_path):
    copy = tmp_path / "renamed.onnx"
    shutil.copyfile(network_onnx, copy)
    assert hash_onnx_model(copy) == hash_onnx_model(network_onnx)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    copy.write_bytes(bytes(data))
    assert hash_onnx_model(copy) != hash_onnx_model(network_onnx)
    with pytest.raises(FileNotFoundError, match="export"):
        hash_onnx_model(tmp_path / "missing.onnx")


def test_model_hash_covers_external_data(hand_regressor, tmp_path):
    path = export_onnx(hand_regressor, tmp_path / "external.onnx", external_data=True)
    data_file = path.with_name(path.name + ".data")
    assert data_file.is_file()
    before = hash_onnx_model(path)
    content = bytearray(data_file.read_bytes())
    content[100] ^= 0x01
    data_file.write_bytes(bytes(content))
    assert hash_onnx_model(path) != before
    data_file.unlink()
    with pytest.raises(FileNotFoundError, match="external data"):
        hash_onnx_model(path)


def test_default_engine_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTHMR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_engine_dir() == tmp_path / "xdg" / "fasthmr_ros" / "engines"
    assert EngineCache().directory == default_engine_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_engine_dir() == Path.home() / ".cache" / "fasthmr_ros" / "engines"
    monkeypatch.setenv("FASTHMR_CACHE", str(tmp_path / "root"))
    assert default_engine_dir() == tmp_path / "root" / "engines"


# --------------------------------------------------------------------------- engine cache

MAGIC = b"PLAN1"


def plan_reader(data: bytes) -> bytes | None:
    """Deserializer with TensorRT's contract: the engine, or None for bytes it cannot read."""
    return data[len(MAGIC):] if data.startswith(MAGIC) and len(data) > len(MAGIC) else None


class Builder:
    """Counts builds; returns a valid plan for ``payload``."""

    def __init__(self, payload: bytes = b"weights") -> None:
        self.payload = payload
        self.calls = 0

    def __call__(self) -> memoryview:
        self.calls += 1
        return memoryview(MAGIC + self.payload)


def test_cache_builds_on_miss_then_loads(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    build = Builder()
    first = cache.load_or_build(_key(), build, plan_reader, source="net.onnx")
    assert first.built and first.engine == b"weights" and build.calls == 1
    assert first.path == cache.engine_path(_key()) and first.path.is_file()
    metadata = json.loads(first.path.with_suffix(".json").read_text())
    assert metadata["key_digest"] == _key().digest()
    assert metadata["source"] == "net.onnx"
    second = cache.load_or_build(_key(), build, plan_reader)
    assert not second.built and second.engine == b"weights" and build.calls == 1
    other = cache.load_or_build(_key(precision="fp32"), Builder(b"other"), plan_reader)
    assert other.path != first.path and other.engine == b"other"
    assert not list(cache.directory.glob("*.tmp"))


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 64, b"not an engine", MAGIC])
def test_corrupt_cache_file_is_deleted_and_rebuilt(tmp_path, caplog, garbage):
    cache = EngineCache(tmp_path)
    path = cache.engine_path(_key())
    path.write_bytes(garbage)
    build = Builder()
    with caplog.at_level(logging.WARNING, logger="fasthmr_ros.engines.engine_cache"):
        result = cache.load_or_build(_key(), build, plan_reader)
    assert build.calls == 1 and result.built and result.engine == b"weights"
    assert path.read_bytes() == MAGIC + b"weights"
    assert any("corrupt" in r.message and str(path) in r.message for r in caplog.records)


def test_deserializer_that_raises_counts_as_corrupt(tmp_path, caplog):
    cache = EngineCache(tmp_path)
    cache.engine_path(_key()).write_bytes(b"\xff" * 10)

    def strict_reader(data: bytes) -> bytes:
        if not data.startswith(MAGIC):
            raise RuntimeError("Serialization assertion failed: magic tag mismatch")
        return data[len(MAGIC):]

    with caplog.at_level(logging.WARNING):
        result = cache.load_or_build(_key(), Builder(), strict_reader)
    assert result.built
    assert any("magic tag mismatch" in r.message for r in caplog.records)


def test_force_rebuild_replaces_a_good_engine(tmp_path):
    cache = EngineCache(tmp_path)
    cache.load_or_build(_key(), Builder(b"old"), plan_reader)
    build = Builder(b"new")
    result = cache.load_or_build(_key(), build, plan_reader, force_rebuild=True)
    assert build.calls == 1 and result.built and result.engine == b"new"


def test_failed_build_leaves_nothing_behind(tmp_path):
    cache = EngineCache(tmp_path)

    def failing_build() -> bytes:
        raise EngineError("TensorRT failed to build")

    with pytest.raises(EngineError, match="failed"):
        cache.load_or_build(_key(), failing_build, plan_reader)
    assert not cache.engine_path(_key()).exists()
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.tmp"))


def test_unreadable_fresh_build_is_an_error(tmp_path):
    cache = EngineCache(tmp_path)
    with pytest.raises(CorruptEngineError, match="cannot be deserialized"):
        cache.load_or_build(_key(), lambda: b"garbage", plan_reader)
    assert not cache.engine_path(_key()).exists()


def test_concurrent_requests_build_once(tmp_path):
    cache = EngineCache(tmp_path)
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow_build() -> bytes:
        calls.append(1)
        started.set()
        release.wait(5)
        return MAGIC + b"shared"

    results = []
    first = threading.Thread(
        target=lambda: results.append(cache.load_or_build(_key(), slow_build, plan_reader)))
    first.start()
    assert started.wait(5)
    # A second cache object (as in another process) asks for the same key while building.
    second = threading.Thread(
        target=lambda: results.append(
            EngineCache(tmp_path).load_or_build(_key(), slow_build, plan_reader)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert len(calls) == 1
    assert sorted(r.built for r in results) == [False, True]
    assert all(r.engine == b"shared" for r in results)


def test_timing_cache_sits_beside_the_engines(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.timing_cache_path("10.3.0", "NVIDIA Jetson AGX Orin", "8.7")
    assert path.parent == tmp_path
    assert path.name == "timing-trt10.3.0-nvidia-jetson-agx-orin-sm8.7.cache"
    assert cache.timing_cache_path("10.16.1", "NVIDIA Jetson AGX Orin", "8.7") != path


# --------------------------------------------------------------------------- build progress


def test_build_progress_follows_phases():
    progress = BuildProgress(disable=False)
    progress.phase_start("Building engine", None, 3)
    progress.phase_start("Tactic selection", "Building engine", 2)
    assert progress.step_complete("Tactic selection", 0) is True
    progress.phase_finish("Tactic selection")
    for step in range(3):
        assert progress.step_complete("Building engine", step) is True
    assert progress.active_phases == ("Building engine",)
    progress.phase_finish("Building engine")
    assert progress.active_phases == ()
    assert progress.phases_seen == ["Building engine", "Tactic selection"]
    # Callbacks never raise, whatever TensorRT sends.
    assert progress.step_complete("never started", 7) is True
    progress.phase_start("odd", None, None)  # type: ignore[arg-type]
    progress.phase_finish("unknown")
    progress.close()
    assert progress.active_phases == ()


class _TimingCacheConfig:
    """The two ``IBuilderConfig`` timing-cache calls as documented: bad bytes raise."""

    def __init__(self) -> None:
        self.cache: object = None

    def create_timing_cache(self, blob: bytes) -> object:
        if blob and not blob.startswith(b"TC"):
            raise RuntimeError("invalid timing cache")
        return ("cache", bytes(blob))

    def set_timing_cache(self, cache: object, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True


def test_timing_cache_loads_or_starts_afresh_with_one_warning(tmp_path, caplog):
    path = tmp_path / "timing.cache"
    config = _TimingCacheConfig()
    set_timing_cache(config, path)  # no file yet: an empty cache
    assert config.cache == ("cache", b"")
    path.write_bytes(b"TC-kept")
    set_timing_cache(config, path)
    assert config.cache == ("cache", b"TC-kept")
    path.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="fasthmr_ros.engines.tensorrt_build"):
        set_timing_cache(config, path)
    assert config.cache == ("cache", b"")
    (warning,) = caplog.records
    assert "unreadable (invalid timing cache): starting a new one" in warning.getMessage()


def test_elapsed_spinner_stops_its_thread():
    with elapsed_spinner("building", disable=False, interval_s=0.01):
        assert any(t.name == "tensorrt-build-spinner" for t in threading.enumerate())
    assert not any(t.name == "tensorrt-build-spinner" for t in threading.enumerate())


# --------------------------------------------------------------------------- engine I/O, factory


def test_tensorrt_log_levels():
    assert TENSORRT_LOG_LEVELS["ERROR"] == logging.ERROR
    assert TENSORRT_LOG_LEVELS["WARNING"] == logging.WARNING
    assert TENSORRT_LOG_LEVELS["INFO"] < logging.INFO  # TensorRT's INFO is build chatter


def test_engine_io_check():
    check_engine_io([NETWORK_INPUT], list(reversed(NETWORK_OUTPUTS)))
    with pytest.raises(EngineError, match="fasthmr export onnx"):
        check_engine_io(["input"], list(NETWORK_OUTPUTS))
    with pytest.raises(EngineError, match="expected"):
        check_engine_io([NETWORK_INPUT], ["global_orient", "cam"])


def test_factory_rejects_cpu_unknown_options_and_precisions(hand_regressor):
    with pytest.raises(EngineError, match="NVIDIA GPUs"):
        create_engine(hand_regressor, engine="tensorrt", precision="fp16", device="cpu")
    with pytest.raises(EngineError, match="known options"):
        create_engine(hand_regressor, engine="tensorrt", device="cuda:0", max_batches=4)
    with pytest.raises(EngineError, match="precision"):
        create_engine(hand_regressor, engine="tensorrt", precision="int8", device="cuda:0")


@pytest.mark.skipif(HAS_TENSORRT and HAS_CUDA, reason="TensorRT and CUDA are present")
def test_factory_without_tensorrt_or_cuda_says_what_is_missing(hand_regressor, tmp_path):
    with pytest.raises(EngineError, match="tensorrt|CUDA"):
        create_engine(hand_regressor, engine="tensorrt", precision="fp16", device="cuda:0",
                      cache_dir=tmp_path)
    assert not (tmp_path / "engines").exists()  # nothing exported or built before the check


# --------------------------------------------------------------------------- mixed precision


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    graph = inferred.graph
    types_ = {v.name: v.type.tensor_type.elem_type
              for v in [*graph.input, *graph.value_info, *graph.output]}
    types_.update({t.name: t.data_type for t in graph.initializer})
    return types_


@pytest.fixture(scope="module")
def fp16_network(network_onnx, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("fp16") / "network-fp16.onnx"
    summary = convert_onnx_precision(network_onnx, target, "fp16")
    assert summary.low_precision_nodes > 0 and summary.weights_converted > 0
    return target


def test_fp16_network_types(fp16_network):
    model = onnx.load(str(fp16_network))
    types_ = _types(model)  # strict shape inference: every node's types are consistent
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert [o.name for o in model.graph.output] == list(NETWORK_OUTPUTS)
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {TensorProto.FLOAT}
    by_op: dict[str, set[int]] = {}
    for node in model.graph.node:
        by_op.setdefault(node.op_type, set()).add(types_[node.output[0]])
    assert by_op["MatMul"] == {TensorProto.FLOAT16}  # the compute runs in fp16
    assert by_op["Conv"] == {TensorProto.FLOAT16}
    for op in ("LayerNormalization", "Softmax"):
        assert by_op[op] == {TensorProto.FLOAT}, op
    assert FLOAT32_OPS >= {"LayerNormalization", "Softmax"}


def test_fp16_network_matches_fp32_in_onnxruntime(network_onnx, fp16_network):
    import onnxruntime as ort

    crops = np.random.default_rng(7).standard_normal((3, 3, 256, 256)).astype(np.float32)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for p in (network_onnx, fp16_network)]
    reference, reduced = (s.run(list(NETWORK_OUTPUTS), {NETWORK_INPUT: crops})
                          for s in sessions)
    for name, ref, low in zip(NETWORK_OUTPUTS, reference, reduced):
        assert low.dtype == np.float32 and low.shape == ref.shape
        error = np.abs(low - ref).max()
        assert error <= 2e-2 * max(1.0, np.abs(ref).max()), (name, error)
        assert error > 0, name  # it really computed in fp16


def test_large_networks_convert_through_external_data(hand_regressor, tmp_path, monkeypatch):
    import onnxruntime as ort

    import fasthmr_ros.engines.onnx_export as onnx_export

    source = export_onnx(hand_regressor, tmp_path / "src" / "net.onnx", external_data=True)
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 0)
    target = tmp_path / "out" / "net-fp16.onnx"
    convert_onnx_precision(source, target, "fp16")
    data_file = target.with_name(target.name + ".data")
    assert data_file.is_file() and data_file.stat().st_size > target.stat().st_size
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    crops = np.zeros((1, 3, 256, 256), np.float32)
    outputs = session.run(list(NETWORK_OUTPUTS), {NETWORK_INPUT: crops})
    assert all(np.isfinite(o).all() for o in outputs)


def test_bf16_network_types(network_onnx, tmp_path):
    target = tmp_path / "network-bf16.onnx"
    convert_onnx_precision(network_onnx, target, "bf16")
    model = onnx.load(str(target))
    types_ = _types(model)
    matmuls = {types_[n.output[0]] for n in model.graph.node if n.op_type == "MatMul"}
    assert matmuls == {TensorProto.BFLOAT16}
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {TensorProto.FLOAT}
    assert TensorProto.BFLOAT16 in {t.data_type for t in model.graph.initializer}


def _tiny_model(nodes, initializers, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=initializers)
    # IR version 8 goes with opset 17; make_model's default is the newest IR version, which
    # ONNX Runtime may not read yet.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_fixed_float_inputs_stay_float_and_weights_stay_finite():
    import onnxruntime as ort

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])
    scale = numpy_helper.from_array(np.array([1e6, 1.0], np.float32).reshape(1, 2, 1, 1), "big")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Mul", ["up", "big"], ["scaled"]),
        helper.make_node("Div", ["scaled", "big"], ["y"]),
    ]
    model = _tiny_model(nodes, [scale, scales], [x], [y])
    convert_model_precision(model, "fp16")
    types_ = _types(model)
    assert types_["scales"] == TensorProto.FLOAT  # Resize's scales are tensor(float)
    assert types_["up"] == TensorProto.FLOAT16
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    big16 = next(v for v in weights.values() if v.dtype == np.float16)
    assert np.isfinite(big16).all() and big16.max() == np.float16(FP16_MAX)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    data = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4) / 8
    (out,) = session.run(None, {"x": data})
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.repeat(np.repeat(data, 2, axis=2), 2, axis=3), atol=1e-3)


def test_control_flow_is_refused():
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])

    def branch(value: float) -> onnx.GraphProto:
        const = helper.make_node("Constant", [], ["v"],
                                 value=numpy_helper.from_array(np.array([value], np.float32)))
        return helper.make_graph([const], "b", [], [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [1])])

    node = helper.make_node("If", ["cond"], ["out"], then_branch=branch(1.0),
                            else_branch=branch(2.0))
    model = _tiny_model([node], [], [cond], [out])
    with pytest.raises(ValueError, match="subgraph"):
        convert_model_precision(model, "fp16")
    with pytest.raises(ValueError, match="precision"):
        convert_model_precision(model, "int8")


# --------------------------------------------------------------------------- CLI


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["engine", "build", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["engine", "build", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--checkpoint", "--onnx", "--precision", "--max-batch", "--cache-dir",
                   "--force"):
        assert option in text


def test_cli_argument_errors(capsys, tmp_path, network_onnx):
    code, _, err = _cli(capsys)
    assert code == 2 and "--checkpoint" in err and "--onnx" in err
    code, _, err = _cli(capsys, "--checkpoint", str(tmp_path / "none.ckpt"))
    assert code == 2 and "does not exist" in err
    code, _, err = _cli(capsys, "--onnx", str(tmp_path / "none.onnx"))
    assert code == 2 and "fasthmr export onnx" in err
    code, _, err = _cli(capsys, "--onnx", str(network_onnx), "--max-batch", "4",
                        "--opt-batch", "6")
    assert code == 2 and "--opt-batch" in err
    code, _, err = _cli(capsys, "--onnx", str(network_onnx), "--max-batch", "0")
    assert code == 2 and "batch" in err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 10)
    code, _, err = _cli(capsys, "--onnx", str(garbage))
    assert code == 2 and "garbage.onnx" in err and "fasthmr export onnx" in err
    other = tmp_path / "other.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    onnx.save(_tiny_model([helper.make_node("Relu", ["x"], ["y"])], [], [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]), other)
    code, _, err = _cli(capsys, "--onnx", str(other))
    assert code == 2 and "not a fasthmr network graph" in err
    with pytest.raises(SystemExit):
        main(["engine", "build", "--onnx", str(network_onnx), "--precision", "int8"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is importable here")
def test_cli_without_tensorrt_says_how_to_install(capsys, network_onnx, tmp_path):
    code, out, err = _cli(capsys, "--onnx", str(network_onnx), "--cache-dir", str(tmp_path))
    assert code == 2 and out == ""
    assert "'tensorrt'" in err and "pip install tensorrt" in err and "python3-libnvinfer" in err
    assert not (tmp_path / "engines").exists()


# --------------------------------------------------------------------------- real TensorRT


MISSING_FOR_REAL_BUILD = ", ".join(
    what for what, present in (("the 'tensorrt' package", HAS_TENSORRT),
                               ("a CUDA GPU", HAS_CUDA)) if not present
)


@pytest.mark.skipif(bool(MISSING_FOR_REAL_BUILD),
                    reason=f"a real TensorRT build needs what is missing here: "
                    f"{MISSING_FOR_REAL_BUILD}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_build_and_run(hand_regressor, tmp_path, caplog, capsys, precision,
                                   network_onnx):
    import tensorrt

    crops = torch.randn(10, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = hand_regressor.forward_network(crops)
    options = {"cache_dir": tmp_path, "max_batch": 4, "opt_batch": 2, "workspace_gib": 1}
    engine = create_engine(hand_regressor, engine="tensorrt", precision=precision,
                           device="cuda:0", **options)
    assert engine.name == f"tensorrt-{precision}-cuda:0"
    outputs = engine.forward_network(crops.cuda())  # 10 crops: chunks of 4, 4, 2
    tolerance = 2e-2 if precision == "fp32" else 5e-2  # fp32 engines may use TF32
    for name in NETWORK_OUTPUTS:
        got = outputs[name].cpu()
        assert got.dtype == torch.float32 and got.shape == expected[name].shape
        scale = max(1.0, expected[name].abs().max().item())
        assert (got - expected[name]).abs().max().item() <= tolerance * scale, name
    engines = sorted((tmp_path / "engines").glob("*.engine"))
    assert len(engines) == 1
    assert list((tmp_path / "engines").glob("timing-*.cache"))
    # Second use: loaded from the cache, same results.
    again = create_engine(hand_regressor, engine="tensorrt", precision=precision,
                          device="cuda:0", **options)
    torch.testing.assert_close(again.forward_network(crops.cuda())["cam"], outputs["cam"])
    # A corrupt cache file is detected, removed and rebuilt.
    engines[0].write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        create_engine(hand_regressor, engine="tensorrt", precision=precision,
                      device="cuda:0", **options)
    assert any("corrupt" in r.message for r in caplog.records)
    assert engines[0].stat().st_size > 1000
    # The CLI finds the same engine for the same graph and settings.
    code = main(["engine", "build", "--onnx", str(network_onnx), "--precision", precision,
                 "--max-batch", "4", "--opt-batch", "2", "--workspace-gib", "1",
                 "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "cache key:" in out and f"TensorRT {tensorrt.__version__}" in out
