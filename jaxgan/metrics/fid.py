"""Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium") with the protocol of NVIDIA's StyleGAN2-ADA/StyleGAN3
metrics, which reproduces the original TensorFlow implementation (TTUR):

1. images are uint8; generated float images in [-1, 1] are quantised as
   `(x * 127.5 + 128).clip(0, 255)` and cast to uint8, which truncates;
2. gray images are tiled to RGB;
3. images are resized to 299x299, bilinear with half-pixel centres (torch's
   `interpolate(align_corners=False)`, pytorch-fid's convention); `resize='tf1'` selects the
   sampling grid of TF1's `resize_bilinear` inside NVIDIA's TorchScript network instead
   (see `inception_preprocess`);
4. pixels are scaled to `(x - 128) / 128`;
5. the 2015-12-05 Inception-v3 gives pool3 features [N, 2048];
6. mean and covariance are taken in float64;
7. FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with `scipy.linalg.sqrtm`.

FID is biased: it falls as the number of images N grows (Bińkowski et al. 2018; Chong & Forsyth
2020). Lucic et al. 2018 ("Are GANs Created Equal?") used 10k test images against 10k generated
images. Record N and the reference split with every score.
"""

from __future__ import annotations

import numbers
import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import tqdm

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

_FLOAT_DTYPES = tuple(np.dtype(t) for t in (np.float16, jnp.bfloat16, np.float32, np.float64))
# Quantise this many float values at a time, to bound the temporary float copies.
_QUANTISE_CHUNK_VALUES = 1 << 22

FeatureFn = Callable[[jax.Array], jax.Array]


