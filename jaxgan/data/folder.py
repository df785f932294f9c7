"""A folder of PNG/JPEG images: `config.dataset="folder:PATH"`.

One level of sub-folders gives class labels (sub-folder names, sorted); images directly
in PATH, with no sub-folders holding images, are one class. Each image is centre-cropped
to a square and resized to `config.image_size` (default: the shorter side of the first
image); `config.channels` picks 1 (gray) or 3 (RGB), by default 3 if any image has colour.
Unreadable files are skipped with one warning that counts them. A folder has no test
split: 'test' is the same images, so FID compares against the training images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxgan.data.base import Dataset, DatasetInfo

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def find_images(root: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """(files, labels, class names) of a folder, with sub-folders as classes."""
    if not root.is_dir():
        raise ValueError(f"dataset='folder:{root}': {root} is not a folder of images")
    class_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _image_files(d)]
    if class_dirs:
        files, labels = [], []
        for label, class_dir in enumerate(class_dirs):
            found = _image_files(class_dir)
            files += found
            labels += [label] * len(found)
        return files, labels, tuple(d.name for d in class_dirs)
    files = _image_files(root)
    return files, [0] * len(files), (root.name or "images",)


def _to_8_bit(picture: Image.Image) -> Image.Image:
    """16-bit gray ('I;16', 'I') scaled to 8 bits; PIL's convert('L') would clip it."""
    if not picture.mode.startswith("I"):
        return picture
    return Image.fromarray((np.asarray(picture, np.uint32) >> 8).astype(np.uint8), "L")


def _crop_resize(picture: Image.Image, size: int) -> np.ndarray:
    side = min(picture.size)
    left, top = (picture.width - side) // 2, (picture.height - side) // 2
    picture = picture.crop((left, top, left + side, top + side))
    if side != size:
        picture = picture.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(picture)


def load(argument: str, split: str, config) -> Dataset:
    """The registry's entry for 'folder:PATH' (split 'train' and 'test' are the same)."""
    root = Path(argument).expanduser()
    files, labels, class_names = find_images(root)
    if not files:
        raise ValueError(
            f"dataset='folder:{argument}': {root} holds no {'/'.join(SUFFIXES)} images "
            "(directly, or one level down in class sub-folders)"
        )
    pictures, kept_labels, skipped = [], [], 0
    for file, label in zip(files, labels):
        try:
            with Image.open(file) as picture:
                picture.load()
                pictures.append(picture.copy())
            kept_labels.append(label)
        except (UnidentifiedImageError, OSError):
            skipped += 1
    if skipped:
        log.warning("Skipped %d unreadable image file(s) in %s", skipped, root)
    if not pictures:
        raise ValueError(f"dataset='folder:{argument}': none of the {len(files)} files is readable")
    channels = config.channels or (
        3 if any(p.mode not in ("L", "LA", "1", "I", "I;16") for p in pictures) else 1
    )
    size = config.image_size or min(pictures[0].size)
    mode = "RGB" if channels == 3 else "L"
    images = np.stack([_crop_resize(_to_8_bit(p).convert(mode), size) for p in pictures])
    images = images.reshape(len(images), size, size, channels).astype(np.uint8)
    info = DatasetInfo(f"folder:{argument}", (size, size, channels), len(class_names), class_names)
    return Dataset(images, np.asarray(kept_labels, np.int32), info, split)
