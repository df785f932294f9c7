"""Images to Inception pool3 features with the FID protocol: quantise, resize, extract.

The protocol is that of NVIDIA's StyleGAN2-ADA/StyleGAN3 metrics, which reproduces the original
TensorFlow implementation of FID (TTUR):

1. images are uint8; generated float images in [-1, 1] are quantised as
   `(x * 127.5 + 128).clip(0, 255)` and cast to uint8, which truncates (`to_uint8`);
2. gray images are tiled to RGB;
3. images are resized to 299x299, bilinear with half-pixel centres (torch's
   `interpolate(align_corners=False)`, pytorch-fid's convention); `resize='tf1'` selects the
   sampling grid of TF1's `resize_bilinear` inside NVIDIA's TorchScript network instead
   (`inception_preprocess`);
4. pixels are scaled to `(x - 128) / 128`;
5. the 2015-12-05 Inception-v3 gives pool3 features [N, 2048] (`inception_features`).

The statistics and distances computed on these features live in `frechet`, `mmd` and
`manifold`.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jaxgan.core import sharding

# Side of the square input of the FID Inception network.
INCEPTION_SIZE = 299
# pool3 width. With fewer images than this the covariance estimate is rank-deficient, and FID's
# bias is large.
POOL3_DIM = 2048
# Float images may exceed [-1, 1] by this much (float rounding of a tanh output, float16 steps).
# Any value in [-1 - 0.5/127.5, +inf) quantises to the same uint8 as the value clipped to [-1, 1],
# so the tolerance never changes a pixel; it only separates rounding from a wrong range such as
# [0, 255].
RANGE_TOLERANCE = 1e-3
RESIZE_MODES = ("half_pixel", "tf1")

_FLOAT_DTYPES = tuple(np.dtype(t) for t in (np.float16, jnp.bfloat16, np.float32, np.float64))
# Quantise this many float values at a time, to bound the temporary float copies.
_QUANTISE_CHUNK_VALUES = 1 << 22

FeatureFn = Callable[[jax.Array], jax.Array]
StopFn = Callable[[], bool]


class EvaluationInterrupted(Exception):
    """Raised when a `should_stop` callback asked an evaluation to stop between batches."""


def check_stop(should_stop: StopFn | None, where: str) -> None:
    """Raises `EvaluationInterrupted` if `should_stop` is given and returns True."""
    if should_stop is not None and should_stop():
        raise EvaluationInterrupted(f"evaluation stopped on request during {where}")


def _describe_allowed_images() -> str:
    names = ", ".join(str(d) for d in _FLOAT_DTYPES)
    return (
        "allowed: uint8 [N, H, W] or [N, H, W, C] with C in {1, 3} (channels last), or float "
        f"({names}) of the same shapes with values in [-1, 1]"
    )


def to_uint8(images: Any) -> np.ndarray:
    """Validates images and quantises them to uint8 as NVIDIA's StyleGAN metrics do.

    Float images are mapped with `(x * 127.5 + 128).clip(0, 255)` and cast to uint8. The cast
    truncates, like `torch.Tensor.to(torch.uint8)` in StyleGAN2-ADA/StyleGAN3, so -1 maps to 0, 0
    maps to 128 and 1 maps to 255. float32, float16 and bfloat16 are computed in float32 (as the
    float32 generators of those papers), float64 in float64.

    Args:
        images: uint8 array [N, H, W] or [N, H, W, C], C in {1, 3}, channels last; or a float16,
            bfloat16, float32 or float64 array (numpy or JAX) of the same shapes with values in
            [-1, 1]. Values at most `RANGE_TOLERANCE` outside [-1, 1] are accepted and quantise as
            if clipped. N, H and W must be at least 1.

    Returns:
        [N, H, W, C] uint8 array, C in {1, 3}. For uint8 input it may share memory with `images`.

    Raises:
        ValueError: for any other dtype (bool, other integers, complex, object), another rank or
            channel count, an empty dimension, NaN or Inf, or float values outside [-1, 1].
    """
    try:
        array = np.asarray(images)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"images could not be read as an array ({error}); {_describe_allowed_images()}"
        ) from error
    if array.dtype != np.uint8 and array.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"images have dtype {array.dtype}; {_describe_allowed_images()}")
    if array.ndim == 3:
        array = array[..., np.newaxis]
    elif array.ndim != 4:
        raise ValueError(f"images have shape {array.shape}; {_describe_allowed_images()}")
    num_images, height, width, channels = array.shape
    if channels not in (1, 3):
        raise ValueError(
            f"images have {channels} channels (shape {array.shape}); {_describe_allowed_images()}"
        )
    if min(num_images, height, width) < 1:
        raise ValueError(f"images have an empty dimension (shape {array.shape})")
    if array.dtype == np.uint8:
        return array

    compute_dtype = np.float64 if array.dtype == np.float64 else np.float32
    quantised = np.empty(array.shape, np.uint8)
    images_per_chunk = max(1, _QUANTISE_CHUNK_VALUES // (height * width * channels))
    for start in range(0, num_images, images_per_chunk):
        stop = min(start + images_per_chunk, num_images)
        values = array[start:stop].astype(compute_dtype)
        finite = np.isfinite(values)
        if not finite.all():
            first_bad = start + int(np.argmin(finite.reshape(len(values), -1).all(axis=1)))
            raise ValueError(f"images contain NaN or Inf (first in image {first_bad})")
        lowest, highest = float(values.min()), float(values.max())
        if lowest < -1 - RANGE_TOLERANCE or highest > 1 + RANGE_TOLERANCE:
            raise ValueError(
                f"float images {start} to {stop - 1} have values in [{lowest}, {highest}]; "
                "allowed: [-1, 1] (images in [0, 255] must have dtype uint8)"
            )
        values *= 127.5
        values += 128
        np.clip(values, 0, 255, out=values)
        quantised[start:stop] = values.astype(np.uint8)
    return quantised


def _bilinear_taps(input_size: int, output_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of the 'tf1' resize along one axis."""
    source = np.arange(output_size, dtype=np.float64) * (input_size / output_size)
    source = np.clip(source, 0, input_size - 1)
    lower = np.floor(source).astype(np.int32)
    upper = np.minimum(lower + 1, input_size - 1)
    upper_weight = (source - lower).astype(np.float32)
    return lower, upper, upper_weight


