"""``fasthmr eval`` end to end on a tiny synthetic FreiHAND root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fasthmr_ros.cli.main import main
from fasthmr_ros.pipeline.metrics import evaluate_hands

REPO = Path(__file__).resolve().parents[1]
COUNT = 6


@pytest.fixture
def freihand_eval(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    root = tmp_path / "freihand"
    root.mkdir()
    joints = rng.normal(scale=0.04, size=(COUNT, 21, 3)) + np.array([0.0, 0.0, 0.7])
    verts = rng.normal(scale=0.04, size=(COUNT, 778, 3)) + np.array([0.0, 0.0, 0.7])
    (root / "evaluation_xyz.json").write_text(json.dumps(joints.tolist()))
    (root / "evaluation_verts.json").write_text(json.dumps(verts.tolist()))
    return {"root": root, "joints": joints, "verts": verts, "tmp": tmp_path}


def _write_pred(path: Path, joints, verts) -> Path:
    path.write_text(json.dumps([np.asarray(joints).tolist(), np.asarray(verts).tolist()]))
    return path


def test_transformed_ground_truth_scores_perfectly(freihand_eval, capsys):
    rot = Rotation.from_euler("xyz", [10, 70, -30], degrees=True).as_matrix()
    joints = 1.3 * freihand_eval["joints"] @ rot.T + 0.1
    verts = 1.3 * freihand_eval["verts"] @ rot.T + 0.1
    pred = _write_pred(freihand_eval["tmp"] / "pred.json", joints, verts)
    out = freihand_eval["tmp"] / "out" / "scores.json"
    code = main(
        [
            "eval",
            "--dataset",
            "freihand",
            "--root",
            str(freihand_eval["root"]),
            "--pred",
            str(pred),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| PA-MPJPE | 0.00 mm |" in printed and "| F@5mm (aligned) | 1.000 |" in printed
    scores = json.loads(out.read_text())
    assert scores["count"] == COUNT and scores["dataset"] == "freihand"
    assert scores["pa_mpjpe_mm"] < 1e-4 and scores["pa_mpvpe_mm"] < 1e-4
    assert scores["f5"] == 1.0 and scores["f15"] == 1.0
    assert scores["mpjpe_rr_mm"] > 10.0  # rotation and scale are not removed there


def test_noisy_predictions_match_the_library(freihand_eval):
    rng = np.random.default_rng(1)
    joints = freihand_eval["joints"] + rng.normal(scale=0.005, size=(COUNT, 21, 3))
    verts = freihand_eval["verts"] + rng.normal(scale=0.005, size=(COUNT, 778, 3))
    pred = _write_pred(freihand_eval["tmp"] / "pred.json", joints, verts)
    out = freihand_eval["tmp"] / "scores.json"
    assert (
        main(
            [
                "eval",
                "--dataset",
                "freihand",
                "--root",
                str(freihand_eval["root"]),
                "--pred",
                str(pred),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    scores = json.loads(out.read_text())
    expected = evaluate_hands(
        freihand_eval["joints"], joints, freihand_eval["verts"], verts
    ).as_dict()
    for key in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_rr_mm", "mpjpe_mm"):
        assert scores[key] == pytest.approx(expected[key], rel=1e-12), key
    assert 0.0 < scores["f5"] < scores["f15"] <= 1.0
    assert 5.0 < scores["pa_mpjpe_mm"] < 11.0


def test_teacher_agreement_mode(freihand_eval, capsys):
    tmp = freihand_eval["tmp"]
    teacher = _write_pred(tmp / "teacher.json", freihand_eval["joints"], freihand_eval["verts"])
    student_j = freihand_eval["joints"] + 0.003
    student = _write_pred(tmp / "student.json", student_j, freihand_eval["verts"] + 0.003)
    out = tmp / "agreement.json"
    assert (
        main(
            [
                "eval",
                "--dataset",
                "teacher",
                "--teacher",
                str(teacher),
                "--pred",
                str(student),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert "Student vs teacher" in capsys.readouterr().out
    scores = json.loads(out.read_text())
    assert scores["pa_mpjpe_mm"] < 1e-4  # a pure shift: aligned away
    assert scores["mpjpe_mm"] == pytest.approx(3.0 * np.sqrt(3.0))
    # Joints only, when the files carry no vertices.
    _write_pred(tmp / "teacher_j.json", freihand_eval["joints"], [])
    _write_pred(tmp / "student_j.json", student_j, [])
    assert (
        main(
            [
                "eval",
                "--dataset",
                "teacher",
                "--teacher",
                str(tmp / "teacher_j.json"),
                "--pred",
                str(tmp / "student_j.json"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    scores = json.loads(out.read_text())
    assert scores["pa_mpvpe_mm"] is None and scores["f5"] is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j, v: (j[:-1], v[:-1]), "has 5 samples but the reference has 6"),
        (lambda j, v: (j, v[:-1]), "6 joint sets but 5 vertex sets"),
        (lambda j, v: (j[:, :20], v), "joints must be N×21×3"),
        (lambda j, v: (j[..., :2], v), "joints must be N×K×3"),
        (lambda j, v: (j, np.full_like(v, np.nan)), "NaN or infinity"),
    ],
)
def test_bad_prediction_files_fail_clearly(freihand_eval, capsys, mutate, message):
    joints, verts = mutate(freihand_eval["joints"], freihand_eval["verts"])
    pred = _write_pred(freihand_eval["tmp"] / "pred.json", joints, verts)  # NaN -> JSON NaN
    code = main(
        [
            "eval",
            "--dataset",
            "freihand",
            "--root",
            str(freihand_eval["root"]),
            "--pred",
            str(pred),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_and_malformed_inputs(freihand_eval, capsys):
    root, tmp = freihand_eval["root"], freihand_eval["tmp"]
    pred = _write_pred(tmp / "pred.json", freihand_eval["joints"], freihand_eval["verts"])
    cases = [
        (["--root", str(root), "--pred", str(tmp / "absent.json")], "prediction file not found"),
        (["--pred", str(pred)], "needs --root"),
        (["--root", str(tmp / "nowhere"), "--pred", str(pred)], "not a folder"),
    ]
    bad_json = tmp / "bad.json"
    bad_json.write_text("[[1, 2]")
    cases.append((["--root", str(root), "--pred", str(bad_json)], "not valid JSON"))
    single = tmp / "single.json"
    single.write_text(json.dumps([freihand_eval["joints"].tolist()]))
    cases.append((["--root", str(root), "--pred", str(single)], "list of two lists"))
    for extra, message in cases:
        assert main(["eval", "--dataset", "freihand", *extra]) == 2
        assert message in capsys.readouterr().err, message
    (root / "evaluation_verts.json").unlink()
    assert main(["eval", "--dataset", "freihand", "--root", str(root), "--pred", str(pred)]) == 2
    assert "evaluation_verts.json" in capsys.readouterr().err
    assert main(["eval", "--dataset", "teacher", "--pred", str(pred)]) == 2
    assert "needs --teacher" in capsys.readouterr().err


def test_real_command_line(freihand_eval):
    pred = _write_pred(
        freihand_eval["tmp"] / "pred.json", freihand_eval["joints"], freihand_eval["verts"]
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fasthmr_ros.cli.main",
            "eval",
            "--dataset",
            "freihand",
            "--root",
            str(freihand_eval["root"]),
            "--pred",
            str(pred),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| PA-MPVPE |" in done.stdout and "(6 samples)" in done.stdout
