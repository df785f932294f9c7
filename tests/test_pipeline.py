"""Generation straight into Inception on the device: the same pixels, features and logits as
the host path (`generate_images`, `to_uint8`, `inception_features`, `discriminator_logits`)."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.core import create_state
from jaxgan.evaluation import evaluator as evaluation
from jaxgan.evaluation.generation import discriminator_logits, generate_images
from jaxgan.evaluation.pipeline import generated_features, quantise
from jaxgan.metrics import EvaluationInterrupted, SmallSampleWarning
from jaxgan.metrics.features import inception_features, to_uint8

REPO = Path(__file__).resolve().parents[1]


@jax.jit
def patch_features(preprocessed: jax.Array) -> jax.Array:
    """A cheap stand-in for Inception that sees every resized pixel: 3x3 block means, [B, 9]."""
    blocks = preprocessed[:, :297, :297, 0].reshape(len(preprocessed), 3, 99, 3, 99)
    return blocks.mean(axis=(2, 4)).reshape(len(preprocessed), -1)


def tiny_state(tiny_config, **overrides):
    config = tiny_config(**overrides)
    num_classes = 10 if overrides.get("conditional") else 0
    state = create_state(config, jax.random.key(0), image_shape=(28, 28, 1),
                         num_classes=num_classes)  # fmt: skip
    # Running statistics far from any batch's, so inference mode is visible in the images.
    stats = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.full_like(leaf, 0.3 if path[-1].key == "mean" else 0.5),
        state.g_batch_stats,
    )
    return state.replace(g_batch_stats=stats)


def host_path(state, key, num, batch_size, labels=None):
    images = generate_images(state, key, num, batch_size, labels)
    features = inception_features(images, batch_size, feature_fn=patch_features)
    return images, features, discriminator_logits(state, images, batch_size, labels)


def test_quantise_gives_to_uint8s_pixels_at_every_level_boundary():
    levels = (np.arange(256, dtype=np.float32) - 128) / np.float32(127.5)
    around, below, above = [levels], levels, levels
    for _ in range(3):  # Three float32 steps on either side of each boundary.
        below, above = np.nextafter(below, np.float32(-2)), np.nextafter(above, np.float32(2))
        around += [below, above]
    rng = np.random.default_rng(0)
    values = np.concatenate(around + [rng.uniform(-1, 1, 100_000).astype(np.float32)])
    values = np.clip(values, -1, 1).astype(np.float32)
    values = np.concatenate([values, np.float32([-1, 1, 1 + 5e-4, -1 - 5e-4])])
    images = values[: len(values) // 4 * 4].reshape(-1, 2, 2, 1)

    pixels, bad = quantise(jnp.asarray(images))

    np.testing.assert_array_equal(np.asarray(pixels), to_uint8(images))
    assert int(bad.sum()) == 0


def test_quantise_counts_what_to_uint8_refuses_per_image():
    images = np.zeros((4, 2, 2, 1), np.float32)
    images[1, 0, 0, 0] = np.nan
    images[2, 1, 1, 0] = 1.01
    images[2, 0, 1, 0] = -np.inf
    images[3, 0, 0, 0] = 1 + 5e-4  # Inside the tolerance: rounding of a tanh output.
    _, bad = quantise(jnp.asarray(images))
    np.testing.assert_array_equal(np.asarray(bad), [0, 1, 2, 0])


def test_features_logits_and_pixels_equal_the_host_paths(tiny_config):
    state = tiny_state(tiny_config)
    key = jax.random.key(3)
    images, features, logits = host_path(state, key, 13, 5)  # A padded last batch.

    generated = generated_features(state, key, 13, 5, feature_fn=patch_features,
                                   keep_images=True)  # fmt: skip

    assert isinstance(generated.features, jax.Array)
    np.testing.assert_array_equal(generated.images, to_uint8(images))
    np.testing.assert_array_equal(np.asarray(generated.features), features)
    np.testing.assert_allclose(generated.d_logits, logits, rtol=1e-6, atol=1e-6)
    # Image i does not depend on the batch it was drawn in.
    rebatched = generated_features(state, key, 13, 4, feature_fn=patch_features)
    np.testing.assert_array_equal(np.asarray(rebatched.features), features)
    assert generated_features(state, key, 13, 5, feature_fn=patch_features).images is None


def test_the_ema_generator_with_its_own_statistics_is_the_one_scored(tiny_config):
    state = tiny_state(tiny_config, ema_decay=0.9)
    ema = state.replace(
        g_ema=jax.tree.map(lambda p: p * 0.5, state.g_ema),
        g_ema_batch_stats=jax.tree.map(lambda s: s * 0 + 0.1, state.g_ema_batch_stats),
    )
    key = jax.random.key(4)
    _, features, _ = host_path(ema, key, 6, 6)
    generated = generated_features(ema, key, 6, 6, feature_fn=patch_features)
    np.testing.assert_array_equal(np.asarray(generated.features), features)
    online = generated_features(ema.replace(g_ema=None), key, 6, 6, feature_fn=patch_features)
    assert not np.allclose(np.asarray(online.features), features, atol=1e-4)


def test_a_conditional_generator_and_d_use_the_given_labels(tiny_config):
    state = tiny_state(tiny_config, conditional=True)
    key = jax.random.key(5)
    labels = np.arange(9, dtype=np.int32) % 10
    _, features, logits = host_path(state, key, 9, 4, labels)

    generated = generated_features(state, key, 9, 4, labels, feature_fn=patch_features)

    np.testing.assert_array_equal(np.asarray(generated.features), features)
    np.testing.assert_allclose(generated.d_logits, logits, rtol=1e-6, atol=1e-6)
    shifted = generated_features(state, key, 9, 4, (labels + 1) % 10, feature_fn=patch_features)
    assert not np.allclose(np.asarray(shifted.features), features, atol=1e-4)
    with pytest.raises(ValueError, match="class-conditional"):
        generated_features(state, key, 9, 4, feature_fn=patch_features)
    with pytest.raises(ValueError, match=r"integers in \[0, 10\)"):
        generated_features(state, key, 9, 4, labels + 10, feature_fn=patch_features)


def test_a_generator_that_outputs_nan_is_refused(tiny_config):
    state = tiny_state(tiny_config)
    broken = state.replace(g_params=jax.tree.map(lambda p: p * np.nan, state.g_params))
    with pytest.raises(ValueError, match=r"NaN, Inf or outside \[-1, 1\]"):
        generated_features(broken, jax.random.key(0), 7, 4, feature_fn=patch_features)


def test_a_feature_fn_of_the_wrong_shape_and_a_stop_request_are_reported(tiny_config):
    state = tiny_state(tiny_config)
    with pytest.raises(ValueError, match="expected"):
        generated_features(state, jax.random.key(0), 4, 4, feature_fn=lambda x: x[:, 0, 0, 0])
    with pytest.raises(EvaluationInterrupted, match="generation and Inception"):
        generated_features(state, jax.random.key(0), 4, 4, feature_fn=patch_features,
                           should_stop=lambda: True)  # fmt: skip


def test_evaluate_scores_exactly_what_score_does_with_the_host_images(tiny_config):
    config = tiny_config(fid_num_samples=12, fid_batch_size=5, kid_subset_size=6,
                         kid_num_subsets=3)  # fmt: skip
    state = tiny_state(tiny_config)
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 256, (30, 28, 28, 1), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)  # N = 12: a wiring test.
        evaluator = evaluation.Evaluator(config, reference, reference_name="fashion_mnist:test",
                                         feature_fn=patch_features)  # fmt: skip
    key = jax.random.key(8)

    on_device = evaluator.evaluate(state, key)
    through_host = evaluator.score(state, *evaluator.generate(state, key))

    assert on_device.keys() == through_host.keys()
    for name, value in through_host.items():
        if isinstance(value, float):
            assert on_device[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        else:
            assert on_device[name] == value, name


WORKER = """
import json, sys
import jax, numpy as np
sys.path.insert(0, {tests!r})
from test_pipeline import patch_features, tiny_state
from jaxgan.evaluation.pipeline import generated_features
from jaxgan.models import model_config
from jaxgan.training.config import base_config, set_fields

def tiny_config(model="dcgan", **overrides):  # As tests/conftest.py's fixture.
    config = base_config()
    config.model = model_config(model, g_width=4, d_width=4)
    config.latent_dim = 8
    return set_fields(config, **overrides)

state = tiny_state(tiny_config)
out = generated_features(state, jax.random.key(3), 11, 4, feature_fn=patch_features)
print(json.dumps({{"devices": jax.device_count(), "features": np.asarray(out.features).tolist(),
                  "logits": out.d_logits.tolist()}}))
"""


@pytest.mark.slow
def test_two_devices_give_the_one_device_features(tiny_config):
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path,
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}  # fmt: skip
    script = WORKER.format(tests=str(REPO / "tests"))
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    two = json.loads(result.stdout.strip().splitlines()[-1])
    one = generated_features(tiny_state(tiny_config), jax.random.key(3), 11, 4,
                             feature_fn=patch_features)  # fmt: skip
    assert two["devices"] == 2
    np.testing.assert_allclose(two["features"], np.asarray(one.features), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(two["logits"], one.d_logits, rtol=1e-5, atol=1e-5)
