"""FashionMNIST (`config.dataset="fashion_mnist"`), through tensorflow-datasets, offline.

Sources, in the order tried:
  1. a numpy cache of an earlier load (no TensorFlow import);
  2. a `fashion_mnist` already prepared by tfds in `tfds_data_dir`;
  3. the four official IDX files from `data_dir`, or from Debian's `dataset-fashion-mnist`
     package in `/usr/share/datasets/fashion-mnist`, handed to tfds as its `manual_dir`
     (tfds verifies their registered checksums);
  4. tfds's own download.
Preparing with tfds imports TensorFlow, which is kept off the accelerators.
"""

from __future__ import annotations

import gzip
import logging
import tempfile
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

DATASET = "fashion_mnist"
SPLITS = ("train", "test")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SHAPE = (28, 28)

# Official gzip headers: Debian re-wrote only them (flag byte, mtime, file name), the
# deflate streams are the originals. mtime per file, from the official archives.
_OFFICIAL_MTIME = {
    "train-images-idx3-ubyte": 1504176606,
    "train-labels-idx1-ubyte": 1504176606,
    "t10k-images-idx3-ubyte": 1504176627,
    "t10k-labels-idx1-ubyte": 1504176627,
}
_CACHE_VERSION = 1

DATA_HELP = (
    "FashionMNIST could not be loaded. Provide it in one of these ways:\n"
    "  1. on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` "
    f"(files land in {DEBIAN_DIR}); scripts/setup.sh does this;\n"
    "  2. set the config field data_dir to a folder holding the four official files "
    + ", ".join(f"{name}.gz" for name in _OFFICIAL_MTIME)
    + ";\n"
    "  3. with internet access, tfds downloads it (needs `pip install tensorflow-cpu`);\n"
    "  4. a tfds-prepared copy in tfds_data_dir (default ~/tensorflow_datasets)."
)

log = logging.getLogger(__name__)


def restore_official_gzip(source: Path, destination: Path) -> None:
    """Writes `source` (an IDX .gz) to `destination` with the official gzip header.

    Files that already carry a file name in their header are copied unchanged. The
    header is `1f 8b 08 08` + mtime (uint32 LE) + `00 03` + file name + NUL, followed by
    the deflate stream and trailer, i.e. the source's bytes from offset 10.
    """
    data = source.read_bytes()
    if data[:3] != b"\x1f\x8b\x08":
        raise ValueError(f"{source} is not a gzip file (first bytes {data[:3].hex()})")
    name = source.name.removesuffix(".gz")
    if data[3] & 0x08 or name not in _OFFICIAL_MTIME:
        destination.write_bytes(data)
        return
    header = (
        b"\x1f\x8b\x08\x08"
        + _OFFICIAL_MTIME[name].to_bytes(4, "little")
        + b"\x00\x03"
        + name.encode()
        + b"\x00"
    )
    destination.write_bytes(header + data[10:])


def _find_idx_dirs(data_dir: str | None) -> list[Path]:
    candidates = [Path(data_dir).expanduser()] if data_dir else []
    candidates.append(DEBIAN_DIR)
    found = []
    for folder in candidates:
        if all((folder / f"{name}.gz").is_file() for name in _OFFICIAL_MTIME):
            found.append(folder)
        elif folder != DEBIAN_DIR:
            present = sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []
            raise ValueError(
                f"data_dir={data_dir!r} must hold the four files "
                f"{', '.join(n + '.gz' for n in _OFFICIAL_MTIME)}; found {present or 'nothing'}"
            )
    return found


