"""Streaming FID statistics: batch-wise float64 mean and covariance equal numpy's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.metrics import features as feature_extraction
from jaxgan.metrics import frechet

# Batches that do not divide N or the 256-row blocks, a single row, one batch over a block.
UNEVEN_BATCHES = (7, 1, 250, 13, 300, 29)


def _stream(features: np.ndarray, sizes=UNEVEN_BATCHES) -> frechet.StreamingStatistics:
    statistics = frechet.StreamingStatistics()
    start = 0
    for size in sizes:
        statistics.update(features[start : start + size])
        start += size
    assert start == len(features)
    return statistics


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_batch_wise_statistics_equal_numpy_mean_and_cov(offset):
    # An offset 1e4 times the spread: a running sum of outer products loses digits of the
    # covariance to cancellation; the pairwise merge keeps them.
    rng = np.random.default_rng(0)
    features = offset + rng.normal(size=(sum(UNEVEN_BATCHES), 6)) @ rng.normal(size=(6, 6))
    mu, sigma, count = _stream(features.astype(np.float32)).result()
    reference = features.astype(np.float32).astype(np.float64)
    assert count == len(features)
    np.testing.assert_allclose(mu, np.mean(reference, axis=0), rtol=1e-13, atol=0)
    expected = np.cov(reference, rowvar=False)
    # A running sum of outer products is off by ~6e-9 of the largest entry at offset 1e4.
    np.testing.assert_allclose(sigma, expected, rtol=0, atol=1e-11 * np.abs(expected).max())
    assert mu.dtype == sigma.dtype == np.float64


def test_any_split_into_batches_gives_the_same_bits_as_feature_statistics():
    features = np.random.default_rng(1).gamma(2.0, size=(600, 5))
    mu, sigma = frechet.feature_statistics(features)
    for sizes in (UNEVEN_BATCHES, (1,) * 600, (599, 1), (2, 598), (256, 256, 88), (600,)):
        split = _stream(features, sizes).result()
        np.testing.assert_array_equal(split.mu, mu)
        np.testing.assert_array_equal(split.sigma, sigma)
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-12)


def test_result_can_be_taken_midway_and_more_rows_added():
    features = np.random.default_rng(2).normal(size=(300, 3))
    statistics = frechet.StreamingStatistics().update(features[:100])
    midway = statistics.result()
    np.testing.assert_allclose(midway.sigma, np.cov(features[:100], rowvar=False), rtol=1e-12)
    assert midway.num_images == 100
    final = statistics.update(features[100:]).result()
    np.testing.assert_array_equal(final.sigma, frechet.feature_statistics(features)[1])


def test_statistics_refuse_too_few_rows_other_widths_and_non_finite_values():
    statistics = frechet.StreamingStatistics()
    with pytest.raises(ValueError, match="0 rows; at least 2"):
        statistics.result()
    statistics.update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="1 rows; at least 2"):
        statistics.result()
    with pytest.raises(ValueError, match="4 columns, the batches before had 3"):
        statistics.update(np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        statistics.update(np.array([[1.0, np.nan, 0.0]]))
    assert statistics.count == 1  # A refused batch is not counted.


@jax.jit
def moment_features(preprocessed: jax.Array) -> jax.Array:
    """[B, 299, 299, 3] -> [B, 4]: full-rank stand-in features."""
    return jnp.stack(
        [
            preprocessed.mean(axis=(1, 2, 3)),
            (preprocessed**2).mean(axis=(1, 2, 3)),
            preprocessed[:, :100].mean(axis=(1, 2, 3)),
            jnp.abs(preprocessed[:, :, :50]).mean(axis=(1, 2, 3)),
        ],
        axis=1,
    )


def test_image_statistics_stream_the_features_of_inception_features():
    images = np.random.default_rng(3).integers(0, 256, (23, 8, 8, 1), dtype=np.uint8)
    streamed = frechet.image_statistics(images, batch_size=5, feature_fn=moment_features)
    features = feature_extraction.inception_features(images, 5, feature_fn=moment_features)
    mu, sigma = frechet.feature_statistics(features)
    assert streamed.num_images == 23
    np.testing.assert_allclose(streamed.mu, mu, rtol=1e-13)
    np.testing.assert_allclose(streamed.sigma, sigma, rtol=1e-10, atol=1e-15)


def test_feature_batches_hold_one_batch_at_a_time():
    images = np.zeros((10, 4, 4, 1), np.uint8)
    calls = []

    def counting_features(preprocessed):
        calls.append(preprocessed.shape[0])
        return moment_features(preprocessed)

    batches = feature_extraction.feature_batches(images, 3, feature_fn=counting_features)
    assert calls == []  # Nothing runs before the first batch is asked for ...
    first = next(batches)
    assert first.shape == (3, 4) and first.dtype == np.float32
    assert len(calls) <= 2  # ... then at most one batch is computed ahead.
    rest = list(batches)
    assert [len(batch) for batch in rest] == [3, 3, 1] and calls == [3, 3, 3, 3]


def test_feature_batches_check_their_arguments_before_returning():
    with pytest.raises(ValueError, match="batch_size"):
        feature_extraction.feature_batches(np.zeros((2, 4, 4), np.uint8), 0, feature_fn=jnp.sum)
    with pytest.raises(ValueError, match="dtype"):
        feature_extraction.feature_batches(np.zeros((2, 4, 4), np.int16), feature_fn=jnp.sum)
