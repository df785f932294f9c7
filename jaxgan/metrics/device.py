"""FID, KID and precision/recall/density/coverage of pool3 features on the accelerator.

The scores of the float64 host references `frechet`, `mmd` and `manifold`, for features that
may already be on the device (e.g. straight from the Inception network). The heavy passes are
the float32 blocked ones of `jaxgan.metrics.blocked`; the host finishes in float64:

- mean and covariance: shifted float32 sums and scatter with Kahan summation on the device,
  unshifted on the host in float64;
- Fréchet distance: Tr sqrt(S1 S2) = sum sqrt(eig(L^T S2 L)), S1 = L L^T (Cholesky), by a
  symmetric eigensolver in float64 on the host (`frechet_distance_eigh`: a second at 2048 x
  2048; L of the real set is computed once, in `device_real_summary`). A set with fewer rows
  than dimensions enters through its centred features instead of its singular covariance
  (`feature_factor`). A float32 `jnp.linalg.eigh` on the device was 1.8e-2 relative off at
  FID 7 (the square roots of the small eigenvalues amplify its rounding), so this step stays
  in float64 on the host, which also spares the device float64 (TPUs have none) and
  `jax_enable_x64`;
- KID: the subsets of `kid_from_features` (`mmd.kid_subset_indices`), float32 kernel blocks;
- precision/recall (k = 3) and density/coverage (k = 5): float32 distance blocks, k-NN radii
  by `jax.lax.top_k`, the comparisons of `manifold`.

Measured against the float64 references (on features already float32, as pool3 features are),
on FashionMNIST pool3 features (test[:2500] vs train[:2500], FID 9.91; test[:1250] vs
test[1250:2500], FID 19.4; test[:2500] vs 1233 train images of classes 0-4, FID 51.5) and on
synthetic 2048-d features with a pool3-like spectrum (10k vs 10k, FID 3.57): FID within 5e-8
relative of the exact value (and of scipy's sqrtm, itself up to 2e-6 off with fewer rows
than dimensions), KID within 3e-9, precision/recall/density/coverage identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.metrics import blocked
from jaxgan.metrics.features import check_matrix_shape
from jaxgan.metrics.manifold import size_note
from jaxgan.metrics.mmd import kid_subset_indices

# Neighbour ranks of precision/recall (Kynkäänniemi et al. 2019) and density/coverage
# (Naeem et al. 2020), as `manifold.prdc`'s defaults.
PR_K = 3
DC_K = 5


class RealFeatureSummary(NamedTuple):
    """What the metrics need of the real features alone (`device_real_summary`).

    Attributes:
        mu: [D] float64 feature mean.
        sigma: [D, D] float64 feature covariance (ddof=1).
        sigma_factor: [D, p] float64 A with A A^T = sigma: `feature_factor` (p = N) for
            N <= D, else `covariance_factor(sigma)` (p = D).
        radii: {PR_K: [N], DC_K: [N]} float32 distances to the k-th nearest real neighbour.
        num_real: N.
    """

    mu: np.ndarray
    sigma: np.ndarray
    sigma_factor: np.ndarray
    radii: dict[int, np.ndarray]
    num_real: int


def device_features(features: Any, name: str, min_rows: int = 2) -> jax.Array:
    """Checks a feature matrix and returns it as a float32 jax array (on its device if it was).

    Args:
        features: [N, D] real numbers, numpy or jax.
        name: what the array is, for error messages.
        min_rows: the smallest N allowed.

    Raises:
        ValueError: if `features` is not a finite real [N, D] array with N >= min_rows.
    """
    array = jnp.asarray(features)
    if not (jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(array.dtype, jnp.floating)):
        raise ValueError(f"{name} have dtype {array.dtype}; allowed: real numbers")
    check_matrix_shape(array.shape, name, min_rows)
    array = array.astype(jnp.float32)
    if not bool(jnp.isfinite(array).all()):
        raise ValueError(f"{name} contain NaN or Inf")
    return array


def _statistics(moments: tuple[jax.Array, ...], num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """`blocked.shifted_moments` -> (mu [D], sigma [D, D]), unshifted on the host in float64."""
    shift, sums, scatter = (np.asarray(moment, np.float64) for moment in moments)
    mu = shift + sums / num_rows
    sigma = (scatter - np.outer(sums, sums / num_rows)) / (num_rows - 1)
    return mu, sigma


def device_feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features accumulated on the device, as `feature_statistics`.

    Measured on 2048-d pool3-like features: covariance entries within 5e-7 of the largest
    one, enough for FID to 5e-8 relative (for N > D; see `feature_factor` otherwise).

    Args:
        features: [N, D] features, N >= 2, numpy or on the device.

    Returns:
        (mu [D] float64, sigma [D, D] float64 with ddof=1).

    Raises:
        ValueError: if `features` is not a finite [N, D] array with N >= 2.
    """
    features = device_features(features, "features")
    return _statistics(blocked.shifted_moments(features), features.shape[0])


