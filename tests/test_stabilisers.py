"""Training stabilisers: spectral normalisation of D, an EMA of G's weights, the R1 penalty."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.core import create_state, r1_penalty, sample, train_step
from jaxgan.models.normalization import SPECTRAL_COLLECTION

IMAGE_SHAPE = (8, 8, 1)
BATCH = 4


def _batch(seed=1):
    images = jax.random.uniform(jax.random.key(seed), (BATCH, *IMAGE_SHAPE), minval=-1, maxval=1)
    return {"image": images, "label": jnp.zeros((BATCH,), jnp.int32)}


def _trees_equal(tree_a, tree_b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(a, b) for a, b in zip(leaves_a, leaves_b)
    )


_step = jax.jit(train_step)


@functools.cache
def _mlp_run(r1_gamma=0.0, r1_every=1, ema_decay=0.0, steps=1):
    """An MLP state with these settings and its next `steps` states and metrics."""
    from jaxgan.training.config import base_config, set_fields

    config = set_fields(base_config(), model="mlp", latent_dim=8, g_width=4, d_width=4,
                  r1_gamma=r1_gamma, r1_every=r1_every, ema_decay=ema_decay)  # fmt: skip
    state = create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE)
    states, metrics = [state], []
    for _ in range(steps):
        state, step_metrics = _step(state, _batch(), jax.random.key(1))
        states.append(state)
        metrics.append(step_metrics)
    return states, metrics


# Spectral normalisation.


@pytest.fixture(scope="module")
def spectral_state():
    from jaxgan.training.config import base_config, set_fields

    config = set_fields(
        base_config(),
        latent_dim=8, g_width=4, d_width=4, loss="hinge", spectral_norm=True, dropout_rate=0.3,
    )  # fmt: skip
    return create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE)


def _kernels(params) -> dict[str, jax.Array]:
    return {name: layer["kernel"] for name, layer in params.items() if "kernel" in layer}


def _sigmas(spectral) -> dict[str, jax.Array]:
    """{layer name: sigma} from the collection's {'SpectralNorm_i': {'<layer>/kernel/sigma'}}."""
    return {
        key.split("/")[0]: value
        for entries in spectral.values()
        for key, value in entries.items()
        if key.endswith("/kernel/sigma")
    }


def test_hinge_with_spectral_norm_keeps_the_spectral_state_apart_and_updates_it(spectral_state):
    # Catches the power-iteration state stored in (or dropped with) d_batch_stats, a spectral
    # D that keeps its BatchNorm, and a step that never writes the new vectors back.
    state = spectral_state
    assert _sigmas(state.d_spectral).keys() == _kernels(state.d_params).keys()
    assert not jax.tree.leaves(state.d_batch_stats)
    assert not any("BatchNorm" in name for name in state.d_params)
    assert jax.tree.leaves(state.g_batch_stats)  # G keeps its BatchNorm
    new_state, metrics = _step(state, _batch(), jax.random.key(1))
    assert set(metrics) >= {"d_loss", "g_loss", "d_real_logit", "d_fake_logit"}
    assert jax.tree.structure(new_state.d_spectral) == jax.tree.structure(state.d_spectral)
    assert not jax.tree.leaves(new_state.d_batch_stats)
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), state.d_spectral,
                           new_state.d_spectral)  # fmt: skip
    assert all(jax.tree.leaves(changed))


def test_spectral_norm_divides_each_kernel_by_its_top_singular_value(spectral_state):
    # After enough power iterations (D in training mode, the collection threaded), the stored
    # sigma of each kernel is its top singular value, so kernel / sigma has norm 1. Kernels
    # are scaled by 3 first, so that unnormalised ones would be far from 1. Catches the
    # stats not updated in training mode, and a layer left unnormalised.
    state = spectral_state
    params = {
        name: {**layer, "kernel": 3.0 * layer["kernel"]} for name, layer in state.d_params.items()
    }
    images = _batch()["image"]

    @jax.jit
    def iterate(spectral):
        def one(_, spectral):
            _, updates = state.discriminator.apply(
                {"params": params, SPECTRAL_COLLECTION: spectral},
                images,
                train=True,
                rngs={"dropout": jax.random.key(0)},
                mutable=[SPECTRAL_COLLECTION],
            )
            return updates[SPECTRAL_COLLECTION]

        return jax.lax.fori_loop(0, 50, one, spectral)

    sigmas = _sigmas(iterate(state.d_spectral))
    for name, kernel in _kernels(params).items():
        matrix = np.asarray(kernel).reshape(-1, kernel.shape[-1])
        top = np.linalg.svd(matrix, compute_uv=False)[0]
        assert abs(top - 1.0) > 0.3, f"{name}: the test needs a kernel whose norm is not 1"
        assert top / float(sigmas[name]) == pytest.approx(1.0, abs=0.05), name

    # D in inference mode is then invariant to the scale of its kernels: every layer is
    # normalised (biases are not scaled, so a missed layer changes the logits).
    def logits(params, spectral):
        return state.discriminator.apply(
            {"params": params, SPECTRAL_COLLECTION: spectral}, images, train=False
        )

    np.testing.assert_allclose(
        logits(params, state.d_spectral),
        logits(state.d_params, state.d_spectral),
        rtol=1e-4,
        atol=1e-5,
    )


# EMA of the generator's weights.


@pytest.fixture(scope="module")
def ema_states():
    """An MLP state with ema_decay=0.9 before and after one step, and after four."""
    (initial, after_one, *_, state), _ = _mlp_run(ema_decay=0.9, steps=4)
    return initial, after_one, state