class FIDStatistics(NamedTuple):
    """Gaussian statistics of a set of pool3 features.

    Attributes:
        mu: [D] float64 feature mean.
        sigma: [D, D] float64 feature covariance (unbiased, ddof=1).
        num_images: number of images the statistics were computed from.
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int


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


RESIZE_MODES = ("half_pixel", "tf1")


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


def _check_resize(resize: str) -> str:
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
    if _check_resize(resize) == "tf1":
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


def inception_features(
    images: Any,
    batch_size: int = 250,
    *,
    feature_fn: FeatureFn | None = None,
    progress: bool = False,
    dtype: Any = jnp.float32,
    resize: str = "half_pixel",
) -> np.ndarray:
    """Computes the pool3 features of images with the FID protocol.

    Images are validated and quantised on the host (`to_uint8`) and sent to the device as uint8
    batches, where a jitted `inception_preprocess` and then `feature_fn` run. The last batch is
    padded to the batch size, so `feature_fn` always sees [batch_size, 299, 299, 3] and compiles
    once.

    Args:
        images: images accepted by `to_uint8`: uint8 or float in [-1, 1], [N, H, W] or
            [N, H, W, C] with C in {1, 3}.
        batch_size: images per device batch; `min(batch_size, N)` is used.
        feature_fn: maps preprocessed images [B, 299, 299, 3] float32 (a device array) to
            features [B, D]; pass a jitted function. Defaults to the FID Inception network,
            `jaxgan.metrics.inception.pool3_fn(dtype)`.
        progress: show a tqdm progress bar.
        dtype: compute dtype of the default Inception network; ignored with `feature_fn`.
        resize: the bilinear resize convention, see `inception_preprocess`.

    Returns:
        [N, D] float32 features (D = 2048 for the Inception network).

    Raises:
        ValueError: if the images are not as documented in `to_uint8`, `batch_size` is not a
            positive integer, or `feature_fn` does not return [B, D].
    """
    batch_size = _validate_positive_int(batch_size, "batch_size")
    _check_resize(resize)
    images_uint8 = to_uint8(images)
    if feature_fn is None:
        from jaxgan.metrics import inception

        feature_fn = inception.pool3_fn(dtype=dtype)

    num_images = len(images_uint8)
    batch_size = min(batch_size, num_images)

    def fetch(device_features: jax.Array, num_valid: int) -> np.ndarray:
        features = np.asarray(device_features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != batch_size:
            raise ValueError(
                f"feature_fn returned shape {features.shape} for a batch of {batch_size} images; "
                f"expected [{batch_size}, D]"
            )
        return features[:num_valid]

    feature_batches = []
    pending = None
    with tqdm.tqdm(
        total=num_images, disable=not progress, unit="img", desc="Inception features"
    ) as progress_bar:
        for start in range(0, num_images, batch_size):
            batch = images_uint8[start : start + batch_size]
            num_valid = len(batch)
            if num_valid < batch_size:
                padding = np.zeros((batch_size - num_valid,) + batch.shape[1:], np.uint8)
                batch = np.concatenate([batch, padding])
            # Dispatch is asynchronous: fetching the previous batch overlaps with this one.
            device_features = feature_fn(_jitted_preprocess(jax.device_put(batch), resize=resize))
            if pending is not None:
                feature_batches.append(fetch(*pending))
                progress_bar.update(pending[1])
            pending = (device_features, num_valid)
        feature_batches.append(fetch(*pending))
        progress_bar.update(pending[1])
    return np.concatenate(feature_batches)


def _validated_features(features: Any, name: str, min_rows: int = 1) -> np.ndarray:
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
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"{name} have shape {array.shape}; allowed: [N, D] with D >= 1")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} have {array.shape[0]} rows; at least {min_rows} are needed")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or Inf")
    return array


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, in float64.

    Args:
        features: [N, D] features, N >= 2.

    Returns:
        (mu [D] float64, sigma [D, D] float64), sigma with ddof=1 (`np.cov(rowvar=False)`).

    Raises:
        ValueError: if `features` is not a finite [N, D] array with N >= 2.
    """
    features = _validated_features(features, "features", min_rows=2)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, eps: float = 1e-6) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))
    (Dowson & Landau 1982; used for FID by Heusel et al. 2017).

    The matrix square root follows pytorch-fid: if `scipy.linalg.sqrtm` returns non-finite
    values (a singular product), `eps * I` is added to both covariances and it is retried, with a
    warning. A complex result is accepted when the imaginary parts of its diagonal are all within
    1e-3 of zero (`np.allclose(..., atol=1e-3)`), and its real part is used; otherwise ValueError.
    The result is not clipped at 0, so identical statistics can give a tiny negative number.

    Args:
        mu1: [D] mean of the first set.
        sigma1: [D, D] covariance of the first set.
        mu2: [D] mean of the second set.
        sigma2: [D, D] covariance of the second set.
        eps: diagonal offset used only when the product is singular.

    Returns:
        The squared Fréchet distance as a Python float.

    Raises:
        ValueError: on mismatched shapes, non-finite inputs, or a significant imaginary part.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    dim = mu1.shape[0]
    expected = {"mu1": (dim,), "mu2": (dim,), "sigma1": (dim, dim), "sigma2": (dim, dim)}
    given = {"mu1": mu1, "mu2": mu2, "sigma1": sigma1, "sigma2": sigma2}
    for name, value in given.items():
        if value.shape != expected[name]:
            shapes = {key: array.shape for key, array in given.items()}
            raise ValueError(f"shapes do not match: {shapes}; allowed: mu [D], sigma [D, D]")
        if not np.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or Inf")

    mean_term = float(np.sum((mu1 - mu2) ** 2))
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"sqrtm(sigma1 @ sigma2) is not finite; adding {eps} to the covariance diagonals",
            stacklevel=2,
        )
        offset = eps * np.eye(dim)
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            largest = float(np.max(np.abs(covmean.imag)))
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has an imaginary component of {largest}")
        covmean = covmean.real
    trace_term = float(np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
    return mean_term + trace_term


def image_statistics(
    images: Any,
    *,
    batch_size: int = 250,
    feature_fn: FeatureFn | None = None,
    progress: bool = False,
    dtype: Any = jnp.float32,
    resize: str = "half_pixel",
) -> FIDStatistics:
    """FID statistics of a set of images, e.g. to cache those of the test split.

    Args:
        images: N >= 2 images accepted by `to_uint8`.
        batch_size: see `inception_features`.
        feature_fn: see `inception_features`.
        progress: see `inception_features`.
        dtype: see `inception_features`.
        resize: see `inception_preprocess`.

    Returns:
        FIDStatistics of the pool3 features.

    Raises:
        ValueError: for invalid images or fewer than 2 of them.
    """
    features = inception_features(
        images, batch_size, feature_fn=feature_fn, progress=progress, dtype=dtype, resize=resize
    )
    mu, sigma = feature_statistics(features)
    return FIDStatistics(mu, sigma, len(features))


def _warn_if_few(num_images: int, which: str) -> None:
    if num_images < POOL3_DIM:
        warnings.warn(
            f"FID from {num_images} {which} images is strongly biased upwards: it falls as N "
            f"grows, and below {POOL3_DIM} images the pool3 covariance is rank-deficient. Compare "
            "scores only at equal N; 10,000 or more images are usual",
            stacklevel=3,
        )


def fid(
    real_images: Any,
    fake_images: Any,
    *,
    batch_size: int = 250,
    feature_fn: FeatureFn | None = None,
    progress: bool = False,
    dtype: Any = jnp.float32,
    resize: str = "half_pixel",
) -> float:
    """Fréchet Inception Distance between real and generated images (Heusel et al. 2017).

    Warns when either set has fewer than 2048 images: FID falls as N grows, so scores are
    comparable only at equal N (Lucic et al. 2018 used 10k against 10k).

    Args:
        real_images: N >= 2 images accepted by `to_uint8`, or the `FIDStatistics` of the
            reference set (e.g. from `load_statistics`).
        fake_images: M >= 2 images accepted by `to_uint8`, e.g. generator output in [-1, 1].
        batch_size: see `inception_features`.
        feature_fn: see `inception_features`.
        progress: see `inception_features`.
        dtype: see `inception_features`.
        resize: see `inception_preprocess`.

    Returns:
        FID as a Python float (lower is better).

    Raises:
        ValueError: for invalid images or fewer than 2 images in a set.
    """

    def statistics(images: Any) -> FIDStatistics:
        return image_statistics(
            images,
            batch_size=batch_size,
            feature_fn=feature_fn,
            progress=progress,
            dtype=dtype,
            resize=resize,
        )

    real = real_images if isinstance(real_images, FIDStatistics) else statistics(real_images)
    fake = statistics(fake_images)
    _warn_if_few(real.num_images, "real")
    _warn_if_few(fake.num_images, "generated")
    return frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)