def covariance_factor(sigma: Any) -> np.ndarray:
    """A [D, D] float64 with A A^T = sigma, for a covariance sigma [D, D].

    Cholesky's lower-triangular factor; if sigma is singular and Cholesky fails, the symmetric
    square root with negative eigenvalues clipped to 0.
    """
    sigma = np.asarray(sigma, np.float64)
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        eigenvalues, eigenvectors = np.linalg.eigh(sigma)
        return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def feature_factor(features: jax.Array) -> np.ndarray | None:
    """For N <= D rows, the exact covariance factor (x - mu)^T / sqrt(N - 1) [D, N] in float64.

    The covariance of fewer rows than dimensions is singular, and the rounding noise that float32
    accumulation leaves in its null space adds sqrt(noise) terms to tr sqrt(S1 S2): 7e-5 of FID
    on 1233 real pool3 features. Its factor from the features themselves has no null space.
    None for N > D, where the covariance is full rank.
    """
    num_rows, dim = features.shape
    if num_rows > dim:
        return None
    rows = np.asarray(features, np.float64)
    return (rows - rows.mean(axis=0)).T / np.sqrt(num_rows - 1)


def frechet_distance_eigh(
    mu1: Any,
    sigma1: Any,
    mu2: Any,
    sigma2: Any,
    *,
    sigma1_factor: Any | None = None,
    sigma2_factor: Any | None = None,
) -> float:
    """Fréchet distance of two Gaussians by symmetric eigendecompositions, in float64.

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr sqrt(sigma1 sigma2) (Dowson & Landau
    1982). With A A^T = sigma1, Tr sqrt(sigma1 sigma2) = sum_i sqrt(lambda_i), lambda_i the
    eigenvalues of the symmetric A^T sigma2 A clipped at 0; with B B^T = sigma2 also given, the
    sum of the singular values of A^T B. Agrees with `frechet.frechet_distance` (scipy's
    sqrtm) to 1e-11 relative on full-rank covariances; on singular ones, where sqrtm itself
    is off by up to 2e-6, to 7e-8 from covariances and 1e-12 from `feature_factor`s.

    Args:
        mu1: [D] mean of the first set.
        sigma1: [D, D] covariance of the first set.
        mu2: [D] mean of the second set.
        sigma2: [D, D] covariance of the second set.
        sigma1_factor: [D, p] A with A A^T = sigma1 (`covariance_factor`, `feature_factor`);
            None computes `covariance_factor(sigma1)`.
        sigma2_factor: [D, q] B with B B^T = sigma2, or None to use sigma2.

    Returns:
        The squared Fréchet distance as a Python float.

    Raises:
        ValueError: on mismatched shapes or non-finite inputs.
    """
    mu1, mu2, sigma1, sigma2 = (np.asarray(a, np.float64) for a in (mu1, mu2, sigma1, sigma2))
    dim = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        shapes = [a.shape for a in (mu1, sigma1, mu2, sigma2)]
        raise ValueError(f"shapes {shapes} do not match; allowed: mu [D], sigma [D, D]")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("means and covariances must be finite")
    factor1 = covariance_factor(sigma1) if sigma1_factor is None else sigma1_factor
    if sigma2_factor is None:
        eigenvalues = np.linalg.eigvalsh(factor1.T @ sigma2 @ factor1)
        trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
        trace2 = np.trace(sigma2)
    else:
        trace_sqrt = np.linalg.svd(factor1.T @ sigma2_factor, compute_uv=False).sum()
        trace2 = np.sum(np.square(sigma2_factor))
    # Traces from the factors where given: those of features are exact.
    trace1 = np.trace(sigma1) if sigma1_factor is None else np.sum(np.square(sigma1_factor))
    return float(np.sum((mu1 - mu2) ** 2) + trace1 + trace2 - 2 * trace_sqrt)


