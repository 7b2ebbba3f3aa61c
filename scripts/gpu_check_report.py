"""Combine the ``fasthmr bench --json/--markdown`` runs of scripts/gpu-check.sh into one report.

Reads ``RUNS/<name>.json`` (and ``<name>.md``, the bench's own table) for every run, writes
``OUT/gpu-check.json`` (every run's full bench report plus the checks) and ``OUT/gpu-check.md``
(a per-crop summary, the checks, and each run's bench table verbatim). The checks are issue 14's:

* precision: every fp16 / bf16 variant changes vertices and joints by at most 1 mm against the
  same model's eager fp32 run;
* CUDA graphs: at batch 1 the network with CUDA graphs is no slower than eager (median; within
  2 % counts as no slower, timer noise).

Exit status 1 if a check failed or a run is named with ``--failed``, else 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

#: Largest allowed fp16 / bf16 change against fp32, in mm (issue 14).
MAX_CHANGE_MM = 1.0
#: CUDA graphs count as "no slower" up to this ratio of the eager median (timer noise).
GRAPHS_TOLERANCE = 1.02
#: The variant-label suffixes of ``fasthmr bench --cuda-graphs on,off``.
GRAPH_SUFFIXES = ("/graphs", "/eager")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _base_label(label: str) -> str:
    for suffix in GRAPH_SUFFIXES:
        label = label.replace(suffix, "")
    return label


def _measured(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["results"] if r.get("skipped") is None]


def precision_checks(run: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """One check per measured fp16 / bf16 variant: its change vs fp32 is within 1 mm."""
    checks = []
    for r in _measured(report):
        if r["precision"] == "fp32":
            continue
        changes = [r.get("output_change_mm"), r.get("joints_change_mm")]
        worst = max((c for c in changes if c is not None), default=None)
        checks.append({
            "run": run, "check": "precision change <= 1 mm", "variant": r["label"],
            "value": f"vertices {_fmt(changes[0], 4)} mm, joints {_fmt(changes[1], 4)} mm",
            "passed": worst is not None and worst <= MAX_CHANGE_MM,
        })
    return checks


def graph_checks(run: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """At batch 1, per variant measured both ways: graphs' network median <= eager's."""
    pairs: dict[str, dict[bool, dict[str, Any]]] = {}
    for r in _measured(report):
        if r["batch"] == 1 and r.get("cuda_graphs") is not None:
            pairs.setdefault(_base_label(r["label"]), {})[bool(r["cuda_graphs"])] = r
    checks = []
    for base, pair in pairs.items():
        if len(pair) != 2:
            continue
        graphs = pair[True]["stages"]["network"]["median_ms"]
        eager = pair[False]["stages"]["network"]["median_ms"]
        checks.append({
            "run": run, "check": "CUDA graphs no slower than eager at batch 1",
            "variant": base,
            "value": f"graphs {graphs:.3f} ms vs eager {eager:.3f} ms "
                     f"({eager / graphs:.2f}x)",
            "passed": graphs <= eager * GRAPHS_TOLERANCE,
        })
    return checks


def summary_table(report: dict[str, Any]) -> str:
    """Per-crop latency and change vs fp32 of every measured variant, as markdown."""
    lines = [
        "| variant | network / crop ms (p50 / p90) | frame / crop ms | speed-up network | "
        "change vs fp32 mm (vertices / joints) |",
        "|---|---|---|---|---|",
    ]
    for r in _measured(report):
        network, batch = r["stages"]["network"], r["batch"]
        lines.append(
            f"| {r['label']} | {network['median_ms'] / batch:.3f} / "
            f"{network['p90_ms'] / batch:.3f} | {r['total_per_crop_ms']:.3f} | "
            f"{_fmt(r.get('speedup_network'))}x | {_fmt(r.get('output_change_mm'), 4)} / "
            f"{_fmt(r.get('joints_change_mm'), 4)} |"
        )
    return "\n".join(lines)


def build_report(
    runs_dir: Path, failed: list[str], order: list[str] | None = None
) -> tuple[dict[str, Any], str]:
    """The combined JSON document and markdown text (runs in ``order``, then the others)."""
    rank = {name: i for i, name in enumerate(order or [])}
    paths = sorted(runs_dir.glob("*.json"), key=lambda p: (rank.get(p.stem, len(rank)), p.stem))
    runs = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in paths}
    checks = []
    for name, report in runs.items():
        checks += precision_checks(name, report) + graph_checks(name, report)
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = {"created": created, "failed_runs": failed, "checks": checks, "runs": runs}

    first = next(iter(runs.values()), None)
    env = first["environment"] if first else {}
    text = [f"# fasthmr GPU check ({created})", ""]
    device = first["settings"]["device"] if first else "?"
    text.append(
        f"Device `{device}`, GPU {env.get('cuda') or 'none'}, torch {env.get('torch', '?')}, "
        f"Python {env.get('python', '?')}; TF32 matmul {env.get('tf32_matmul')}, TF32 cuDNN "
        f"{env.get('tf32_cudnn')}. RANDOM weights: latency is real, the change columns are "
        "numerical change (not accuracy)."
    )
    if failed:
        text += ["", f"**Failed runs:** {', '.join(failed)} (see gpu-check.log)."]
    text += ["", "## Checks", ""]
    if checks:
        text += ["| run | check | variant | measured | result |", "|---|---|---|---|---|"]
        text += [f"| {c['run']} | {c['check']} | {c['variant']} | {c['value']} | "
                 f"{'PASS' if c['passed'] else 'FAIL'} |" for c in checks]
    else:
        text.append("Nothing to check (no fp16/bf16 variant and no graphs/eager pair measured).")
    for name, report in runs.items():
        text += ["", f"## {name}: per crop", "", summary_table(report)]
        table = runs_dir / f"{name}.md"
        if table.is_file():
            text += ["", f"### {name}: `fasthmr bench` table", "",
                     table.read_text(encoding="utf-8").strip()]
    return document, "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write gpu-check.json and gpu-check.md; 1 if a check or a run failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of bench JSON files")
    parser.add_argument("--out", type=Path, required=True, help="folder for the report")
    parser.add_argument("--failed", action="append", default=[],
                        help="name of a run that failed (repeatable)")
    parser.add_argument("--order", default="", help="comma-separated run names, report order")
    args = parser.parse_args(argv)
    order = [name for name in args.order.split(",") if name]
    document, text = build_report(args.runs, args.failed, order)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-check.json").write_text(json.dumps(document, indent=2) + "\n",
                                             encoding="utf-8")
    (args.out / "gpu-check.md").write_text(text, encoding="utf-8")
    print(text)
    failed_checks = [c for c in document["checks"] if not c["passed"]]
    if failed_checks:
        print(f"gpu-check: {len(failed_checks)} check(s) FAILED")
    if not document["runs"]:
        print("gpu-check: no bench run produced results")
        return 1
    return int(bool(failed_checks or args.failed))


if __name__ == "__main__":
    sys.exit(main())
