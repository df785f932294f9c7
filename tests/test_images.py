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
