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


@pytest.fixture()
def distill_single_thread():
    """Run torch on one thread for the test (tiny training models).

    Tiny networks gain nothing from a second thread, and on a busy shared machine every
    OpenMP region then waits for a descheduled thread (10x slower steps measured).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def distill_tiny_vit() -> dict:
    """A ViT student configuration far smaller than the test teacher (160 wide, 16x12 tokens):
    32 wide, one block, 32-pixel patches (8x6 tokens), a one-layer head."""
    return {
        "kind": "vit",
        "backbone": {"embed_dim": 32, "depth": 1, "num_heads": 1, "patch_size": 32,
                     "patch_padding": 0},
        "head": {"dim": 32, "depth": 1, "heads": 1, "dim_head": 32, "mlp_dim": 32,
                 "context_dim": 32},
    }


@pytest.fixture(scope="session")
def body_assets(tmp_path_factory: pytest.TempPathFactory):
    """A small random-weights HMR2.0 checkpoint (4D-Humans' layout) and synthetic SMPL files."""
    from fasthmr_ros.models.test_assets import write_body_test_assets

    return write_body_test_assets(tmp_path_factory.mktemp("body_assets"))


@pytest.fixture(scope="session")
def anny_body():
    """The default Anny body (the CC0 rest asset shipped in the package)."""
    pytest.importorskip("safetensors")
    from fasthmr_ros.models.anny_body import AnnyBodyModel

    return AnnyBodyModel.default()


@pytest.fixture(scope="session")
def body_fitter(anny_body):
    """The landmark body fit on :func:`anny_body`."""
    from fasthmr_ros.pipeline.body_fit import LandmarkBodyFitter

    return LandmarkBodyFitter(anny_body)
