"""Dataset sources by name: image folders, tfds (mocked, offline), parsing and conforming."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from PIL import Image

from jaxgan import data as datasets
from jaxgan.data import base, folder, tfds_source
from jaxgan.training.config import base_config


def _config(dataset: str, **overrides):
    config = base_config()
    config.dataset = dataset
    config.update(overrides)
    return config


def _write_png(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _random_rgb(seed: int, height=32, width=32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# folder:PATH


def test_folder_with_class_sub_folders_gives_labels_by_sorted_folder_name(tmp_path):
    # Catches labels by directory-listing order, and images paired with the wrong labels.
    written = {"zebra": [_random_rgb(0), _random_rgb(1)], "ant": [_random_rgb(2)],
               "moth": [_random_rgb(3), _random_rgb(4)]}  # fmt: skip
    for name, pictures in written.items():
        for index, pixels in enumerate(pictures):
            _write_png(tmp_path / name / f"{index}.png", pixels)
    (tmp_path / "empty_class").mkdir()  # no images: not a class
    dataset = datasets.load(_config(f"folder:{tmp_path}"), "train")
    assert dataset.images.dtype == np.uint8
    assert dataset.images.shape == (5, 32, 32, 3)
    assert dataset.labels.dtype == np.int32
    np.testing.assert_array_equal(dataset.labels, [0, 1, 1, 2, 2])
    expected = written["ant"] + written["moth"] + written["zebra"]
    np.testing.assert_array_equal(dataset.images, np.stack(expected))  # PNG is lossless
    assert dataset.info == base.DatasetInfo(
        f"folder:{tmp_path}", (32, 32, 3), 3, ("ant", "moth", "zebra")
    )


def test_images_directly_in_the_folder_are_one_class(tmp_path):
    root = tmp_path / "faces"
    for index in range(3):
        _write_png(root / f"{index}.png", _random_rgb(index))
    dataset = datasets.load(_config(f"folder:{root}"), "train")
    np.testing.assert_array_equal(dataset.labels, [0, 0, 0])
    assert (dataset.info.num_classes, dataset.info.class_names) == (1, ("faces",))


def test_mixed_sizes_are_centre_cropped_and_resized(tmp_path):
    # A 32x48 image with red 8-pixel bands left and right of a blue 32x32 centre: a centre
    # crop keeps only blue; squashing it to a square would blend red into the edges.
    banded = np.zeros((32, 48, 3), np.uint8)
    banded[..., 2] = 200
    banded[:, :8] = banded[:, -8:] = (255, 0, 0)
    _write_png(tmp_path / "a_banded.png", banded)
    _write_png(tmp_path / "b_large.png", np.full((64, 64, 3), 90, np.uint8))
    dataset = datasets.load(_config(f"folder:{tmp_path}", image_size=16), "train")
    assert dataset.images.shape == (2, 16, 16, 3)
    assert dataset.info.image_shape == (16, 16, 3)
    np.testing.assert_allclose(dataset.images[0], np.broadcast_to((0, 0, 200), (16, 16, 3)), atol=1)
    np.testing.assert_allclose(dataset.images[1], 90, atol=1)


def test_channels_1_converts_colour_images_to_gray(tmp_path):
    _write_png(tmp_path / "colour.png", np.broadcast_to(np.uint8([200, 100, 50]), (8, 8, 3)))
    dataset = datasets.load(_config(f"folder:{tmp_path}", channels=1), "train")
    assert dataset.images.shape == (1, 8, 8, 1)
    luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 50  # ITU-R 601, as PIL's "L"
    np.testing.assert_allclose(dataset.images, luma, atol=1)


def test_gray_images_stay_gray_unless_channels_asks_for_rgb(tmp_path):
    _write_png(tmp_path / "gray.png", np.full((8, 8), 77, np.uint8))
    assert datasets.load(_config(f"folder:{tmp_path}"), "train").images.shape == (1, 8, 8, 1)
    rgb = datasets.load(_config(f"folder:{tmp_path}", channels=3), "train")
    np.testing.assert_array_equal(rgb.images, np.full((1, 8, 8, 3), 77))


def test_unreadable_files_are_skipped_with_one_warning_counting_them(tmp_path, caplog):
    _write_png(tmp_path / "cats" / "good.png", _random_rgb(0, 8, 8))
    _write_png(tmp_path / "dogs" / "good.png", _random_rgb(1, 8, 8))
    (tmp_path / "cats" / "broken.png").write_bytes(b"not a png at all")
    _write_png(tmp_path / "dogs" / "truncated.png", _random_rgb(2, 8, 8))
    whole = (tmp_path / "dogs" / "truncated.png").read_bytes()
    (tmp_path / "dogs" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger=folder.__name__):
        dataset = datasets.load(_config(f"folder:{tmp_path}"), "train")
    assert len(dataset) == 2
    np.testing.assert_array_equal(dataset.labels, [0, 1])  # each kept image keeps its label
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "2 unreadable" in warnings[0].getMessage()


def test_16_bit_gray_pngs_are_scaled_to_8_bits(tmp_path):
    # Medical and scientific scans are often 16-bit PNGs.
    pixels = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(pixels).save(tmp_path / "scan.png")
    assert Image.open(tmp_path / "scan.png").mode.startswith("I")
    dataset = datasets.load(_config(f"folder:{tmp_path}"), "train")
    assert dataset.images.shape == (1, 8, 8, 1)
    np.testing.assert_allclose(dataset.images[0, ..., 0], pixels / 257.0, atol=1.0)


def test_an_empty_or_missing_folder_is_an_error_naming_it(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="nothing_here"):
        datasets.load(_config(f"folder:{empty}"), "train")
    with pytest.raises(ValueError, match="no_such_folder"):
        datasets.load(_config(f"folder:{tmp_path / 'no_such_folder'}"), "train")


def test_a_folder_mixing_top_level_images_and_class_folders_is_refused_naming_both(tmp_path):
    # Issue 20: 5 images at the top and 6 in sub/ trained on the 6 and dropped the 5 silently.
    for index in range(5):
        _write_png(tmp_path / f"top{index}.png", _random_rgb(index, 8, 8))
    for index in range(6):
        _write_png(tmp_path / "sub" / f"{index}.png", _random_rgb(10 + index, 8, 8))
    with pytest.raises(ValueError) as raised:
        datasets.load(_config(f"folder:{tmp_path}"), "train")
    message = str(raised.value)
    assert "5 images directly in it (top0.png, top1.png, top2.png, top3.png, top4.png)" in message
    assert "sub/ (6 images)" in message
    assert "all directly in the folder (one class) or all in class sub-folders" in message
    assert "Move the top-level images into a sub-folder" in message


def test_images_deeper_than_one_level_are_refused_not_dropped(tmp_path):
    _write_png(tmp_path / "cats" / "a.png", _random_rgb(0, 8, 8))
    _write_png(tmp_path / "dogs" / "b.png", _random_rgb(1, 8, 8))
    _write_png(tmp_path / "dogs" / "thumbnails" / "c.png", _random_rgb(2, 8, 8))
    _write_png(tmp_path / "birds" / "nested" / "d.png", _random_rgb(3, 8, 8))
    with pytest.raises(ValueError, match=r"2 images more than one level down \(birds/nested/d"
                       r"\.png, dogs/thumbnails/c\.png\)"):  # fmt: skip
        datasets.load(_config(f"folder:{tmp_path}"), "train")


def test_hidden_files_and_folders_are_not_images_of_the_dataset(tmp_path):
    for index in range(3):
        _write_png(tmp_path / f"{index}.png", _random_rgb(index, 8, 8))
    _write_png(tmp_path / ".thumbnails" / "0.png", _random_rgb(9, 8, 8))
    _write_png(tmp_path / "._0.png", _random_rgb(8, 8, 8))
    dataset = datasets.load(_config(f"folder:{tmp_path}"), "train")
    assert len(dataset) == 3 and dataset.info.num_classes == 1
    assert dataset.info.describe_classes() == "1 class"  # not "1 classes"
    ten = base.DatasetInfo("tfds:mnist", (28, 28, 1), 10, tuple("0123456789"))
    assert ten.describe_classes() == "10 classes"


def test_a_second_load_reads_the_cache_and_a_changed_file_rebuilds_it(tmp_path, monkeypatch):
    root = tmp_path / "faces"
    for index in range(3):
        _write_png(root / f"{index}.png", _random_rgb(index, 24, 24))
    config = _config(f"folder:{root}", image_size=8)
    decoded = []
    original = folder.decode

    def counting_decode(file, size, channels):
        decoded.append(file.name)
        return original(file, size, channels)

    monkeypatch.setattr(folder, "decode", counting_decode)
    first = datasets.load(config, "train")
    assert len(decoded) == 3
    test = datasets.load(config, "test")  # the run's second load: no decoding
    assert len(decoded) == 3 and test.split == "test"
    np.testing.assert_array_equal(test.images, first.images)
    assert test.info == first.info
    assert folder.cache_path(root, config).parent == base.default_cache_dir() / "folders"

    datasets.load(_config(f"folder:{root}", image_size=12), "train")  # another size: decoded
    assert len(decoded) == 6

    changed = _random_rgb(7, 24, 24)
    _write_png(root / "1.png", changed)
    stat = (root / "1.png").stat()
    os.utime(root / "1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = datasets.load(config, "train")
    assert len(decoded) == 9
    np.testing.assert_array_equal(again.images[1], folder.decode(root / "1.png", 8, 3))
    assert not np.array_equal(again.images[1], first.images[1])
    np.testing.assert_array_equal(again.images[[0, 2]], first.images[[0, 2]])


# tfds:NAME, with tfds's mock data: no download, no TensorFlow dataset files.


def _write_split_metadata(tfds, data_dir, name: str, splits: tuple[str, ...]) -> None:
    """What tfds's mock reads a dataset's splits from (its pip package ships no metadata)."""
    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(name=split, shard_lengths=[6], num_bytes=0,
                                    filename_template=None)
                for split in splits
            ]
        )
    )  # fmt: skip
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    """`tfds.testing.mock_data` (6 examples) for mnist and cifar10 with a train and a test
    split, and an empty jaxgan cache folder. Yields tfds."""
    tfds = base.import_tfds()
    metadata = tmp_path / "tfds_metadata"
    for name in ("mnist", "cifar10"):
        _write_split_metadata(tfds, metadata, name, ("train", "test"))
    monkeypatch.setenv("JAXGAN_CACHE_DIR", str(tmp_path / "cache"))
    with tfds.testing.mock_data(num_examples=6, data_dir=str(metadata)):
        yield tfds


def test_tfds_mnist_gives_uint8_images_labels_and_class_names(mock_tfds):
    dataset = datasets.load(_config("tfds:mnist"), "train")
    assert dataset.images.shape == (6, 28, 28, 1) and dataset.images.dtype == np.uint8
    assert dataset.labels.shape == (6,) and dataset.labels.dtype == np.int32
    assert dataset.info == base.DatasetInfo(
        "tfds:mnist", (28, 28, 1), 10, tuple(str(digit) for digit in range(10))
    )
    # The same examples, in the same order, as tfds itself gives (labels with their images).
    reference = mock_tfds.as_numpy(mock_tfds.load("mnist", split="train", batch_size=-1))
    np.testing.assert_array_equal(dataset.images, reference["image"])
    np.testing.assert_array_equal(dataset.labels, reference["label"])


def test_tfds_cifar10_keeps_its_colour_and_size(mock_tfds):
    dataset = datasets.load(_config("tfds:cifar10"), "test")
    assert dataset.images.shape == (6, 32, 32, 3) and dataset.images.dtype == np.uint8
    assert (dataset.info.image_shape, dataset.info.num_classes) == ((32, 32, 3), 10)
    assert dataset.split == "test"


def test_tfds_is_cached_per_split_and_read_back_without_tfds(mock_tfds, monkeypatch):
    # Catches a cache keyed without the split (test would read train's arrays), one written
    # outside JAXGAN_CACHE_DIR, and a second load that prepares again.
    config = _config("tfds:mnist")
    first = {split: datasets.load(config, split) for split in ("train", "test")}
    cache = base.default_cache_dir() / "tfds"
    assert sorted(path.name for path in cache.iterdir()) == [
        "mnist_default_test_v1.npz",
        "mnist_default_train_v1.npz",
    ]

    def refuse(*args, **kwargs):
        raise AssertionError("tfds was called although the cache holds the split")

    monkeypatch.setattr(tfds_source, "_prepare", refuse)
    for split, dataset in first.items():
        again = datasets.load(config, split)
        np.testing.assert_array_equal(again.images, dataset.images)
        np.testing.assert_array_equal(again.labels, dataset.labels)
        assert again.info == dataset.info


def test_tfds_without_a_test_split_uses_train_for_test(tmp_path, monkeypatch):
    # The loop and experiments.evaluate load 'test' as the FID reference of every dataset.
    tfds = base.import_tfds()
    _write_split_metadata(tfds, tmp_path / "metadata", "mnist", ("train",))
    monkeypatch.setenv("JAXGAN_CACHE_DIR", str(tmp_path / "cache"))
    config = _config("tfds:mnist")
    with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path / "metadata")):
        train = datasets.load(config, "train")
        test = datasets.load(config, "test")
    np.testing.assert_array_equal(test.images, train.images)
    np.testing.assert_array_equal(test.labels, train.labels)
    assert test.split == "train"  # the FID reference says what it really is


# parse, load and conform


@pytest.mark.parametrize(
    "name", ["imagenet", "tfds:", "tfds:Not A Name", "tfds:mnist:latest", "folder:", "", None]
)
def test_parse_refuses_unknown_forms_and_lists_the_allowed_ones(name):
    with pytest.raises(ValueError, match="allowed") as error:
        datasets.parse(name)
    message = str(error.value)
    assert "tfds:NAME" in message and ("folder:PATH" in message or "tfds:NAME:X.Y.Z" in message)


def test_parse_splits_source_and_argument():
    assert datasets.parse("fashion_mnist") == ("fashion_mnist", "")
    assert datasets.parse("tfds:cifar10") == ("tfds", "cifar10")
    assert datasets.parse("tfds:mnist:3.0.1") == ("tfds", "mnist:3.0.1")
    assert datasets.parse("folder:/data/my:faces") == ("folder", "/data/my:faces")


def test_load_refuses_splits_other_than_train_and_test(tmp_path):
    with pytest.raises(ValueError, match="'validation'.*'train' or 'test'"):
        datasets.load(_config(f"folder:{tmp_path}"), "validation")


def test_conform_tiles_gray_to_rgb_and_takes_the_luma_of_rgb():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (2, 5, 5, 1), dtype=np.uint8)
    rgb = datasets.conform(gray, 0, 3)
    assert rgb.shape == (2, 5, 5, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray[..., 0])
    colour = rng.integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    luma = datasets.conform(colour, 0, 1)
    assert luma.shape == (2, 5, 5, 1) and luma.dtype == np.uint8
    pil = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in colour])
    np.testing.assert_allclose(luma[..., 0], pil, atol=1)  # not e.g. the plain mean
    assert datasets.conform(colour, 0, 0) is colour


def test_conform_centre_crops_then_resizes():
    images = np.zeros((1, 12, 20, 1), np.uint8)
    images[:, :, 4:16] = 150  # the centre 12x12 square; the 4-pixel side bands are 0
    resized = datasets.conform(images, 6, 0)
    assert resized.shape == (1, 6, 6, 1) and resized.dtype == np.uint8
    np.testing.assert_allclose(resized, 150, atol=1)
