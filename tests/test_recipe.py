"""The modern recipe's pieces in the train step: the EMA generator's own BatchNorm statistics
and its start step, two time-scale learning rates and their linear decay, fresh reals for
each critic step, DiffAugment on every image D sees, and the BatchNorm-penalty warning."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.core import create_state, sample, train_step
from jaxgan.core import step as step_lib
from jaxgan.core.state import adam, adam_linear_decay

IMAGE_SHAPE = (8, 8, 1)
BATCH = 8

_step = jax.jit(train_step)


def _images(seed: int, count: int = BATCH) -> jax.Array:
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(-1, 1, (count, *IMAGE_SHAPE)), jnp.float32)


def _run(state, steps: int, batch=None):
    for index in range(steps):
        images = _images(index) if batch is None else batch
        state, _ = _step(state, {"image": images}, jax.random.key(7))
    return state


def _largest_change(after, before) -> float:
    return max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(after),
                                                              jax.tree.leaves(before)))  # fmt: skip


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# The EMA generator and its BatchNorm statistics.


@pytest.fixture(scope="module")
def ema_run():
    from jaxgan.training.config import base_config, set_fields

    config = set_fields(base_config(), latent_dim=8, g_width=4, d_width=4, ema_decay=0.99)
    state = create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE)
    for index in range(300):
        state, _ = _step(state, {"image": _images(index, 64)}, jax.random.key(7))
    return state


def _batch_statistics(state, params, stored, latents):
    """Per-BatchNorm (mean, var) of G's activations on `latents` with `params`, recovered from
    one training-mode update of the stored running averages (momentum 0.9)."""
    _, updates = state.generator.apply(
        {"params": params, "batch_stats": stored}, latents, train=True, mutable=["batch_stats"]
    )
    return jax.tree.map(lambda new, old: (new - 0.9 * old) / 0.1, updates["batch_stats"], stored)


def test_the_ema_generator_keeps_statistics_of_its_own_activations(ema_run):
    state = ema_run
    latents = jax.random.normal(jax.random.key(3), (4096, state.latent_dim))
    # The second BatchNorm's inputs follow the weights before it: there the averaged
    # weights' statistics part from the online G's (the first one's inputs, a linear map
    # of z, are alike for both). Measured: errors 0.003 (mean) and 0.007 (var) against
    # 0.037 and 0.128 for the online G's statistics, which sampling used before.
    own = _batch_statistics(state, state.g_ema, state.g_ema_batch_stats, latents)["BatchNorm_1"]

    def error(stored, name):  # Relative to the activations' own spread.
        scale = jnp.sqrt(own["var"]) if name == "mean" else own["var"]
        return float(jnp.mean(jnp.abs(own[name] - stored["BatchNorm_1"][name]) / scale))

    for name in ("mean", "var"):
        assert error(state.g_ema_batch_stats, name) < 0.5 * error(state.g_batch_stats, name)


def test_sample_uses_the_ema_weights_with_their_own_statistics(ema_run):
    state = ema_run
    latents = jax.random.normal(jax.random.key(4), (4, state.latent_dim))
    own = state.generator.apply(
        {"params": state.g_ema, "batch_stats": state.g_ema_batch_stats}, latents, train=False
    )
    borrowed = state.generator.apply(
        {"params": state.g_ema, "batch_stats": state.g_batch_stats}, latents, train=False
    )
    np.testing.assert_allclose(sample(state, latents), own, rtol=1e-6, atol=1e-6)
    assert float(jnp.max(jnp.abs(own - borrowed))) > 1e-4


def test_the_ema_follows_the_weights_until_its_start_step():
    from jaxgan.training.config import base_config, set_fields

    config = set_fields(
        base_config(), model="mlp", latent_dim=8, g_width=4, d_width=4, ema_decay=0.99
    )
    config.ema_start = 3
    state = _run(create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE), 3)
    assert _leaves_equal(state.g_ema, state.g_params)  # Steps 0, 1, 2 copy the weights.
    later = _run(state, 1)
    assert not _leaves_equal(later.g_ema, later.g_params)


# Learning rates.


def _mlp_config(**values):
    from jaxgan.training.config import base_config, set_fields

    return set_fields(base_config(), model="mlp", latent_dim=8, g_width=4, d_width=4, **values)


def test_g_and_d_take_their_own_learning_rates():
    state = create_state(
        _mlp_config(g_learning_rate=1e-12, d_learning_rate=1e-2),
        jax.random.key(0),
        image_shape=IMAGE_SHAPE,
    )
    assert state.g_tx is adam(1e-12, 0.5, 0.999) and state.d_tx is adam(1e-2, 0.5, 0.999)
    after = _run(state, 1)
    assert _largest_change(after.g_params, state.g_params) < 1e-9
    assert _largest_change(after.d_params, state.d_params) > 1e-3


def test_linear_decay_reaches_zero_at_the_last_step():
    config = _mlp_config(lr_decay="linear")
    with pytest.raises(ValueError, match="total_steps"):
        create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE)
    state = create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE, total_steps=3)
    assert state.g_tx is adam_linear_decay(2e-4, 0.5, 0.999, 3)
    after_three = _run(state, 3)
    after_four = _run(after_three, 1)
    assert not _leaves_equal(after_three.g_params, state.g_params)
    # The rate is 0 from step 3 on, up to float32 rounding of the schedule (about 1e-11).
    assert _largest_change(after_four.g_params, after_three.g_params) < 1e-9
    assert _largest_change(after_four.d_params, after_three.d_params) < 1e-9


def test_with_several_critic_steps_d_decays_over_the_whole_run_too():
    """D's Adam counts each critic step: its decay must span d_steps x the run's steps, or
    D stops learning half-way with d_steps=2 (resnet.py's runs collapsed there)."""
    config = _mlp_config(lr_decay="linear", loss="hinge", d_steps=2)
    state = create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE, total_steps=4)
    assert state.d_tx is adam_linear_decay(2e-4, 0.5, 0.999, 8)
    batch = jnp.concatenate([_images(1), _images(2)])
    after_three = _run(state, 3, batch)
    after_four = _run(after_three, 1, batch)
    assert _largest_change(after_four.d_params, after_three.d_params) > 1e-6  # Still learning.
    after_five = _run(after_four, 1, batch)
    assert _largest_change(after_five.d_params, after_four.d_params) < 1e-9  # Ended with G.
    assert _largest_change(after_five.g_params, after_four.g_params) < 1e-9


