"""Any tfds image-classification dataset: `config.dataset="tfds:NAME[:VERSION]"`.

The dataset is prepared by tensorflow-datasets (its own download and checksums, or an
already prepared copy in `config.tfds_data_dir`), then cached as uint8 numpy in the
jaxgan cache folder, keyed by name, version and split, so later runs need no TensorFlow.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from jaxgan.data.base import (
    Dataset,
    DatasetInfo,
    DataUnavailableError,
    default_cache_dir,
    import_tfds,
    read_cache,
    write_cache,
)

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_.]+)?$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def parse(argument: str) -> tuple[str, str]:
    """'cifar10' -> ('cifar10', ''); 'mnist:3.0.1' -> ('mnist', '3.0.1')."""
    name, _, version = argument.partition(":")
    if not _NAME.match(name) or (version and not _VERSION.match(version)):
        raise ValueError(
            f"dataset='tfds:{argument}' is not a tfds name; allowed: 'tfds:NAME' or "
            "'tfds:NAME:X.Y.Z', e.g. 'tfds:mnist', 'tfds:cifar10:3.0.2'"
        )
    return name, version


def _cache_path(name: str, version: str, split: str) -> Path:
    safe = name.replace("/", "__")
    return default_cache_dir() / "tfds" / f"{safe}_{version or 'default'}_{split}_v1.npz"


def _prepare(name: str, version: str, split: str, tfds_data_dir: str | None) -> dict:
    tfds = import_tfds()
    builder = tfds.builder(f"{name}:{version}" if version else name, data_dir=tfds_data_dir)
    if not builder.is_prepared():
        log.info("Preparing %s with tfds (in %s)", name, builder.data_dir)
        try:
            builder.download_and_prepare()
        except Exception as error:  # noqa: BLE001 - tfds raises many types; report one
            raise DataUnavailableError(
                f"tfds could not prepare {name!r} ({type(error).__name__}: {error}). Without "
                "internet, prepare it elsewhere and copy tfds's folder into tfds_data_dir."
            ) from error
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"tfds dataset {name!r} has features {sorted(features)}; allowed: an image "
            "classification dataset with 'image' and 'label' features"
        )
    if split not in builder.info.splits:
        if split != "test" or "train" not in builder.info.splits:
            raise ValueError(
                f"tfds dataset {name!r} has no split {split!r}; it has "
                f"{sorted(builder.info.splits)}"
            )
        log.warning("tfds dataset %r has no test split: the FID reference is 'train'", name)
        split = "train"
    batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    images = np.asarray(batch["image"])
    if images.ndim == 3:
        images = images[..., None]
    return {
        "images": images.astype(np.uint8),
        "labels": np.asarray(batch["label"]).astype(np.int32),
        "class_names": np.array(features["label"].names, dtype=str),
        "split": np.array(split),
    }


def load(argument: str, split: str, config) -> Dataset:
    """The registry's entry for 'tfds:NAME[:VERSION]'.

    A dataset without a 'test' split answers 'test' with its 'train' split; the returned
    `Dataset.split` says 'train', so FID reports name the reference they really used.
    """
    name, version = parse(argument)
    path = _cache_path(name, version, split)
    arrays = read_cache(path)
    if arrays is None:
        arrays = _prepare(name, version, split, config.tfds_data_dir or None)
        write_cache(path, arrays)
    images = arrays["images"]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"tfds dataset {name!r} gives images {images.dtype} {images.shape}; allowed: "
            "uint8 [N, H, W, 1|3] of one size"
        )
    class_names = tuple(str(n) for n in arrays["class_names"])
    info = DatasetInfo(f"tfds:{argument}", tuple(images.shape[1:]), len(class_names), class_names)
    # A dataset without a test split answers 'test' with its train split, and says so.
    actual_split = str(arrays["split"]) if "split" in arrays else split
    return Dataset(images, arrays["labels"].astype(np.int32), info, actual_split)
