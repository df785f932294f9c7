"""Image grids and PNG files."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


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


def make_grid(images, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tiles N images into one uint8 image [rows*(H+p)+p, columns*(W+p)+p, C].

    Args:
      images: float in [-1, 1] or uint8, [N, H, W] or [N, H, W, C] with C in {1, 3}.
      columns: images per row (default: ceil(sqrt(N)), so 64 images give 8x8).
      padding: black pixels between and around images.
    """
    images = to_uint8_images(images)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
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


def save_png(path: str | os.PathLike, image: np.ndarray, scale: int = 1) -> Path:
    """Writes a uint8 [H, W] / [H, W, 1|3] image as PNG, atomically, upscaled by `scale`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    picture = Image.fromarray(image)
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png.tmp", delete=False) as tmp:
        picture.save(tmp, format="PNG")
    os.replace(tmp.name, path)
    return path
