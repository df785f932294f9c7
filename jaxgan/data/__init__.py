"""Datasets by name: `config.dataset` picks a source, each returns uint8 images and labels.

  fashion_mnist            FashionMNIST, offline through Debian's package (the default)
  tfds:NAME[:VERSION]      any tfds image-classification dataset, e.g. tfds:cifar10
  folder:PATH              a folder of PNG/JPEG images, class sub-folders optional

A new source is one file with `load(argument, split, config) -> Dataset` plus one line
in `SOURCES`.
"""

from __future__ import annotations

from jaxgan.data import fashion_mnist, folder, tfds_source
from jaxgan.data.base import (
    Dataset,
    DatasetInfo,
    DataUnavailableError,
    conform,
    default_cache_dir,
)

SOURCES = {
    "fashion_mnist": fashion_mnist.load,
    "tfds": tfds_source.load,
    "folder": folder.load,
}
FORMS = "'fashion_mnist', 'tfds:NAME[:VERSION]' (e.g. 'tfds:cifar10') or 'folder:PATH'"

__all__ = [
    "SOURCES",
    "Dataset",
    "DataUnavailableError",
    "DatasetInfo",
    "default_cache_dir",
    "load",
    "parse",
]


def parse(name: str) -> tuple[str, str]:
    """'tfds:mnist' -> ('tfds', 'mnist'); raises ValueError naming the allowed forms."""
    source, _, argument = name.partition(":") if isinstance(name, str) else ("", "", "")
    if source not in SOURCES or (source != "fashion_mnist" and not argument):
        raise ValueError(f"dataset={name!r} is not a known dataset; allowed: {FORMS}")
    if source == "tfds":
        tfds_source.parse(argument)
    return source, argument


def load(config, split: str) -> Dataset:
    """Loads `split` ('train' or 'test') of `config.dataset`, conformed to the config.

    `config.image_size` and `config.channels` (0: the dataset's own) resize and convert
    every source alike; `config.num_train_examples` is applied by the caller.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not supported; allowed: 'train' or 'test'")
    source, argument = parse(config.dataset)
    dataset = SOURCES[source](argument, split, config)
    images = conform(dataset.images, config.image_size, config.channels)
    if images is dataset.images:
        return dataset
    info = DatasetInfo(
        dataset.info.name, tuple(images.shape[1:]), dataset.info.num_classes,
        dataset.info.class_names,
    )  # fmt: skip
    return Dataset(images, dataset.labels, info, split)
