"""``fasthmr node overhead`` runs and reports every stage (values are not asserted: timing
is measured by the command, never judged by a test)."""

from __future__ import annotations

import json

import pytest
from ros_test_support import random_domain_id, write_loopback_config

pytest.importorskip("cyclonedds", reason="the dds transport needs the cyclonedds package")

from fasthmr_ros.cli.main import main  # noqa: E402


def test_overhead_command_reports_stages_and_sizes(tmp_path, monkeypatch, capsys,
                                                   test_assets):
    monkeypatch.setenv("CYCLONEDDS_URI", "file://" + str(write_loopback_config(tmp_path)))
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random_domain_id()))
    assert main(["node", "overhead", "--frames", "3", "--width", "160", "--height", "120",
                 "--checkpoint", str(test_assets.checkpoint)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 3 and result["image"] == "160x120" and result["hands"] == 2
    for key in ("decode_ms", "convert_ms", "serialize_ms", "publish_ms", "overhead_ms",
                "overhead_cpu_ms"):
        assert result[key] >= 0
    assert result["bytes"]["hands"] > 2 * 778 * 3 * 4  # two hands' vertices at least
    assert result["bytes"]["markers"] > 2 * 1538 * 3 * 24  # two mesh markers at least
    assert result["image_bytes"] == 160 * 120 * 3 + 68


def test_overhead_command_rejects_bad_parameters(capsys):
    assert main(["node", "overhead", "--param", "max_hands=0"]) == 2
    assert "max_hands" in capsys.readouterr().err
