"""Class-conditional DCGAN: label embedding in G, projection D, label checks, labels in the step."""

from __future__ import annotations

import functools

import flax.linen as nn
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


class _Recorded(nn.Module):
    """A network that hands (inputs, labels, outputs) of each call to `_RECORDED[role]`."""

    inner: nn.Module
    role: str

    def __call__(self, inputs, labels=None, *, train):
        outputs = self.inner(inputs, labels, train=train)
        jax.debug.callback(functools.partial(_record, self.role), inputs, labels, outputs)
        return outputs


_RECORDED: dict[str, list[tuple[np.ndarray, ...]]] = {"g": [], "d": []}


def _record(role, inputs, labels, outputs) -> None:
    _RECORDED[role].append((np.asarray(inputs), np.asarray(labels), np.asarray(outputs)))


@pytest.fixture(scope="module")
def recorded_state(conditional_state):
    """`conditional_state`'s networks, each call recorded; initialised afresh."""
    state = conditional_state
    generator = _Recorded(state.generator, "g")
    discriminator = _Recorded(state.discriminator, "d")
    labels = jnp.array([0, 1])
    g_variables = jax.jit(functools.partial(generator.init, train=False))(
        jax.random.key(0), jnp.zeros((2, state.latent_dim)), labels
    )
    d_variables = jax.jit(functools.partial(discriminator.init, train=False))(
        jax.random.key(1), jnp.zeros((2, *IMAGE_SHAPE)), labels
    )
    return state.replace(
        generator=generator,
        discriminator=discriminator,
        g_params=g_variables["params"],
        g_batch_stats=g_variables["batch_stats"],
        g_opt_state=state.g_tx.init(g_variables["params"]),
        d_params=d_variables["params"],
        d_batch_stats=d_variables["batch_stats"],
        d_opt_state=state.d_tx.init(d_variables["params"]),
    )


def test_d_judges_the_fakes_with_the_labels_g_drew_them_with(recorded_state):
    # G draws the fakes with the batch's labels; D's fake pass and G's loss pass judge
    # exactly those images with exactly those labels, and D's real pass the reals with
    # theirs. Catches G and D given different (e.g. shuffled) labels for the same fakes.
    for calls in _RECORDED.values():
        calls.clear()
    labels = jnp.array([3, 1, 4, 1])
    reals = _images()
    new_state, _ = _step(recorded_state, {"image": reals, "label": labels}, jax.random.key(3))
    jax.block_until_ready(new_state)
    jax.effects_barrier()
    assert [len(_RECORDED["g"]), len(_RECORDED["d"])] == [1, 3]
    ((_, g_labels, fakes),) = _RECORDED["g"]
    np.testing.assert_array_equal(g_labels, labels)
    on_fakes = [call for call in _RECORDED["d"] if np.array_equal(call[0], fakes)]
    on_reals = [call for call in _RECORDED["d"] if np.array_equal(call[0], reals)]
    assert (len(on_fakes), len(on_reals)) == (2, 1)  # D's fake pass and G's loss pass
    for _, d_labels, _ in on_fakes + on_reals:
        np.testing.assert_array_equal(d_labels, labels)
