"""Grids and PNG files."""

import numpy as np
import pytest
from PIL import Image

from jaxgan import images


def test_make_grid_places_each_image_with_padding():
    tiles = np.stack([np.full((3, 3), value, np.uint8) for value in (10, 20, 30, 40)])
    grid = images.make_grid(tiles, padding=1)
    assert grid.shape == (2 * 4 + 1, 2 * 4 + 1, 1)
    assert grid[1, 1, 0] == 10 and grid[1, 5, 0] == 20 and grid[5, 1, 0] == 30
    assert grid[5, 5, 0] == 40 and grid[0, 0, 0] == 0 and grid[4, 4, 0] == 0


def test_make_grid_maps_float_range_to_uint8():
    floats = np.array([-1.0, 0.0, 1.0], np.float32).reshape(3, 1, 1, 1)
    grid = images.make_grid(floats, columns=3, padding=0)
    assert grid.ravel().tolist() == [0, 128, 255]


def test_64_images_make_an_8x8_grid():
    grid = images.make_grid(np.zeros((64, 28, 28, 1), np.float32))
    assert grid.shape == (8 * 30 + 2, 8 * 30 + 2, 1)


def test_make_grid_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="expected images"):
        images.make_grid(np.zeros((2, 5, 5, 2)))


def test_save_png_round_trips_and_scales(tmp_path):
    grid = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    path = images.save_png(tmp_path / "sub" / "grid.png", grid, scale=2)
    loaded = np.asarray(Image.open(path))
    assert loaded.shape == (6, 8)
    np.testing.assert_array_equal(loaded[::2, ::2], grid[..., 0])
    assert not list(tmp_path.glob("sub/*.tmp"))


def _labelled(labels, channels=1, columns=3, padding=2):
    tiles = np.random.default_rng(0).integers(0, 256, (len(labels) * columns, 28, 28, channels))
    tiles = tiles.astype(np.uint8)
    return tiles, images.make_labelled_grid(tiles, labels, columns, padding=padding)


def _margin_width(tiles, grid, columns=3, padding=2):
    return grid.shape[1] - images.make_grid(tiles, columns, padding).shape[1]


def test_labelled_grid_tiles_equal_make_grid_right_of_the_margin():
    for channels in (1, 3):
        tiles, grid = _labelled(["Bag", "Sneaker"], channels, columns=3, padding=2)
        plain = images.make_grid(tiles, 3, padding=2)
        margin = grid.shape[1] - plain.shape[1]
        assert margin > 0 and grid.dtype == np.uint8
        assert grid.shape == (plain.shape[0], margin + plain.shape[1], channels)
        np.testing.assert_array_equal(grid[:, margin:], plain)


def test_labelled_grid_margin_grows_with_the_longest_label():
    short_tiles, short = _labelled(["Bag", "Bag"])
    long_tiles, long = _labelled(["Bag", "T-shirt/top"])
    longer_tiles, longer = _labelled(["Bag", "T-shirt/top T-shirt/top"])
    widths = [_margin_width(t, g) for t, g in ((short_tiles, short), (long_tiles, long),
                                               (longer_tiles, longer))]  # fmt: skip
    assert widths[0] < widths[1] < widths[2]
    # The margin is as wide as the text (about 6 pixels a character), not a fixed size.
    assert widths[2] - widths[1] >= 6 * len(" T-shirt/top") - 6


def test_labelled_grid_writes_white_text_in_each_row_of_the_margin():
    labels = ["T-shirt/top", "Trouser", "Pullover", "Bag"]
    for channels in (1, 3):
        tiles, grid = _labelled(labels, channels)
        margin = grid[:, : _margin_width(tiles, grid)]
        assert margin.max() == 255
        if channels == 3:  # White, not colour: all channels equal.
            np.testing.assert_array_equal(margin[..., 0], margin[..., 1])
            np.testing.assert_array_equal(margin[..., 0], margin[..., 2])
        for row in range(len(labels)):
            top = 2 + row * 30
            row_pixels = margin[top : top + 28]
            assert (row_pixels > 0).sum() >= 10, f"no text in row {row}"
        # Nothing is drawn in the padding rows between rows of images.
        assert margin[:2].max() == 0


def test_labelled_grid_rows_differ_with_their_labels():
    tiles, grid = _labelled(["Bag", "Coat"])
    margin = grid[:, : _margin_width(tiles, grid)]
    assert not np.array_equal(margin[2:30], margin[32:60])


def test_labelled_grid_rejects_a_count_mismatch():
    tiles = np.zeros((5, 28, 28, 1), np.uint8)
    with pytest.raises(ValueError, match="row labels"):
        images.make_labelled_grid(tiles, ["a", "b"], 3)


def test_saved_pngs_follow_the_umask(tmp_path):
    import os
    import stat

    from jaxgan.images import save_png

    previous = os.umask(0o022)
    try:
        path = save_png(tmp_path / "grid.png", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not the 0600 of a temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]
