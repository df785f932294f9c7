"""The pure training functions: state, step, epoch and sampling."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan.core import (
    create_state,
    epoch_batches,
    sample,
    train_epoch,
    train_step,
)
from jaxgan.objectives import nonsaturating as losses


def _real_batch(batch_size=6, seed=1):
    return jax.random.uniform(jax.random.key(seed), (batch_size, 28, 28, 1), minval=-1, maxval=1)


def _leaves_equal(tree_a, tree_b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(a, b) for a, b in zip(leaves_a, leaves_b)
    )


@pytest.mark.parametrize("model", ["dcgan", "mlp"])
def test_create_state_holds_both_networks_and_optimizers(tiny_config, model):
    state = create_state(tiny_config(model), jax.random.key(0))
    assert int(state.step) == 0
    assert jax.tree.leaves(state.g_params) and jax.tree.leaves(state.d_params)
    assert jax.tree.leaves(state.g_opt_state) and jax.tree.leaves(state.d_opt_state)
    has_batch_norm = bool(jax.tree.leaves(state.g_batch_stats))
    assert has_batch_norm == (model == "dcgan")


def test_bfloat16_compute_keeps_float32_params_and_optimizer_state(tiny_config):
    state = create_state(tiny_config("dcgan", dtype="bfloat16"), jax.random.key(0))
    state, metrics = jax.jit(train_step)(state, _real_batch(), jax.random.key(1))
    for leaf in jax.tree.leaves((state.g_params, state.d_params, state.g_opt_state)):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32
    assert all(value.dtype == jnp.float32 for value in metrics.values())


@pytest.mark.parametrize("model", ["dcgan", "mlp"])
def test_train_step_updates_everything_and_reports_metrics(tiny_config, model):
    state = create_state(tiny_config(model), jax.random.key(0))
    new_state, metrics = jax.jit(train_step)(state, _real_batch(), jax.random.key(1))
    assert int(new_state.step) == 1
    assert not _leaves_equal(state.g_params, new_state.g_params)
    assert not _leaves_equal(state.d_params, new_state.d_params)
    assert set(metrics) == {"d_loss", "g_loss", "d_real", "d_fake", "d_real_acc", "d_fake_acc"}
    for name, value in metrics.items():
        assert value.shape == () and np.isfinite(float(value)), name
    for name in ("d_real", "d_fake", "d_real_acc", "d_fake_acc"):
        assert 0.0 <= float(metrics[name]) <= 1.0
    if model == "dcgan":
        assert not _leaves_equal(state.g_batch_stats, new_state.g_batch_stats)
        assert not _leaves_equal(state.d_batch_stats, new_state.d_batch_stats)


def test_train_step_is_deterministic_for_a_key_and_differs_across_keys(tiny_config):
    state = create_state(tiny_config(), jax.random.key(0))
    step = jax.jit(train_step)
    first, _ = step(state, _real_batch(), jax.random.key(7))
    again, _ = step(state, _real_batch(), jax.random.key(7))
    other, _ = step(state, _real_batch(), jax.random.key(8))
    assert _leaves_equal(first, again)
    assert not _leaves_equal(first.g_params, other.g_params)


def test_train_step_updates_d_first_then_g_against_the_updated_d(tiny_config):
    """An independent re-derivation of one MLP step (no dropout, no BatchNorm)."""
    config = tiny_config("mlp")
    state = create_state(config, jax.random.key(0))
    real = _real_batch()
    key = jax.random.key(3)
    new_state, _ = jax.jit(train_step)(state, real, key)

    latent_key = jax.random.split(jax.random.fold_in(key, 0), 4)[0]
    latents = jax.random.normal(latent_key, (real.shape[0], config.latent_dim))
    generate = lambda g: state.generator.apply({"params": g}, latents, train=True)  # noqa: E731
    judge = lambda d, x: state.discriminator.apply({"params": d}, x, train=True)  # noqa: E731
    adam = optax.adam(config.learning_rate, b1=config.b1, b2=config.b2)

    fakes = generate(state.g_params)
    d_grads = jax.grad(lambda d: losses.discriminator_loss(judge(d, real), judge(d, fakes)))(
        state.d_params
    )
    d_updates, _ = adam.update(d_grads, adam.init(state.d_params), state.d_params)
    d_after = optax.apply_updates(state.d_params, d_updates)

    def g_after(d_params):
        g_grads = jax.grad(lambda g: losses.generator_loss(judge(d_params, generate(g))))(
            state.g_params
        )
        updates, _ = adam.update(g_grads, adam.init(state.g_params), state.g_params)
        return optax.apply_updates(state.g_params, updates)

    chex.assert_trees_all_close(new_state.d_params, d_after, atol=1e-6)
    chex.assert_trees_all_close(new_state.g_params, g_after(d_after), atol=1e-6)
    against_old_d = g_after(state.d_params)
    assert not all(
        np.allclose(a, b, atol=1e-6)
        for a, b in zip(jax.tree.leaves(new_state.g_params), jax.tree.leaves(against_old_d))
    )


def test_train_step_compiles_once(tiny_config):
    state = create_state(tiny_config(), jax.random.key(0))
    traced = chex.assert_max_traces(train_step, n=1)
    step = jax.jit(traced)
    for index in range(3):
        state, _ = step(state, _real_batch(seed=index), jax.random.key(index))
    assert int(state.step) == 3


def test_train_step_vmaps_over_keys_and_states(tiny_config):
    config = tiny_config()
    states = [create_state(config, jax.random.key(seed)) for seed in range(3)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    keys = jax.random.split(jax.random.key(5), 3)
    new_states, metrics = jax.jit(jax.vmap(train_step, in_axes=(0, None, 0)))(
        stacked, _real_batch(), keys
    )
    assert metrics["d_loss"].shape == (3,)
    single, _ = jax.jit(train_step)(states[1], _real_batch(), keys[1])
    chex.assert_trees_all_close(
        jax.tree.map(lambda leaf: leaf[1], new_states.g_params), single.g_params, atol=1e-5
    )


def test_epoch_batches_shuffle_on_device_and_drop_the_last_partial_batch():
    images = jnp.arange(10, dtype=jnp.uint8)[:, None, None] * jnp.ones((1, 2, 2), jnp.uint8)
    batches = epoch_batches(images, jax.random.key(0), 3)
    assert batches.shape == (3, 3, 2, 2)
    seen = np.asarray(batches[:, :, 0, 0]).ravel()
    assert len(set(seen.tolist())) == 9  # no repeats
    again = epoch_batches(images, jax.random.key(1), 3)
    assert not np.array_equal(np.asarray(again), np.asarray(batches))


def test_train_epoch_runs_every_full_batch_in_one_compiled_scan(tiny_config):
    state = create_state(tiny_config("mlp"), jax.random.key(0))
    images = jax.random.randint(jax.random.key(1), (50, 28, 28), 0, 256).astype(jnp.uint8)
    epoch = jax.jit(functools.partial(train_epoch, batch_size=8), donate_argnums=0)
    state, metrics = epoch(state, images, jax.random.key(2))
    assert int(state.step) == 6  # 50 // 8, the last two images dropped
    assert all(values.shape == (6,) for values in metrics.values())


def test_sample_uses_inference_mode_and_is_deterministic(tiny_config):
    state = create_state(tiny_config(), jax.random.key(0))
    state, _ = jax.jit(train_step)(state, _real_batch(), jax.random.key(1))
    latents = jax.random.normal(jax.random.key(2), (4, state.latent_dim))
    images = sample(state, latents)
    assert images.shape == (4, 28, 28, 1)
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    np.testing.assert_array_equal(images, sample(state, latents))
    # In inference mode each image depends only on its own latent (no batch statistics).
    np.testing.assert_allclose(sample(state, latents[:1])[0], images[0], atol=1e-6)


def test_dcgan_step_threads_d_batch_norm_statistics_through_all_three_d_passes(tiny_config):
    """D's running statistics follow its three training-mode passes, in order: the real
    batch and the fake batch with D's old parameters, then G(z) again with the updated
    parameters (G's pass). Catches the G pass's statistics update being dropped, and a G
    pass run against the pre-update D. G's statistics follow its single forward pass."""
    config = tiny_config("dcgan")
    state = create_state(config, jax.random.key(0))
    real = _real_batch()
    key = jax.random.key(4)
    batch = {"image": real, "label": jnp.zeros((real.shape[0],), jnp.int32)}
    new_state, _ = jax.jit(train_step)(state, batch, key)

    # The key derivation documented by train_step: fold in the step, split into four.
    latent_key, real_key, fake_key, g_key = jax.random.split(jax.random.fold_in(key, 0), 4)
    latents = jax.random.normal(latent_key, (real.shape[0], config.latent_dim))

    @jax.jit
    def independent_passes(updated_d_params):
        fakes, g_updates = state.generator.apply(
            {"params": state.g_params, "batch_stats": state.g_batch_stats},
            latents,
            train=True,
            mutable=["batch_stats"],
        )

        def d_pass(d_params, stats, images, dropout_key):
            _, updates = state.discriminator.apply(
                {"params": d_params, "batch_stats": stats},
                images,
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            return updates["batch_stats"]

        after_real = d_pass(state.d_params, state.d_batch_stats, real, real_key)
        after_fake = d_pass(state.d_params, after_real, fakes, fake_key)
        return {
            "g": g_updates["batch_stats"],
            "two_passes": after_fake,
            "three_passes": d_pass(updated_d_params, after_fake, fakes, g_key),
            "g_pass_with_old_d": d_pass(state.d_params, after_fake, fakes, g_key),
        }

    stats = independent_passes(new_state.d_params)
    chex.assert_trees_all_close(new_state.d_batch_stats, stats["three_passes"], atol=1e-5)
    chex.assert_trees_all_close(new_state.g_batch_stats, stats["g"], atol=1e-5)
    for wrong in ("two_passes", "g_pass_with_old_d"):
        assert not all(
            np.allclose(a, b, atol=1e-5)
            for a, b in zip(jax.tree.leaves(new_state.d_batch_stats), jax.tree.leaves(stats[wrong]))
        ), wrong


def test_epoch_batches_keep_each_label_with_its_image():
    # Catches images and labels shuffled with different permutations.
    images = (jnp.arange(10, dtype=jnp.uint8)[:, None, None, None] * jnp.ones((1, 2, 2, 1))).astype(
        jnp.uint8
    )
    data = {"image": images, "label": jnp.arange(10, dtype=jnp.int32)}
    batches = epoch_batches(data, jax.random.key(0), 4)
    assert batches["image"].shape == (2, 4, 2, 2, 1)
    assert batches["label"].shape == (2, 4)
    labels = np.asarray(batches["label"])
    np.testing.assert_array_equal(np.asarray(batches["image"])[..., 0, 0, 0], labels)
    assert len(set(labels.ravel().tolist())) == 8
    assert not np.array_equal(labels.ravel(), np.arange(8))  # shuffled