def _feature_pair(
    real_features: Any, fake_features: Any, real_rows: int = DC_K + 1, fake_rows: int = PR_K + 1
) -> tuple[jax.Array, jax.Array]:
    """Both feature sets checked (`device_features`, at least these rows) and of one width."""
    real = device_features(real_features, "real_features", min_rows=real_rows)
    fake = device_features(fake_features, "fake_features", min_rows=fake_rows)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature widths differ: real {real.shape}, fake {fake.shape}")
    return real, fake


def _kid_scores(
    real: jax.Array, fake: jax.Array, real_indices: np.ndarray, fake_indices: np.ndarray
) -> Callable[[], tuple[float, float]]:
    """Dispatches the KID pass; returns a function that waits for it -> (mean, std)."""
    estimates = blocked.kid_estimates(
        real, fake, jnp.asarray(real_indices), jnp.asarray(fake_indices)
    )

    def result() -> tuple[float, float]:
        values = np.asarray(estimates, np.float64)
        return float(values.mean()), float(values.std())

    return result


def _prdc_scores(
    real: jax.Array, fake: jax.Array, real_radii: dict[int, np.ndarray]
) -> Callable[[], dict[str, float]]:
    """Dispatches the PRDC passes; returns a function that waits for them -> scores."""
    fake_radii = blocked.kth_neighbour_radii(fake, (PR_K,))[0]
    memberships = blocked.manifold_memberships(
        real, fake, jnp.asarray(real_radii[PR_K]), jnp.asarray(real_radii[DC_K]), fake_radii
    )

    def result() -> dict[str, float]:
        fake_in_real, real_in_fake, ball_counts, covered = (np.asarray(a) for a in memberships)
        return {
            "precision": float(fake_in_real.mean()),
            "recall": float(real_in_fake.mean()),
            "density": float(ball_counts.sum(dtype=np.int64) / (DC_K * len(fake))),
            "coverage": float(covered.mean()),
        }

    return result


