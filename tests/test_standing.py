"""Standing statistics: the EMA generator's BatchNorm statistics recomputed after training."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxgan.core import create_state, sample, standing_statistics, train_step
from jaxgan.core import with_standing_statistics as with_standing
from jaxgan.core.standing import batch_inputs

IMAGE_SHAPE = (8, 8, 1)
BATCH = 16
KEY = jax.random.key(7)


def _config(**fields):
    from jaxgan.training.config import base_config, set_fields

    return set_fields(base_config(), **{"latent_dim": 8, "g_width": 4, "d_width": 4, **fields})


def _batch(seed: int, num_classes: int = 10):
    keys = jax.random.split(jax.random.key(seed))
    images = jax.random.uniform(keys[0], (4, *IMAGE_SHAPE), minval=-1, maxval=1)
    return {"image": images, "label": jax.random.randint(keys[1], (4,), 0, num_classes)}


def _trained(config, steps: int = 3):
    """A tiny state after `steps` train steps: g_ema, g_params and the tracked stats differ."""
    state = create_state(config, jax.random.key(0), image_shape=IMAGE_SHAPE)
    step = jax.jit(train_step)
    for index in range(steps):
        state, _ = step(state, _batch(index), jax.random.key(1))
    return state


@pytest.fixture(scope="module")
def ema_state():
    return _trained(_config(ema_decay=0.9))


@pytest.fixture(scope="module")
def conditional_state():
    return _trained(_config(ema_decay=0.9, conditional=True))


def _shifted(tree, scale=1.3, shift=0.05):
    return jax.tree.map(lambda leaf: leaf * scale + shift, tree)


def _batch_norm_inputs(module, params, latents, labels) -> dict[tuple[str, ...], np.ndarray]:
    """{path of each nn.BatchNorm: its input} in G's training-mode forward pass."""
    inputs = {}

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            inputs[context.module.path] = np.asarray(args[0], np.float64)
        return next_fun(*args, **kwargs)

    variables = {"params": params}
    with nn.intercept_methods(record):
        module.apply(variables, latents, labels, train=True, mutable=["batch_stats"],
                     rngs={"dropout": jax.random.key(0)})  # fmt: skip
    assert inputs, "the generator has no nn.BatchNorm"
    return inputs


def _expected(state, params, key, num_batches, batch_size=BATCH, module=None):
    """Standing statistics computed independently: each BatchNorm input's mean and (biased)
    variance over all but the feature axis, in float64, averaged over the batches."""
    totals = {}
    for index in range(num_batches):
        latents, labels, _ = batch_inputs(state, key, index, batch_size)
        inputs = _batch_norm_inputs(module or state.generator, params, latents, labels)
        for path, values in inputs.items():
            axes = tuple(range(values.ndim - 1))
            for name, value in (("mean", values.mean(axes)), ("var", values.var(axes))):
                totals[(*path, name)] = totals.get((*path, name), 0.0) + value / num_batches
    return traverse_util.unflatten_dict(totals)


def _assert_statistics_close(got, want, rtol=1e-4, atol=1e-5):
    got_flat, want_flat = traverse_util.flatten_dict(got), traverse_util.flatten_dict(want)
    assert sorted(got_flat) == sorted(want_flat)
    for path, value in want_flat.items():
        np.testing.assert_allclose(got_flat[path], value, rtol=rtol, atol=atol, err_msg=str(path))


def _assert_trees_differ(tree_a, tree_b, minimum=1e-3):
    gaps = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(tree_a),
                                                          jax.tree.leaves(tree_b))]  # fmt: skip
    assert max(gaps) > minimum, gaps