def test_ema_starts_at_the_initial_weights_and_averages_with_the_decay(ema_states):
    # g_ema' = decay * g_ema + (1 - decay) * g_params', with the *new* g_params. Catches
    # decay and 1 - decay swapped and an average of the pre-update weights.
    initial, after_one, _ = ema_states
    assert _trees_equal(initial.g_ema, initial.g_params)
    expected = jax.tree.map(lambda old, new: 0.9 * old + 0.1 * new, initial.g_params,
                            after_one.g_params)  # fmt: skip
    for got, want in zip(jax.tree.leaves(after_one.g_ema), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not _trees_equal(after_one.g_ema, after_one.g_params)


def test_sample_uses_the_ema_weights_by_default(ema_states):
    *_, state = ema_states
    latents = jax.random.normal(jax.random.key(3), (BATCH, state.latent_dim))
    with_ema = sample(state, latents)
    np.testing.assert_array_equal(with_ema, sample(state, latents, use_ema=True))
    np.testing.assert_allclose(
        with_ema,
        state.generator.apply({"params": state.g_ema}, latents, train=False),
        rtol=1e-6,
        atol=1e-6,
    )
    raw = sample(state, latents, use_ema=False)
    np.testing.assert_allclose(
        raw, state.generator.apply({"params": state.g_params}, latents, train=False), atol=1e-6
    )
    assert float(jnp.max(jnp.abs(with_ema - raw))) > 1e-4


def test_without_ema_g_ema_is_empty_and_sample_uses_the_trained_weights():
    (initial, state), _ = _mlp_run(ema_decay=0.0)
    assert initial.g_ema == {} and state.g_ema == {}
    latents = jax.random.normal(jax.random.key(3), (BATCH, state.latent_dim))
    np.testing.assert_allclose(
        sample(state, latents),
        state.generator.apply({"params": state.g_params}, latents, train=False),
        atol=1e-6,
    )


# R1 penalty.


def test_r1_penalty_of_a_linear_critic_is_its_squared_norm():
    # The gradient of sum(w * x) is w for every image: mean ||w||^2 = ||w||^2, not ||w||.
    weights = jnp.full(IMAGE_SHAPE, 0.5)  # ||w||^2 = 64 * 0.25 = 16
    critic = lambda images: jnp.sum(images * weights, axis=(1, 2, 3))  # noqa: E731
    assert float(r1_penalty(critic, _batch()["image"])) == pytest.approx(16.0, rel=1e-6)


def _d_gradient(state_after_one_step):
    """D's gradient of the first step: Adam's first moment is then (1 - b1) * gradient.

    (Adam's first update is about lr * sign(gradient), too coarse to compare losses by.)
    """
    return jax.tree.map(lambda mu: mu / 0.5, state_after_one_step.d_opt_state[0].mu)


def test_r1_is_the_squared_input_gradient_of_d_on_reals_and_changes_d():
    # Catches R1 on fakes or interpolates, and a penalty reported but not added to D's loss.
    states, metrics = _mlp_run(r1_gamma=1.0, r1_every=2, steps=2)
    initial = states[0]
    reals = _batch()["image"]
    critic = lambda images: initial.discriminator.apply(  # noqa: E731
        {"params": initial.d_params}, images, train=True
    )
    assert float(metrics[0]["r1"]) == pytest.approx(float(r1_penalty(critic, reals)), rel=1e-4)
    assert float(metrics[0]["r1"]) > 0
    without, without_metrics = _mlp_run()
    assert "r1" not in without_metrics[0]
    assert not _trees_equal(_d_gradient(states[1]), _d_gradient(without[1]))


def test_lazy_r1_applies_every_k_steps_scaled_by_k():
    # Step 0 penalises, step 1 does not; on a penalised step (gamma, every=2) has the same
    # D gradient as (2 * gamma, every=1). Catches an inverted period test and a missing k.
    states, metrics = _mlp_run(r1_gamma=1.0, r1_every=2, steps=2)
    assert float(metrics[0]["r1"]) > 0
    assert float(metrics[1]["r1"]) == 0.0
    doubled, _ = _mlp_run(r1_gamma=2.0, r1_every=1)
    for got, want in zip(
        jax.tree.leaves(_d_gradient(states[1])), jax.tree.leaves(_d_gradient(doubled[1]))
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)


def test_r1_adds_half_gamma_times_the_penalty_to_ds_loss():
    # The step's D gradient with R1 minus that without it is (gamma / 2) * grad R1(d_params)
    # (Mescheder et al. 2018, eq. 9), computed here by hand. Everything else (fakes, logits)
    # is the same in both runs. Catches gamma instead of gamma / 2, and R1 left out of
    # the gradient.
    gamma = 2.0
    with_r1, _ = _mlp_run(r1_gamma=gamma, r1_every=1)  # The run the lazy-R1 test compiles.
    without, _ = _mlp_run()
    initial = with_r1[0]
    reals = _batch()["image"]

    def penalty(d_params):
        critic = lambda images: initial.discriminator.apply(  # noqa: E731
            {"params": d_params}, images, train=True
        )
        return r1_penalty(critic, reals)

    by_hand = jax.tree.map(lambda g: 0.5 * gamma * g, jax.grad(penalty)(initial.d_params))
    added = jax.tree.map(jnp.subtract, _d_gradient(with_r1[1]), _d_gradient(without[1]))
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(by_hand))
    assert scale > 1e-3  # The penalty's gradient is not negligible.
    for got, want in zip(jax.tree.leaves(added), jax.tree.leaves(by_hand), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
