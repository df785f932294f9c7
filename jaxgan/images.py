"""Image grids and PNG files."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxgan.fileio import atomic_output

# Black pixels left and right of a row label in `make_labelled_grid`.
LABEL_MARGIN = 4


def to_uint8_images(images) -> np.ndarray:
    """Float [-1, 1] or uint8 images [N, H, W] / [N, H, W, C] -> uint8 [N, H, W, C]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected images [N, H, W] or [N, H, W, 1|3], got {images.shape}")
    if images.dtype == np.uint8:
        return images
    return np.clip(np.rint((images.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid_columns(count: int) -> int:
    """Images per row of a grid of `count` images with no empty cell where one fits.

    The smallest divisor of `count` that is at least sqrt(count), unless that makes rows
    more than twice as long as a square's (a prime such as 7 or 97); then ceil(sqrt(count))
    and a partly empty last row. 64 -> 8 (8x8), 8 -> 4 (2x4), 12 -> 4 (3x4), 7 -> 3 (3x3).
    """
    square = math.ceil(math.sqrt(count))
    for columns in range(square, 2 * square + 1):
        if count % columns == 0:
            return columns
    return square


def make_grid(images, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tiles N images into one uint8 image [rows*(H+p)+p, columns*(W+p)+p, C].

    Args:
      images: float in [-1, 1] or uint8, [N, H, W] or [N, H, W, C] with C in {1, 3}.
      columns: images per row (default: `grid_columns(N)`, so 64 images give 8x8 and 8
        give 2x4).
      padding: black pixels between and around images.
    """
    images = to_uint8_images(images)
    count, height, width, channels = images.shape
    columns = columns or grid_columns(count)
    rows = math.ceil(count / columns)
    grid = np.zeros(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        np.uint8,
    )
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def _label_font() -> ImageFont.ImageFont:
    """Pillow's built-in bitmap font (about 6 pixels per character, 11 high)."""
    if hasattr(ImageFont, "load_default_imagefont"):  # Pillow >= 10.1
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default()


def make_labelled_grid(
    images, row_labels: Sequence[str], columns: int, padding: int = 2
) -> np.ndarray:
    """`make_grid` with one row per label and the label written at the left of its row.

    Row r of the grid holds images `r * columns` to `(r + 1) * columns - 1`, e.g. the
    samples of class r of a conditional generator, and `row_labels[r]` (e.g. the class
    name) is drawn in white on a black margin as wide as the longest label plus
    `LABEL_MARGIN` pixels on each side, vertically centred on the row.

    Args:
      images: float in [-1, 1] or uint8, [R * columns, H, W] or [R * columns, H, W, C]
        with C in {1, 3}.
      row_labels: R strings (Latin-1: the bitmap font has no other glyphs).
      columns: images per row.
      padding: black pixels between and around images, as in `make_grid`.

    Returns:
      uint8 [R*(H+p)+p, margin + columns*(W+p)+p, C]; right of the margin it equals
      `make_grid(images, columns, padding)`.
    """
    images = to_uint8_images(images)
    row_labels = [str(label) for label in row_labels]
    if columns < 1 or len(images) != len(row_labels) * columns:
        raise ValueError(
            f"{len(images)} images for {len(row_labels)} row labels and columns={columns}; "
            f"allowed: exactly len(row_labels) * columns images, columns >= 1"
        )
    grid = make_grid(images, columns, padding)
    height, channels = images.shape[1], images.shape[3]
    font = _label_font()
    boxes = [font.getbbox(label) for label in row_labels]
    margin_width = max((box[2] for box in boxes), default=0) + 2 * LABEL_MARGIN
    margin = Image.new("L", (margin_width, grid.shape[0]), 0)
    draw = ImageDraw.Draw(margin)
    for row, (label, box) in enumerate(zip(row_labels, boxes)):
        row_centre = padding + row * (height + padding) + height / 2
        top = round(row_centre - (box[1] + box[3]) / 2)
        draw.text((LABEL_MARGIN, top), label, fill=255, font=font)
    margin_pixels = np.repeat(np.asarray(margin)[..., None], channels, axis=-1)
    return np.concatenate([margin_pixels, grid], axis=1)


def save_png(path: str | os.PathLike, image: np.ndarray, scale: int = 1) -> Path:
    """Writes a uint8 [H, W] / [H, W, 1|3] image as PNG, atomically, upscaled by `scale`."""
    path = Path(path)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    picture = Image.fromarray(image)
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    with atomic_output(path, "wb") as handle:
        picture.save(handle, format="PNG")
    return path
