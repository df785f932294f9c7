"""The device metrics (float32 blocked passes) against the float64 host references."""

import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import eval_speed
from jaxgan.metrics import blocked, device, frechet, manifold, mmd

GOLDEN_PATH = pathlib.Path(__file__).parent / "fixtures" / "inception_golden.npz"
KID_SUBSETS, KID_SIZE = 8, 300


def golden_features() -> np.ndarray:
    """[4, 2048] pool3 features of the reference Inception network."""
    with np.load(GOLDEN_PATH) as golden:
        return golden["features"].astype(np.float64)


def pool3_like(num: int, dim: int, seed: int) -> np.ndarray:
    """[num, dim] float32 features at the scale of real pool3 ones.

    The golden features' mean and spread per dimension, a rectified Gaussian around them
    with a power-law covariance spectrum (eigenvalues ~ i^-1.2) in a fixed random basis.
    """
    golden = golden_features()[:, :dim]
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))
    latents = np.random.default_rng(seed).normal(size=(num, dim)) * np.arange(1, dim + 1) ** -0.6
    spread = golden.std(axis=0) + 0.1
    return np.maximum(golden.mean(axis=0) + 6 * (latents @ rotation.T) * spread, 0).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def near_floor():
    """1200 real vs 1100 generated features of one distribution: FID at its floor."""
    real, fake = pool3_like(1200, 384, seed=1), pool3_like(1100, 384, seed=2)
    summary = device.device_real_summary(real)
    on_device = device.device_feature_metrics(
        real, fake, kid_subsets=KID_SUBSETS, kid_size=KID_SIZE, real_summary=summary
    )
    host_kid = mmd.kid_from_features(real, fake, num_subsets=KID_SUBSETS, subset_size=KID_SIZE)
    host = {
        "fid": frechet.frechet_distance(
            *frechet.feature_statistics(real), *frechet.feature_statistics(fake)
        ),
        "kid_mean": host_kid[0],
        "kid_std": host_kid[1],
        **manifold.prdc(real, fake),
    }
    return real, fake, summary, on_device, host


def test_fid_near_the_floor_matches_scipy_within_1e_5_relative(near_floor):
    real, _, _, on_device, host = near_floor
    sigma = np.cov(real, rowvar=False)
    # Near the floor: FID is a few percent of the covariance traces it is the difference of
    # (FashionMNIST train vs test at 10k: 2.5 against 150).
    assert host["fid"] < 0.05 * np.trace(sigma)
    assert on_device["fid"] == pytest.approx(host["fid"], rel=1e-5)


def test_kid_uses_the_same_subsets_as_the_host(near_floor):
    *_, on_device, host = near_floor
    assert on_device["kid_mean"] == pytest.approx(host["kid_mean"], abs=1e-6)
    assert on_device["kid_std"] == pytest.approx(host["kid_std"], abs=1e-6)


def test_prdc_and_the_rest_of_the_dict_match_the_host(near_floor):
    *_, on_device, host = near_floor
    for key in ("precision", "recall", "density", "coverage"):
        assert on_device[key] == pytest.approx(host[key], abs=1e-3), key
    assert on_device["num_real"] == 1200 and on_device["num_fake"] == 1100
    assert on_device["note"] == host["note"] != ""
    assert set(on_device) == {
        *("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"),
        *("num_real", "num_fake", "note"),
    }


def test_real_summary_matches_the_host_statistics_and_radii(near_floor):
    real, _, summary, _, _ = near_floor
    mu, sigma = frechet.feature_statistics(real)
    np.testing.assert_allclose(summary.mu, mu, rtol=0, atol=1e-6 * np.abs(mu).max())
    np.testing.assert_allclose(summary.sigma, sigma, rtol=0, atol=1e-6 * np.abs(sigma).max())
    factor = summary.sigma_factor
    np.testing.assert_allclose(factor @ factor.T, summary.sigma, rtol=0, atol=1e-12)
    host_radii = manifold.real_radii(real, (3, 5))
    for k in (3, 5):
        np.testing.assert_allclose(summary.radii[k], host_radii[k], rtol=1e-5)


