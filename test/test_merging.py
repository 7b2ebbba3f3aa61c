"""FastHMR's training-free acceleration: merge plans, layer merging (ECLM), token merging."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from fasthmr_ros.models.decoder_head import HeadConfig
from fasthmr_ros.models.layer_merging import MERGED_TENSORS, merge_tensors, sliding_window_search
from fasthmr_ros.models.mano import ManoLayer
from fasthmr_ros.models.mano_files import load_mano_file, write_synthetic_mano
from fasthmr_ros.models.merge_plan import (
    PLAN_FORMAT,
    MergePlanError,
    apply_merge_plan,
    backbone_sha256,
    load_merge_plan,
    needs_foreground,
    plan_from_dict,
)
from fasthmr_ros.models.regressor import RegressorConfig
from fasthmr_ros.models.test_assets import random_hand_regressor
from fasthmr_ros.models.token_merging import TokenState, bipartite_merge, merge_schedule
from fasthmr_ros.models.vit import VisionTransformer, ViTConfig

#: Six blocks (room for layer runs), 192 tokens like ViT-H, tiny width.
DEEP_CONFIG = RegressorConfig(
    backbone=ViTConfig(embed_dim=64, depth=6, num_heads=2),
    head=HeadConfig(dim=32, depth=1, heads=2, dim_head=16, mlp_dim=32, context_dim=64),
)


@pytest.fixture(scope="module")
def mano(tmp_path_factory: pytest.TempPathFactory) -> ManoLayer:
    folder = tmp_path_factory.mktemp("mano")
    return ManoLayer(load_mano_file(write_synthetic_mano(folder)))


@pytest.fixture()
def regressor(mano: ManoLayer):
    return random_hand_regressor(DEEP_CONFIG, mano, seed=3)


def _crops(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 256, 256, generator=torch.Generator().manual_seed(seed))


def _plan(**sections) -> dict:
    return {"format": PLAN_FORMAT, **sections}


def test_schedule_reproduces_fasthmr() -> None:
    assert merge_schedule(192, 90, 40, 3) == [40, 40, 22]
    assert merge_schedule(192, 192, 40, 3) == [0, 0, 0]
    with pytest.raises(ValueError, match="cannot take 192 tokens down to 10"):
        merge_schedule(192, 10, 40, 3)


def test_identity_plan_reproduces_outputs(regressor) -> None:
    crops = _crops()
    with torch.no_grad():
        expected = regressor(crops)
        apply_merge_plan(regressor, _plan(layers={"merge": []},
                                          tokens={"keep": 192, "per_layer": 40, "layers": 3}))
        got = regressor(crops)
    assert regressor.backbone.token_merging is not None
    for key, value in expected.items():
        assert torch.allclose(got[key], value, atol=1e-6, rtol=0), key


def test_sum_rule_merges_projections_and_keeps_lowest_norms(regressor) -> None:
    blocks = copy.deepcopy(list(regressor.backbone.blocks))
    apply_merge_plan(regressor, _plan(layers={"merge": [[1, 3]], "rule": "sum"}))
    vit = regressor.backbone
    assert len(vit.blocks) == 4
    merged = dict(vit.blocks[1].named_parameters())
    for name in MERGED_TENSORS:
        parts = [dict(b.named_parameters())[name] for b in blocks[1:4]]
        expected = parts[0] + (parts[1] - parts[0]) + (parts[2] - parts[0])
        assert torch.allclose(merged[name], expected, atol=1e-6), name
    for name in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"):
        assert torch.equal(merged[name], dict(blocks[1].named_parameters())[name]), name
    # Blocks outside the run are the originals, renumbered.
    assert torch.equal(vit.blocks[2].attn.qkv.weight, blocks[4].attn.qkv.weight)
    assert torch.equal(vit.blocks[0].mlp.fc1.bias, blocks[0].mlp.fc1.bias)


def test_top_and_mean_rules() -> None:
    tensors = [torch.full((2,), float(v)) for v in (1, 2, 6)]
    assert torch.equal(merge_tensors(tensors, "top"), tensors[-1])
    assert torch.equal(merge_tensors(tensors, "mean"), torch.full((2,), 3.0))
    assert torch.equal(merge_tensors(tensors, "sum"), torch.full((2,), 1 + 1 + 5.0))


def test_foreground_tokens_are_never_merged() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(ViTConfig(embed_dim=64, depth=4, num_heads=2)).eval()
    apply_merge_plan(vit, _plan(tokens={"keep": 90, "per_layer": 40, "layers": 3,
                                        "mask": "foreground"}))
    foreground = torch.zeros(2, 192, dtype=torch.bool)
    grid = foreground.view(2, 16, 12)
    grid[0, 4:12, 3:9] = True  # a central blob (48 tokens)
    grid[1, :, 10:] = True  # two right columns (32 tokens)
    with torch.no_grad():
        tokens, state = vit.forward_tokens(torch.randn(2, 3, 256, 192), foreground,
                                           track_source=True)
    assert tokens.shape == (2, 90, 64)
    source = state.source  # (B, 90, 192): which input tokens each output token holds
    assert torch.equal(source.sum(dim=1), torch.ones(2, 192))  # every token lands once
    assert torch.equal(state.size, source.sum(dim=2))
    for b in range(2):
        for token in foreground[b].nonzero()[:, 0]:
            holder = source[b, :, token].nonzero()[:, 0]
            assert len(holder) == 1
            assert source[b, holder[0]].sum() == 1, "a foreground token was merged"
        assert torch.equal(state.foreground[b].sum(), foreground[b].sum())


def test_plain_tome_without_mask_merges_everywhere() -> None:
    x = torch.randn(1, 8, 4)
    keys = x.clone()
    keys[:, 1] = keys[:, 0]  # token 0 (A) and 1 (B) identical: merged first
    merged, state = bipartite_merge(x, keys, 1, TokenState(source=torch.eye(8)[None]))
    assert merged.shape == (1, 7, 4)
    holder = state.source[0, :, 0].nonzero()[0, 0]
    assert state.source[0, holder, 1] == 1
    assert torch.allclose(merged[0, holder], (x[0, 0] + x[0, 1]) / 2)
    assert state.size[0, holder] == 2


def test_merged_model_runs_with_fewer_tokens(regressor) -> None:
    apply_merge_plan(regressor, _plan(layers={"merge": [[3, 5]]},
                                      tokens={"keep": 90, "per_layer": 40, "layers": 3}))
    assert needs_foreground(regressor)
    foreground = torch.zeros(2, 192, dtype=torch.bool)
    foreground[:, 60:100] = True
    with torch.no_grad():
        features = regressor.backbone(_crops()[..., 32:224], foreground)
        out = regressor.mano_head(features)
    assert features.shape == (2, 90, 64)
    assert out["betas"].shape == (2, 10) and torch.isfinite(out["cam"]).all()


def test_plan_file_round_trip_and_errors(tmp_path, regressor) -> None:
    plan = _plan(layers={"merge": [[27, 31]], "rule": "sum"},
                 tokens={"keep": 90, "per_layer": 40, "layers": 3, "mask": "foreground"})
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    parsed = load_merge_plan(path)
    assert parsed.merge == ((27, 31),) and parsed.tokens.keep == 90
    assert plan_from_dict(parsed.to_dict()) == parsed
    assert load_merge_plan("none") is None
    cases = {
        "'format'": {"format": "v0"},
        "layers.rule": _plan(layers={"merge": [[1, 2]], "rule": "median"}),
        "layers.merge\\[0\\]": _plan(layers={"merge": [[3, 1]]}),
        "overlaps": _plan(layers={"merge": [[1, 3], [3, 4]]}),
        "tokens: 'keep'": _plan(tokens={"keep": "90", "per_layer": 40, "layers": 3}),
        "tokens.mask": _plan(tokens={"keep": 90, "per_layer": 40, "layers": 3, "mask": "x"}),
        "unknown field\\(s\\) colour": _plan(colour=1),
        "checkpoint_sha256": _plan(checkpoint_sha256="abc"),
    }
    for match, data in cases.items():
        with pytest.raises(MergePlanError, match=match):
            plan_from_dict(data)
    with pytest.raises(MergePlanError, match="this ViT has 6 blocks"):
        apply_merge_plan(regressor, plan)
    with pytest.raises(MergePlanError, match="not readable JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_merge_plan(tmp_path / "bad.json")


def test_plan_for_another_checkpoint_is_refused(mano) -> None:
    model = random_hand_regressor(DEEP_CONFIG, mano, seed=3)
    other = random_hand_regressor(DEEP_CONFIG, mano, seed=4)
    plan = _plan(layers={"merge": [[4, 5]]}, checkpoint_sha256=backbone_sha256(model))
    with pytest.raises(MergePlanError, match="made for another checkpoint"):
        apply_merge_plan(other, plan)
    apply_merge_plan(model, plan)
    assert len(model.backbone.blocks) == 5
    assert model.config["merge_plan"]["layers"]["merge"] == [[4, 5]]
    with pytest.raises(MergePlanError, match="already has a merge plan"):
        apply_merge_plan(model, plan)


def test_students_are_refused(mano) -> None:
    pytest.importorskip("timm")
    from fasthmr_ros.models.students import build_student

    student = build_student("resnet18", mano)
    with pytest.raises(MergePlanError, match="ViT teachers"):
        apply_merge_plan(student, _plan(tokens={"keep": 90, "per_layer": 40, "layers": 3}))


def test_load_hand_regressor_applies_plan(test_assets, tmp_path) -> None:
    from fasthmr_ros import load_hand_regressor

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_plan(layers={"merge": [[0, 1]]},
                                     tokens={"keep": 142, "per_layer": 50, "layers": 1,
                                             "mask": "none"})))
    model = load_hand_regressor(test_assets.checkpoint, merge_plan=path)
    assert len(model.backbone.blocks) == 1
    assert not needs_foreground(model)
    with torch.no_grad():
        assert model(_crops(1))["vertices"].shape == (1, 778, 3)


def test_sliding_window_search_commits_final_window() -> None:
    # Error = blocks removed; budget 2.5 allows removing at most 2 blocks in total.
    def removed(runs):
        return float(sum(hi - lo for lo, hi in runs))

    assert sliding_window_search(6, removed, 2.5) == [(3, 5)]
    # A free model: everything folds into block 0 (the window open at the end is committed).
    assert sliding_window_search(6, lambda runs: 0.0, 0.1) == [(0, 5)]
    # Nothing passes: nothing is merged.
    assert sliding_window_search(6, lambda runs: 9.0, 0.1) == []


def test_merged_models_export_to_onnx_with_parity(regressor, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from fasthmr_ros.engines.base import create_engine
    from fasthmr_ros.engines.onnx_export import fingerprint, read_metadata

    unmerged = fingerprint(regressor)
    apply_merge_plan(regressor, _plan(layers={"merge": [[3, 5]]},
                                      tokens={"keep": 90, "per_layer": 40, "layers": 3}))
    foreground = torch.zeros(3, 192)
    foreground[:, 50:90] = 1
    crops = _crops(3)
    with torch.no_grad():
        expected = regressor(crops, foreground)
    engine = create_engine(regressor, "onnxruntime", cache_dir=tmp_path)
    for flags in (foreground, None):  # None: no foreground, plain ToMe in both
        with torch.no_grad():
            reference = expected if flags is not None else regressor(crops)
        got = engine(crops, flags)
        for key, value in reference.items():
            assert torch.allclose(got[key], value, atol=1e-5), key
    graph = engine.runner.onnx_path
    assert json.loads(read_metadata(graph)["fasthmr_merge_plan"])["tokens"]["keep"] == 90
    assert fingerprint(regressor) != unmerged


def test_token_plans_change_the_engine_cache_key(mano) -> None:
    from fasthmr_ros.engines.onnx_export import fingerprint

    prints = set()
    for keep in (None, 150, 90):
        model = random_hand_regressor(DEEP_CONFIG, mano, seed=3)
        if keep is not None:  # same weights: only the token schedule differs
            apply_merge_plan(model, _plan(tokens={"keep": keep, "per_layer": 60,
                                                  "layers": 2, "mask": "none"}))
        prints.add(fingerprint(model))
    assert len(prints) == 3


def test_bench_measures_plans_in_one_run(tmp_path) -> None:
    from fasthmr_ros.engines.benchmark import markdown_table, run_benchmark

    plan = tmp_path / "tiny.json"
    plan.write_text(json.dumps(_plan(layers={"merge": [[0, 1]]},
                                     tokens={"keep": 96, "per_layer": 96, "layers": 1})))
    report = run_benchmark(["small"], warmup=0, iterations=1, progress=False,
                           merge_plans=["none", str(plan)])
    base, merged = report.measured()
    assert merged.variant.label == "small/torch/fp32/b1/plan-tiny"
    assert base.output_change_mm == 0.0 and merged.output_change_mm > 0.0
    # Counted, not estimated: one block instead of two, and half the tokens after it.
    assert merged.macs_g < 0.6 * base.macs_g
    assert merged.macs_without_attention_g < merged.macs_g
    assert "plan-tiny" in markdown_table(report)


def test_merged_models_are_not_saved_as_checkpoints(regressor, tmp_path) -> None:
    from fasthmr_ros.models.registry import save_regressor

    apply_merge_plan(regressor, _plan(layers={"merge": [[0, 1]]}))
    with pytest.raises(ValueError, match="save the unmerged model"):
        save_regressor(regressor, tmp_path / "merged.pt")


def test_masked_graphs_take_the_tensorrt_path(regressor, tmp_path) -> None:
    """What TensorRT needs without a GPU: the signature check, and the fp16 graph a strongly
    typed build parses (run here in ONNX Runtime with both inputs)."""
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    from fasthmr_ros.engines.base import NETWORK_FOREGROUND, NETWORK_INPUT
    from fasthmr_ros.engines.onnx_export import export_onnx
    from fasthmr_ros.engines.onnx_precision import convert_onnx_precision
    from fasthmr_ros.engines.tensorrt import check_engine_io
    from fasthmr_ros.models.regressor import NETWORK_OUTPUTS

    check_engine_io([NETWORK_INPUT, NETWORK_FOREGROUND], list(NETWORK_OUTPUTS))
    apply_merge_plan(regressor, _plan(tokens={"keep": 90, "per_layer": 40, "layers": 3}))
    source = export_onnx(regressor, tmp_path / "net.onnx")
    target = tmp_path / "net-fp16.onnx"
    convert_onnx_precision(source, target, "fp16")
    crops = np.random.default_rng(1).standard_normal((2, 3, 256, 256)).astype(np.float32)
    flags = np.zeros((2, 192), np.float32)
    flags[:, 60:110] = 1
    feed = {NETWORK_INPUT: crops, NETWORK_FOREGROUND: flags}
    reference, reduced = (
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
            list(NETWORK_OUTPUTS), feed) for p in (source, target))
    for ref, low in zip(reference, reduced):
        assert np.isfinite(low).all()
        assert np.abs(low - ref).max() <= 5e-2 * max(1.0, np.abs(ref).max())
