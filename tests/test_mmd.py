"""Tests of the Kernel Inception Distance against a naive double-loop MMD^2."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.metrics import features as feature_extraction
from jaxgan.metrics import mmd


def naive_unbiased_mmd2(real: np.ndarray, fake: np.ndarray) -> float:
    """Gretton et al. 2012, Lemma 6, term by term with the cubic polynomial kernel."""
    size, dim = real.shape

    def kernel(a, b):
        return (sum(a_i * b_i for a_i, b_i in zip(a, b, strict=True)) / dim + 1) ** 3

    within_real = within_fake = between = 0.0
    for i in range(size):
        for j in range(size):
            if i != j:
                within_real += kernel(real[i], real[j])
                within_fake += kernel(fake[i], fake[j])
            between += kernel(real[i], fake[j])
    return (within_real + within_fake) / (size * (size - 1)) - 2 * between / size**2


def test_mmd2_unbiased_matches_naive_double_loop():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(12, 5)), rng.normal(0.3, 1.2, size=(12, 5))
    assert mmd.mmd2_unbiased(real, fake) == pytest.approx(
        naive_unbiased_mmd2(real, fake), rel=1e-12
    )


def test_kid_with_whole_sets_as_subsets_equals_the_full_estimate():
    # A subset as large as both sets is a permutation of them, and MMD^2_u ignores order.
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(15, 4)), rng.normal(0.5, 1.0, size=(15, 4))
    mean, std = mmd.kid_from_features(real, fake, num_subsets=5, subset_size=1000)
    assert mean == pytest.approx(naive_unbiased_mmd2(real, fake), rel=1e-12)
    assert std == pytest.approx(0, abs=1e-12)


def test_kid_subsets_follow_the_documented_sampling():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(20, 3)), rng.normal(0.2, 1.0, size=(17, 3))
    sampler = np.random.default_rng(7)
    estimates = []
    for _ in range(4):
        fake_subset = fake[sampler.choice(17, 6, replace=False)]
        real_subset = real[sampler.choice(20, 6, replace=False)]
        estimates.append(naive_unbiased_mmd2(real_subset, fake_subset))
    mean, std = mmd.kid_from_features(real, fake, num_subsets=4, subset_size=6, seed=7)
    assert mean == pytest.approx(np.mean(estimates), rel=1e-12)
    assert std == pytest.approx(np.std(estimates), rel=1e-10)


def test_mmd2_estimator_is_unbiased_for_equal_distributions():
    # The V-statistic (diagonal kept) averages clearly above 0 here; the U-statistic must not.
    rng = np.random.default_rng(3)
    estimates = [
        mmd.mmd2_unbiased(rng.normal(size=(8, 4)), rng.normal(size=(8, 4))) for _ in range(400)
    ]
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates)) < 3 * standard_error
    real, fake = rng.normal(size=(8, 4)), rng.normal(size=(8, 4))
    biased = (
        mmd.polynomial_kernel(real, real).mean()
        + mmd.polynomial_kernel(fake, fake).mean()
        - 2 * mmd.polynomial_kernel(real, fake).mean()
    )
    assert biased > 10 * standard_error


def test_kid_separates_same_and_shifted_distributions():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(300, 16))
    same = rng.normal(size=(300, 16))
    shifted = rng.normal(0.3, 1.0, size=(300, 16))
    same_mean, _ = mmd.kid_from_features(real, same, num_subsets=20, subset_size=100)
    shifted_mean, shifted_std = mmd.kid_from_features(
        real, shifted, num_subsets=20, subset_size=100
    )
    assert shifted_mean > 5 * shifted_std / np.sqrt(20)
    assert abs(same_mean) < shifted_mean / 10


def test_kid_is_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    first = mmd.kid_from_features(real, fake, num_subsets=3, subset_size=10, seed=1)
    assert mmd.kid_from_features(real, fake, num_subsets=3, subset_size=10, seed=1) == first
    assert mmd.kid_from_features(real, fake, num_subsets=3, subset_size=10, seed=2) != first


@pytest.mark.parametrize(
    ("real", "fake", "options"),
    [
        (np.zeros((5, 3)), np.zeros((5, 4)), {}),
        (np.zeros((1, 3)), np.zeros((5, 3)), {}),
        (np.zeros((5, 3)), np.full((5, 3), np.nan), {}),
        (np.zeros(5), np.zeros(5), {}),
        (np.zeros((5, 3)), np.zeros((5, 3)), {"subset_size": 1}),
        (np.zeros((5, 3)), np.zeros((5, 3)), {"num_subsets": 0}),
        (np.zeros((5, 3)), np.zeros((5, 3)), {"num_subsets": 2.0}),
    ],
)
def test_kid_rejects_bad_inputs(real, fake, options):
    with pytest.raises(ValueError):
        mmd.kid_from_features(real, fake, **options)


@jax.jit
def channel_mean_features(preprocessed: jax.Array) -> jax.Array:
    return jnp.concatenate(
        [preprocessed.mean(axis=(1, 2)), preprocessed[:, ::50, ::50].reshape(-1, 108)], axis=1
    )


def test_kid_on_images_uses_inception_features():
    rng = np.random.default_rng(6)
    real = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    fake = rng.uniform(-1, 0.5, (10, 8, 8)).astype(np.float32)
    scores = mmd.kid(
        real, fake, num_subsets=3, subset_size=6, batch_size=4, feature_fn=channel_mean_features
    )
    expected = mmd.kid_from_features(
        feature_extraction.inception_features(real, feature_fn=channel_mean_features),
        feature_extraction.inception_features(fake, feature_fn=channel_mean_features),
        num_subsets=3,
        subset_size=6,
    )
    assert scores == pytest.approx(expected, rel=1e-6)
    assert scores[0] > 0


def test_kid_on_images_checks_counts_before_computing_features():
    def unreachable_features(preprocessed):
        raise AssertionError("features computed before the arguments were checked")

    with pytest.raises(ValueError, match="subset_size"):
        mmd.kid(
            np.zeros((4, 8, 8), np.uint8),
            np.zeros((4, 8, 8), np.uint8),
            subset_size=1,
            feature_fn=unreachable_features,
        )
