"""Precision, recall, density and coverage of generated features against real features.

- Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
  for Assessing Generative Models"): each set's manifold is the union of closed balls around its
  points, of radius the distance to the k-th nearest neighbour within the set (k = 3).
  precision = fraction of generated points inside the real manifold (fidelity);
  recall = fraction of real points inside the generated manifold (diversity).
  A point lies inside a ball when its distance is <= the radius, as in the paper and in NVIDIA's
  StyleGAN2-ADA code.
- Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
  Models"), with k = 5 and real balls only:
  density = 1/(k M) sum_j sum_i 1[y_j in B(x_i, NND_k(x_i))], about 1 when the distributions
  match and unbounded above; coverage = fraction of real points whose ball holds at least one
  generated point. Membership uses a strict `<`, as in the authors' code
  (clovaai/generative-evaluation-prdc); it differs from `<=` only on exact ties.

Distances are Euclidean, computed in float64 as sqrt(||a||^2 + ||b||^2 - 2 a . b) over row
chunks of at most 64 MiB, so 10k x 10k comparisons never hold the full 800 MB matrix. All four
scores depend on the set sizes (k-NN radii shrink as N grows): compare them at equal sizes.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from jaxgan.metrics.features import validated_features

# Largest float64 distance block held at once.
_MAX_CHUNK_BYTES = 64 * 2**20


def _distance_chunks(
    row_features: np.ndarray, column_features: np.ndarray
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yields (row slice, [rows, M] float64 Euclidean distances) over chunks of rows."""
    row_norms = np.einsum("nd,nd->n", row_features, row_features)
    column_norms = np.einsum("md,md->m", column_features, column_features)
    rows_per_chunk = max(1, _MAX_CHUNK_BYTES // (8 * len(column_features)))
    for start in range(0, len(row_features), rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        squared = row_features[rows] @ column_features.T
        squared *= -2
        squared += row_norms[rows, np.newaxis]
        squared += column_norms[np.newaxis, :]
        # Cancellation can leave tiny negatives where points coincide.
        np.maximum(squared, 0, out=squared)
        yield rows, np.sqrt(squared, out=squared)


def _kth_neighbour_radii(features: np.ndarray, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Distance from each point to its k-th nearest neighbour in the same set, for each k.

    Args:
        features: [N, D] float64, N > max(ks).
        ks: neighbour ranks, each >= 1.

    Returns:
        {k: [N] float64 radii}.
    """
    radii = {k: np.empty(len(features)) for k in ks}
    for rows, distances in _distance_chunks(features, features):
        # Each point is its own nearest neighbour; make that distance exactly 0.
        local = np.arange(distances.shape[0])
        distances[local, rows.start + local] = 0
        # Index k of the sorted row skips the point itself.
        partitioned = np.partition(distances, sorted(ks), axis=1)
        for k in ks:
            radii[k][rows] = partitioned[:, k]
    return radii


def _validate_k(k: Any, num_points: int, which: str) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k >= num_points:
        raise ValueError(
            f"k={k} nearest neighbours need more than {k} {which} points, got {num_points}"
        )


def _validated_pair(real_features: Any, fake_features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Checks both feature sets; returns them as float64."""
    real = validated_features(real_features, "real_features")
    fake = validated_features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature widths differ: real {real.shape}, fake {fake.shape}")
    return real, fake


def real_radii(real_features: Any, ks: Sequence[int] = (3, 5)) -> dict[int, np.ndarray]:
    """The real set's k-th neighbour radii for each k, to pass to `prdc` again and again.

    They depend on the real features only: an evaluator that scores many generators
    against one reference computes them once (one N x N distance pass).
    """
    real = validated_features(real_features, "real_features")
    for k in ks:
        _validate_k(k, len(real), "real")
    return _kth_neighbour_radii(real, list(ks))


def _scores(
    real: np.ndarray,
    fake: np.ndarray,
    pr_k: int | None,
    dc_k: int | None,
    radii: dict[int, np.ndarray] | None = None,
) -> dict[str, float]:
    """Precision and recall with k = pr_k and/or density and coverage with k = dc_k.

    One distance pass over each of real-real (unless `radii` holds the real radii),
    fake-fake (precision/recall only) and real-fake.
    """
    ks = [k for k in (pr_k, dc_k) if k is not None]
    if radii is None:
        radii = _kth_neighbour_radii(real, ks)
    elif any(k not in radii or len(radii[k]) != len(real) for k in ks):
        raise ValueError(
            f"real_radii must hold [{len(real)}] radii for k in {ks} (from `real_radii` of "
            f"these real features); got k={sorted(radii)}"
        )
    real_radii = radii
    scores = {}
    if pr_k is not None:
        fake_radii = _kth_neighbour_radii(fake, [pr_k])[pr_k]
        fake_in_real_manifold = np.zeros(len(fake), bool)
        real_in_fake_manifold = np.zeros(len(real), bool)
    if dc_k is not None:
        real_balls_holding_fake = np.zeros(len(fake), np.int64)
        real_covered = np.zeros(len(real), bool)
    for rows, distances in _distance_chunks(real, fake):
        if pr_k is not None:
            inside_real_balls = distances <= real_radii[pr_k][rows, np.newaxis]
            fake_in_real_manifold |= inside_real_balls.any(axis=0)
            real_in_fake_manifold[rows] = (distances <= fake_radii[np.newaxis, :]).any(axis=1)
        if dc_k is not None:
            inside_real_balls = distances < real_radii[dc_k][rows, np.newaxis]
            real_balls_holding_fake += inside_real_balls.sum(axis=0)
            real_covered[rows] = inside_real_balls.any(axis=1)
    if pr_k is not None:
        scores["precision"] = float(fake_in_real_manifold.mean())
        scores["recall"] = float(real_in_fake_manifold.mean())
    if dc_k is not None:
        scores["density"] = float(real_balls_holding_fake.sum() / (dc_k * len(fake)))
        scores["coverage"] = float(real_covered.mean())
    return scores


def precision_recall(real_features: Any, fake_features: Any, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Args:
        real_features: [N, D] features of real images, N > k.
        fake_features: [M, D] features of generated images, M > k.
        k: neighbour rank that sets each ball's radius.

    Returns:
        {'precision': float in [0, 1], 'recall': float in [0, 1]}.

    Raises:
        ValueError: on non-finite or mis-shaped features, differing widths, or k out of range.
    """
    real, fake = _validated_pair(real_features, fake_features)
    _validate_k(k, len(real), "real")
    _validate_k(k, len(fake), "fake")
    return _scores(real, fake, pr_k=k, dc_k=None)


def density_coverage(real_features: Any, fake_features: Any, k: int = 5) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020).

    Args:
        real_features: [N, D] features of real images, N > k.
        fake_features: [M, D] features of generated images, M >= 1.
        k: neighbour rank that sets each real ball's radius.

    Returns:
        {'density': float >= 0 (about 1 for matching distributions),
         'coverage': float in [0, 1]}.

    Raises:
        ValueError: on non-finite or mis-shaped features, differing widths, or k out of range.
    """
    real, fake = _validated_pair(real_features, fake_features)
    _validate_k(k, len(real), "real")
    return _scores(real, fake, pr_k=None, dc_k=k)


def size_note(num_real: int, num_fake: int) -> str:
    """'' for equal set sizes, else the warning that the scores depend on both sizes."""
    if num_real == num_fake:
        return ""
    return (
        f"{num_real} real vs {num_fake} generated features: these scores depend on both set "
        "sizes, so compare them only with scores computed at the same sizes"
    )


def prdc(
    real_features: Any,
    fake_features: Any,
    *,
    pr_k: int = 3,
    dc_k: int = 5,
    real_radii: dict[int, np.ndarray] | None = None,
) -> dict[str, float | int | str]:
    """Precision, recall (k = pr_k), density and coverage (k = dc_k) in one call.

    Args:
        real_features: [N, D] features of real images, N > max(pr_k, dc_k).
        fake_features: [M, D] features of generated images, M > pr_k.
        pr_k: neighbour rank for precision and recall (Kynkäänniemi et al. 2019 use 3).
        dc_k: neighbour rank for density and coverage (Naeem et al. 2020 use 5).
        real_radii: `real_radii(real_features, (pr_k, dc_k))`, computed earlier for these
            real features (saves their N x N distance pass); None computes them here.

    Returns:
        {'precision', 'recall', 'density', 'coverage': floats, 'num_real': N, 'num_fake': M,
         'pr_k', 'dc_k': ints, 'note': '' or a warning that N != M makes the scores hard to
         compare}.

    Raises:
        ValueError: on non-finite or mis-shaped features, differing widths, or k out of range.
    """
    real, fake = _validated_pair(real_features, fake_features)
    _validate_k(pr_k, len(real), "real")
    _validate_k(pr_k, len(fake), "fake")
    _validate_k(dc_k, len(real), "real")
    scores: dict[str, float | int | str] = dict(
        _scores(real, fake, pr_k=pr_k, dc_k=dc_k, radii=real_radii)
    )
    scores.update(num_real=len(real), num_fake=len(fake), pr_k=pr_k, dc_k=dc_k)
    scores["note"] = size_note(len(real), len(fake))
    return scores