def device_kid(
    real_features: Any,
    fake_features: Any,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """`kid_from_features` on the device: same subsets, (mean, std) within 2e-9."""
    real, fake = _feature_pair(real_features, fake_features, real_rows=2, fake_rows=2)
    indices = kid_subset_indices(
        len(real), len(fake), num_subsets=num_subsets, subset_size=subset_size, seed=seed
    )
    return _kid_scores(real, fake, *indices)()


def device_real_radii(real_features: Any) -> dict[int, np.ndarray]:
    """`manifold.real_radii(real_features, (3, 5))` on the device: {k: [N] float32}."""
    real = device_features(real_features, "real_features", min_rows=DC_K + 1)
    radii = np.asarray(blocked.kth_neighbour_radii(real, (PR_K, DC_K)))
    return dict(zip((PR_K, DC_K), radii, strict=True))


def device_prdc(
    real_features: Any, fake_features: Any, *, real_radii: dict[int, np.ndarray] | None = None
) -> dict[str, float]:
    """`manifold.prdc` (k = 3 and 5) on the device: precision, recall, density, coverage.

    `real_radii` are those of `device_real_radii` (or `manifold.real_radii`) for these real
    features; None computes them here.
    """
    real, fake = _feature_pair(real_features, fake_features)
    if real_radii is None:
        real_radii = device_real_radii(real)
    elif any(k not in real_radii or len(real_radii[k]) != len(real) for k in (PR_K, DC_K)):
        raise ValueError(
            f"real_radii must hold [{len(real)}] radii for k in {(PR_K, DC_K)} (from "
            f"`device_real_radii` of these real features); got k={sorted(real_radii)}"
        )
    return _prdc_scores(real, fake, real_radii)()


def device_real_summary(real_features: Any) -> RealFeatureSummary:
    """The `RealFeatureSummary` of reference features, computed once per reference set.

    Args:
        real_features: [N, D] real features, N > 5, numpy or on the device.

    Raises:
        ValueError: if `real_features` is not a finite [N, D] array with N > 5.
    """
    real = device_features(real_features, "real_features", min_rows=DC_K + 1)
    radii = blocked.kth_neighbour_radii(real, (PR_K, DC_K))
    mu, sigma = _statistics(blocked.shifted_moments(real), len(real))
    sigma_factor = feature_factor(real)
    if sigma_factor is None:
        sigma_factor = covariance_factor(sigma)
    radii = dict(zip((PR_K, DC_K), np.asarray(radii), strict=True))
    return RealFeatureSummary(mu, sigma, sigma_factor, radii, len(real))


def device_feature_metrics(
    real_features: Any,
    fake_features: Any,
    *,
    kid_subsets: int,
    kid_size: int,
    seed: int = 0,
    real_summary: RealFeatureSummary | None = None,
) -> dict[str, Any]:
    """FID, KID, precision/recall and density/coverage of two pool3 feature sets on the device.

    The scores of `frechet_distance(*feature_statistics(...))`, `kid_from_features` (same
    subsets) and `prdc` (k = 3 and 5) to the accuracy of the module doc. The device passes are
    dispatched before the host's float64 eigenproblem, so the two overlap.

    Args:
        real_features: [N, D] real features, N > 5, numpy or on the device.
        fake_features: [M, D] generated features, M > 3.
        kid_subsets: KID subsets, >= 1.
        kid_size: largest KID subset size, >= 2.
        seed: seed of the KID subset sampler.
        real_summary: `device_real_summary(real_features)`, to score one generator after
            another against one reference; None computes it here.

    Returns:
        {'fid', 'kid_mean', 'kid_std', 'precision', 'recall', 'density', 'coverage': floats,
         'num_real': N, 'num_fake': M, 'note': '' or the warning that N != M}, the keys of
        `jaxgan.evaluation.evaluator.feature_metrics`.

    Raises:
        ValueError: on non-finite or mis-shaped features, differing widths, invalid KID counts,
            or a `real_summary` of features of another shape.
    """
    real, fake = _feature_pair(real_features, fake_features)
    kid_indices = kid_subset_indices(
        len(real), len(fake), num_subsets=kid_subsets, subset_size=kid_size, seed=seed
    )
    if real_summary is None:
        real_summary = device_real_summary(real)
    elif real_summary.num_real != len(real) or real_summary.mu.shape != real.shape[1:]:
        raise ValueError(
            f"real_summary describes {real_summary.num_real} features of width "
            f"{real_summary.mu.shape[0]}, the real features are {real.shape}; allowed: "
            "device_real_summary of these real features"
        )
    fake_moments = blocked.shifted_moments(fake)
    kid = _kid_scores(real, fake, *kid_indices)
    prdc = _prdc_scores(real, fake, real_summary.radii)
    fake_mu, fake_sigma = _statistics(fake_moments, len(fake))
    fid = frechet_distance_eigh(
        real_summary.mu,
        real_summary.sigma,
        fake_mu,
        fake_sigma,
        sigma1_factor=real_summary.sigma_factor,
        sigma2_factor=feature_factor(fake),
    )
    kid_mean, kid_std = kid()
    return {
        "fid": fid,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        **prdc(),
        "num_real": len(real),
        "num_fake": len(fake),
        "note": size_note(len(real), len(fake)),
    }