def test_metrics_without_a_summary_equal_those_with_one(near_floor):
    real, fake, _, on_device, _ = near_floor
    again = device.device_feature_metrics(real, fake, kid_subsets=KID_SUBSETS, kid_size=KID_SIZE)
    assert again == on_device


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_statistics_match_the_float64_reference(offset):
    # 1500 rows: one full block of 1024 and a padded one. A common offset of 1000 would wreck
    # float32 sums of x x^T; the shift by the first block's mean keeps the sums small.
    features = pool3_like(1500, 256, seed=3) + np.float32(offset)
    mu, sigma = device.device_feature_statistics(features)
    host_mu, host_sigma = frechet.feature_statistics(features)
    np.testing.assert_allclose(mu, host_mu, rtol=1e-7)
    np.testing.assert_allclose(sigma, host_sigma, rtol=0, atol=1e-6 * np.abs(host_sigma).max())


# Full rank (Cholesky factor): both agree to rounding. Singular, fewer rows than dimensions
# (Cholesky fails, symmetric square root): the square roots of the null space's ~1e-16
# rounding noise differ between the two, by 7e-8 here.
@pytest.mark.parametrize("num_rows, rel", [(600, 1e-10), (100, 1e-6)])
def test_frechet_eigh_equals_scipy_sqrtm(num_rows, rel):
    real, fake = pool3_like(num_rows, 256, seed=4), pool3_like(num_rows, 256, seed=5) * 1.1
    statistics = (*frechet.feature_statistics(real), *frechet.feature_statistics(fake))
    expected = frechet.frechet_distance(*statistics)
    assert device.frechet_distance_eigh(*statistics) == pytest.approx(expected, rel=rel)
    factor = device.covariance_factor(statistics[1])
    np.testing.assert_allclose(factor @ factor.T, statistics[1], rtol=0, atol=1e-12)
    assert device.frechet_distance_eigh(*statistics, sigma1_factor=factor) == pytest.approx(
        expected, rel=rel
    )