def _resize_tf1(images: jax.Array) -> jax.Array:
    _, height, width, _ = images.shape
    lower, upper, weight = _bilinear_taps(height, INCEPTION_SIZE)
    weight = weight[None, :, None, None]
    images = images[:, lower] * (1 - weight) + images[:, upper] * weight
    lower, upper, weight = _bilinear_taps(width, INCEPTION_SIZE)
    weight = weight[None, None, :, None]
    return images[:, :, lower] * (1 - weight) + images[:, :, upper] * weight


def check_resize(resize: str) -> str:
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize={resize!r} is not supported; allowed: {RESIZE_MODES}")
    return resize


def inception_preprocess(images_uint8: jax.Array, resize: str = "half_pixel") -> jax.Array:
    """Maps uint8 images to the input of the FID Inception network.

    Two bilinear resizes are in use in the field, and they differ by 0.45 source pixels for
    28x28 inputs, which moves FID:

    * 'half_pixel' (default): output pixel i samples source coordinate
      `(i + 0.5) * size_in / 299 - 0.5`, as torch's `interpolate(mode='bilinear',
      align_corners=False)` in pytorch-fid; computed with `jax.image.resize(..., 'bilinear')`,
      which matches it when upsampling (downsampling antialiases in JAX, not in torch).
    * 'tf1': output pixel i samples `i * size_in / 299`, clamped to the image, as TF1's
      `tf.image.resize_bilinear` in the original TTUR graph and NVIDIA's TorchScript Inception
      (StyleGAN2-ADA/StyleGAN3: `affine_grid` shifted by 1/size_in - 1/299, then
      `grid_sample(bilinear, padding_mode='border', align_corners=False)`).

    Args:
        images_uint8: [B, H, W, C] uint8, C in {1, 3}.
        resize: one of `RESIZE_MODES`.

    Returns:
        [B, 299, 299, 3] float32 `(x - 128) / 128`, values in [-1, 127/128].
    """
    images = images_uint8.astype(jnp.float32)
    if check_resize(resize) == "tf1":
        images = _resize_tf1(images)
    else:
        batch, _, _, channels = images.shape
        images = jax.image.resize(
            images, (batch, INCEPTION_SIZE, INCEPTION_SIZE, channels), "bilinear"
        )
    # Resizing is per channel, so tiling gray to RGB after it gives the same pixels for less work.
    images = jnp.broadcast_to(images, images.shape[:3] + (3,))
    return (images - 128) / 128


