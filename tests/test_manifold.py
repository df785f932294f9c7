"""Tests of precision, recall, density and coverage against known answers and brute force."""

import numpy as np
import pytest

from jaxgan.metrics import manifold


def brute_force_prdc(real: np.ndarray, fake: np.ndarray, pr_k: int, dc_k: int) -> dict:
    """Point-by-point definitions of Kynkäänniemi et al. 2019 and Naeem et al. 2020."""

    def distance(a, b):
        return float(np.sqrt(np.sum((a - b) ** 2)))

    def kth_neighbour_radius(points, index, k):
        others = [distance(points[index], points[j]) for j in range(len(points)) if j != index]
        return sorted(others)[k - 1]

    real_pr_radii = [kth_neighbour_radius(real, i, pr_k) for i in range(len(real))]
    fake_pr_radii = [kth_neighbour_radius(fake, j, pr_k) for j in range(len(fake))]
    real_dc_radii = [kth_neighbour_radius(real, i, dc_k) for i in range(len(real))]
    precision = np.mean(
        [any(distance(y, x) <= r for x, r in zip(real, real_pr_radii, strict=True)) for y in fake]
    )
    recall = np.mean(
        [any(distance(x, y) <= r for y, r in zip(fake, fake_pr_radii, strict=True)) for x in real]
    )
    density = sum(
        distance(y, x) < r for y in fake for x, r in zip(real, real_dc_radii, strict=True)
    ) / (dc_k * len(fake))
    coverage = np.mean(
        [min(distance(x, y) for y in fake) < r for x, r in zip(real, real_dc_radii, strict=True)]
    )
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_hand_computed_line_example_with_ball_boundaries():
    # Reals at 0, 1, 2, 3: every 1-NN radius is 1. The fake at 4.0 sits exactly on the boundary
    # of the ball around 3: inside for precision (<=), outside for density/coverage (<).
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0], [3.9], [4.0]])
    assert manifold.precision_recall(real, fake, k=1) == {"precision": 0.75, "recall": 1.0}
    # Fake 0.5 lies in the balls of 0 and 1, fake 3.9 in the ball of 3: density (2 + 1) / 4;
    # reals 0, 1 and 3 hold a fake in their ball.
    assert manifold.density_coverage(real, fake, k=1) == {"density": 0.75, "coverage": 0.75}


def test_identical_sets_score_one():
    features = np.random.default_rng(0).normal(size=(200, 8))
    scores = manifold.prdc(features, features.copy())
    assert scores["precision"] == 1.0
    assert scores["recall"] == 1.0
    assert scores["coverage"] == 1.0
    # Each real ball (open, radius = 5th neighbour) holds the point and 4 neighbours: exactly
    # 5 = k fakes, up to distance ties; closed balls would give 6/5.
    assert scores["density"] == pytest.approx(1.0, abs=0.02)
    assert scores["num_real"] == scores["num_fake"] == 200
    assert scores["note"] == ""


def test_far_apart_clusters_score_zero():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(50, 4))
    fake = rng.normal(size=(60, 4)) + 100.0
    scores = manifold.prdc(real, fake)
    for name in ("precision", "recall", "density", "coverage"):
        assert scores[name] == 0.0
    assert "50 real vs 60 generated" in scores["note"]


def test_half_of_the_fakes_in_the_real_support():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(100, 3))
    # 50 fakes next to real points, 50 in a far-away cluster.
    fake = np.concatenate([real[:50] + 1e-6, rng.normal(size=(50, 3)) + 1000.0])
    assert manifold.precision_recall(real, fake)["precision"] == 0.5
    assert manifold.density_coverage(real, fake)["coverage"] >= 0.5


def test_density_exceeds_one_when_fakes_crowd_a_dense_region():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(200, 2))
    fake = rng.normal(size=(200, 2)) * 0.05
    assert manifold.density_coverage(real, fake)["density"] > 1.1


@pytest.mark.parametrize("max_chunk_bytes", [None, 8 * 45 * 7])
def test_matches_brute_force_reference(monkeypatch, max_chunk_bytes):
    if max_chunk_bytes is not None:
        # A few rows per chunk, so that chunk boundaries are crossed.
        monkeypatch.setattr(manifold, "_MAX_CHUNK_BYTES", max_chunk_bytes)
    rng = np.random.default_rng(4)
    real = rng.normal(size=(60, 5))
    fake = rng.normal(0.3, 1.2, size=(45, 5)).astype(np.float32)
    scores = manifold.prdc(real, fake, pr_k=3, dc_k=5)
    expected = brute_force_prdc(real, fake.astype(np.float64), pr_k=3, dc_k=5)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-12), name
    assert 0 < scores["precision"] < 1 and 0 < scores["recall"] < 1
    assert scores["note"] != ""


def test_prdc_agrees_with_the_separate_functions():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(40, 3)), rng.normal(0.5, 1.0, size=(40, 3))
    scores = manifold.prdc(real, fake, pr_k=2, dc_k=4)
    assert {key: scores[key] for key in ("precision", "recall")} == manifold.precision_recall(
        real, fake, k=2
    )
    assert {key: scores[key] for key in ("density", "coverage")} == manifold.density_coverage(
        real, fake, k=4
    )
    assert (scores["pr_k"], scores["dc_k"]) == (2, 4)


@pytest.mark.parametrize(
    ("function", "real", "fake", "options"),
    [
        (manifold.precision_recall, np.zeros((3, 2)), np.zeros((10, 2)), {"k": 3}),
        (manifold.precision_recall, np.zeros((10, 2)), np.zeros((3, 2)), {"k": 3}),
        (manifold.precision_recall, np.zeros((10, 2)), np.zeros((10, 2)), {"k": 0}),
        (manifold.precision_recall, np.zeros((10, 2)), np.zeros((10, 2)), {"k": 1.5}),
        (manifold.density_coverage, np.zeros((5, 2)), np.zeros((10, 2)), {"k": 5}),
        (manifold.density_coverage, np.zeros((10, 2)), np.zeros((10, 3)), {}),
        (manifold.density_coverage, np.zeros((10, 2)), np.zeros((0, 2)), {}),
        (manifold.prdc, np.zeros((5, 2)), np.zeros((10, 2)), {"dc_k": 5}),
        (manifold.prdc, np.zeros((10, 2)), np.full((10, 2), np.inf), {}),
        (manifold.prdc, np.zeros(10), np.zeros(10), {}),
    ],
)
def test_rejects_bad_inputs(function, real, fake, options):
    with pytest.raises(ValueError):
        function(real, fake, **options)