def _load_with_tfds(tfds_data_dir: str | None, data_dir: str | None) -> dict[str, np.ndarray]:
    tfds = import_tfds(DATA_HELP)
    builder = tfds.builder(DATASET, data_dir=tfds_data_dir)
    errors = []
    if not builder.is_prepared():
        idx_dirs = _find_idx_dirs(data_dir)
        for idx_dir in idx_dirs:
            with tempfile.TemporaryDirectory() as manual_dir:
                for name in _OFFICIAL_MTIME:
                    restore_official_gzip(idx_dir / f"{name}.gz", Path(manual_dir) / f"{name}.gz")
                log.info("Preparing %s with tfds from %s", DATASET, idx_dir)
                try:
                    builder.download_and_prepare(
                        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
                    )
                    break
                except Exception as error:  # noqa: BLE001 - every failure is reported below
                    errors.append(f"{idx_dir}: {type(error).__name__}: {error}")
        if not idx_dirs:
            try:
                builder.download_and_prepare()
            except Exception as error:  # noqa: BLE001
                errors.append(f"tfds download: {type(error).__name__}: {error}")
    if not builder.is_prepared():
        raise DataUnavailableError(DATA_HELP + "\nAttempts:\n  " + "\n  ".join(errors))
    arrays = {}
    for split in SPLITS:
        batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        arrays[f"{split}_images"] = batch["image"][..., 0].astype(np.uint8)
        arrays[f"{split}_labels"] = batch["label"].astype(np.int64)
    return arrays


def _cache_path(cache_dir: Path) -> Path:
    return cache_dir / f"{DATASET}_v{_CACHE_VERSION}.npz"


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    arrays = read_cache(path)
    if arrays is None:
        return None
    expected = {"train_images": 60000, "test_images": 10000}
    for key, count in expected.items():
        images = arrays.get(key)
        if images is None or images.shape != (count, *IMAGE_SHAPE) or images.dtype != np.uint8:
            log.warning("Ignoring data cache %s: %s is missing or malformed", path, key)
            return None
    return arrays


def load_fashion_mnist(
    split: str,
    *,
    data_dir: str | None = None,
    tfds_data_dir: str | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a whole FashionMNIST split into memory.

    Args:
      split: 'train' (60k images) or 'test' (10k).
      data_dir: optional folder with the four official IDX .gz files.
      tfds_data_dir: where tfds keeps prepared datasets (tfds's default if None).
      cache_dir: where the numpy copy is cached (`default_cache_dir()` if None).

    Returns:
      images uint8 [N, 28, 28] in [0, 255] and labels int64 [N] in [0, 9].
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a FashionMNIST split; allowed: {SPLITS}")
    if data_dir and not Path(data_dir).expanduser().is_dir():
        # Checked even when a cache exists: a mistyped path must not pass silently.
        raise ValueError(
            f"data_dir={data_dir!r} is not a folder; allowed: a folder holding the four "
            f"official files {', '.join(n + '.gz' for n in _OFFICIAL_MTIME)}, or '' (default)"
        )
    path = _cache_path(Path(cache_dir) if cache_dir else default_cache_dir())
    arrays = _read_cache(path)
    if arrays is None:
        arrays = _load_with_tfds(tfds_data_dir, data_dir)
        write_cache(path, arrays)
    return arrays[f"{split}_images"], arrays[f"{split}_labels"]


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) into a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    payload = np.frombuffer(data, np.uint8, offset=4 + 4 * rank)
    if payload.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape}, found {payload.size} values")
    return payload.reshape(shape)


CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
INFO = DatasetInfo(
    name=DATASET, image_shape=(*IMAGE_SHAPE, 1), num_classes=10, class_names=CLASS_NAMES
)


def load(argument: str, split: str, config) -> Dataset:
    """The registry's entry: `config.dataset="fashion_mnist"` (no argument)."""
    if argument:
        raise ValueError(
            f"dataset='fashion_mnist:{argument}' takes no argument; allowed: 'fashion_mnist'"
        )
    images, labels = load_fashion_mnist(
        split, data_dir=config.data_dir or None, tfds_data_dir=config.tfds_data_dir or None
    )
    return Dataset(images[..., None], labels.astype(np.int32), INFO, split)
