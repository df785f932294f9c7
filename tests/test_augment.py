"""DiffAugment: policy parsing, identity, per-image draws, translation, cutout, gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.core.augment import diff_augment, parse_policy

ALL = ("color", "translation", "cutout")


def _images(shape, seed=0, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), dtype)


POLICIES = [(name,) for name in ALL] + [ALL]


@functools.partial(jax.jit, static_argnums=2)
def _augment(images, key, policy):
    return diff_augment(images, key, policy)


@jax.jit
def _each_policy(images, key):
    """{policy: augmented images} for each single augmentation and all three together."""
    return {policy: diff_augment(images, key, policy) for policy in POLICIES}


def test_parse_policy():
    assert parse_policy("translation,cutout") == ("translation", "cutout")
    assert parse_policy("color, translation ,cutout") == ALL
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match=r"'flip'.*allowed: .*color, translation, cutout"):
        parse_policy("translation,flip")
    with pytest.raises(ValueError, match="'Color'"):
        parse_policy("Color")


@pytest.mark.parametrize(
    ("shape", "dtype"), [((4, 28, 28, 1), jnp.float32), ((4, 32, 32, 3), jnp.bfloat16)]
)
def test_shapes_dtypes_and_identity(shape, dtype):
    images = _images(shape, dtype=dtype)
    key = jax.random.key(0)
    assert diff_augment(images, key, ()) is images
    for policy, augmented in _each_policy(images, key).items():
        assert augmented.shape == shape and augmented.dtype == dtype, policy
        assert np.all(np.isfinite(np.asarray(augmented, np.float32)))
        assert not np.array_equal(augmented, images), policy


def test_keys_and_per_image_draws():
    # Eight copies of one image: each copy must get its own augmentation.
    images = jnp.broadcast_to(_images((1, 32, 32, 3)), (8, 32, 32, 3))
    first, again, other = [_each_policy(images, jax.random.key(seed)) for seed in (1, 1, 2)]
    for policy in POLICIES:
        np.testing.assert_array_equal(again[policy], first[policy])
        assert not np.array_equal(other[policy], first[policy]), policy
        distinct = {np.asarray(image).tobytes() for image in first[policy]}
        assert len(distinct) >= 4, policy


def test_color_draws_in_the_official_ranges():
    draws = 512
    # Zeros: saturation and contrast leave a constant image alone, brightness shifts it.
    zeros = jnp.zeros((draws, 2, 2, 3))
    # A gray checkerboard of mean 0: contrast scales its deviations from the mean.
    checkerboard = jnp.asarray([[1.0, -1.0], [-1.0, 1.0]])[None, :, :, None]
    checkerboard = jnp.broadcast_to(checkerboard, (draws, 2, 2, 3))
    # One colour everywhere: saturation, then contrast, scale it about its channel mean.
    colour = jnp.broadcast_to(jnp.asarray([0.2, 0.0, -0.2]), (draws, 2, 2, 3))
    augmented = _augment(
        jnp.concatenate([zeros, checkerboard, colour]), jax.random.key(0), ("color",)
    )
    brightened, contrasted, saturated = np.split(np.asarray(augmented), 3)
    np.testing.assert_array_equal(brightened[..., 1:], brightened[..., :2])  # gray stays gray
    brightness = brightened[:, 0, 0, 0]
    assert -0.5 <= brightness.min() < -0.45 and 0.45 < brightness.max() <= 0.5
    contrast = (contrasted[:, 0, 0, 0] - contrasted[:, 0, 1, 0]) / 2
    assert 0.5 <= contrast.min() < 0.55 and 1.45 < contrast.max() <= 1.5
    scale = (saturated[:, 0, 0, 0] - saturated[:, 0, 0, 2]) / 0.4  # U(0, 2) * U(0.5, 1.5)
    assert 0.0 <= scale.min() < 0.1 and 2.5 < scale.max() <= 3.0
    assert abs(scale.mean() - 1.0) < 0.1


@pytest.mark.parametrize("side", [28, 32])
def test_translation_moves_content_by_at_most_an_eighth(side):
    batch, max_shift = 256, int(side / 8 + 0.5)
    # Channel 0: one bright pixel in the middle; channel 1: ones; channel 2: noise.
    images = np.zeros((batch, side, side, 3), np.float32)
    centre = side // 2
    images[:, centre, centre, 0] = 1.0
    images[:, :, :, 1] = 1.0
    images[:, :, :, 2] = np.random.default_rng(0).uniform(-1, 1, (side, side))
    shifted = np.asarray(_augment(jnp.asarray(images), jax.random.key(3), ("translation",)))
    moves = []
    for image, original in zip(shifted, images):
        (row,), (col,) = np.nonzero(image[:, :, 0])
        assert image[row, col, 0] == 1.0
        row_shift, col_shift = centre - row, centre - col  # out[i] = in[i + shift]
        assert max(abs(row_shift), abs(col_shift)) <= max_shift
        moves.append((row_shift, col_shift))
        # Every channel moves together, and zeros fill in where nothing was.
        expected = np.zeros_like(original)
        src_rows = slice(max(row_shift, 0), side + min(row_shift, 0))
        dst_rows = slice(max(-row_shift, 0), side + min(-row_shift, 0))
        src_cols = slice(max(col_shift, 0), side + min(col_shift, 0))
        dst_cols = slice(max(-col_shift, 0), side + min(-col_shift, 0))
        expected[dst_rows, dst_cols] = original[src_rows, src_cols]
        np.testing.assert_array_equal(image, expected)
    rows, cols = {move[0] for move in moves}, {move[1] for move in moves}
    assert rows == cols == set(range(-max_shift, max_shift + 1))


@pytest.mark.parametrize("side", [28, 32])
def test_cutout_zeroes_one_half_side_square_clipped_at_borders(side):
    batch, size = 256, side // 2
    images = jnp.ones((batch, side, side, 3))
    masks = np.asarray(_augment(images, jax.random.key(4), ("cutout",)))
    heights, widths = [], []
    for mask in masks:
        assert np.array_equal(mask[..., 0], mask[..., 1]) and set(np.unique(mask)) <= {0, 1}
        rows, cols = np.nonzero(mask[..., 0] == 0)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        # The zeros are exactly one rectangle: the square, clipped where it leaves the image.
        assert len(rows) == (bottom - top) * (right - left)
        for start, end in ((top, bottom), (left, right)):
            assert end - start == size or (start == 0 and end < size) or end == side
            assert end - start >= size // 2  # its centre is inside the image
        heights.append(bottom - top)
        widths.append(right - left)
    assert max(heights) == max(widths) == size
    assert min(heights) == min(widths) == size // 2
    assert np.mean([h == w == size for h, w in zip(heights, widths)]) > 0.15


def test_gradients_flow_and_equal_the_cutout_mask():
    images = _images((4, 28, 28, 1))
    key = jax.random.key(5)

    @jax.jit
    def grads(images):
        return {
            policy: jax.grad(lambda x, policy=policy: jnp.sum(diff_augment(x, key, policy)))(images)
            for policy in POLICIES
        }

    grads = grads(images)
    mask = _each_policy(jnp.ones_like(images), key)[("cutout",)]
    np.testing.assert_array_equal(grads[("cutout",)], mask)
    assert 0 < np.mean(mask) < 1
    for policy, grad in grads.items():
        assert np.all(np.isfinite(grad)) and np.mean(grad != 0) > 0.3, policy


def test_inside_vmap_equals_separate_calls():
    images = _images((2, 4, 28, 28, 1))
    keys = jax.random.split(jax.random.key(6), 2)
    batched = jax.jit(jax.vmap(lambda x, k: diff_augment(x, k, ALL)))(images, keys)
    for index in range(2):
        separate = _each_policy(images[index], keys[index])[ALL]
        np.testing.assert_allclose(batched[index], separate, rtol=1e-6, atol=1e-6)
