"""scripts/gpu-check.sh (issue 14): its CPU path end to end on small models, and its checks.

The script is meant for a lent GPU; here it runs with ``--device cpu`` (fp16 and CUDA graphs
are then skipped by the engine with their reasons, which the report must carry). The graphs-vs-
eager check needs CUDA timings, so it is tested on hand-made bench results.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check.sh"


def _report_module():
    spec = importlib.util.spec_from_file_location(
        "gpu_check_report", REPO / "scripts" / "gpu_check_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    result = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--teacher", "small",
         "--student", "mobilenetv3_small_050", "--precisions", "fp32,bf16,fp16",
         "--batches", "1,2", "--iterations", "2", "--warmup", "1", "--no-merged",
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHON": sys.executable, "OUT": ""},
    )
    return result, out


def test_cpu_path_writes_the_report_files(cpu_run) -> None:
    result, out = cpu_run
    assert {p.name for p in out.iterdir()} == {"gpu-check.json", "gpu-check.md",
                                                "gpu-check.log"}, result.stdout + result.stderr
    document = json.loads((out / "gpu-check.json").read_text())
    assert list(document["runs"]) == ["teacher", "student"]
    assert document["failed_runs"] == []
    for name, model in (("teacher", "small"), ("student", "mobilenetv3_small_050")):
        results = {r["label"]: r for r in document["runs"][name]["results"]}
        assert len(results) == 3 * 2 * 2  # precisions x graphs on/off x batches
        for label, r in results.items():
            assert label.startswith(f"{model}/torch/")
            if "/fp16/" in label:
                assert "fp16 on CUDA only" in r["skipped"]
            elif label.endswith("/graphs"):
                assert "needs device='cuda'" in r["skipped"]
            else:
                assert r["skipped"] is None, label
                assert r["stages"]["network"]["samples"] == 2
                assert r["output_change_mm"] is not None and r["joints_change_mm"] is not None
                if "/fp32/" in label:
                    assert r["output_change_mm"] < 0.01 and r["joints_change_mm"] < 0.01
                else:
                    assert r["output_change_mm"] > 0  # bf16 really ran
        assert document["runs"][name]["settings"]["cuda_graphs"] == [False, True]
    assert "no merged-teacher run" in (out / "gpu-check.log").read_text()


def test_cpu_path_checks_and_exit_status(cpu_run) -> None:
    result, out = cpu_run
    document = json.loads((out / "gpu-check.json").read_text())
    checks = document["checks"]
    assert sorted(c["variant"] for c in checks) == sorted(
        f"{model}/torch/bf16/b{b}/eager"
        for model in ("small", "mobilenetv3_small_050") for b in (1, 2)
    )
    for check in checks:
        run = document["runs"][check["run"]]
        (r,) = [r for r in run["results"] if r["label"] == check["variant"]]
        assert check["passed"] == (max(r["output_change_mm"], r["joints_change_mm"]) <= 1.0)
    assert result.returncode == int(not all(c["passed"] for c in checks)), result.stdout
    text = (out / "gpu-check.md").read_text()
    assert "## Checks" in text and "## teacher: per crop" in text
    assert "### student: `fasthmr bench` table" in text  # the product's own table, verbatim
    assert "change vs fp32 mm (vertices / joints)" in text
    assert "cuda_graphs=True needs device='cuda'" in text


def _result(label: str, batch: int, graphs: bool | None, network_ms: float, **extra) -> dict:
    return {"label": label, "batch": batch, "cuda_graphs": graphs, "precision": "fp32",
            "skipped": None, "stages": {"network": {"median_ms": network_ms, "p90_ms": 0.0}},
            **extra}


def test_graph_check_pairs_batch_one_variants() -> None:
    module = _report_module()
    report = {"results": [
        _result("t/torch/fp32/b1/graphs", 1, True, 1.0),
        _result("t/torch/fp32/b1/eager", 1, False, 1.5),
        _result("t/torch/bf16/b1/graphs", 1, True, 2.0),
        _result("t/torch/bf16/b1/eager", 1, False, 1.0),
        _result("t/torch/fp16/b1/graphs", 1, True, 1.01),  # within the 2 % noise allowance
        _result("t/torch/fp16/b1/eager", 1, False, 1.0),
        _result("t/torch/fp32/b8/graphs", 8, True, 9.0),  # batch 8: not a check
        _result("t/torch/fp32/b8/eager", 8, False, 1.0),
        _result("t/torch/fp32/b1", 1, None, 1.0),  # engine default: not a pair
    ]}
    checks = {c["variant"]: c["passed"] for c in module.graph_checks("teacher", report)}
    assert checks == {"t/torch/fp32/b1": True, "t/torch/bf16/b1": False, "t/torch/fp16/b1": True}


def test_precision_check_and_failed_runs(tmp_path: Path) -> None:
    module = _report_module()
    report = {
        "settings": {"device": "cuda"}, "environment": {"cuda": "NVIDIA H200"},
        "results": [
            {**_result("t/torch/fp16/b1", 1, None, 1.0, output_change_mm=0.2,
                       joints_change_mm=0.1, total_per_crop_ms=2.0), "precision": "fp16"},
            {**_result("t/torch/bf16/b1", 1, None, 1.0, output_change_mm=0.5,
                       joints_change_mm=1.5, total_per_crop_ms=2.0), "precision": "bf16"},
        ],
    }
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "teacher.json").write_text(json.dumps(report))
    out = tmp_path / "out"
    assert module.main(["--runs", str(runs), "--out", str(out)]) == 1  # bf16 joints 1.5 mm
    document = json.loads((out / "gpu-check.json").read_text())
    assert [c["passed"] for c in document["checks"]] == [True, False]
    report["results"] = report["results"][:1]
    (runs / "teacher.json").write_text(json.dumps(report))
    assert module.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert module.main(["--runs", str(runs), "--out", str(out), "--failed", "merged"]) == 1
    assert "**Failed runs:** merged" in (out / "gpu-check.md").read_text()
    assert "GPU NVIDIA H200" in (out / "gpu-check.md").read_text()


def test_script_refuses_unknown_options() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--fast"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "unknown option '--fast'" in result.stderr
