"""A folder of PNG/JPEG images: `config.dataset="folder:DIR"`.

Layout. DIR holds its images (.png, .jpg, .jpeg) in one of two ways: all directly in DIR
(one class, named after DIR), or all in sub-folders of DIR, one level down (one class per
sub-folder, labels 0..K-1 in sorted folder-name order). A folder that mixes the two, or
holds images deeper than one level, is refused with an error that names the images that
would be left out; nothing is dropped in silence. Names starting with '.' (hidden files
and folders) are ignored.

Each image is centre-cropped to a square and resized to `config.image_size` (default: the
shorter side of the first image); `config.channels` picks 1 (gray) or 3 (RGB), by default 3
if any image has colour. Images are decoded one at a time into a preallocated uint8 array,
so memory holds the result plus one decoded image. Unreadable files are skipped with one
warning that counts them. The result is cached in `default_cache_dir() / "folders"`, keyed
by the folder's contents (sorted relative paths, sizes and modification times) with
image_size and channels: a later load, e.g. the 'test' split of the same run, reads the
cache, and any added, removed or changed image rebuilds it. A folder has no test split:
'test' is the same images, so FID compares against the training images.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxgan.data.base import (
    Dataset,
    DatasetInfo,
    default_cache_dir,
    file_name_part,
    read_cache,
    write_cache,
)

log = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_MODES = ("L", "LA", "1", "I", "I;16")
LAYOUT_RULE = (
    "a folder dataset holds its images either all directly in the folder (one class) or "
    "all in class sub-folders one level down (labels by sorted folder name)"
)
# Bump when the cached arrays of the same files would differ.
_CACHE_VERSION = 1
_EXAMPLES = 5


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUFFIXES and not path.name.startswith(".")


def _direct_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _all_images(folder: Path) -> list[Path]:
    """Every image under `folder`, at any depth, outside hidden folders."""
    found = []
    for path in folder.rglob("*"):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts[:-1])
        if not hidden and _is_image(path):
            found.append(path)
    return sorted(found)


def _listed(paths: list[Path], root: Path) -> str:
    names = [p.relative_to(root).as_posix() for p in paths[:_EXAMPLES]]
    more = f" and {len(paths) - _EXAMPLES} more" if len(paths) > _EXAMPLES else ""
    return ", ".join(names) + more


def find_images(root: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """(files, labels, class names) of a folder laid out as the module docstring says.

    Raises:
      ValueError: `root` is not a folder, or its layout would leave images out (images
        both directly in it and in sub-folders, or images deeper than one level); the
        message names what would be left out and how to fix it.
    """
    if not root.is_dir():
        raise ValueError(f"dataset='folder:{root}': {root} is not a folder of images")
    top = _direct_images(root)
    below = {
        folder: _all_images(folder)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
    }
    class_dirs = [folder for folder, found in below.items() if found]
    if not class_dirs:
        return top, [0] * len(top), (root.name or "images",)
    if top:
        folders = ", ".join(f"{d.name}/ ({len(below[d])} images)" for d in class_dirs)
        raise ValueError(
            f"dataset='folder:{root}' has {len(top)} images directly in it "
            f"({_listed(top, root)}) and images in the sub-folders {folders}; {LAYOUT_RULE}. "
            "Move the top-level images into a sub-folder of their own (a class), or move "
            f"the sub-folders out of {root}"
        )
    deep = [p for d in class_dirs for p in below[d] if p.parent != d]
    if deep:
        raise ValueError(
            f"dataset='folder:{root}' has {len(deep)} images more than one level down "
            f"({_listed(deep, root)}), which would be left out; {LAYOUT_RULE}. Move them "
            f"into their class folder, or out of {root}"
        )
    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files += below[class_dir]
        labels += [label] * len(below[class_dir])
    return files, labels, tuple(d.name for d in class_dirs)


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


def decode(file: Path, size: int, channels: int) -> np.ndarray:
    """One image file as uint8 [size, size, channels]: decoded, converted, cropped, resized.

    Raises:
      OSError: the file cannot be decoded (PIL's `UnidentifiedImageError` is one).
    """
    with Image.open(file) as picture:
        picture.load()
        converted = _to_8_bit(picture).convert("RGB" if channels == 3 else "L")
    return _crop_resize(converted, size).reshape(size, size, channels)


def _headers(files: list[Path]) -> list[tuple[str, tuple[int, int]] | None]:
    """(mode, size) of each file from its header alone, or None if it is not an image."""
    headers = []
    for file in files:
        try:
            with Image.open(file) as picture:
                headers.append((picture.mode, picture.size))
        except (UnidentifiedImageError, OSError):
            headers.append(None)
    return headers


def _decode_all(files: list[Path], labels: list[int], config) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [M, S, S, C], int32 labels [M]) of the readable files, one at a time."""
    headers = _headers(files)
    readable = [i for i, header in enumerate(headers) if header is not None]
    if not readable:
        raise ValueError(f"none of the {len(files)} image files is readable")
    channels = config.channels or (
        3 if any(headers[i][0] not in GRAY_MODES for i in readable) else 1
    )
    size = config.image_size or min(headers[readable[0]][1])
    images = np.empty((len(readable), size, size, channels), np.uint8)
    kept = np.zeros(len(readable), bool)
    for row, index in enumerate(readable):
        try:
            images[row] = decode(files[index], size, channels)
            kept[row] = True
        except OSError:  # A truncated file fails only when decoded.
            pass
    if not kept.any():
        raise ValueError(f"none of the {len(files)} image files is readable")
    kept_labels = np.asarray(labels, np.int32)[readable]
    if kept.all():
        return images, kept_labels
    return images[kept], kept_labels[kept]


def cache_path(root: Path, config) -> Path:
    """Where the decoded images of folder `root` at the config's size and channels live."""
    where = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    name = f"{file_name_part(root.resolve().name) or 'folder'}_{where}"
    return (
        default_cache_dir() / "folders"
        / f"{name}_s{config.image_size}_c{config.channels}_v{_CACHE_VERSION}.npz"
    )  # fmt: skip


def contents_key(root: Path, files: list[Path], config) -> str:
    """A digest of the files' relative paths, sizes and mtimes, image_size and channels."""
    digest = hashlib.sha256(f"s{config.image_size} c{config.channels}\n".encode())
    for file in files:
        stat = file.stat()
        entry = f"{file.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        digest.update(entry.encode())
    return digest.hexdigest()


def _matches(cached: dict[str, np.ndarray] | None, key: str) -> bool:
    """Whether a cache file holds well-formed arrays of the folder with this key."""
    if cached is None or set(cached) != {"images", "labels", "key", "skipped"}:
        return False
    images, labels = cached["images"], cached["labels"]
    return (
        str(cached["key"]) == key
        and images.dtype == np.uint8
        and images.ndim == 4
        and labels.shape == (len(images),)
    )


def _load_images(root: Path, files: list[Path], labels: list[int], config):
    """(images, labels) from the cache when it matches the folder, else decoded and cached."""
    path, key = cache_path(root, config), contents_key(root, files, config)
    cached = read_cache(path)
    if _matches(cached, key):
        if int(cached["skipped"]):
            log.warning("Skipped %d unreadable image file(s) in %s", int(cached["skipped"]), root)
        return cached["images"], cached["labels"]
    images, kept_labels = _decode_all(files, labels, config)
    skipped = len(files) - len(images)
    if skipped:
        log.warning("Skipped %d unreadable image file(s) in %s", skipped, root)
    write_cache(
        path, {"images": images, "labels": kept_labels, "key": np.asarray(key),
               "skipped": np.asarray(skipped)},
    )  # fmt: skip
    return images, kept_labels


def load(argument: str, split: str, config) -> Dataset:
    """The registry's entry for 'folder:PATH' (split 'train' and 'test' are the same)."""
    root = Path(argument).expanduser()
    files, labels, class_names = find_images(root)
    if not files:
        raise ValueError(
            f"dataset='folder:{argument}': {root} holds no {'/'.join(SUFFIXES)} images "
            "(directly, or one level down in class sub-folders)"
        )
    try:
        images, kept_labels = _load_images(root, files, labels, config)
    except ValueError as error:
        raise ValueError(f"dataset='folder:{argument}': {error}") from None
    info = DatasetInfo(f"folder:{argument}", tuple(images.shape[1:]), len(class_names), class_names)
    return Dataset(images, kept_labels, info, split)
