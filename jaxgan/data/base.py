"""What every dataset source returns, and the helpers they share."""

from __future__ import annotations

import dataclasses
import logging
import re
import zlib
from pathlib import Path

import numpy as np

from jaxgan.fileio import (
    atomic_savez,
    default_cache_dir,  # noqa: F401 - re-exported
)

log = logging.getLogger(__name__)


class DataUnavailableError(RuntimeError):
    """A dataset could not be loaded; the message says every way to provide it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the models and the evaluation need to know of a dataset.

    Attributes:
      name: the `config.dataset` string, e.g. 'fashion_mnist', 'tfds:cifar10'.
      image_shape: (H, W, C) of every image, C in {1, 3}.
      num_classes: number of labels (1 for an unlabelled folder).
      class_names: one name per label.
    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe_classes(self) -> str:
        """'1 class' or 'N classes', for logs and reports."""
        return f"{self.num_classes} {'class' if self.num_classes == 1 else 'classes'}"

    @classmethod
    def from_dict(cls, fields: dict) -> DatasetInfo:
        return cls(
            name=str(fields["name"]),
            image_shape=tuple(int(n) for n in fields["image_shape"]),
            num_classes=int(fields["num_classes"]),
            class_names=tuple(str(n) for n in fields["class_names"]),
        )


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One split in memory: uint8 images [N, H, W, C], int32 labels [N] and its info."""

    images: np.ndarray
    labels: np.ndarray
    info: DatasetInfo
    split: str

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, H, W, C], got {self.images.dtype} "
                             f"{self.images.shape}")  # fmt: skip
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels {self.labels.shape} do not match {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)


def file_name_part(text: str) -> str:
    """`text` with every run of characters other than letters, digits, '.', '_', '-' as '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cached .npz, or None if it is missing or unreadable (said once)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, zlib.error, EOFError) as error:
        log.warning("Ignoring unreadable dataset cache %s (%s)", path, error)
        return None


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Caches arrays as an .npz, atomically; a failure is a warning, not an error."""
    try:
        atomic_savez(path, **arrays)
    except OSError as error:
        log.warning("Could not write dataset cache %s (%s); continuing without it", path, error)


def import_tfds(help_text: str = ""):
    """Imports tfds with TensorFlow hidden from every accelerator (JAX owns them)."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise DataUnavailableError(
            "Preparing a dataset with tensorflow-datasets needs TensorFlow: "
            "`pip install tensorflow-cpu` (or `pip install -e .[prepare]`).\n" + help_text
        ) from error
    tf.config.set_visible_devices([], "GPU")
    import tensorflow_datasets as tfds

    return tfds


def conform(images: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> [N, S, S, channels]: centre crop to a square, resize, convert.

    `image_size=0` keeps the size (and skips the crop); `channels=0` keeps the channels.
    Gray becomes RGB by tiling, RGB becomes gray by ITU-R 601 luma (as PIL's 'L').
    """
    from PIL import Image

    if channels and channels != images.shape[-1]:
        if channels == 3:
            images = np.repeat(images, 3, axis=-1)
        else:
            luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            images = np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    height, width = images.shape[1:3]
    if image_size and (height, width) != (image_size, image_size):
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        resized = []
        for image in images[:, top : top + side, left : left + side]:
            picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            picture = picture.resize((image_size, image_size), Image.Resampling.BICUBIC)
            resized.append(np.asarray(picture).reshape(image_size, image_size, -1))
        images = np.stack(resized)
    return images
