"""Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium"): Gaussian statistics of pool3 features and the distance
between them.

With features from `jaxgan.metrics.features.inception_features`:

6. mean and covariance are taken in float64 (`feature_statistics`, or `StreamingStatistics`
   batch by batch in memory that does not grow with N);
7. FID = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with `scipy.linalg.sqrtm`
   (`frechet_distance`).

FID is biased: it falls as the number of images N grows (Bińkowski et al. 2018; Chong & Forsyth
2020), and below 2048 images the 2048x2048 covariance is singular. Lucic et al. 2018 ("Are GANs
Created Equal?") used 10k test images against 10k generated images. Record N and the reference
split with every score.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from jaxgan.metrics.features import (
    POOL3_DIM,
    FeatureFn,
    StopFn,
    feature_batches,
    validated_features,
)


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


class SmallSampleWarning(UserWarning):
    """FID from fewer than 2048 images: biased upwards, with a singular covariance."""


def small_sample_message(num_real: int, num_fake: int, hint: str = "") -> str | None:
    """The one warning text for FID at small N, or None when both sets are large enough.

    Args:
        num_real: images in the reference set.
        num_fake: generated images.
        hint: how the caller can use more images, e.g. "pass --num_samples=10000".
    """
    if min(num_real, num_fake) >= POOL3_DIM:
        return None
    return (
        f"FID from {num_real} real and {num_fake} generated images: below {POOL3_DIM} images "
        f"the {POOL3_DIM}x{POOL3_DIM} pool3 covariance is singular and FID is strongly biased "
        "upwards (it falls as N grows). Compare scores only at equal N; 10,000 images are usual"
        + (f": {hint}" if hint else "")
        + "."
    )


def warn_if_small_sample(num_real: int, num_fake: int, hint: str = "", stacklevel: int = 2) -> None:
    """Warns once with `SmallSampleWarning` if either set has fewer than 2048 images."""
    message = small_sample_message(num_real, num_fake, hint)
    if message is not None:
        warnings.warn(message, SmallSampleWarning, stacklevel=stacklevel + 1)


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, in float64.

    Computed by `StreamingStatistics` in its fixed blocks of rows, so the result is the same,
    to the bit, as that of the same features streamed in batches of any size (`fid`,
    `image_statistics`), and equals `np.mean`/`np.cov` to float64 rounding.

    Args:
        features: [N, D] features, N >= 2.

    Returns:
        (mu [D] float64, sigma [D, D] float64), sigma with ddof=1 (`np.cov(rowvar=False)`).

    Raises:
        ValueError: if `features` is not a finite [N, D] array with N >= 2.
    """
    mu, sigma, _ = StreamingStatistics().update(features).result()
    return mu, sigma


