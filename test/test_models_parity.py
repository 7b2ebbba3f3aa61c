"""Equality with HaMeR's and HMR2.0's formulas, checked against an independent re-statement.

The reference below is written from the published description of HaMeR and HMR2.0 (see
``shared/research/hamer.md`` sections 2.1-2.6 and ``shared/research/fasthmr.md`` section 2),
directly on the raw state dict with explicit tensor algebra (einsum attention, layer norm, GELU
and SMPL's linear blend skinning written out, in float64), and shares no code with
``fasthmr_ros.models``. The regressors must agree with it within 1e-4 in fp32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from fasthmr_ros.models.mano_files import convert_mano
from fasthmr_ros.models.rotation import rot6d_to_rotmat

REFERENCE_KEYS = Path(__file__).parent / "data" / "hamer_state_dict.json"
OPENPOSE_FROM_MANO = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
TIP_VERTICES = [744, 320, 443, 554, 671]


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _attention(q, k, v, heads):
    b, n, inner = q.shape
    d = inner // heads
    q = q.reshape(b, n, heads, d)
    k = k.reshape(b, k.shape[1], heads, d)
    v = v.reshape(b, v.shape[1], heads, d)
    weights = torch.softmax(torch.einsum("bnhd,bmhd->bhnm", q, k) * d**-0.5, dim=-1)
    return torch.einsum("bhnm,bmhd->bnhd", weights, v).reshape(b, n, inner)


def _linear(x, sd, name, bias=True):
    out = x @ sd[f"{name}.weight"].T
    return out + sd[f"{name}.bias"] if bias else out


def _reference_network(sd, crops, vit_heads, head_heads, head="mano_head", pose="hand_pose"):
    x = crops[:, :, :, 32:224]
    feats = torch.nn.functional.conv2d(
        x, sd["backbone.patch_embed.proj.weight"], sd["backbone.patch_embed.proj.bias"],
        stride=16, padding=2,
    )
    b, c, rows, cols = feats.shape
    tokens = feats.reshape(b, c, rows * cols).permute(0, 2, 1)
    pos = sd["backbone.pos_embed"]
    tokens = tokens + pos[:, 1:] + pos[:, :1]
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("backbone.blocks."))
    for i in range(depth):
        p = f"backbone.blocks.{i}."
        h = _layer_norm(tokens, sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        q, k, v = _linear(h, sd, p + "attn.qkv").chunk(3, dim=-1)
        tokens = tokens + _linear(_attention(q, k, v, vit_heads), sd, p + "attn.proj")
        h = _layer_norm(tokens, sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        tokens = tokens + _linear(_gelu(_linear(h, sd, p + "mlp.fc1")), sd, p + "mlp.fc2")
    context = _layer_norm(
        tokens, sd["backbone.last_norm.weight"], sd["backbone.last_norm.bias"], 1e-6
    )

    t = f"{head}.transformer."
    query = torch.zeros(b, 1, 1, dtype=x.dtype)
    token = _linear(query, sd, t + "to_token_embedding") + sd[t + "pos_embedding"]
    layers = 1 + max(
        int(k.split(".")[4]) for k in sd if k.startswith(t + "transformer.layers.")
    )
    for i in range(layers):
        p = f"{t}transformer.layers.{i}."
        h = _layer_norm(token, sd[p + "0.norm.weight"], sd[p + "0.norm.bias"], 1e-5)
        q, k, v = _linear(h, sd, p + "0.fn.to_qkv", bias=False).chunk(3, dim=-1)
        token = token + _linear(_attention(q, k, v, head_heads), sd, p + "0.fn.to_out.0")
        h = _layer_norm(token, sd[p + "1.norm.weight"], sd[p + "1.norm.bias"], 1e-5)
        q = _linear(h, sd, p + "1.fn.to_q", bias=False)
        k, v = _linear(context, sd, p + "1.fn.to_kv", bias=False).chunk(2, dim=-1)
        token = token + _linear(_attention(q, k, v, head_heads), sd, p + "1.fn.to_out.0")
        h = _layer_norm(token, sd[p + "2.norm.weight"], sd[p + "2.norm.bias"], 1e-5)
        token = token + _linear(_gelu(_linear(h, sd, p + "2.fn.net.0")), sd, p + "2.fn.net.3")
    token = token[:, 0]
    pose6d = _linear(token, sd, f"{head}.decpose") + sd[f"{head}.init_{pose}"]
    betas = _linear(token, sd, f"{head}.decshape") + sd[f"{head}.init_betas"]
    cam = _linear(token, sd, f"{head}.deccam") + sd[f"{head}.init_cam"]
    # 6D -> matrix: the six numbers are two columns; Gram-Schmidt; third column by cross product.
    cols = pose6d.reshape(-1, 2, 3).permute(0, 2, 1)
    a1, a2 = cols[:, :, 0], cols[:, :, 1]
    b1 = a1 / a1.norm(dim=1, keepdim=True).clamp_min(1e-12)
    u = a2 - (b1 * a2).sum(1, keepdim=True) * b1
    b2 = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    rot = torch.stack([b1, b2, torch.cross(b1, b2, dim=1)], dim=-1).reshape(b, -1, 3, 3)
    return {"global_orient": rot[:, :1], pose: rot[:, 1:], "betas": betas, "cam": cam}


def test_network_matches_reference_formulas(test_assets, hand_regressor) -> None:
    sd = {k: v.double() for k, v in hand_regressor.state_dict().items()}
    crops = torch.randn(3, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    cfg = hand_regressor.config
    expected = _reference_network(
        sd, crops.double(), cfg["backbone"]["num_heads"], cfg["head"]["heads"]
    )
    with torch.no_grad():
        got = hand_regressor.forward_network(crops)
    for key, value in expected.items():
        torch.testing.assert_close(got[key].double(), value, rtol=0, atol=1e-4, msg=key)
        # float32 against float64: the real agreement is far tighter than the 1e-4 bound.
        assert (got[key].double() - value).abs().max() < 1e-5


def test_mano_matches_smplx_with_openpose_fingertips(test_assets, hand_regressor, tmp_path):
    npz = convert_mano(test_assets.mano_dir / "MANO_RIGHT.pkl", tmp_path / "MANO_RIGHT.npz")
    layer = smplx.MANOLayer(
        model_path=str(npz), ext="npz", use_pca=False, flat_hand_mean=False, is_rhand=True
    )
    crops = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = hand_regressor(crops)
        ref = layer(
            global_orient=out["global_orient"], hand_pose=out["hand_pose"], betas=out["betas"]
        )
    joints = torch.cat([ref.joints, ref.vertices[:, TIP_VERTICES]], dim=1)[:, OPENPOSE_FROM_MANO]
    torch.testing.assert_close(out["vertices"], ref.vertices, rtol=0, atol=1e-6)
    torch.testing.assert_close(out["joints"], joints, rtol=0, atol=1e-6)


def test_rot6d_known_rotations() -> None:
    angle = 0.7
    rz = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0],
         [0.0, 0.0, 1.0]]
    )
    six = torch.cat([rz[:, 0], rz[:, 1]])
    torch.testing.assert_close(rot6d_to_rotmat(six)[0], rz)
    # HaMeR's near-degenerate mean global orientation is a +90 degree turn about x.
    mean = torch.tensor([1.0, 0.0, 0.0, -1.0, 0.0, 1.5e-7])
    rx90 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(rot6d_to_rotmat(mean)[0], rx90)
    rand = rot6d_to_rotmat(torch.randn(50, 6))
    eye = torch.eye(3).expand(50, 3, 3)
    torch.testing.assert_close(rand @ rand.transpose(1, 2), eye, atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rand), torch.ones(50), atol=1e-5)


@pytest.mark.slow
def test_full_vit_h_matches_official_key_names_and_shapes(test_assets) -> None:
    """The default configuration is HaMeR's: every official key with its official shape."""
    from fasthmr_ros.models.mano import ManoLayer
    from fasthmr_ros.models.mano_files import load_mano_file
    from fasthmr_ros.models.regressor import RegressorConfig, build_hand_regressor

    reference = json.loads(REFERENCE_KEYS.read_text())
    expected = {
        k: tuple(v)
        for k, v in reference.items()
        if not k.startswith("discriminator.") and k != "initialized"
    }
    mano = ManoLayer(load_mano_file(test_assets.mano_dir / "MANO_RIGHT.pkl"))
    model = build_hand_regressor(RegressorConfig(), mano)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("mano."))
    assert params == 630_912_000 + 39_497_837  # backbone + head, as published
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 256, 256))
    assert out["vertices"].shape == (1, 778, 3)
    assert np.isfinite(out["joints"].numpy()).all()
