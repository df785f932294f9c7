"""The HTML evaluation report: metrics table, embedded grids and nearest-neighbour pairs."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from jaxgan.evaluation import report

RESULTS = {
    "fid": 12.345678,
    "kid_mean": 0.0123456,
    "kid_std": 0.000321,
    "precision": 0.625,
    "recall": 0.375,
    "density": 0.9,
    "coverage": 0.8,
    "num_real": 40,
    "num_fake": 40,
    "reference": "fashion_mnist:test[:40]",
    "resize": "half_pixel",
    "feature_dtype": "float32",
    "step": 1504,
}


def embedded_images(page: str) -> list[np.ndarray]:
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(uri)))) for uri in uris]


def test_nearest_neighbours_on_a_toy_feature_set():
    search = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    queries = np.array([[9.0, 1.0], [0.5, 9.0], [0.1, 0.1], [6.0, 9.0]])
    indices, distances = report.nearest_neighbours(queries, search)
    np.testing.assert_array_equal(indices, [1, 2, 0, 3])
    np.testing.assert_allclose(distances, [np.sqrt(2), np.sqrt(1.25), np.sqrt(0.02), np.sqrt(17)])
    with pytest.raises(ValueError, match="allowed"):
        report.nearest_neighbours(queries, search[:, :1])


def test_report_has_the_table_the_grids_and_the_right_pairs(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    fake = rng.uniform(-1, 1, (40, 8, 8, 1)).astype(np.float32)
    # Search image i is flat gray 10 * i, and its feature is i: easy to tell apart.
    search_images = (np.arange(20, dtype=np.uint8) * 10)[:, None, None, None].repeat(8, 1)
    search_images = search_images.repeat(8, 2)
    search_features = np.arange(20, dtype=np.float64)[:, None]
    query_features = np.array([[7.2], [0.4], [18.6], [3.5001]])
    neighbours = report.find_neighbours(
        fake[:4], query_features, search_images, search_features, "fashion_mnist:train[:20]"
    )
    np.testing.assert_array_equal(neighbours.indices, [7, 0, 19, 4])

    path = report.write_html_report(tmp_path / "report.html", RESULTS, real, fake, neighbours)

    page = path.read_text()
    for cell in ("12.3457", "0.012346", "0.6250", "0.3750", "fashion_mnist:test[:40]", "1504"):
        assert f"<td>{cell}</td>" in page, cell
    assert "Precision (k=3)</th><td>0.6250" in page and "Recall (k=3)</th><td>0.3750" in page
    assert "among 20 images of fashion_mnist:train[:20]" in page
    images = embedded_images(page)
    # Two grids, then a (generated, nearest) pair per row.
    assert len(images) == 2 + 2 * 4
    # 40 images of 8x8 in 5 full rows of 8, 2 pixels apart.
    assert images[0].shape == images[1].shape == (2 + 5 * 10, 2 + 8 * 10)
    for row, expected_index in enumerate([7, 0, 19, 4]):
        nearest = images[2 + 2 * row + 1]
        assert nearest.shape == (8, 8) and (nearest == 10 * expected_index).all()
    assert "http" not in page.replace("http-equiv", ""), "the report must be self-contained"


def test_report_without_neighbours_has_no_pairs(tmp_path):
    images = np.zeros((4, 5, 5, 3), np.uint8)
    page = report.build_html_report(RESULTS, images, images)
    assert len(embedded_images(page)) == 2 and "Nearest neighbours" not in page
