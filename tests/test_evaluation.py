"""The evaluation wiring: metric bundle, D metrics, report file, image-set loading."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxgan import evaluation, evaluation_cli
from jaxgan.metrics.fid import feature_statistics, frechet_distance
from jaxgan.train import create_state


def pixel_features(preprocessed: jax.Array) -> jax.Array:
    """A cheap stand-in for Inception: 16 pooled pixel values, [B, 16]."""
    pooled = preprocessed[:, ::75, ::75, 0]
    return pooled.reshape(preprocessed.shape[0], -1)


def test_feature_metrics_agree_with_direct_calls():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 6)), rng.normal(0.5, 1.0, size=(40, 6))
    results = evaluation.feature_metrics(real, fake, kid_subsets=5, kid_size=20)
    expected_fid = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    assert results["fid"] == pytest.approx(expected_fid)
    assert results["num_real"] == results["num_fake"] == 40
    assert 0 <= results["precision"] <= 1 and 0 <= results["coverage"] <= 1
    same = evaluation.feature_metrics(real, real, kid_subsets=5, kid_size=20)
    assert abs(same["fid"]) < 1e-6 and same["precision"] == same["recall"] == 1.0


def test_evaluator_scores_a_state_and_writes_a_complete_report(tiny_config, tmp_path):
    config = tiny_config(
        "dcgan", fid_num_samples=12, fid_batch_size=5, kid_subset_size=6, kid_num_subsets=3
    )
    state = create_state(config, jax.random.key(0))
    test_images = np.random.default_rng(1).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    evaluator = evaluation.Evaluator(config, tmp_path, test_images, feature_fn=pixel_features)
    results = evaluator.evaluate(state, jax.random.key(2))
    assert results["num_real"] == results["num_fake"] == 12
    assert results["reference"] == "fashion_mnist test[:12]"
    for name in (
        "fid",
        "kid_mean",
        "kid_std",
        "precision",
        "recall",
        "density",
        "coverage",
        "d_eval_accuracy",
        "d_eval_precision",
        "d_eval_recall",
    ):
        assert isinstance(results[name], float) and np.isfinite(results[name]), name
    report = tmp_path / "fid_result.txt"
    evaluator.write_report(results, report)
    text = report.read_text()
    for needle in (
        "FID:",
        "KID:",
        "Precision (k=3)",
        "Coverage (k=5)",
        "Discriminator accuracy",
        "N real: 12",
        "N fake: 12",
        "Reference: fashion_mnist test[:12]",
        "Checkpoint step: 0",
        "FID protocol",
    ):
        assert needle in text


def test_discriminator_logits_pad_the_last_batch_and_match_one_batch(tiny_config):
    state = create_state(tiny_config("mlp"), jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    in_threes = evaluation.discriminator_logits(state, images, 3)
    at_once = evaluation.discriminator_logits(state, images, 7)
    assert in_threes.shape == (7,)
    np.testing.assert_allclose(in_threes, at_once, atol=1e-5)


def test_generate_images_returns_exactly_num_in_range(tiny_config):
    state = create_state(tiny_config("mlp"), jax.random.key(0))
    fakes = evaluation.generate_images(state, jax.random.key(1), 7, 3)
    assert fakes.shape == (7, 28, 28, 1)
    assert fakes.min() >= -1 and fakes.max() <= 1


def test_load_image_set_from_npz_and_folder(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", images=images)
    np.testing.assert_array_equal(evaluation_cli.load_image_set(tmp_path / "set.npz"), images)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index}.png")
    np.testing.assert_array_equal(evaluation_cli.load_image_set(folder), images)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.npz", "does not exist"),
        (lambda p: (p / "a.txt").write_text("x") and p / "a.txt", "allowed inputs"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no"),
        (lambda p: (p / "bad.npz").write_bytes(b"nope") and p / "bad.npz", "not a readable"),
    ],
)
def test_load_image_set_refuses_bad_paths(tmp_path, make, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        evaluation_cli.load_image_set(make(tmp_path))


def test_run_requires_a_consistent_choice_of_inputs():
    with pytest.raises(ValueError, match="go together"):
        evaluation_cli.run(real="a.npz")
    with pytest.raises(ValueError, match="give --workdir"):
        evaluation_cli.run()
    with pytest.raises(ValueError, match="num_samples"):
        evaluation_cli.run(workdir="x", num_samples=1)


def test_sample_images_use_generator_in_inference_mode(tiny_config):
    state = create_state(tiny_config("dcgan"), jax.random.key(0))
    one = evaluation.generate_images(state, jax.random.key(1), 4, 4)
    two = evaluation.generate_images(state, jax.random.key(1), 4, 4)
    np.testing.assert_array_equal(one, two)
    assert jnp.asarray(one).dtype == jnp.float32