class StreamingStatistics:
    """Mean and covariance of features that arrive in batches, in float64 and O(D^2) memory.

    Rows are folded in blocks of `BLOCK_ROWS` whatever batches they arrive in, so the result
    is the same, to the bit, for any batch size or number of devices that produced them.
    Each block's mean and centred scatter matrix are merged into the running ones with the
    pairwise update of Chan, Golub & LeVeque (1979, "Updating formulae and a pairwise
    algorithm for computing sample variances"): M2 = M2_a + M2_b + delta delta^T n_a n_b / n,
    delta = mean_b - mean_a. Unlike a running sum of outer products this subtracts no large
    numbers, so it agrees with `np.cov` to float64 rounding.

        statistics = StreamingStatistics()
        for features in feature_batches(images):  # jaxgan.metrics.features
            statistics.update(features)
        mu, sigma, n = statistics.result()
    """

    BLOCK_ROWS = 256

    def __init__(self) -> None:
        self.count = 0  # Rows added; the first `_folded` of them are in _mean and _scatter.
        self._folded = 0
        self._mean: np.ndarray | None = None
        self._scatter: np.ndarray | None = None
        self._pending: list[np.ndarray] = []

    def update(self, features: Any) -> StreamingStatistics:
        """Adds a batch of features [n, D] (n >= 1); returns self.

        Raises:
            ValueError: if `features` is not a finite [n, D] array, or D differs from that of
                the batches before.
        """
        batch = validated_features(features, "features")
        width = (self._pending or [batch])[0].shape[1] if self._mean is None else len(self._mean)
        if batch.shape[1] != width:
            raise ValueError(
                f"features have {batch.shape[1]} columns, the batches before had {width}; "
                "allowed: the same D in every batch"
            )
        self._pending.append(batch)
        self.count += len(batch)
        if self.count - self._folded >= self.BLOCK_ROWS:
            rows = np.concatenate(self._pending)
            whole = len(rows) // self.BLOCK_ROWS * self.BLOCK_ROWS
            for start in range(0, whole, self.BLOCK_ROWS):
                self._fold(rows[start : start + self.BLOCK_ROWS])
            self._pending = [rows[whole:]] if whole < len(rows) else []
        return self

    def _fold(self, rows: np.ndarray) -> None:
        mean = rows.mean(axis=0)
        centred = rows - mean
        scatter = centred.T @ centred
        if self._mean is None:
            self._folded, self._mean, self._scatter = len(rows), mean, scatter
            return
        total = self._folded + len(rows)
        delta = mean - self._mean
        weight = self._folded * len(rows) / total
        self._mean = self._mean + delta * (len(rows) / total)
        self._scatter = self._scatter + scatter + np.outer(delta, delta * weight)
        self._folded = total

    def result(self) -> FIDStatistics:
        """FIDStatistics: mean [D], covariance [D, D] (ddof=1) and the number of rows.

        The rows of an incomplete last block are folded into a copy, so more can be added.

        Raises:
            ValueError: fewer than 2 rows were added.
        """
        if self.count < 2:
            raise ValueError(f"features have {self.count} rows; at least 2 are needed")
        final = StreamingStatistics()
        final._folded, final._mean, final._scatter = self._folded, self._mean, self._scatter
        if self._pending:
            final._fold(np.concatenate(self._pending))
        return FIDStatistics(final._mean.copy(), final._scatter / (self.count - 1), self.count)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    # scipy warns (LinAlgWarning) whenever the product is singular, which it always is with
    # fewer images than feature dimensions. That case has one clear warning of its own
    # (`warn_if_small_sample`); a non-finite result is handled by the caller.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(matrix)


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, eps: float = 1e-6) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))
    (Dowson & Landau 1982; used for FID by Heusel et al. 2017).

    The matrix square root follows pytorch-fid: if `scipy.linalg.sqrtm` returns non-finite
    values, `eps * I` is added to both covariances and it is retried, with a warning. scipy's
    LinAlgWarning about a singular product is silenced: with fewer images than dimensions the
    product is always singular, and `fid` and the evaluators say so once
    (`warn_if_small_sample`). A complex result is accepted when the imaginary parts of its
    diagonal are all within 1e-3 of zero (`np.allclose(..., atol=1e-3)`), and its real part is
    used; otherwise ValueError.
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
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"sqrtm(sigma1 @ sigma2) is not finite; adding {eps} to the covariance diagonals",
            stacklevel=2,
        )
        offset = eps * np.eye(dim)
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
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
    should_stop: StopFn | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> FIDStatistics:
    """FID statistics of a set of images, e.g. to cache those of the test split.

    Features are accumulated batch by batch (`StreamingStatistics`), so memory does not grow
    with the number of images beyond the images themselves.

    Args:
        images: N >= 2 images accepted by `to_uint8`.
        batch_size: see `inception_features`.
        feature_fn: see `inception_features`.
        progress: see `inception_features`.
        dtype: see `inception_features`.
        resize: see `inception_preprocess`.
        should_stop: see `inception_features`.
        mesh: see `inception_features`.

    Returns:
        FIDStatistics of the pool3 features.

    Raises:
        ValueError: for invalid images or fewer than 2 of them.
    """
    statistics = StreamingStatistics()
    batches = feature_batches(
        images,
        batch_size,
        feature_fn=feature_fn,
        progress=progress,
        dtype=dtype,
        resize=resize,
        should_stop=should_stop,
        mesh=mesh,
    )
    for features in batches:
        statistics.update(features)
    return statistics.result()


def fid(
    real_images: Any,
    fake_images: Any,
    *,
    batch_size: int = 250,
    feature_fn: FeatureFn | None = None,
    progress: bool = False,
    dtype: Any = jnp.float32,
    resize: str = "half_pixel",
    should_stop: StopFn | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> float:
    """Fréchet Inception Distance between real and generated images (Heusel et al. 2017).

    Warns once (`SmallSampleWarning`) when either set has fewer than 2048 images: FID falls as N
    grows, so scores are comparable only at equal N (Lucic et al. 2018 used 10k against 10k).

    Args:
        real_images: N >= 2 images accepted by `to_uint8`, or the `FIDStatistics` of the
            reference set (e.g. from `load_statistics`).
        fake_images: M >= 2 images accepted by `to_uint8`, e.g. generator output in [-1, 1].
        batch_size: see `inception_features`.
        feature_fn: see `inception_features`.
        progress: see `inception_features`.
        dtype: see `inception_features`.
        resize: see `inception_preprocess`.
        should_stop: see `inception_features`.
        mesh: see `inception_features`.

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
            should_stop=should_stop,
            mesh=mesh,
        )

    real = real_images if isinstance(real_images, FIDStatistics) else statistics(real_images)
    fake = statistics(fake_images)
    warn_if_small_sample(real.num_images, fake.num_images)
    return frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
