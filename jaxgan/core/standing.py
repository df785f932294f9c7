"""Standing statistics (Brock et al. 2019, BigGAN): BatchNorm statistics recomputed afterwards.

Training keeps the EMA generator's BatchNorm statistics as running averages of its
activations on each step's latents (`jaxgan.core.step`), so they mix weights from many
steps back. Standing statistics belong to the final EMA weights alone: the generator runs
in training mode (every BatchNorm normalising with its batch's statistics) over M fresh
batches of latents, and each layer's batch mean and batch variance are averaged over the
M batches (a plain cumulative average, not a momentum).

    state = with_standing_statistics(state, jax.random.key(0), num_batches=16)
    images = sample(state, latents)  # the EMA weights with their standing statistics

Each batch's statistics are read off flax's own running-average update,
new = m * old + (1 - m) * b, run from all-zero and from all-one statistics in one pass:
from zeros it gives (1 - m) * b, from ones m + (1 - m) * b, so the momentum m and the batch
statistic b both follow, whatever momentum a layer has.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from jaxgan.core.step import _apply_g

# The smallest 1 - momentum a layer may have: with momentum 1 a BatchNorm never updates
# its statistics, so its batch statistics cannot be read off the update.
_MIN_UPDATE_RATE = 1e-6


def _weights_and_statistics(state: Any) -> tuple[Any, Any]:
    """(the weights `sample` uses, their BatchNorm statistics): the EMA's when kept."""
    if state.g_ema:
        return state.g_ema, state.g_ema_batch_stats
    return state.g_params, state.g_batch_stats


def batch_inputs(
    state: Any, key: jax.Array, index: int | jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """The inputs of standing batch `index`: latents, labels and the dropout key.

    Batch i draws from `fold_in(key, i)` split in three: float32 latents [B, latent_dim]
    ~ N(0, 1), int32 labels [B] uniform in [0, num_classes) for a conditional state (None
    otherwise), and the key of any dropout in the generator.

    Args:
      state: a `GANState` (only its latent_dim and num_classes are read).
      key: the PRNG key of the whole computation, as given to `standing_statistics`.
      index: the batch's number, 0 to num_batches - 1.
      batch_size: B, latents per batch.

    Returns:
      (latents, labels or None, dropout key).
    """
    latent_key, label_key, dropout_key = jax.random.split(jax.random.fold_in(key, index), 3)
    latents = jax.random.normal(latent_key, (batch_size, state.latent_dim), jnp.float32)
    labels = None
    if state.num_classes:
        labels = jax.random.randint(label_key, (batch_size,), 0, state.num_classes, jnp.int32)
    return latents, labels, dropout_key


def _recover(from_zeros: jax.Array, from_ones: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(batch statistic b, 1 - m) of one layer's leaf from its updates of zeros and ones.

    The momentum is one number per layer: the mean of `from_ones - from_zeros` over the
    features averages out the rounding of each.
    """
    rate = 1.0 - jnp.mean(from_ones - from_zeros)
    return from_zeros / rate, rate


@functools.partial(jax.jit, static_argnames="batch_size", donate_argnums=0)
def _add_batch(
    totals: Any, state: Any, params: Any, key: jax.Array, index: jax.Array, batch_size: int
) -> tuple[Any, jax.Array]:
    """`totals` plus batch `index`'s statistics of every layer, and the layers' smallest
    1 - momentum (for the host to check)."""
    latents, labels, dropout_key = batch_inputs(state, key, index, batch_size)

    def update(start):
        return _apply_g(state, params, start, latents, labels, dropout_key)[1]

    # One forward pass: in training mode nothing upstream of an update reads the running
    # statistics, so vmap batches only the updates themselves.
    starts = jax.tree.map(lambda total: jnp.stack([jnp.zeros_like(total), jnp.ones_like(total)]),
                          totals)  # fmt: skip
    updated = jax.vmap(update)(starts)
    recovered = jax.tree.map(lambda pair: _recover(pair[0], pair[1]), updated)
    is_pair = lambda node: isinstance(node, tuple)  # noqa: E731
    statistics = jax.tree.map(lambda pair: pair[0], recovered, is_leaf=is_pair)
    rates = [pair[1] for pair in jax.tree.leaves(recovered, is_leaf=is_pair)]
    new_totals = jax.tree.map(jnp.add, totals, statistics)
    return new_totals, jnp.min(jnp.stack(rates))


def _check_arguments(num_batches: int, batch_size: int) -> tuple[int, int]:
    """(num_batches, batch_size) as ints; a ValueError unless both are integers >= 1."""
    for name, value in (("num_batches", num_batches), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid; allowed: an integer >= 1")
    return int(num_batches), int(batch_size)


def standing_statistics(
    state: Any, key: jax.Array, *, num_batches: int = 16, batch_size: int = 256
) -> Any:
    """BigGAN's standing statistics of the generator that `sample` uses.

    Runs the EMA weights (`state.g_ema`; `state.g_params` for a state without an EMA) in
    training mode on `num_batches` batches of fresh latents (`batch_inputs`; uniform random
    labels for a conditional state), and averages each BatchNorm layer's batch mean and
    batch variance over the batches. Each layer's statistics are those of its inputs when
    every earlier layer also normalises with its batch's statistics. The state is not
    changed; `with_standing_statistics` puts the result in place.

    Args:
      state: a `GANState` (a single GAN, not a population's stacked state).
      key: PRNG key of the latents (and labels); batch i uses `fold_in(key, i)`.
      num_batches: M, batches averaged over, >= 1.
      batch_size: latents per batch, >= 1 (BigGAN's batch statistics are per batch, so
        this is the batch size whose statistics are averaged).

    Returns:
      A pytree with the structure and dtypes of `state.g_ema_batch_stats` (of
      `state.g_batch_stats` for a state without an EMA); that tree itself, unchanged, for a
      generator without BatchNorm.

    Raises:
      ValueError: `num_batches` or `batch_size` is not an integer >= 1, or a BatchNorm
        layer has momentum 1 (its statistics never update).
    """
    num_batches, batch_size = _check_arguments(num_batches, batch_size)
    params, template = _weights_and_statistics(state)
    if not jax.tree.leaves(template):
        return template
    totals = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, jnp.float32), template)
    for index in range(num_batches):
        totals, smallest_rate = _add_batch(totals, state, params, key, jnp.int32(index), batch_size)
        if index == 0 and not float(smallest_rate) >= _MIN_UPDATE_RATE:
            raise ValueError(
                f"a BatchNorm layer of the generator has momentum {1 - float(smallest_rate)}; "
                "allowed: momentum < 1 (with momentum 1 its statistics never update)"
            )
    return jax.tree.map(
        lambda total, leaf: (total / num_batches).astype(leaf.dtype), totals, template
    )


def with_standing_statistics(state: Any, key: jax.Array, **kwargs: Any) -> Any:
    """`state` with standing statistics in place of the tracked ones, for `sample`.

    Replaces `g_ema_batch_stats` (`g_batch_stats` for a state without an EMA, whose
    generator `sample` then uses) with `standing_statistics(state, key, **kwargs)`.

    Args:
      state: a `GANState`.
      key: PRNG key of the latents, see `standing_statistics`.
      **kwargs: `num_batches` and `batch_size`, see `standing_statistics`.

    Returns:
      The new `GANState`; every other field is `state`'s.

    Raises:
      ValueError: see `standing_statistics`.
    """
    statistics = standing_statistics(state, key, **kwargs)
    if state.g_ema:
        return state.replace(g_ema_batch_stats=statistics)
    return state.replace(g_batch_stats=statistics)
