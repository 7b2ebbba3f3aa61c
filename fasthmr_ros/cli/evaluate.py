"""``fasthmr eval``: FreiHAND-protocol accuracy, or student-teacher agreement.

Predictions use FreiHAND's submission format: a JSON file holding
``[joints (N×21×3), vertices (N×778×3)]`` in metres, camera frame, OpenPose joint order.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fasthmr_ros.cli.main import CommandError
from fasthmr_ros.models.constants import NUM_JOINTS
from fasthmr_ros.pipeline.datasets.freihand import load_freihand_ground_truth
from fasthmr_ros.pipeline.datasets.sample import DatasetFormatError
from fasthmr_ros.pipeline.metrics import HandEvaluation, ProgressWrapper, evaluate_hands

_LOG = logging.getLogger(__name__)
_FORMAT = "[joints (N×21×3), vertices (N×778×3)] in metres (FreiHAND's pred.json format)"
#: Coordinates beyond this (metres) suggest millimetres were written instead of metres.
_PLAUSIBLE_RANGE_M = 20.0

_ROWS: tuple[tuple[str, str, str], ...] = (
    ("pa_mpjpe_mm", "PA-MPJPE", "mm"),
    ("pa_mpvpe_mm", "PA-MPVPE", "mm"),
    ("f5", "F@5mm (aligned)", ""),
    ("f15", "F@15mm (aligned)", ""),
    ("mpjpe_rr_mm", "MPJPE, root-relative", "mm"),
    ("mpjpe_mm", "MPJPE, absolute", "mm"),
    ("mpvpe_mm", "MPVPE, absolute", "mm"),
    ("auc_pa_joints", "AUC PA joints 0-50 mm", ""),
    ("auc_pa_vertices", "AUC PA vertices 0-50 mm", ""),
    ("f5_unaligned", "F@5mm (unaligned)", ""),
    ("f15_unaligned", "F@15mm (unaligned)", ""),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` sub-command."""
    parser = subparsers.add_parser(
        "eval",
        help="measure predictions with the FreiHAND protocol, or a student against its teacher",
        description=(
            "Measure 3D hand predictions the way FreiHAND's eval.py does: PA-MPJPE and\n"
            "PA-MPVPE after Procrustes alignment with scale (reflections allowed), F-scores at\n"
            "5 and 15 mm (strict <), root-relative MPJPE and PCK AUC.\n\n"
            "Predictions: a JSON file " + _FORMAT + ".\n"
            "--dataset freihand: the reference is ROOT/<set>_xyz.json and ROOT/<set>_verts.json.\n"
            "--dataset teacher: the reference is the teacher's prediction file (--teacher); this\n"
            "measures how closely a student reproduces its teacher on unlabelled images."
        ),
        epilog=(
            "examples:\n"
            "  fasthmr eval --dataset freihand --root FreiHAND_pub_v2 --pred pred.json "
            "--json scores.json\n"
            "  fasthmr eval --dataset teacher --teacher teacher.json --pred student.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        choices=("freihand", "teacher"),
        required=True,
        help="reference: FreiHAND ground truth, or a teacher's predictions",
    )
    parser.add_argument("--pred", required=True, type=Path, help="predictions to evaluate")
    parser.add_argument(
        "--root", type=Path, help="FreiHAND folder holding <set>_xyz.json and <set>_verts.json"
    )
    parser.add_argument(
        "--set-name",
        default="evaluation",
        help="FreiHAND annotation prefix (default: evaluation)",
    )
    parser.add_argument(
        "--teacher", type=Path, help="teacher predictions (same format), for --dataset teacher"
    )
    parser.add_argument("--json", dest="json_out", type=Path, help="write the results here")
    parser.set_defaults(func=_run)


def load_predictions(
    path: Path, require_vertices: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a prediction file: ``(joints (N, 21, 3), vertices (N, V, 3) or None)``.

    Raises:
        CommandError: naming what is wrong with the file.

    """
    if not path.is_file():
        raise CommandError(f"prediction file not found: {path}")
    try:
        with path.open("r", encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path} is not valid JSON ({exc}); expected {_FORMAT}") from exc
    if not isinstance(data, list) or len(data) != 2:
        raise CommandError(f"{path}: expected a list of two lists, {_FORMAT}")
    joints_list, vertices_list = data
    joints = _point_sets(path, "joints", joints_list)
    if joints.shape[1] != NUM_JOINTS:
        raise CommandError(
            f"{path}: joints must be N×{NUM_JOINTS}×3, got {joints.shape}; expected {_FORMAT}"
        )
    vertices = None
    if isinstance(vertices_list, list) and len(vertices_list) == 0 and not require_vertices:
        _LOG.info("%s has no vertices: evaluating joints only", path)
    else:
        vertices = _point_sets(path, "vertices", vertices_list)
        if len(vertices) != len(joints):
            raise CommandError(
                f"{path}: {len(joints)} joint sets but {len(vertices)} vertex sets; every "
                "sample needs both"
            )
    largest = max(
        float(np.abs(joints).max(initial=0.0)),
        float(np.abs(vertices).max(initial=0.0)) if vertices is not None else 0.0,
    )
    if largest > _PLAUSIBLE_RANGE_M:
        _LOG.warning(
            "%s has coordinates up to %.1f: these look like millimetres, the format is metres",
            path,
            largest,
        )
    return joints, vertices


def _point_sets(path: Path, what: str, value: object) -> np.ndarray:
    if not isinstance(value, list) or len(value) == 0:
        raise CommandError(f"{path}: the {what} list is missing or empty; expected {_FORMAT}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise CommandError(
            f"{path}: {what} are not all numeric arrays of one shape ({exc}); expected {_FORMAT}"
        ) from exc
    if array.ndim != 3 or array.shape[2] != 3:
        raise CommandError(f"{path}: {what} must be N×K×3, got {array.shape}; expected {_FORMAT}")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array).all(axis=(1, 2))))
        raise CommandError(f"{path}: {what} of {bad} sample(s) contain NaN or infinity")
    return array


def _progress(total: int) -> ProgressWrapper:
    from tqdm import tqdm

    def wrap(indices: Iterable[int]) -> Iterable[int]:
        return tqdm(indices, total=total, desc="F-scores", unit="sample", disable=None)

    return wrap


def markdown_table(result: HandEvaluation, title: str) -> str:
    """The results as a two-column markdown table."""
    values = result.as_dict()
    lines = [f"**{title}** ({result.count} samples)", "", "| metric | value |", "|---|---|"]
    for key, label, unit in _ROWS:
        value = values.get(key)
        if value is None:
            continue
        text = f"{value:.2f} {unit}" if unit else f"{value:.3f}"
        lines.append(f"| {label} | {text} |")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    if args.dataset == "freihand":
        if args.root is None:
            raise CommandError(
                "--dataset freihand needs --root: the folder holding evaluation_xyz.json and "
                "evaluation_verts.json"
            )
        if args.teacher is not None:
            raise CommandError("--teacher is only used with --dataset teacher")
        try:
            ref_joints, ref_vertices = load_freihand_ground_truth(args.root, args.set_name)
        except (FileNotFoundError, DatasetFormatError) as exc:
            raise CommandError(str(exc)) from exc
        pred_joints, pred_vertices = load_predictions(args.pred)
        reference = f"FreiHAND {args.set_name} ground truth ({args.root})"
    else:
        if args.teacher is None:
            raise CommandError("--dataset teacher needs --teacher: the teacher's predictions")
        ref_joints, ref_vertices = load_predictions(args.teacher, require_vertices=False)
        pred_joints, pred_vertices = load_predictions(args.pred, require_vertices=False)
        if ref_vertices is None or pred_vertices is None:
            ref_vertices = pred_vertices = None
        reference = f"teacher predictions ({args.teacher})"

    if len(pred_joints) != len(ref_joints):
        raise CommandError(
            f"{args.pred} has {len(pred_joints)} samples but the reference has "
            f"{len(ref_joints)}; predictions must follow the reference's sample order"
        )
    result = evaluate_hands(
        ref_joints, pred_joints, ref_vertices, pred_vertices, progress=_progress(len(ref_joints))
    )
    if result.vertex_alignment == "joints":
        _LOG.warning(
            "predicted meshes have %d vertices, the reference %d: vertex errors are skipped and "
            "F-scores use the joints' alignment, as FreiHAND's script does",
            pred_vertices.shape[1],
            ref_vertices.shape[1],
        )
    title = "Student vs teacher" if args.dataset == "teacher" else "FreiHAND protocol"
    print(markdown_table(result, title))
    if args.json_out is not None:
        payload = {
            "dataset": args.dataset,
            "reference": reference,
            "predictions": str(args.pred),
            "alignment": "Procrustes with scale, reflections allowed (FreiHAND align_w_scale)",
            **result.as_dict(),
        }
        try:
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
        except OSError as exc:
            raise CommandError(f"cannot write {args.json_out}: {exc}") from exc
        print(f"results written to {args.json_out}", file=sys.stderr)
    return 0