def nuclear_norm_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID with Tr sqrt(S1 S2) as the nuclear norm of A B^T, A and B the centred sets / sqrt(n - 1).

    Exact in float64 also when a set has fewer rows than dimensions, where sqrtm is not.
    """
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    real_factor = (real - real.mean(axis=0)) / np.sqrt(len(real) - 1)
    fake_factor = (fake - fake.mean(axis=0)) / np.sqrt(len(fake) - 1)
    nuclear_norm = np.linalg.svd(real_factor @ fake_factor.T, compute_uv=False).sum()
    traces = np.sum(real_factor**2) + np.sum(fake_factor**2)
    return float(np.sum((real.mean(axis=0) - fake.mean(axis=0)) ** 2) + traces - 2 * nuclear_norm)


# A singular covariance: float32 rounding in its null space would add sqrt(noise) terms to
# Tr sqrt(S1 S2); the device path takes that set's factor from its features instead.
@pytest.mark.parametrize("num_real, num_fake", [(300, 250), (500, 250), (250, 500)])
def test_fid_with_fewer_rows_than_dimensions_matches_the_exact_value(num_real, num_fake):
    real, fake = pool3_like(num_real, 384, seed=14), pool3_like(num_fake, 384, seed=15)
    expected = nuclear_norm_fid(real, fake)
    on_device = device.device_feature_metrics(real, fake, kid_subsets=1, kid_size=4)
    assert on_device["fid"] == pytest.approx(expected, rel=1e-7)
    host = frechet.frechet_distance(
        *frechet.feature_statistics(real), *frechet.feature_statistics(fake)
    )
    assert on_device["fid"] == pytest.approx(host, rel=1e-5)


def test_kid_blocks_match_mmd2_unbiased_on_each_subset():
    # 200 subset rows in blocks of 48: four full blocks, a padded one, and the diagonal of
    # the within-set kernels crossing every block.
    real, fake = pool3_like(500, 256, seed=6), pool3_like(450, 256, seed=7) * 1.05
    real_indices, fake_indices = mmd.kid_subset_indices(
        500, 450, num_subsets=3, subset_size=200, seed=11
    )
    estimates = blocked.kid_estimates(
        jnp.asarray(real), jnp.asarray(fake), real_indices, fake_indices, block_rows=48
    )
    expected = [
        mmd.mmd2_unbiased(real[r].astype(np.float64), fake[f].astype(np.float64))
        for r, f in zip(real_indices, fake_indices, strict=True)
    ]
    np.testing.assert_allclose(estimates, expected, rtol=0, atol=1e-6)


def test_kid_on_golden_pool3_features_matches_the_host():
    golden = golden_features()
    real, fake = golden, 0.9 * golden[::-1] + 0.05
    options = {"num_subsets": 5, "subset_size": 3, "seed": 2}
    assert device.device_kid(real, fake, **options) == pytest.approx(
        mmd.kid_from_features(real, fake, **options), abs=1e-6
    )


def grid_features(num: int, seed: int) -> np.ndarray:
    """Points on an integer grid: many exact ties and duplicates, all arithmetic exact."""
    return np.random.default_rng(seed).integers(0, 4, size=(num, 4)).astype(np.float32)


def test_prdc_ties_are_inside_for_precision_recall_and_outside_for_density_coverage():
    real, fake = grid_features(300, seed=8), grid_features(260, seed=9)
    radii = manifold.real_radii(real, (3, 5))
    distances = np.sqrt(((real[:, None, :] - fake[None, :, :]) ** 2).sum(axis=-1))
    for k in (3, 5):  # Exact ties decide: `<` and `<=` give different memberships here.
        at_radius = distances <= radii[k][:, None]
        assert (at_radius != (distances < radii[k][:, None])).any(axis=0).mean() > 0.05
    scores = device.device_prdc(real, fake)
    expected = manifold.prdc(real, fake)
    assert scores == {key: expected[key] for key in scores}


def test_blocked_passes_match_the_host_across_block_boundaries():
    real, fake = grid_features(300, seed=10), grid_features(260, seed=11)
    radii = blocked.kth_neighbour_radii(jnp.asarray(real), (1, 3, 5), block_rows=64)
    host_radii = manifold.real_radii(real, (1, 3, 5))
    for row, k in enumerate((1, 3, 5)):
        np.testing.assert_array_equal(radii[row], host_radii[k].astype(np.float32))
    fake_radii = blocked.kth_neighbour_radii(jnp.asarray(fake), (3,), block_rows=64)[0]
    memberships = blocked.manifold_memberships(
        jnp.asarray(real),
        jnp.asarray(fake),
        radii[1],
        radii[2],
        fake_radii,
        block_rows=64,
    )
    fake_in_real, real_in_fake, ball_counts, covered = (np.asarray(a) for a in memberships)
    expected = manifold.prdc(real, fake)
    assert fake_in_real.mean() == expected["precision"]
    assert real_in_fake.mean() == expected["recall"]
    assert ball_counts.sum() / (5 * len(fake)) == expected["density"]
    assert covered.mean() == expected["coverage"]


@pytest.mark.parametrize(
    "real, fake, options, message",
    [
        (np.full((8, 3), np.nan), np.ones((8, 3)), {}, "NaN"),
        (np.ones((8, 3)), np.ones((8, 4)), {}, "widths differ"),
        (np.ones((8, 3), bool), np.ones((8, 3)), {}, "dtype bool"),
        (np.ones(8), np.ones((8, 3)), {}, "shape"),
        (np.ones((5, 3)), np.ones((8, 3)), {}, "at least 6"),
        (np.ones((8, 3)), np.ones((3, 3)), {}, "at least 4"),
        (np.ones((8, 3)), np.ones((8, 3)), {"kid_subsets": 0}, "num_subsets"),
        (np.ones((8, 3)), np.ones((8, 3)), {"kid_size": 1}, "subset_size"),
    ],
)
def test_device_feature_metrics_rejects_bad_inputs(real, fake, options, message):
    options = {"kid_subsets": 2, "kid_size": 4} | options
    with pytest.raises(ValueError, match=message):
        device.device_feature_metrics(real, fake, **options)


def test_a_summary_of_other_features_is_refused():
    summary = device.device_real_summary(grid_features(10, seed=12))
    with pytest.raises(ValueError, match="real_summary"):
        device.device_feature_metrics(
            grid_features(12, seed=12),
            grid_features(12, seed=13),
            kid_subsets=2,
            kid_size=4,
            real_summary=summary,
        )


def test_eval_speed_benchmark_prints_both_paths_and_their_agreement(capsys):
    eval_speed.main(["--num=64", "--dim=16", "--kid-subsets=2", "--kid-size=16"])
    on_device, on_host, comparison = (
        json.loads(line) for line in capsys.readouterr().out.splitlines()
    )
    for line in (on_device, on_host):
        assert set(line["seconds"]) == {"statistics", "frechet", "kid", "prdc"}
        assert line["num_real"] == 64 and line["device"]["platform"] == "cpu"
    assert on_device["metrics"] == pytest.approx(on_host["metrics"], rel=1e-5, abs=1e-6)
    assert comparison["fid_relative_difference"] < 1e-5
    assert set(comparison["speedup"]) == set(on_host["seconds"])