def save_statistics(path: str | os.PathLike, mu: Any, sigma: Any, num_images: int) -> None:
    """Writes FID statistics to an .npz file atomically (temporary file, then `os.replace`).

    Args:
        path: destination file; its directory must exist.
        mu: [D] feature mean.
        sigma: [D, D] feature covariance.
        num_images: number of images the statistics come from (>= 2).

    Raises:
        ValueError: on shapes other than [D] and [D, D], non-finite values, or num_images < 2.
    """
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"mu {mu.shape} and sigma {sigma.shape} must be [D] and [D, D]")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError("mu and sigma must be finite")
    if isinstance(num_images, bool) or not isinstance(num_images, numbers.Integral):
        raise ValueError(f"num_images must be an integer, got {num_images!r}")
    if num_images < 2:
        raise ValueError(f"num_images must be at least 2, got {num_images}")
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz.tmp", delete=False) as file:
        temporary_path = file.name
        try:
            np.savez(file, mu=mu, sigma=sigma, num_images=np.int64(num_images))
        except BaseException:
            file.close()
            os.remove(temporary_path)
            raise
    os.replace(temporary_path, path)


def load_statistics(path: str | os.PathLike) -> FIDStatistics:
    """Reads FID statistics written by `save_statistics`.

    Args:
        path: an .npz file with arrays `mu` [D], `sigma` [D, D] and `num_images` (scalar).

    Returns:
        FIDStatistics with float64 arrays.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is not a readable .npz, lacks a key, or has wrong shapes.
    """
    try:
        contents = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{path} is not a readable .npz file of FID statistics: {error}"
        ) from error
    if not isinstance(contents, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz file of FID statistics")
    with contents:
        missing = {"mu", "sigma", "num_images"} - set(contents.files)
        if missing:
            raise ValueError(
                f"{path} lacks {sorted(missing)}; FID statistics need mu, sigma, num_images"
            )
        try:
            mu, sigma, num_images = (contents[key] for key in ("mu", "sigma", "num_images"))
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} has an unreadable array: {error}") from error
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path} holds mu {mu.shape} and sigma {sigma.shape}; need [D], [D, D]")
    if not (np.issubdtype(mu.dtype, np.floating) and np.issubdtype(sigma.dtype, np.floating)):
        raise ValueError(f"{path} holds mu {mu.dtype} and sigma {sigma.dtype}; need floats")
    if num_images.shape != () or not np.issubdtype(num_images.dtype, np.integer):
        raise ValueError(f"{path} holds num_images {num_images!r}; need an integer scalar")
    mu, sigma = mu.astype(np.float64), sigma.astype(np.float64)
    return FIDStatistics(mu, sigma, int(num_images))
