"""``fasthmr bench`` on tiny settings: runs, writes JSON / markdown / PNG, computes ratios."""

from __future__ import annotations

import importlib.util
import json

import cv2
import pytest

from fasthmr_ros.cli.bench import engine_options
from fasthmr_ros.cli.main import build_parser, main
from fasthmr_ros.engines.benchmark import (
    STAGES,
    BenchReport,
    StageStats,
    Variant,
    VariantResult,
    apply_ratios,
    body_hand_comparison,
    body_hand_pairs,
    markdown_table,
    run_benchmark,
)


def test_stage_stats():
    stats = StageStats.from_samples([float(v) for v in range(1, 101)])
    assert stats.median_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5) and stats.samples == 100
    with pytest.raises(ValueError, match="no samples"):
        StageStats.from_samples([])


def test_ratios_come_from_per_crop_latency():
    def result(batch: int, network: float) -> VariantResult:
        r = VariantResult(Variant("m", "torch", "fp32", batch))
        r.stages = {s: StageStats(network if s == "network" else 1.0, 0, 0, 0, 1)
                    for s in STAGES}
        return r

    base, batched = result(1, 10.0), result(4, 20.0)
    apply_ratios([base, batched], base)
    assert base.speedup_network == 1.0
    assert batched.speedup_network == pytest.approx(10.0 / 5.0)
    others = len(STAGES) - 1  # every other stage takes 1 ms
    assert batched.speedup_total == pytest.approx((10.0 + others) / ((20.0 + others) / 4))


def test_body_hand_comparison_pairs_variants_alike_but_for_the_model():
    def result(model: str, batch: int, engine: str, mesh_ms: float) -> VariantResult:
        r = VariantResult(Variant(model, engine, "fp32", batch))
        r.stages = {s: StageStats(mesh_ms if s == "mesh" else 1.0, 0, 0, 0, 1)
                    for s in STAGES if s != "detect"}
        return r

    hand, body = result("small", 1, "torch", 0.5), result("body-small", 1, "torch", 0.75)
    others = [result("small", 2, "torch", 1.0), result("small", 1, "onnxruntime", 1.0)]
    report = BenchReport({}, {}, [hand, body, *others])
    assert body_hand_pairs(report) == [(body, hand)]
    table = body_hand_comparison(report)
    assert "| body-small/torch/fp32/b1 vs small/torch/fp32/b1 | " in table
    assert "0.75 / 0.50 (1.50x)" in table and "1.00 / 1.00 (1.00x)" in table
    assert "detect" not in table and "network" not in table  # not timed / not compared
    assert body_hand_comparison(BenchReport({}, {}, [hand, *others])) == ""


