"""Tests of the FID protocol: quantisation, resize, features, statistics and the distance."""

import os
import warnings

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxgan.metrics import features as feature_extraction
from jaxgan.metrics import frechet, statistics_file


@jax.jit
def colour_moment_features(preprocessed: jax.Array) -> jax.Array:
    """Stand-in for Inception: [B, 299, 299, 3] -> [B, 9] per-channel moments."""
    mean = preprocessed.mean(axis=(1, 2))
    second_moment = (preprocessed**2).mean(axis=(1, 2))
    top_half_mean = preprocessed[:, :149].mean(axis=(1, 2))
    return jnp.concatenate([mean, second_moment, top_half_mean], axis=1)


def smooth_images(seed: int, num_images: int, size: int = 28, channels: int = 1) -> np.ndarray:
    """[N, size, size, C] uint8 images of random blurred blobs, a stand-in for photos."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(num_images, size, size, channels))
    frequencies = np.fft.fftfreq(size)
    low_pass = np.exp(-(frequencies[:, None] ** 2 + frequencies[None, :] ** 2) / (2 * 0.08**2))
    blurred = np.fft.ifft2(np.fft.fft2(noise, axes=(1, 2)) * low_pass[..., None], axes=(1, 2))
    blurred = blurred.real
    blurred = (blurred - blurred.min()) / (blurred.max() - blurred.min())
    return (blurred * 255).astype(np.uint8)


def four_tap_sample(images: np.ndarray, rows, columns) -> np.ndarray:
    """Bilinear 2-D sampling from per-axis taps (lower index, upper index, upper weight)."""
    y0, y1, south = rows
    x0, x1, east = columns
    output = np.zeros((images.shape[0], len(y0), len(x0), images.shape[3]))
    for row_index, column_index, weight in (
        (y0, x0, np.outer(1 - south, 1 - east)),
        (y0, x1, np.outer(1 - south, east)),
        (y1, x0, np.outer(south, 1 - east)),
        (y1, x1, np.outer(south, east)),
    ):
        output += images[:, row_index][:, :, column_index] * weight[None, :, :, None]
    return output


def nvidia_resize_reference(images: np.ndarray, output_size: int = 299) -> np.ndarray:
    """torch affine_grid + grid_sample as in NVIDIA's TorchScript Inception, written from torch's
    documented formulas: a 2-D four-tap sample, independent of the separable implementation.

    Args:
        images: [N, H, W, C] float64.
    """
    _, height, width, _ = images.shape
    # affine_grid(align_corners=False): output pixel centres in [-1, 1], then the theta shift.
    centres = (2 * np.arange(output_size) + 1) / output_size - 1
    grid_x = centres + (1 / width - 1 / output_size)
    grid_y = centres + (1 / height - 1 / output_size)
    # grid_sample(align_corners=False, padding_mode='border'): unnormalise, clip to the image.
    source_x = np.clip(((grid_x + 1) * width - 1) / 2, 0, width - 1)
    source_y = np.clip(((grid_y + 1) * height - 1) / 2, 0, height - 1)
    x0, y0 = np.floor(source_x).astype(int), np.floor(source_y).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    east, south = source_x - x0, source_y - y0
    return four_tap_sample(images, (y0, y1, south), (x0, x1, east))


# --- to_uint8 ----------------------------------------------------------------------------------


def test_to_uint8_hand_computed_values_truncate():
    # x*127.5+128: -1 -> 0.5, -0.5 -> 64.25, 0 -> 128, 0.5 -> 191.75, 0.57 -> 200.675, 1 -> 255.5.
    images = np.array([-1.0, -0.5, 0.0, 0.5, 0.57, 1.0], np.float32).reshape(1, 1, 6)
    expected = np.array([0, 64, 128, 191, 200, 255], np.uint8).reshape(1, 1, 6, 1)
    np.testing.assert_array_equal(feature_extraction.to_uint8(images), expected)


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16, np.float32, np.float64])
def test_to_uint8_inverts_the_centred_float_encoding(dtype):
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    # Pixel centres: (u - 127.5) / 127.5 quantises to u + 0.5, which truncates back to u.
    centred = ((levels.astype(np.float64) - 127.5) / 127.5).astype(dtype)
    quantised = feature_extraction.to_uint8(centred)
    if dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(quantised[..., 0], levels)
    else:
        # 8-bit mantissas cannot hold every level; they still land within one level.
        difference = quantised[..., 0].astype(int) - levels
        assert np.abs(difference).max() <= 1


def test_to_uint8_shapes_and_passthrough():
    gray = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(feature_extraction.to_uint8(gray), gray[..., None])
    rgb = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(feature_extraction.to_uint8(rgb), rgb)
    one_channel = jnp.zeros((1, 5, 5, 1), jnp.float32)
    quantised = feature_extraction.to_uint8(one_channel)
    assert quantised.shape == (1, 5, 5, 1) and quantised.dtype == np.uint8
    assert (quantised == 128).all()


def test_to_uint8_tolerance_at_range_ends():
    within = np.array([-1 - 5e-4, 1 + 5e-4], np.float32).reshape(1, 1, 2)
    np.testing.assert_array_equal(feature_extraction.to_uint8(within).ravel(), [0, 255])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        feature_extraction.to_uint8(np.array([0.0, 1.01], np.float32).reshape(1, 1, 2))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 4, 4), np.int32), "dtype int32"),
        (np.zeros((2, 4, 4), np.uint16), "dtype uint16"),
        (np.zeros((2, 4, 4), bool), "dtype bool"),
        (np.zeros((2, 4, 4), np.complex64), "dtype complex64"),
        (np.array([["a"]]), "dtype <U1"),
        (np.zeros((4, 4), np.uint8), r"shape \(4, 4\)"),
        (np.zeros((1, 2, 4, 4, 1), np.uint8), r"shape \(1, 2, 4, 4, 1\)"),
        (np.zeros((2, 3, 4, 4), np.uint8), "4 channels"),
        (np.zeros((2, 4, 4, 2), np.float32), "2 channels"),
        (np.zeros((0, 4, 4), np.uint8), "empty dimension"),
        (np.zeros((2, 0, 4, 3), np.float32), "empty dimension"),
        (np.full((2, 4, 4), np.nan, np.float32), "NaN or Inf"),
        (np.full((2, 4, 4), np.inf, np.float64), "NaN or Inf"),
        (np.full((2, 4, 4), 255.0, np.float32), r"\[-1, 1\]"),
        ([[1, 2], [3]], "could not be read"),
    ],
)
def test_to_uint8_rejects_undocumented_inputs(images, message):
    with pytest.raises(ValueError, match=message):
        feature_extraction.to_uint8(images)


def test_to_uint8_reports_first_bad_image():
    images = np.zeros((5, 3, 3), np.float32)
    images[3, 1, 1] = np.nan
    with pytest.raises(ValueError, match="image 3"):
        feature_extraction.to_uint8(images)


_ALL_DTYPES = [
    np.uint8,
    np.int8,
    np.uint16,
    np.int32,
    np.int64,
    np.bool_,
    np.float16,
    jnp.bfloat16,
    np.float32,
    np.float64,
    np.complex64,
]
_FLOAT_DTYPES = {np.dtype(t) for t in (np.float16, jnp.bfloat16, np.float32, np.float64)}


@st.composite
def arbitrary_images(draw, max_side: int = 4):
    """Arrays of any rank <= 5, of many dtypes, with values in and out of [-1, 1], NaN, Inf."""
    # Mostly image-like ranks and channel counts, so that valid inputs are drawn often too.
    rank = draw(st.sampled_from([0, 1, 2, 3, 3, 3, 4, 4, 4, 4, 5]))
    side = st.sampled_from([0] + 3 * list(range(1, max_side + 1)))
    shape = draw(st.lists(side, min_size=rank, max_size=rank))
    if rank == 4:
        shape[3] = draw(st.sampled_from([1, 3, 1, 3, 0, 2, 4]))
    shape = tuple(shape)
    in_range = st.floats(-1.0, 1.0)
    edge_cases = st.sampled_from([np.nan, np.inf, -np.inf, 255.0, -1.0005, 1.0005, -1.01, 1.01])
    elements = draw(st.sampled_from([in_range, st.one_of(in_range, edge_cases)]))
    values = draw(hnp.arrays(np.float64, shape, elements=elements))
    dtype = np.dtype(draw(st.sampled_from(_ALL_DTYPES + [np.uint8, np.float32])))
    if dtype in _FLOAT_DTYPES or dtype.kind == "c":
        return values.astype(dtype)
    return np.nan_to_num(values, nan=0, posinf=255, neginf=0).clip(0, 255).astype(dtype)


def is_documented_input(images: np.ndarray) -> bool:
    shape = images.shape
    if images.dtype != np.uint8 and images.dtype not in _FLOAT_DTYPES:
        return False
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
        return False
    if min(shape[:3]) < 1:
        return False
    if images.dtype == np.uint8:
        return True
    values = images.astype(np.float64)
    return bool(
        np.isfinite(values).all() and np.abs(values).max() <= 1 + feature_extraction.RANGE_TOLERANCE
    )


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(arbitrary_images())
def test_to_uint8_accepts_exactly_the_documented_inputs(images):
    if not is_documented_input(images):
        with pytest.raises(ValueError):
            feature_extraction.to_uint8(images)
        return
    quantised = feature_extraction.to_uint8(images)
    channels = images.shape[3] if images.ndim == 4 else 1
    assert quantised.dtype == np.uint8
    assert quantised.shape == images.shape[:3] + (channels,)
    if images.dtype != np.uint8:
        # Float64 arithmetic as an independent check; float32 may differ by one level at ties.
        expected = np.floor(np.clip(images.astype(np.float64) * 127.5 + 128, 0, 255))
        difference = quantised.astype(float) - expected.reshape(quantised.shape)
        assert np.abs(difference).max() <= 1


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(arbitrary_images(max_side=3), st.integers(1, 3))
def test_inception_features_accepts_exactly_the_documented_inputs(images, batch_size):
    if not is_documented_input(images):
        with pytest.raises(ValueError):
            feature_extraction.inception_features(
                images, batch_size, feature_fn=colour_moment_features
            )
        return
    features = feature_extraction.inception_features(
        images, batch_size, feature_fn=colour_moment_features
    )
    assert features.shape == (images.shape[0], 9)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()


# --- inception_preprocess ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(2, 28, 28, 1), (1, 7, 5, 3), (1, 299, 299, 3), (1, 320, 310, 3)],
    ids=["upsample-gray", "upsample-non-square-rgb", "identity", "downsample"],
)
def test_inception_preprocess_tf1_matches_nvidia_grid_sample(shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    preprocessed = np.asarray(
        feature_extraction.inception_preprocess(jnp.asarray(images), resize="tf1")
    )
    assert preprocessed.shape == (shape[0], 299, 299, 3)
    assert preprocessed.dtype == np.float32
    expected = (nvidia_resize_reference(images.astype(np.float64)) - 128) / 128
    expected = np.broadcast_to(expected, preprocessed.shape)
    np.testing.assert_allclose(preprocessed, expected, atol=2e-5, rtol=0)


def test_inception_preprocess_identity_at_299_is_exact_scaling():
    images = np.random.default_rng(1).integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
    preprocessed = np.asarray(feature_extraction.inception_preprocess(jnp.asarray(images)))
    np.testing.assert_array_equal(preprocessed, (images.astype(np.float32) - 128) / 128)


def half_pixel_resize_reference(images: np.ndarray, output_size: int = 299) -> np.ndarray:
    """torch `interpolate(mode='bilinear', align_corners=False)` from its documented formula
    (source = (i + 0.5) * in / out - 0.5, clamped below at 0), for upsampling.

    Args:
        images: [N, H, W, C] float64.
    """
    _, height, width, _ = images.shape

    def taps(size):
        source = np.maximum((np.arange(output_size) + 0.5) * size / output_size - 0.5, 0)
        lower = np.floor(source).astype(int)
        return lower, np.minimum(lower + 1, size - 1), source - lower

    y0, y1, south = taps(height)
    x0, x1, east = taps(width)
    return four_tap_sample(images, (y0, y1, south), (x0, x1, east))


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (1, 7, 5, 3)])
def test_inception_preprocess_default_is_the_half_pixel_resize(shape):
    images = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    preprocessed = np.asarray(feature_extraction.inception_preprocess(jnp.asarray(images)))
    assert preprocessed.shape == (shape[0], 299, 299, 3)
    expected = (half_pixel_resize_reference(images.astype(np.float64)) - 128) / 128
    np.testing.assert_allclose(
        preprocessed, np.broadcast_to(expected, preprocessed.shape), atol=2e-5, rtol=0
    )


def test_inception_preprocess_modes_differ_and_unknown_mode_is_refused():
    # The two grids are 0.45 source pixels apart at 28 -> 299.
    images = jnp.asarray(smooth_images(seed=2, num_images=1), jnp.uint8)
    half_pixel = np.asarray(feature_extraction.inception_preprocess(images))
    tf1 = np.asarray(feature_extraction.inception_preprocess(images, resize="tf1"))
    assert np.abs(half_pixel - tf1).max() > 0.02
    with pytest.raises(ValueError, match="resize='bicubic'"):
        feature_extraction.inception_features(np.zeros((2, 4, 4), np.uint8), resize="bicubic")


# --- inception_features ------------------------------------------------------------------------


def test_inception_features_batches_pad_and_match_one_big_batch():
    images = smooth_images(seed=3, num_images=7, channels=3)
    seen_shapes = []

    def recording_features(preprocessed):
        seen_shapes.append(preprocessed.shape)
        return colour_moment_features(preprocessed)

    features = feature_extraction.inception_features(
        images, batch_size=3, feature_fn=recording_features
    )
    assert seen_shapes == [(3, 299, 299, 3)] * 3
    assert features.shape == (7, 9) and features.dtype == np.float32
    expected = colour_moment_features(feature_extraction.inception_preprocess(jnp.asarray(images)))
    np.testing.assert_allclose(features, np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_inception_features_uint8_and_equivalent_float_agree():
    images = smooth_images(seed=4, num_images=5)
    as_float = (images.astype(np.float32) - 127.5) / 127.5
    from_uint8 = feature_extraction.inception_features(images, 2, feature_fn=colour_moment_features)
    from_float = feature_extraction.inception_features(
        as_float, 2, feature_fn=colour_moment_features
    )
    np.testing.assert_array_equal(from_uint8, from_float)


def test_inception_features_gray_equals_tiled_rgb():
    gray = smooth_images(seed=5, num_images=3)
    rgb = np.repeat(gray, 3, axis=-1)
    np.testing.assert_array_equal(
        feature_extraction.inception_features(gray, feature_fn=colour_moment_features),
        feature_extraction.inception_features(rgb, feature_fn=colour_moment_features),
    )


def test_inception_features_progress_bar_counts_images(capsys, monkeypatch):
    # A bar is drawn on a terminal only (elsewhere its carriage returns are junk in a log).
    monkeypatch.setattr(feature_extraction.sys.stderr, "isatty", lambda: True)
    feature_extraction.inception_features(
        smooth_images(seed=6, num_images=5), 2, feature_fn=colour_moment_features, progress=True
    )
    assert "5/5" in capsys.readouterr().err


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8"])
def test_inception_features_rejects_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        feature_extraction.inception_features(
            np.zeros((2, 4, 4), np.uint8), batch_size, feature_fn=jnp.sum
        )


def test_inception_features_rejects_bad_feature_fn_output():
    def flat_features(preprocessed):
        return preprocessed.mean(axis=(1, 2, 3))

    with pytest.raises(ValueError, match="feature_fn returned shape"):
        feature_extraction.inception_features(
            np.zeros((2, 4, 4), np.uint8), feature_fn=flat_features
        )


# --- statistics and the distance ---------------------------------------------------------------


def test_feature_statistics_hand_computed():
    features = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], np.float32)
    mu, sigma = frechet.feature_statistics(features)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_array_equal(mu, [1, 1])
    # Deviations are +-1 per axis, uncorrelated: variance 4 / (4 - 1).
    np.testing.assert_allclose(sigma, np.eye(2) * 4 / 3, rtol=1e-15)


@pytest.mark.parametrize(
    "features",
    [np.zeros((1, 3)), np.zeros(5), np.full((3, 2), np.nan), np.zeros((3, 2), complex)],
)
def test_feature_statistics_rejects_bad_features(features):
    with pytest.raises(ValueError):
        frechet.feature_statistics(features)


def random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    factor = rng.normal(size=(dim, 2 * dim))
    return factor @ factor.T / (2 * dim)


def test_frechet_distance_diagonal_closed_form():
    # Commuting covariances: Tr term = sum (sqrt(a_i) - sqrt(b_i))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    variances1, variances2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2
    distance = frechet.frechet_distance(mu1, np.diag(variances1), mu2, np.diag(variances2))
    assert isinstance(distance, float)
    assert distance == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_symmetric_eigen_reference():
    rng = np.random.default_rng(6)
    sigma1, sigma2 = random_covariance(rng, 20), random_covariance(rng, 20)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    # Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), a symmetric PSD matrix: no sqrtm involved.
    eigenvalues, eigenvectors = np.linalg.eigh(sigma1)
    root1 = eigenvectors @ np.diag(np.sqrt(eigenvalues)) @ eigenvectors.T
    trace_sqrt = np.sqrt(np.linalg.eigvalsh(root1 @ sigma2 @ root1).clip(0)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2) - 2 * trace_sqrt
    assert frechet.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_identical_statistics_is_zero():
    rng = np.random.default_rng(7)
    sigma = random_covariance(rng, 30)
    mu = rng.normal(size=30)
    assert abs(frechet.frechet_distance(mu, sigma, mu, sigma)) < 1e-10


def test_frechet_distance_singular_covariances_stay_finite():
    rng = np.random.default_rng(8)
    # Rank 3 in 10 dimensions, as when N <= D.
    features1, features2 = rng.normal(size=(4, 10)), rng.normal(size=(4, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distance = frechet.frechet_distance(
            features1.mean(0),
            np.cov(features1, rowvar=False),
            features2.mean(0),
            np.cov(features2, rowvar=False),
        )
    assert np.isfinite(distance) and distance > 0


def test_frechet_distance_retries_with_eps_when_sqrtm_is_not_finite(monkeypatch):
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def sqrtm_failing_once(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(scipy.linalg, "sqrtm", sqrtm_failing_once)
    sigma = np.diag([1.0, 4.0])
    with pytest.warns(UserWarning, match="adding 1e-06"):
        distance = frechet.frechet_distance(np.zeros(2), sigma, np.zeros(2), sigma)
    np.testing.assert_allclose(calls[1], (sigma + 1e-6 * np.eye(2)) @ (sigma + 1e-6 * np.eye(2)))
    # As in pytorch-fid, only the square root sees the offset: -2 * eps * D remains.
    assert distance == pytest.approx(-2 * 1e-6 * 2, rel=1e-6)


def test_frechet_distance_rejects_significant_imaginary_part():
    # sqrtm(diag(-1, 1)) = diag(i, 1): not a product of two covariances.
    with pytest.raises(ValueError, match="imaginary component of 1.0"):
        frechet.frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.zeros(2), np.eye(2))


@pytest.mark.parametrize(
    ("mu1", "sigma1", "mu2", "sigma2"),
    [
        (np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)),
        (np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)),
        (np.zeros(2), np.eye(2), np.zeros(2), np.ones((2, 3))),
        (np.zeros(2), np.eye(2), np.array([0.0, np.nan]), np.eye(2)),
    ],
)
def test_frechet_distance_rejects_bad_shapes_and_values(mu1, sigma1, mu2, sigma2):
    with pytest.raises(ValueError):
        frechet.frechet_distance(mu1, sigma1, mu2, sigma2)


# --- fid ---------------------------------------------------------------------------------------


def test_fid_is_frechet_distance_of_feature_statistics_and_warns_once_for_small_n():
    real, fake = smooth_images(9, 40), smooth_images(10, 30, size=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = frechet.fid(real, fake, batch_size=16, feature_fn=colour_moment_features)
    assert [warning.category for warning in caught] == [frechet.SmallSampleWarning]
    message = str(caught[0].message)
    assert "40 real and 30 generated images" in message and "2048" in message
    real_stats = frechet.feature_statistics(
        feature_extraction.inception_features(real, 16, feature_fn=colour_moment_features)
    )
    fake_stats = frechet.feature_statistics(
        feature_extraction.inception_features(fake, 16, feature_fn=colour_moment_features)
    )
    assert score == pytest.approx(frechet.frechet_distance(*real_stats, *fake_stats), rel=1e-9)
    assert score > 0


@jax.jit
def features_with_dead_units(preprocessed: jax.Array) -> jax.Array:
    """Colour moments plus two units that never fire, like pool3 units at small N: [B, 11]."""
    moments = colour_moment_features(preprocessed)
    return jnp.concatenate([moments, jnp.zeros((moments.shape[0], 2), moments.dtype)], axis=1)


def test_singular_covariance_gives_only_the_small_n_warning():
    # Dead units make both covariances singular, where scipy's sqrtm warns (LinAlgWarning).
    real, fake = smooth_images(15, 12), smooth_images(16, 12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = frechet.fid(real, fake, feature_fn=features_with_dead_units)
    assert np.isfinite(score) and score > 0
    assert [warning.category for warning in caught] == [frechet.SmallSampleWarning]
    assert frechet.small_sample_message(2048, 10_000) is None
    assert "--num_samples" in frechet.small_sample_message(2047, 10_000, "pass --num_samples")


def test_fid_of_a_set_with_itself_is_zero_and_accepts_reference_statistics():
    images = smooth_images(11, 30, channels=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(frechet.fid(images, images, feature_fn=colour_moment_features)) < 1e-8
        reference = frechet.image_statistics(images, feature_fn=colour_moment_features)
        assert reference.num_images == 30
        from_statistics = frechet.fid(reference, images, feature_fn=colour_moment_features)
    assert abs(from_statistics) < 1e-8


def test_fid_rejects_a_single_image():
    with pytest.raises(ValueError, match="at least 2"):
        frechet.fid(
            np.zeros((1, 4, 4), np.uint8),
            np.zeros((3, 4, 4), np.uint8),
            feature_fn=colour_moment_features,
        )


# --- saving statistics -------------------------------------------------------------------------


def test_statistics_round_trip_leaves_no_temporary_files(tmp_path):
    rng = np.random.default_rng(12)
    mu, sigma = rng.normal(size=5), random_covariance(rng, 5)
    path = tmp_path / "reference.npz"
    statistics_file.save_statistics(path, mu, sigma, 10_000)
    statistics_file.save_statistics(path, mu * 2, sigma, 10_000)
    loaded = statistics_file.load_statistics(path)
    np.testing.assert_array_equal(loaded.mu, mu * 2)
    np.testing.assert_array_equal(loaded.sigma, sigma)
    assert loaded.num_images == 10_000 and isinstance(loaded.num_images, int)
    assert os.listdir(tmp_path) == ["reference.npz"]


def test_load_statistics_rejects_corrupt_and_incomplete_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable .npz"):
        statistics_file.load_statistics(garbage)
    truncated = tmp_path / "truncated.npz"
    statistics_file.save_statistics(truncated, np.zeros(3), np.eye(3), 5)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    with pytest.raises(ValueError):
        statistics_file.load_statistics(truncated)
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(ValueError, match=r"lacks \['num_images'\]"):
        statistics_file.load_statistics(incomplete)
    mismatched = tmp_path / "mismatched.npz"
    np.savez(mismatched, mu=np.zeros(3), sigma=np.eye(2), num_images=5)
    with pytest.raises(ValueError, match="need"):
        statistics_file.load_statistics(mismatched)
    single_array = tmp_path / "single.npy"
    np.save(single_array, np.zeros(3))
    with pytest.raises(ValueError, match="single array"):
        statistics_file.load_statistics(single_array)
    with pytest.raises(FileNotFoundError):
        statistics_file.load_statistics(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    ("mu", "sigma", "num_images"),
    [
        (np.zeros(3), np.eye(2), 10),
        (np.zeros((3, 1)), np.eye(3), 10),
        (np.zeros(3), np.eye(3), 1),
        (np.zeros(3), np.eye(3), 2.5),
        (np.full(3, np.inf), np.eye(3), 10),
    ],
)
def test_save_statistics_rejects_bad_arguments(tmp_path, mu, sigma, num_images):
    with pytest.raises(ValueError):
        statistics_file.save_statistics(tmp_path / "stats.npz", mu, sigma, num_images)
    assert os.listdir(tmp_path) == []


# --- end to end with the real network ----------------------------------------------------------


@pytest.fixture(scope="module")
def inception_pool3():
    inception = pytest.importorskip("jaxgan.metrics.inception")
    try:
        return inception.pool3_fn()
    except FileNotFoundError as error:
        pytest.skip(f"FID Inception weights unavailable: {error}")


@pytest.mark.slow
def test_fid_end_to_end_with_inception(inception_pool3):
    real = smooth_images(seed=13, num_images=10)
    # A different distribution: hard-edged stripes instead of smooth blobs.
    stripes = (np.arange(28) // 4 % 2 * 255).astype(np.uint8)
    different = np.broadcast_to(stripes[None, None, :, None], (10, 28, 28, 1)).copy()
    different[1::2] = different[1::2].transpose(0, 2, 1, 3)
    different[::3] //= 2

    # The default feature_fn path, on uint8 and on the equivalent float images.
    real_features = feature_extraction.inception_features(real)
    assert real_features.shape == (10, 2048) and np.isfinite(real_features).all()
    real_as_float = (real.astype(np.float32) - 127.5) / 127.5
    np.testing.assert_array_equal(
        feature_extraction.inception_features(real_as_float), real_features
    )

    # scipy's sqrtm takes over a minute at D = 2048 on two CPU cores; the first 256 pool3
    # features keep this check fast while going through the real network and the full fid().
    def leading_pool3_features(preprocessed):
        return inception_pool3(preprocessed)[:, :256]

    mu, sigma = frechet.feature_statistics(real_features[:, :256])
    reference = frechet.FIDStatistics(mu, sigma, len(real))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = frechet.fid(reference, real, feature_fn=leading_pool3_features)
        same_kind = frechet.fid(
            reference, smooth_images(seed=14, num_images=10), feature_fn=leading_pool3_features
        )
        different_score = frechet.fid(reference, different, feature_fn=leading_pool3_features)
    assert abs(same) < 1e-3
    # Another draw of blobs differs by sampling noise only; stripes differ far more.
    assert different_score > 3 * same_kind > 0
