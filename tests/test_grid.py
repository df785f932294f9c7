"""Grid layout: as square as the count allows, with no empty cell where one fits."""

import numpy as np
import pytest

from jaxgan.images import grid_columns, make_grid


@pytest.mark.parametrize(
    "count, columns",
    [
        (1, 1),
        (2, 2),
        (4, 2),
        (6, 3),
        (8, 4),
        (10, 5),
        (12, 4),
        (18, 6),
        (64, 8),
        (100, 10),
        (7, 3),
        (97, 10),
    ],  # fmt: skip
)
def test_grid_columns_fill_every_row_unless_the_rows_would_be_too_long(count, columns):
    assert grid_columns(count) == columns


def test_make_grid_lays_out_8_images_as_2_rows_of_4():
    images = np.arange(8, dtype=np.uint8).repeat(16).reshape(8, 4, 4, 1)
    grid = make_grid(images, padding=1)
    assert grid.shape == (2 * 5 + 1, 4 * 5 + 1, 1)
    assert grid[1 + 5, 1 + 3 * 5, 0] == 7  # the last image fills the last cell