# Preprocessing compiles per input shape; the feature network then always sees [B, 299, 299, 3],
# so it compiles once per batch size whatever the image size, and its weights stay arguments of
# its own program instead of becoming constants of a fused one.
_jitted_preprocess = jax.jit(inception_preprocess, static_argnames="resize")


def _validate_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def mesh_batch_size(batch_size: int, num: int, mesh: jax.sharding.Mesh) -> int:
    """`min(batch_size, num)` rounded up to a multiple of the mesh's devices, so that every
    device takes an equal share (the last batch is padded)."""
    num_devices = mesh.devices.size
    return -(-min(batch_size, num) // num_devices) * num_devices


def check_feature_shape(features: Any, batch_size: int) -> None:
    """Refuses a `feature_fn` output that is not [batch_size, D] (ValueError)."""
    if features.ndim != 2 or features.shape[0] != batch_size:
        raise ValueError(
            f"feature_fn returned shape {features.shape} for a batch of {batch_size} images; "
            f"expected [{batch_size}, D]"
        )


def progress_bar(progress: bool, total: int, desc: str) -> tqdm.tqdm:
    """A tqdm bar of `total` images on stderr when `progress` and stderr is a terminal (a
    bar redraws itself with carriage returns: only a terminal shows it as one line)."""
    show = progress and sys.stderr.isatty()
    return tqdm.tqdm(total=total, disable=not show, unit="img", desc=desc)


def feature_batches(
    images: Any,
    batch_size: int = 250,
    *,
    feature_fn: FeatureFn | None = None,
    progress: bool = False,
    dtype: Any = jnp.float32,
    resize: str = "half_pixel",
    should_stop: StopFn | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Iterator[np.ndarray]:
    """The pool3 features of images with the FID protocol, one batch at a time, in order.

    Takes the arguments of `inception_features` and checks them before it returns; the
    iterator yields float32 [b, D] host arrays whose rows follow the images. Only one batch
    of features is held at a time, so statistics accumulated from it
    (`jaxgan.metrics.frechet.StreamingStatistics`) need the same memory for any N.
    """
    batch_size = _validate_positive_int(batch_size, "batch_size")
    check_resize(resize)
    images_uint8 = to_uint8(images)
    if feature_fn is None:
        from jaxgan.metrics import inception

        feature_fn = inception.pool3_fn(dtype=dtype)
    mesh = sharding.data_mesh() if mesh is None else mesh
    num_images = len(images_uint8)
    batch_size = mesh_batch_size(batch_size, num_images, mesh)

    def fetch(device_features: jax.Array, num_valid: int) -> np.ndarray:
        features = sharding.to_host(device_features).astype(np.float32, copy=False)
        check_feature_shape(features, batch_size)
        return features[:num_valid]

    def generate() -> Iterator[np.ndarray]:
        pending = None
        with progress_bar(progress, num_images, "Inception features") as bar:
            for start in range(0, num_images, batch_size):
                check_stop(should_stop, f"Inception features (image {start} of {num_images})")
                batch = images_uint8[start : start + batch_size]
                num_valid = len(batch)
                if num_valid < batch_size:
                    padding = np.zeros((batch_size - num_valid,) + batch.shape[1:], np.uint8)
                    batch = np.concatenate([batch, padding])
                # Split over the mesh's devices; jit follows that sharding through both steps.
                device_batch = sharding.put_batch(batch, mesh)
                # Dispatch is asynchronous: fetching the previous batch overlaps with this one.
                device_features = feature_fn(_jitted_preprocess(device_batch, resize=resize))
                if pending is not None:
                    yield fetch(*pending)
                    bar.update(pending[1])
                pending = (device_features, num_valid)
            yield fetch(*pending)
            bar.update(pending[1])

    return generate()


def inception_features(
    images: Any,
    batch_size: int = 250,
    *,
    feature_fn: FeatureFn | None = None,
    progress: bool = False,
    dtype: Any = jnp.float32,
    resize: str = "half_pixel",
    should_stop: StopFn | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> np.ndarray:
    """Computes the pool3 features of images with the FID protocol.

    Images are validated and quantised on the host (`to_uint8`) and sent to the devices as uint8
    batches, split along the batch over `mesh` (`jaxgan.core.sharding.data_mesh`: every device by
    default), where a jitted `inception_preprocess` and then `feature_fn` run. Each image's
    features are computed alone, so they do not depend on the number of devices. The last batch
    is padded to the batch size, so `feature_fn` always sees [batch_size, 299, 299, 3] and
    compiles once; the batch size is rounded up to a multiple of the number of devices.

    Args:
        images: images accepted by `to_uint8`: uint8 or float in [-1, 1], [N, H, W] or
            [N, H, W, C] with C in {1, 3}.
        batch_size: images per (global) device batch; `min(batch_size, N)` rounded up to a
            multiple of the mesh's devices is used.
        feature_fn: maps preprocessed images [B, 299, 299, 3] float32 (a device array, split over
            the mesh) to features [B, D]; pass a jitted function. Defaults to the FID Inception
            network, `jaxgan.metrics.inception.pool3_fn(dtype)`.
        progress: show a tqdm progress bar on stderr, when stderr is a terminal.
        dtype: compute dtype of the default Inception network (float32, the reference, or
            bfloat16); ignored with `feature_fn`.
        resize: the bilinear resize convention, see `inception_preprocess`.
        should_stop: called before each batch; when it returns True, extraction stops.
        mesh: the devices to split each batch over (default: all of them).

    Returns:
        [N, D] float32 features (D = 2048 for the Inception network).

    Raises:
        ValueError: if the images are not as documented in `to_uint8`, `batch_size` is not a
            positive integer, or `feature_fn` does not return [B, D].
        EvaluationInterrupted: `should_stop` returned True.
    """
    return np.concatenate(
        list(
            feature_batches(
                images,
                batch_size,
                feature_fn=feature_fn,
                progress=progress,
                dtype=dtype,
                resize=resize,
                should_stop=should_stop,
                mesh=mesh,
            )
        )
    )


def check_matrix_shape(shape: tuple[int, ...], name: str, min_rows: int) -> None:
    """Refuses a feature matrix shape other than [N, D] with N >= min_rows, D >= 1."""
    if len(shape) != 2 or shape[1] < 1:
        raise ValueError(f"{name} have shape {shape}; allowed: [N, D] with D >= 1")
    if shape[0] < min_rows:
        raise ValueError(f"{name} have {shape[0]} rows; at least {min_rows} are needed")


def validated_features(features: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """Checks a feature matrix and returns it as float64.

    Args:
        features: [N, D] real-valued array.
        name: what the array is, for error messages.
        min_rows: the smallest N allowed.

    Returns:
        [N, D] float64 copy or view of `features`.

    Raises:
        ValueError: if `features` is not a finite real [N, D] array with N >= min_rows, D >= 1.
    """
    array = np.asarray(features)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
        or array.dtype == jnp.bfloat16
    ):
        raise ValueError(f"{name} have dtype {array.dtype}; allowed: real numbers")
    check_matrix_shape(array.shape, name, min_rows)
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or Inf")
    return array