@pytest.mark.parametrize("num_batches", [1, 3])
def test_standing_statistics_are_the_batch_statistics_averaged_over_the_batches(
    ema_state, num_batches
):
    # One batch: each layer's own batch mean and variance, with every earlier layer also
    # in training mode. Three: the average of the three batches' statistics. Catches
    # inference mode upstream, a sum or last batch instead of the average, the online
    # weights used in place of the EMA's, and a momentum-weighted update left unscaled.
    got = standing_statistics(ema_state, KEY, num_batches=num_batches, batch_size=BATCH)
    _assert_statistics_close(got, _expected(ema_state, ema_state.g_ema, KEY, num_batches))
    assert jax.tree.structure(got) == jax.tree.structure(ema_state.g_ema_batch_stats)
    for leaf, template in zip(jax.tree.leaves(got), jax.tree.leaves(ema_state.g_ema_batch_stats)):
        assert leaf.dtype == template.dtype and leaf.shape == template.shape


def test_batches_differ_and_the_key_picks_the_latents(ema_state):
    # Catches every batch drawn from one key (then averaging changes nothing) and a key
    # that is ignored.
    one = standing_statistics(ema_state, KEY, num_batches=1, batch_size=BATCH)
    three = standing_statistics(ema_state, KEY, num_batches=3, batch_size=BATCH)
    other_key = standing_statistics(ema_state, jax.random.key(8), num_batches=1, batch_size=BATCH)
    _assert_trees_differ(one, three)
    _assert_trees_differ(one, other_key)


def test_standing_statistics_depend_on_g_ema_and_not_on_g_params(ema_state):
    base = standing_statistics(ema_state, KEY, num_batches=2, batch_size=BATCH)
    other_online = standing_statistics(
        ema_state.replace(g_params=_shifted(ema_state.g_params)), KEY, num_batches=2,
        batch_size=BATCH,
    )  # fmt: skip
    other_ema = standing_statistics(
        ema_state.replace(g_ema=_shifted(ema_state.g_ema)), KEY, num_batches=2, batch_size=BATCH
    )
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(other_online)):
        np.testing.assert_array_equal(a, b)
    _assert_trees_differ(base, other_ema)


def test_sampling_uses_the_standing_statistics_in_place_of_the_tracked_ones(ema_state):
    state = with_standing(ema_state, KEY, num_batches=2, batch_size=BATCH)
    standing = standing_statistics(ema_state, KEY, num_batches=2, batch_size=BATCH)
    for a, b in zip(jax.tree.leaves(state.g_ema_batch_stats), jax.tree.leaves(standing)):
        np.testing.assert_array_equal(a, b)
    for name in ("g_params", "g_batch_stats", "g_ema"):  # Nothing else changes.
        for a, b in zip(jax.tree.leaves(getattr(state, name)),
                        jax.tree.leaves(getattr(ema_state, name))):  # fmt: skip
            np.testing.assert_array_equal(a, b)
    latents = jax.random.normal(jax.random.key(3), (8, 8))
    images = sample(state, latents)
    np.testing.assert_allclose(
        images,
        state.generator.apply(
            {"params": ema_state.g_ema, "batch_stats": standing}, latents, train=False
        ),
        atol=1e-6,
    )
    assert float(jnp.max(jnp.abs(images - sample(ema_state, latents)))) > 1e-3


def test_a_state_without_ema_gets_standing_statistics_of_its_online_generator():
    state = _trained(_config(), steps=1)
    assert not state.g_ema and not state.g_ema_batch_stats
    got = standing_statistics(state, KEY, num_batches=2, batch_size=BATCH)
    _assert_statistics_close(got, _expected(state, state.g_params, KEY, 2))
    replaced = with_standing(state, KEY, num_batches=2, batch_size=BATCH)
    assert replaced.g_ema_batch_stats == {}
    for a, b in zip(jax.tree.leaves(replaced.g_batch_stats), jax.tree.leaves(got)):
        np.testing.assert_array_equal(a, b)


def test_a_generator_without_batch_norm_is_returned_unchanged():
    state = create_state(
        _config(model="mlp", ema_decay=0.9),
        jax.random.key(0),
        image_shape=IMAGE_SHAPE,
    )
    assert standing_statistics(state, KEY) is state.g_ema_batch_stats
    assert with_standing(state, KEY).g_ema_batch_stats == {}


