"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable augmentation is applied to every image D sees, real and
fake, so that D cannot overfit a small dataset and G still gets its gradient through it.
Semantics follow the paper's official code (mit-han-lab/data-efficient-gans): each image
gets its own draw of every parameter.

- color: brightness + U(-0.5, 0.5); saturation: scale about the per-pixel channel mean by
  U(0, 2) (a no-op for one channel); contrast: scale about the per-image mean by
  U(0.5, 1.5).
- translation: shift by an integer in [-r, r] along each axis independently, with
  r = round(0.125 * side) (half up); pixels shifted in are 0.
- cutout: zero a (0.5 * side)^2 square (sides rounded half up) whose centre is uniform
  over the image, clipped at the borders.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _round_half_up(value: float) -> int:
    return int(value + 0.5)


def _color(images: jax.Array, key: jax.Array) -> jax.Array:
    brightness_key, saturation_key, contrast_key = jax.random.split(key, 3)
    per_image = (images.shape[0], 1, 1, 1)

    def uniform(key: jax.Array, low: float, high: float) -> jax.Array:
        return jax.random.uniform(key, per_image, jnp.float32, low, high).astype(images.dtype)

    images = images + uniform(brightness_key, -0.5, 0.5)
    pixel_means = jnp.mean(images, axis=-1, keepdims=True)  # [B, H, W, 1]
    images = (images - pixel_means) * uniform(saturation_key, 0.0, 2.0) + pixel_means
    image_means = jnp.mean(images, axis=(1, 2, 3), keepdims=True)  # [B, 1, 1, 1]
    return (images - image_means) * uniform(contrast_key, 0.5, 1.5) + image_means


def _translation(images: jax.Array, key: jax.Array) -> jax.Array:
    batch, height, width, channels = images.shape
    max_rows = _round_half_up(height * TRANSLATION_RATIO)
    max_cols = _round_half_up(width * TRANSLATION_RATIO)
    row_key, col_key = jax.random.split(key)
    row_shifts = jax.random.randint(row_key, (batch,), -max_rows, max_rows + 1)
    col_shifts = jax.random.randint(col_key, (batch,), -max_cols, max_cols + 1)
    padded = jnp.pad(images, ((0, 0), (max_rows, max_rows), (max_cols, max_cols), (0, 0)))

    def crop(image: jax.Array, row_shift: jax.Array, col_shift: jax.Array) -> jax.Array:
        # out[i, j] = image[i + row_shift, j + col_shift], 0 outside: the content moves
        # by (-row_shift, -col_shift).
        start = (max_rows + row_shift, max_cols + col_shift, 0)
        return lax.dynamic_slice(image, start, (height, width, channels))

    return jax.vmap(crop)(padded, row_shifts, col_shifts)


def _cutout(images: jax.Array, key: jax.Array) -> jax.Array:
    batch, height, width, _ = images.shape
    size_rows = _round_half_up(height * CUTOUT_RATIO)
    size_cols = _round_half_up(width * CUTOUT_RATIO)
    row_key, col_key = jax.random.split(key)
    # The official code draws the centre in [0, side + 1 - size % 2) and starts the
    # square size // 2 before it; clamping its indices clips it at the borders.
    row_starts = jax.random.randint(row_key, (batch, 1, 1, 1), 0, height + 1 - size_rows % 2)
    col_starts = jax.random.randint(col_key, (batch, 1, 1, 1), 0, width + 1 - size_cols % 2)
    row_starts, col_starts = row_starts - size_rows // 2, col_starts - size_cols // 2
    rows = jnp.arange(height)[None, :, None, None]
    cols = jnp.arange(width)[None, None, :, None]
    inside = (
        (rows >= row_starts)
        & (rows < row_starts + size_rows)
        & (cols >= col_starts)
        & (cols < col_starts + size_cols)
    )  # [B, H, W, 1]
    return images * (~inside).astype(images.dtype)


AUGMENTATIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "color": _color,
    "translation": _translation,
    "cutout": _cutout,
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> ().

    Raises:
      ValueError: for a name that is not one of `AUGMENTATIONS`.
    """
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"DiffAugment policy {policy!r} has unknown augmentation(s) "
            f"{', '.join(map(repr, unknown))}; allowed: a comma-separated list of "
            f"{', '.join(AUGMENTATIONS)}, or '' for none"
        )
    return names


def diff_augment(images: jax.Array, key: jax.Array, policy: tuple[str, ...]) -> jax.Array:
    """Applies the policy's augmentations in order, one random draw per image.

    Pure, jittable, vmappable and differentiable with respect to `images`.

    Args:
      images: float [B, H, W, C] in [-1, 1] (the result may leave that range, as in the
        official code).
      key: a PRNG key; the same key gives the same augmentation.
      policy: names from `parse_policy`; () returns `images` unchanged.

    Returns:
      [B, H, W, C] of the images' dtype.
    """
    if not policy:
        return images
    for name, augmentation_key in zip(policy, jax.random.split(key, len(policy))):
        images = AUGMENTATIONS[name](images, augmentation_key)
    return images
