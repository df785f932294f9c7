"""Class-conditional DCGAN: label embedding in G, projection D, label checks, labels in the step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan.core import check_labels, create_state, discriminate, sample, train_step

IMAGE_SHAPE = (8, 8, 1)
BATCH = 4
_step = jax.jit(train_step)


def _config(**overrides):
    from jaxgan.training.config import base_config, set_fields

    return set_fields(base_config(), latent_dim=8, g_width=4, d_width=4, **overrides)


@pytest.fixture(scope="module")
def conditional_state():
    return create_state(
        _config(conditional=True), jax.random.key(0), image_shape=IMAGE_SHAPE, num_classes=10
    )


def _images(seed=1):
    return jax.random.uniform(jax.random.key(seed), (BATCH, *IMAGE_SHAPE), minval=-1, maxval=1)


def _leaves_equal(tree_a, tree_b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(a, b) for a, b in zip(leaves_a, leaves_b)
    )


def test_a_conditional_pair_has_a_label_embedding_in_g_and_a_projection_in_d(conditional_state):
    state = conditional_state
    assert state.num_classes == 10
    assert state.g_params["label_embedding"]["embedding"].shape == (10, state.latent_dim)
    assert state.d_params["label_projection"]["embedding"].shape[0] == 10


def test_the_label_selects_what_g_draws_and_how_d_judges(conditional_state):
    # Catches labels accepted but never reaching the networks (e.g. dropped in `sample`).
    state = conditional_state
    latents = jax.random.normal(jax.random.key(2), (BATCH, state.latent_dim))
    first = sample(state, latents, jnp.array([0, 1, 2, 3]))
    second = sample(state, latents, jnp.array([4, 5, 6, 7]))
    assert first.shape == (BATCH, *IMAGE_SHAPE)
    assert np.all(np.max(np.abs(np.asarray(first - second)), axis=(1, 2, 3)) > 0)
    np.testing.assert_array_equal(first, sample(state, latents, np.array([0, 1, 2, 3])))
    logits = discriminate(state, _images(), jnp.array([0, 1, 2, 3]))
    assert not np.array_equal(logits, discriminate(state, _images(), jnp.array([4, 5, 6, 7])))


@pytest.mark.parametrize("labels", [None, [0, 1, 2, 10], [-1, 0, 1, 2], [0.0, 1.0, 2.0, 3.0]])
def test_missing_or_out_of_range_labels_are_refused(conditional_state, labels):
    # A jitted embedding lookup would clamp 10 to 9 and -1 to 0 silently.
    latents = jnp.zeros((BATCH, conditional_state.latent_dim))
    labels = None if labels is None else np.array(labels)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        sample(conditional_state, latents, labels)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        discriminate(conditional_state, _images(), labels)


def test_conditional_needs_at_least_two_classes():
    with pytest.raises(ValueError, match="conditional=True.*1"):
        create_state(_config(conditional=True), jax.random.key(0), image_shape=IMAGE_SHAPE,
                     num_classes=1)  # fmt: skip


def test_the_conditional_step_trains_on_the_batch_labels(conditional_state):
    # Catches a step that generates or judges with constant (or no) labels.
    state = conditional_state
    key = jax.random.key(3)
    first, _ = _step(state, {"image": _images(), "label": jnp.array([0, 1, 2, 3])}, key)
    again, _ = _step(state, {"image": _images(), "label": jnp.array([0, 1, 2, 3])}, key)
    other, _ = _step(state, {"image": _images(), "label": jnp.array([9, 8, 7, 6])}, key)
    assert _leaves_equal(first, again)
    assert not _leaves_equal(first.d_params, other.d_params)
    assert not _leaves_equal(first.g_params, other.g_params)
    # Only the embedding rows of the batch's classes (G's for the fakes, D's for both
    # batches) receive a gradient; the others keep their initial values.
    for network, name in (("g_params", "label_embedding"), ("d_params", "label_projection")):
        initial = getattr(state, network)[name]["embedding"]
        updated = getattr(first, network)[name]["embedding"]
        changed = np.any(np.asarray(initial != updated), axis=1)
        np.testing.assert_array_equal(np.flatnonzero(changed), [0, 1, 2, 3], err_msg=network)


def test_unconditional_models_ignore_labels():
    state = create_state(_config(), jax.random.key(0), image_shape=IMAGE_SHAPE, num_classes=10)
    assert state.num_classes == 0
    assert "label_embedding" not in state.g_params
    assert "label_projection" not in state.d_params
    assert check_labels(state, jnp.array([0, 99])) is None
    key = jax.random.key(3)
    first, _ = _step(state, {"image": _images(), "label": jnp.array([0, 1, 2, 3])}, key)
    other, _ = _step(state, {"image": _images(), "label": jnp.array([9, 8, 7, 6])}, key)
    assert _leaves_equal(first, other)
    latents = jax.random.normal(jax.random.key(2), (BATCH, state.latent_dim))
    np.testing.assert_array_equal(sample(first, latents), sample(first, latents, [5, 5, 5, 5]))