def test_cli_bench_writes_json_markdown_and_plot(tmp_path, capsys):
    files = {k: tmp_path / f"bench.{k}" for k in ("json", "md", "png")}
    code = main([
        "bench", "--models", "small", "--engines", "torch,onnxruntime",
        "--precisions", "fp32,fp16", "--batches", "1,2", "--input-scales", "1,0.75",
        "--iterations", "2", "--warmup", "1", "--cache-dir", str(tmp_path / "cache"),
        "--json", str(files["json"]), "--markdown", str(files["md"]),
        "--plot", str(files["png"]),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(files["json"].read_text())
    results = {r["label"]: r for r in report["results"]}
    assert len(results) == 2 * 2 * 2 * 2
    assert report["baseline"] == "small/torch/fp32/b1"
    assert results["small/torch/fp32/b1"]["speedup_network"] == 1.0
    for label, r in results.items():
        if "/fp16/" in label:
            assert r["skipped"] and "fp16" in r["skipped"]
            continue
        assert r["skipped"] is None
        timed = set(STAGES) if importlib.util.find_spec("mediapipe") else set(STAGES) - {"detect"}
        assert set(r["stages"]) == timed
        assert all(s["samples"] == 2 and s["median_ms"] > 0 for s in r["stages"].values())
        assert r["speedup_network"] > 0
        if "/s0.75" in label:
            assert r["output_change_mm"] > 0  # a lower resolution changes the outputs
        else:
            assert r["output_change_mm"] < 0.01  # fp32 engines agree with eager PyTorch
    table = files["md"].read_text()
    assert table in printed
    assert "| small/onnxruntime/fp32/b2/s0.75 | onnxruntime-fp32-CPU |" in table
    assert "Skipped:" in table
    image = cv2.imread(str(files["png"]))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 500


def test_bench_with_a_checkpoint_a_student_and_baseline(test_assets):
    report = run_benchmark([f"mine={test_assets.checkpoint}", "mobilenetv3_large_100"],
                           batches=[1], warmup=0, iterations=1,
                           baseline="mobilenetv3_large_100/torch/fp32/b1", progress=False)
    assert report.baseline == "mobilenetv3_large_100/torch/fp32/b1"
    assert [r.variant.model for r in report.results] == ["mine", "mobilenetv3_large_100"]
    student = report.results[1]
    assert student.speedup_network == 1.0 and student.engine_name.endswith("-cl")
    table = markdown_table(report)
    assert "| mobilenetv3_large_100/torch/fp32/b1 |" in table and "| mine/torch/fp32/b1 |" in table


def test_mediapipe_detect_stage(tmp_path):
    pytest.importorskip("mediapipe", reason="the detect stage times MediaPipe (extra 'detect')")
    out = tmp_path / "bench.json"
    code = main(["bench", "--models", "small", "--iterations", "2", "--warmup", "0",
                 "--detector", "mediapipe", "--json", str(out)])
    assert code == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["stages"]["detect"]["samples"] == 2


def test_detect_and_serialize_stages_are_optional(tmp_path):
    out = tmp_path / "bench.json"
    code = main(["bench", "--models", "small", "--iterations", "2", "--warmup", "0",
                 "--detector", "none", "--no-serialize", "--json", str(out)])
    assert code == 0
    (result,) = json.loads(out.read_text())["results"]
    assert set(result["stages"]) == set(STAGES) - {"detect", "serialize"}


def test_cli_bench_errors(capsys):
    assert main(["bench", "--baseline", "nope/torch/fp32/b1", "--iterations", "1"]) == 2
    assert "baseline 'nope/torch/fp32/b1' is not one of the variants" in capsys.readouterr().err
    assert main(["bench", "--models", "not_a_timm_model", "--iterations", "1"]) == 2
    assert "neither teacher nor small" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--batches", "one"])
    assert "bad list of batch sizes" in capsys.readouterr().err


def test_cli_bench_engine_options(tmp_path, capsys):
    args = build_parser().parse_args(["bench", "--cache-dir", str(tmp_path), "--threads", "2"])
    options = engine_options(args)
    assert options["onnxruntime"] == {"threads": 2, "cache_dir": str(tmp_path)}
    assert options["tensorrt"] == {"cache_dir": str(tmp_path)}  # engines go to DIR/engines
    assert main(["bench", "--threads", "0", "--iterations", "1"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_cuda_graph_settings_are_a_variant_dimension(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--models", "small", "--engines", "torch,onnxruntime",
                 "--cuda-graphs", "off,on,default", "--iterations", "1", "--warmup", "0",
                 "--detector", "none", "--no-serialize", "--cache-dir", str(tmp_path / "cache"),
                 "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["settings"]["cuda_graphs"] == [False, True, None]
    results = {r["label"]: r for r in report["results"]}
    assert set(results) == {f"small/{e}/fp32/b1{s}" for e in ("torch", "onnxruntime")
                            for s in ("/eager", "/graphs", "")}
    graphs = results["small/torch/fp32/b1/graphs"]
    assert "cuda_graphs=True needs device='cuda'" in graphs["skipped"]
    for label in ("small/onnxruntime/fp32/b1/eager", "small/onnxruntime/fp32/b1/graphs"):
        assert "has no option(s) cuda_graphs" in results[label]["skipped"]
    for label in ("small/torch/fp32/b1/eager", "small/torch/fp32/b1",
                  "small/onnxruntime/fp32/b1"):
        r = results[label]
        assert r["skipped"] is None
        assert r["output_change_mm"] < 0.01 and r["joints_change_mm"] < 0.01
    assert results["small/torch/fp32/b1/eager"]["engine_name"] == "torch-fp32-cpu"
    printed = capsys.readouterr().out
    assert "change vs fp32 mm (vertices / joints)" in printed
    with pytest.raises(SystemExit):
        main(["bench", "--cuda-graphs", "maybe"])
    assert "bad list of CUDA-graph settings" in capsys.readouterr().err


def test_bf16_change_is_reported_for_vertices_and_joints():
    report = run_benchmark(["small"], precisions=["fp32", "bf16"], warmup=0, iterations=1,
                           progress=False)
    fp32, bf16 = report.results
    assert fp32.output_change_mm < 0.01 and fp32.joints_change_mm < 0.01
    assert 0 < bf16.output_change_mm < 5 and 0 < bf16.joints_change_mm < 5
    assert bf16.to_dict()["joints_change_mm"] == bf16.joints_change_mm


@pytest.mark.skipif(not __import__("torch").cuda.is_available(),
                    reason="needs a CUDA GPU: CUDA graphs against eager launches on the device "
                    "(scripts/gpu-check.sh runs the full check there)")
def test_cuda_graphs_on_and_off_on_the_gpu():
    report = run_benchmark(["small"], precisions=["fp32", "fp16", "bf16"], batches=[1, 3],
                           cuda_graphs=[False, True], device="cuda", warmup=2, iterations=3,
                           progress=False)
    assert not [r.variant.label for r in report.results if r.skipped]
    for r in report.results:
        limit = 0.01 if r.variant.precision == "fp32" else 1.0
        assert r.output_change_mm < limit and r.joints_change_mm < limit, r.variant.label


def test_cli_bench_times_the_landmark_fit(tmp_path, capsys):
    pytest.importorskip("mediapipe", reason="the landmark fit needs the detect extra")
    out = tmp_path / "b.json"
    assert main(["bench", "--fit", "1,2", "--models", "none", "--warmup", "1",
                 "--iterations", "2", "--detector", "none", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Landmark fit" in printed and "fit / hand ms" in printed
    rows = json.loads((tmp_path / "b_fit.json").read_text())
    assert [r["hands"] for r in rows] == [1, 2]
    assert all(r["fit_per_hand_ms"] > 0 and r["mean_residual_px"] < 4 for r in rows)
    assert "serialize" in rows[0]["stages"]


def test_bench_bodies_hands_alike(body_assets):
    """Body models run the same stages (HMR2.0 crops, SMPL) on torch and ONNX Runtime."""
    report = run_benchmark(
        ["small", "body-small", f"body-file={body_assets.yacs_checkpoint}"],
        engines=["torch", "onnxruntime"], batches=[1, 2], warmup=0, iterations=1,
        progress=False,
    )
    results = {r.variant.label: r for r in report.results}
    assert len(results) == 3 * 2 * 2 and all(r.skipped is None for r in results.values())
    for label, r in results.items():
        assert {"decode", "crop", "network", "mesh", "post"} <= set(r.stages), label
        assert r.output_change_mm < 0.05, label  # fp32 engines agree with eager PyTorch
    table = markdown_table(report)
    assert "| body-file/onnxruntime/fp32/b2 |" in table
    # Both body models stand against the one hand model, engine by engine, batch by batch.
    pairs = {(b.variant.label, h.variant.label) for b, h in body_hand_pairs(report)}
    assert len(pairs) == 2 * 2 * 2
    assert ("body-small/onnxruntime/fp32/b2", "small/onnxruntime/fp32/b2") in pairs
    assert "| body-small/torch/fp32/b1 vs small/torch/fp32/b1 | " in table


def test_bench_body_with_a_masked_merge_plan(tmp_path):
    """Body models take merge plans like hands; boxes without masks merge as plain ToMe."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "fasthmr-merge-plan/1", "layers": {"merge": [[0, 1]]},
                                "tokens": {"keep": 150, "per_layer": 42, "layers": 1,
                                           "mask": "foreground"}}))
    report = run_benchmark(["body-small"], merge_plans=["none", str(plan)], warmup=0,
                           iterations=1, progress=False)
    base, merged = report.results
    assert base.skipped is None and merged.skipped is None, merged.skipped
    assert merged.macs_g < base.macs_g
    assert merged.variant.label.endswith("/plan-plan")
