"""Shared fixtures: model files with random weights in the official layout."""

from __future__ import annotations

import pytest

from fasthmr_ros.models.test_assets import TestAssets, write_test_assets


@pytest.fixture(scope="session")
def test_assets(tmp_path_factory: pytest.TempPathFactory) -> TestAssets:
    """A small random-weights checkpoint (official layout) and a synthetic MANO folder."""
    return write_test_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="session")
def hand_regressor(test_assets: TestAssets):
    """The regressor loaded from :func:`test_assets` through the public entry point."""
    from fasthmr_ros import load_hand_regressor

    return load_hand_regressor(test_assets.checkpoint)
