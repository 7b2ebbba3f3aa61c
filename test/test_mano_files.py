"""Safe MANO loading, conversion to .npz, the synthetic writer and ``fasthmr convert-mano``."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fasthmr_ros.cli.main import main
from fasthmr_ros.models import model_files
from fasthmr_ros.models.constants import MANO_PARENTS
from fasthmr_ros.models.mano_files import (
    REQUIRED_SHAPES,
    UnsafeFileError,
    convert_mano,
    find_mano_file,
    load_mano_file,
    make_synthetic_mano,
    write_synthetic_mano,
)
from fasthmr_ros.models.pickle_names import pickled_under

Ch = model_files.ChumpyLike  # the chumpy-like class the synthetic writer pickles


@pytest.fixture(scope="module")
def mano_pkl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_mano(tmp_path_factory.mktemp("mano"), seed=3)


def assert_same_arrays(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


def test_chumpy_like_pickle_loads_with_written_values(mano_pkl: Path) -> None:
    raw = mano_pkl.read_bytes()
    assert b"chumpy.ch\nCh\n" in raw and b"scipy.sparse" in raw and b"csc_matrix" in raw
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    loaded = load_mano_file(mano_pkl)
    for key, shape in REQUIRED_SHAPES.items():
        assert loaded[key].shape == shape, key
    assert loaded["f"].dtype == np.int64 and loaded["kintree_table"].dtype == np.int64
    assert_same_arrays(loaded, make_synthetic_mano(seed=3))
    assert "chumpy" not in sys.modules


def test_synthetic_mano_is_structurally_sane() -> None:
    arrays = make_synthetic_mano(seed=0)
    np.testing.assert_allclose(arrays["weights"].sum(axis=1), 1.0)
    np.testing.assert_allclose(arrays["J_regressor"].sum(axis=1), 1.0)
    np.testing.assert_array_equal(arrays["kintree_table"][0, 1:], MANO_PARENTS[1:])
    faces = arrays["f"]
    assert faces.max() < 778 and all(len(set(face)) == 3 for face in faces.tolist())
    np.testing.assert_allclose(arrays["hands_components"] @ arrays["hands_components"].T,
                               np.eye(45), atol=1e-10)
    assert not np.array_equal(arrays["v_template"], make_synthetic_mano(seed=1)["v_template"])


def test_plain_pickle_and_npz_round_trip(tmp_path: Path, mano_pkl: Path) -> None:
    plain = write_synthetic_mano(tmp_path / "plain", seed=3, chumpy_like=False)
    assert b"chumpy" not in plain.read_bytes()
    expected = load_mano_file(mano_pkl)
    assert_same_arrays(load_mano_file(plain), expected)
    npz = convert_mano(mano_pkl.parent, tmp_path / "out" / "MANO_RIGHT.npz")
    assert_same_arrays(load_mano_file(npz), expected)
    with np.load(npz, allow_pickle=False) as data:  # no pickles inside: loads without them
        assert set(data.files) == set(expected)


@pytest.mark.parametrize("protocol", [0, 1])
def test_legacy_protocols_use_copyreg_reconstructor(tmp_path: Path, protocol: int) -> None:
    from scipy import sparse

    arrays = make_synthetic_mano(seed=5)
    with pickled_under("chumpy.ch", Ch=Ch):
        content = {**arrays, "shapedirs": Ch(arrays["shapedirs"]),
                   "J_regressor": sparse.csc_matrix(arrays["J_regressor"])}
        raw = pickle.dumps(content, protocol=protocol)
    assert b"copy_reg\n_reconstructor" in raw
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(raw)
    assert_same_arrays(load_mano_file(path), arrays)


@pytest.mark.parametrize(
    "names",
    [
        (b"numpy.core.multiarray\n", b"numpy._core.multiarray\n"),  # numpy 1.x / 2.x writers
        (b"scipy.sparse._csc\n", b"scipy.sparse.csc\n"),  # new / old scipy (official file)
    ],
)
def test_module_paths_of_other_versions(tmp_path: Path, mano_pkl: Path,
                                        names: tuple[bytes, bytes]) -> None:
    raw = mano_pkl.read_bytes()
    old, new = names if names[0] in raw else names[::-1]
    assert old in raw
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(raw.replace(old, new))
    assert_same_arrays(load_mano_file(path), load_mano_file(mano_pkl))


class _Select:
    def __init__(self, **state: object) -> None:
        self.__dict__.update(state)


def test_chumpy_select_expression_is_evaluated(tmp_path: Path) -> None:
    arrays = make_synthetic_mano(seed=2)
    flat = arrays["hands_mean"][::-1].copy()
    with pickled_under("chumpy.ch", Ch=Ch), pickled_under("chumpy.reordering", Select=_Select):
        select = _Select(a=Ch(flat), idxs=np.arange(45)[::-1].copy(), preferred_shape=(45,))
        raw = pickle.dumps({**arrays, "hands_mean": select}, protocol=2)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(raw)
    np.testing.assert_array_equal(load_mano_file(path)["hands_mean"], arrays["hands_mean"])


def test_unsupported_chumpy_expression_is_named(tmp_path: Path) -> None:
    class Add(_Select):
        pass

    arrays = make_synthetic_mano(seed=2)
    with pickled_under("chumpy.ch", Ch=Ch), pickled_under("chumpy.ch_ops", add=Add):
        raw = pickle.dumps({**arrays, "weights": Add(a=1, b=2)}, protocol=2)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=r"'weights'.*chumpy\.ch_ops\.add"):
        load_mano_file(path)


def test_smplx_loads_converted_npz(tmp_path: Path, mano_pkl: Path) -> None:
    torch = pytest.importorskip("torch")
    smplx = pytest.importorskip("smplx")
    convert_mano(mano_pkl, tmp_path / "mano" / "MANO_RIGHT.npz")
    expected = make_synthetic_mano(seed=3)
    layer = smplx.MANOLayer(str(tmp_path / "mano"), ext="npz", use_pca=False)
    betas = torch.linspace(-2, 2, 10)[None]
    output = layer(betas=betas)
    assert output.vertices.shape == (1, 778, 3)
    shaped = expected["v_template"] + expected["shapedirs"] @ betas[0].double().numpy()
    np.testing.assert_allclose(output.vertices[0].numpy(), shaped, atol=1e-5)
    np.testing.assert_array_equal(layer.faces, expected["f"])
    assert layer.parents.tolist() == list(MANO_PARENTS)
    created = smplx.create(str(tmp_path), model_type="mano", ext="npz", use_pca=False,
                           flat_hand_mean=True)
    np.testing.assert_allclose(created(betas=betas).vertices[0].detach().numpy(), shaped,
                               atol=1e-5)


class _Payload:
    """Pickles as a call of ``function(*args)``: what a malicious file would run."""

    def __init__(self, function: object, *args: object) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize(
    "make_payload, global_name",
    [
        (lambda side: _Payload(os.system, f"touch {side}"), "posix.system"),
        (lambda side: _Payload(eval, f"open({str(side)!r}, 'w').close()"), "builtins.eval"),
        (lambda side: _Payload(subprocess.Popen, ["touch", str(side)]), "subprocess.Popen"),
    ],
    ids=["os.system", "eval", "Popen"],
)
@pytest.mark.parametrize("chumpy_like", [False, True])
def test_code_in_pickle_is_refused_and_never_runs(tmp_path: Path, make_payload, global_name,
                                                  chumpy_like: bool) -> None:
    side = tmp_path / "side_effect"
    payload = make_payload(side)
    arrays = make_synthetic_mano(seed=0)
    if chumpy_like:  # hidden inside a chumpy object's state
        with pickled_under("chumpy.ch", Ch=Ch):
            raw = pickle.dumps({**arrays, "v_template": Ch(payload)}, protocol=2)
    else:
        raw = pickle.dumps({**arrays, "comment": payload}, protocol=2)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(raw)
    with pytest.raises(UnsafeFileError, match="may be malicious") as info:
        load_mano_file(path)
    assert f"'{global_name}'" in str(info.value) and str(path) in str(info.value)
    assert not side.exists()


@pytest.mark.parametrize(
    "raw, what",
    [
        (b"ccopy_reg\n_reconstructor\n(cnumpy\nndarray\nc__builtin__\nobject\nNtR.",
         "copy_reg._reconstructor"),
        (b"c_codecs\nencode\n(Vabc\nVrot13\ntR.", "_codecs.encode"),
    ],
)
def test_allowed_functions_refuse_other_uses(tmp_path: Path, raw: bytes, what: str) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(raw)
    with pytest.raises(UnsafeFileError, match=what):
        load_mano_file(path)


def test_truncated_and_non_pickle_files(tmp_path: Path, mano_pkl: Path) -> None:
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(mano_pkl.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated, corrupt or not a MANO file"):
        load_mano_file(truncated)
    text = tmp_path / "notes.pkl"
    text.write_text("this is not a MANO file\n")
    with pytest.raises(ValueError, match="not a MANO file"):
        load_mano_file(text)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_mano_file(empty)
    listing = tmp_path / "list.pkl"
    listing.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="holds a dict"):
        load_mano_file(listing)
    broken_zip = tmp_path / "broken.npz"
    broken_zip.write_bytes(b"PK\x03\x04" + b"\0" * 20)
    with pytest.raises(ValueError, match="corrupt or truncated .npz"):
        load_mano_file(broken_zip)
    with pytest.raises(FileNotFoundError, match="mano.is.tue.mpg.de"):
        load_mano_file(tmp_path / "absent.pkl")


def test_missing_keys_and_wrong_shapes_are_listed_together(tmp_path: Path) -> None:
    arrays = make_synthetic_mano(seed=0)
    del arrays["posedirs"], arrays["hands_mean"]
    arrays["shapedirs"] = arrays["shapedirs"][:, :, :5]
    arrays["f"] = arrays["f"].astype(np.float32)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as info:
        load_mano_file(path)
    message = str(info.value)
    for expected in ("'posedirs' is missing", "'hands_mean' is missing",
                     "'shapedirs' has shape (778, 3, 5), expected (778, 3, 10)",
                     "'f' must hold integers"):
        assert expected in message


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("f", np.full((1538, 3), 778), "'f' indexes vertices outside"),
        ("weights", np.full((778, 16), np.nan), "'weights' must hold finite numbers"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, key: str, value: np.ndarray,
                                problem: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **{**make_synthetic_mano(seed=0), key: value})
    with pytest.raises(ValueError, match=problem):
        load_mano_file(path)


def test_npz_with_object_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, **make_synthetic_mano(seed=0), extra=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UnsafeFileError, match="pickled object arrays"):
        load_mano_file(path)


def test_find_mano_file_layouts(tmp_path: Path) -> None:
    pkl = write_synthetic_mano(tmp_path / "flat")
    assert find_mano_file(tmp_path / "flat") == pkl
    assert find_mano_file(pkl) == pkl
    nested = write_synthetic_mano(tmp_path / "smplx_layout" / "mano")
    assert find_mano_file(tmp_path / "smplx_layout") == nested
    npz = convert_mano(pkl, pkl.with_suffix(".npz"))
    assert find_mano_file(tmp_path / "flat") == npz  # the clean file wins
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"MANO_RIGHT\.pkl.*mano\.is\.tue\.mpg\.de"):
        find_mano_file(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist.*non-commercial"):
        find_mano_file(tmp_path / "nowhere")


def test_cli_convert_mano(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkl = write_synthetic_mano(tmp_path / "mano", seed=4)
    assert main(["convert-mano", str(tmp_path)]) == 0  # smplx layout: finds mano/MANO_RIGHT.pkl
    npz = pkl.with_suffix(".npz")
    assert f"wrote {npz}" in capsys.readouterr().out
    assert_same_arrays(load_mano_file(npz), make_synthetic_mano(seed=4))
    custom = tmp_path / "elsewhere" / "hand.npz"
    assert main(["convert-mano", str(pkl), str(custom)]) == 0
    assert custom.is_file()

    assert main(["convert-mano", str(pkl), str(tmp_path / "out.txt")]) == 2
    assert "must end in .npz" in capsys.readouterr().err
    assert main(["convert-mano", str(tmp_path / "nowhere")]) == 2
    assert "mano.is.tue.mpg.de" in capsys.readouterr().err
    evil = tmp_path / "evil" / "MANO_RIGHT.pkl"
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps(_Payload(os.system, "true"), protocol=2))
    assert main(["convert-mano", str(evil.parent)]) == 2
    assert "'posix.system'" in capsys.readouterr().err
    assert not evil.with_suffix(".npz").exists()