# Critic steps.


def test_each_critic_step_takes_its_own_slice_of_reals():
    # An MLP with the hinge loss has no dropout, BatchNorm or per-row randomness: if every
    # critic step used the whole batch, swapping its halves would change nothing.
    state = create_state(_mlp_config(loss="hinge", d_steps=2), jax.random.key(0),
                         image_shape=IMAGE_SHAPE)  # fmt: skip
    first, second = _images(1), _images(2) * 0.2
    forward = _run(state, 1, jnp.concatenate([first, second]))
    swapped = _run(state, 1, jnp.concatenate([second, first]))
    assert not _leaves_equal(forward.d_params, swapped.d_params)
    with pytest.raises(ValueError, match="d_steps=2 a batch holds d_steps"):
        train_step(state, {"image": _images(1, 7)}, jax.random.key(0))


def test_images_per_step_count_every_critic_step():
    from jaxgan.training.config import base_config, images_per_step

    config = base_config()
    config.d_steps = 3
    assert images_per_step(config) == 3 * config.batch_size


# DiffAugment.


def test_every_image_d_sees_is_augmented(monkeypatch):
    seen = []

    def recording_augment(images, key, policy):
        seen.append((images.shape, policy))
        return images * 0.5

    monkeypatch.setattr(step_lib, "diff_augment", recording_augment)
    state = create_state(_mlp_config(augment="cutout"), jax.random.key(0),
                         image_shape=IMAGE_SHAPE)  # fmt: skip
    plain = create_state(_mlp_config(), jax.random.key(0), image_shape=IMAGE_SHAPE)
    assert state.augment == ("cutout",)
    augmented_result, _ = jax.jit(train_step)(state, {"image": _images(0)}, jax.random.key(1))
    # D's real pass, D's fake pass and G's pass through D: three augmentations per step.
    assert seen == [((BATCH, *IMAGE_SHAPE), ("cutout",))] * 3
    plain_result, _ = jax.jit(train_step)(plain, {"image": _images(0)}, jax.random.key(1))
    assert not _leaves_equal(augmented_result.g_params, plain_result.g_params)


def test_an_unknown_augmentation_is_refused_by_the_config():
    from jaxgan.training.config import base_config, validate_config

    config = base_config()
    config.augment = "translation,flip"
    with pytest.raises(ValueError, match="config.augment='translation,flip' is invalid"):
        validate_config(config)


# Gradient penalties and BatchNorm.


def test_a_gradient_penalty_with_a_batch_norm_discriminator_is_warned_about(tiny_config):
    with pytest.warns(UserWarning, match="BatchNorm discriminator"):
        create_state(tiny_config("dcgan", loss="wgan_gp"), jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_state(tiny_config("dcgan", loss="wgan_gp", spectral_norm=True), jax.random.key(0))
