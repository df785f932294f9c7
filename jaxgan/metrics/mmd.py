"""Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

KID is the squared maximum mean discrepancy (MMD^2) between Inception pool3 features of real and
generated images under the cubic polynomial kernel k(x, y) = (x . y / d + 1)^3, estimated without
bias (Gretton et al. 2012, "A Kernel Two-Sample Test", Lemma 6) and averaged over random subsets.
Unlike FID its estimator is unbiased, so scores at different N are comparable in expectation.
Defaults follow NVIDIA's StyleGAN2-ADA/StyleGAN3 metrics: 100 subsets of up to 1000 images.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxgan.metrics.features import FeatureFn, StopFn, inception_features, validated_features


def polynomial_kernel(features_a: np.ndarray, features_b: np.ndarray) -> np.ndarray:
    """Cubic polynomial kernel k(a, b) = (a . b / d + 1)^3 of Bińkowski et al. 2018.

    Args:
        features_a: [N, D] float64.
        features_b: [M, D] float64.

    Returns:
        [N, M] float64 kernel matrix.
    """
    dim = features_a.shape[1]
    return (features_a @ features_b.T / dim + 1) ** 3


def mmd2_unbiased(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """Unbiased MMD^2 estimate with the cubic polynomial kernel (Gretton et al. 2012, Lemma 6).

    MMD^2_u = 1/(m(m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] - 2/m^2 sum_{i, j} k(x_i, y_j),
    for two equally sized samples x (real) and y (generated).

    Args:
        real_features: [m, D] float64, m >= 2.
        fake_features: [m, D] float64.

    Returns:
        The estimate; it can be negative when the distributions are close.
    """
    size = real_features.shape[0]
    within_real = polynomial_kernel(real_features, real_features)
    within_fake = polynomial_kernel(fake_features, fake_features)
    between = polynomial_kernel(real_features, fake_features)
    within_sum = (
        within_real.sum() - np.trace(within_real) + within_fake.sum() - np.trace(within_fake)
    )
    return float(within_sum / (size * (size - 1)) - 2 * between.sum() / size**2)


def _validate_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def kid_subset_indices(
    num_real: int, num_fake: int, *, num_subsets: int, subset_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the real and generated features in each KID subset.

    Each subset has m = min(subset_size, N, M) rows of each set, drawn without replacement:
    with `rng = np.random.default_rng(seed)`, subset s takes `rng.choice(M, m, replace=False)`
    generated rows and then `rng.choice(N, m, replace=False)` real rows.

    Args:
        num_real: N, rows of the real features.
        num_fake: M, rows of the generated features.
        num_subsets: number of subsets S, >= 1.
        subset_size: largest subset size, >= 2.
        seed: seed of the subset sampler.

    Returns:
        (real_indices [S, m], fake_indices [S, m]) int64.

    Raises:
        ValueError: if `num_subsets` or `subset_size` is not an integer in range.
    """
    num_subsets = _validate_count(num_subsets, "num_subsets", 1)
    subset_size = _validate_count(subset_size, "subset_size", 2)
    size = min(subset_size, num_real, num_fake)
    rng = np.random.default_rng(seed)
    real_indices = np.empty((num_subsets, size), np.int64)
    fake_indices = np.empty((num_subsets, size), np.int64)
    for subset in range(num_subsets):
        fake_indices[subset] = rng.choice(num_fake, size, replace=False)
        real_indices[subset] = rng.choice(num_real, size, replace=False)
    return real_indices, fake_indices


def kid_from_features(
    real_features: Any,
    fake_features: Any,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance from features (Bińkowski et al. 2018).

    Each subset is drawn by `kid_subset_indices`; its score is `mmd2_unbiased`. Computed in
    float64; `jaxgan.metrics.device.device_feature_metrics` computes it on the accelerator.

    Args:
        real_features: [N, D] features of real images, N >= 2.
        fake_features: [M, D] features of generated images, M >= 2.
        num_subsets: number of random subsets, >= 1.
        subset_size: largest subset size, >= 2.
        seed: seed of the subset sampler.

    Returns:
        (mean, std) of the per-subset MMD^2 estimates; std is the population standard deviation
        (ddof=0) across subsets, as torch-fidelity reports it, not the standard error of the mean.
        The mean can be slightly negative when the distributions match.

    Raises:
        ValueError: on non-finite or mis-shaped features, feature widths that differ, or invalid
            counts.
    """
    real_features = validated_features(real_features, "real_features", min_rows=2)
    fake_features = validated_features(fake_features, "fake_features", min_rows=2)
    if real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(
            f"feature widths differ: real {real_features.shape}, fake {fake_features.shape}"
        )
    real_indices, fake_indices = kid_subset_indices(
        len(real_features),
        len(fake_features),
        num_subsets=num_subsets,
        subset_size=subset_size,
        seed=seed,
    )
    estimates = np.array(
        [
            mmd2_unbiased(real_features[real_rows], fake_features[fake_rows])
            for real_rows, fake_rows in zip(real_indices, fake_indices, strict=True)
        ]
    )
    return float(estimates.mean()), float(estimates.std())


def kid(
    real_images: Any,
    fake_images: Any,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 250,
    feature_fn: FeatureFn | None = None,
    progress: bool = False,
    dtype: Any = jnp.float32,
    resize: str = "half_pixel",
    should_stop: StopFn | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance between real and generated images (Bińkowski et al. 2018).

    Features come from `jaxgan.metrics.features.inception_features`, so images go through the
    same quantisation, resize and network as for FID.

    Args:
        real_images: N >= 2 images accepted by `jaxgan.metrics.features.to_uint8`.
        fake_images: M >= 2 images accepted by `jaxgan.metrics.features.to_uint8`.
        num_subsets: see `kid_from_features`.
        subset_size: see `kid_from_features`.
        seed: see `kid_from_features`.
        batch_size, feature_fn, progress, dtype, resize, should_stop: see
            `jaxgan.metrics.features.inception_features`.

    Returns:
        (mean, std) of the per-subset KID estimates, see `kid_from_features`.
    """
    # Check the counts before the expensive feature pass.
    _validate_count(num_subsets, "num_subsets", 1)
    _validate_count(subset_size, "subset_size", 2)
    real_features, fake_features = (
        inception_features(
            images,
            batch_size,
            feature_fn=feature_fn,
            progress=progress,
            dtype=dtype,
            resize=resize,
            should_stop=should_stop,
        )
        for images in (real_images, fake_images)
    )
    return kid_from_features(
        real_features,
        fake_features,
        num_subsets=num_subsets,
        subset_size=subset_size,
        seed=seed,
    )