def test_a_conditional_dcgan_draws_labels_of_every_class(conditional_state):
    state = conditional_state
    _, labels, _ = batch_inputs(state, KEY, 0, 64)
    assert labels.dtype == jnp.int32 and 0 <= int(labels.min()) and int(labels.max()) < 10
    assert len(np.unique(np.asarray(labels))) > 5
    got = standing_statistics(state, KEY, num_batches=2, batch_size=BATCH)
    _assert_statistics_close(got, _expected(state, state.g_ema, KEY, 2))
    images = sample(with_standing(state, KEY, num_batches=2, batch_size=BATCH),
                    jnp.zeros((4, 8)), jnp.arange(4))  # fmt: skip
    assert images.shape == (4, *IMAGE_SHAPE) and bool(jnp.all(jnp.isfinite(images)))


def test_a_conditional_resnet_with_class_conditional_batch_norm():
    config = _config(model="resnet", g_width=8, d_width=8, d_blocks=2,
                     embed_dim=8, ema_decay=0.9, conditional=True)  # fmt: skip
    state = create_state(config, jax.random.key(0), image_shape=(28, 28, 1))
    state = state.replace(g_ema=_shifted(state.g_params, scale=1.1, shift=0.01))
    got = standing_statistics(state, KEY, num_batches=2, batch_size=8)
    _assert_statistics_close(got, _expected(state, state.g_ema, KEY, 2, batch_size=8))


class _TinyGenerator(nn.Module):
    """Dense, BatchNorm(momentum), ReLU, Dense, BatchNorm(momentum), tanh -> [B, 8, 8, 1]."""

    momentum: float

    @nn.compact
    def __call__(self, latents, labels=None, *, train: bool):
        del labels
        hidden = nn.Dense(16)(latents)
        hidden = nn.relu(
            nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(hidden)
        )
        hidden = nn.Dense(64)(hidden) * 3.0 + 2.0  # A mean and spread far from 0 and 1.
        hidden = nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(hidden)
        return jnp.tanh(hidden).reshape(-1, *IMAGE_SHAPE)


def _tiny_state(ema_state, momentum: float):
    """`ema_state` with `_TinyGenerator(momentum)` as its generator (online and EMA)."""
    generator = _TinyGenerator(momentum)
    variables = generator.init(jax.random.key(2), jnp.zeros((2, 8)), train=False)
    return ema_state.replace(
        generator=generator, g_params=variables["params"], g_ema=variables["params"],
        g_batch_stats=variables["batch_stats"], g_ema_batch_stats=variables["batch_stats"],
    )  # fmt: skip


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 0.99])
def test_any_batch_norm_momentum_gives_the_same_statistics(ema_state, momentum):
    # Catches a momentum of 0.9 assumed when reading the batch statistics off the update.
    state = _tiny_state(ema_state, momentum)
    got = standing_statistics(state, KEY, num_batches=2, batch_size=BATCH)
    _assert_statistics_close(got, _expected(state, state.g_ema, KEY, 2))


def test_a_batch_norm_that_never_updates_is_an_error(ema_state):
    state = _tiny_state(ema_state, 1.0)
    with pytest.raises(ValueError, match="momentum < 1"):
        standing_statistics(state, KEY, num_batches=1, batch_size=BATCH)


@pytest.mark.parametrize(
    "arguments",
    [{"num_batches": 0}, {"num_batches": -2}, {"num_batches": 2.0}, {"num_batches": True},
     {"batch_size": 0}, {"batch_size": "8"}],
)  # fmt: skip
def test_bad_arguments_are_errors_that_say_what_is_allowed(ema_state, arguments):
    name = next(iter(arguments))
    with pytest.raises(ValueError, match=f"{name}=.*allowed: an integer >= 1"):
        standing_statistics(ema_state, KEY, **arguments)
    with pytest.raises(ValueError, match=f"{name}="):
        with_standing(ema_state, KEY, **arguments)


def test_numpy_integers_are_accepted(ema_state):
    got = standing_statistics(ema_state, KEY, num_batches=np.int64(1), batch_size=np.int32(BATCH))
    want = standing_statistics(ema_state, KEY, num_batches=1, batch_size=BATCH)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
