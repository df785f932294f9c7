"""Pure training functions: state creation, one GAN step, one epoch, sampling.

Nothing here does I/O or holds global state. `train_step` and `train_epoch` are
undecorated; callers apply `jax.jit` (with `donate_argnums=0`) themselves.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxgan import losses
from jaxgan.models import build_models

Metrics = dict[str, jax.Array]


class GANState(struct.PyTreeNode):
    """Everything that changes during training, plus the static modules and optimizers.

    Attributes:
      step: int32 scalar, number of completed `train_step` calls.
      g_params, g_batch_stats, g_opt_state: the generator's parameters, BatchNorm
        statistics (an empty dict for models without BatchNorm) and Adam state.
      d_params, d_batch_stats, d_opt_state: the same for the discriminator.
      generator, discriminator: the flax modules (static).
      g_tx, d_tx: the optax optimizers (static).
      latent_dim: size of the generator's input noise (static).
    """

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    g_opt_state: Any
    d_params: Any
    d_batch_stats: Any
    d_opt_state: Any
    generator: nn.Module = struct.field(pytree_node=False)
    discriminator: nn.Module = struct.field(pytree_node=False)
    g_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    latent_dim: int = struct.field(pytree_node=False)


@functools.cache
def adam(learning_rate: float, b1: float, b2: float) -> optax.GradientTransformation:
    """Adam, memoised so that equal settings give the same (static) object.

    States built by separate `create_state` calls then share one tree structure: they can
    be stacked for `jax.vmap`, and a jitted step compiled for one serves the others.
    """
    return optax.adam(learning_rate, b1=b1, b2=b2)


def create_state(config: Any, key: jax.Array) -> GANState:
    """Initialises both networks and their Adam optimizers.

    Args:
      config: any object with the attributes `model`, `g_width`, `d_width`,
        `dropout_rate`, `dtype`, `latent_dim`, `learning_rate`, `b1`, `b2`
        (an `ml_collections.ConfigDict` from `experiments/configs/` has them).
      key: PRNG key for the initial parameters.
    """
    generator, discriminator = build_models(
        config.model,
        g_width=config.g_width,
        d_width=config.d_width,
        dropout_rate=config.dropout_rate,
        dtype=config.dtype,
    )
    g_tx = d_tx = adam(float(config.learning_rate), float(config.b1), float(config.b2))

    # One compiled initialisation instead of hundreds of small eager ops.
    @jax.jit
    def init(key):
        g_key, d_key = jax.random.split(key)
        latents = jnp.zeros((2, config.latent_dim), jnp.float32)
        g_variables = generator.init(g_key, latents, train=False)
        images = generator.apply(g_variables, latents, train=False)
        d_variables = discriminator.init(d_key, images, train=False)
        return g_variables, d_variables

    g_variables, d_variables = init(key)
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_variables["params"],
        g_batch_stats=g_variables.get("batch_stats", {}),
        g_opt_state=g_tx.init(g_variables["params"]),
        d_params=d_variables["params"],
        d_batch_stats=d_variables.get("batch_stats", {}),
        d_opt_state=d_tx.init(d_variables["params"]),
        generator=generator,
        discriminator=discriminator,
        g_tx=g_tx,
        d_tx=d_tx,
        latent_dim=config.latent_dim,
    )


def _apply_train(module: nn.Module, params, batch_stats, inputs, dropout_key):
    """Runs a module in training mode and returns (outputs, new BatchNorm statistics)."""
    outputs, updates = module.apply(
        {"params": params, "batch_stats": batch_stats},
        inputs,
        train=True,
        rngs={"dropout": dropout_key},
        mutable=["batch_stats"],
    )
    return outputs, updates.get("batch_stats", {})


def _accuracy(logits: jax.Array, is_real: bool) -> jax.Array:
    """Fraction of logits on the correct side of probability 0.5."""
    return jnp.mean((logits > 0) if is_real else (logits <= 0)).astype(jnp.float32)


def train_step(state: GANState, real_images: jax.Array, key: jax.Array) -> tuple[GANState, Metrics]:
    """One alternating GAN update with binary cross-entropy.

    Order: (1) G generates one fake batch G(z) in training mode; (2) D takes one Adam
    step on a real-only batch and that fake-only batch, `BCE(D(x), 1) + BCE(D(G(z)), 0)`,
    with G held fixed; (3) G takes one Adam step on the non-saturating loss
    `BCE(D(G(z)), 1)` against the *updated* D, on the same G(z) (as the PyTorch DCGAN
    reference does). BatchNorm statistics are threaded through every forward pass in
    that order.

    Randomness is derived from `key` and `state.step`, so the same key may be passed at
    every step: noise and dropout differ from step to step and are reproducible.

    Args:
      state: the current `GANState`.
      real_images: float [B, H, W, C] in [-1, 1].
      key: a base PRNG key.

    Returns:
      The new state and a flat dict of float32 scalars: d_loss, g_loss, d_real and d_fake
      (mean D probability on the real and on the fake batch, before D's update), and
      d_real_acc, d_fake_acc (D's accuracy on each batch at a 0.5 threshold).
    """
    step_key = jax.random.fold_in(key, state.step)
    latent_key, real_drop_key, fake_drop_key, g_drop_key = jax.random.split(step_key, 4)
    batch_size = real_images.shape[0]
    latents = jax.random.normal(latent_key, (batch_size, state.latent_dim), jnp.float32)

    def g_forward(g_params):
        return _apply_train(state.generator, g_params, state.g_batch_stats, latents, latent_key)

    # One generator forward serves both updates; its VJP is pulled back after D's update,
    # so G's gradient is taken against the updated D without a second forward pass.
    fake_images, g_vjp, g_batch_stats = jax.vjp(g_forward, state.g_params, has_aux=True)

    def d_loss_fn(d_params):
        real_logits, d_stats = _apply_train(
            state.discriminator, d_params, state.d_batch_stats, real_images, real_drop_key
        )
        fake_logits, d_stats = _apply_train(
            state.discriminator, d_params, d_stats, fake_images, fake_drop_key
        )
        loss = losses.discriminator_loss(real_logits, fake_logits)
        return loss, (real_logits, fake_logits, d_stats)

    (d_loss, (real_logits, fake_logits, d_batch_stats)), d_grads = jax.value_and_grad(
        d_loss_fn, has_aux=True
    )(state.d_params)
    d_updates, d_opt_state = state.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    def g_loss_fn(images):
        logits, new_d_stats = _apply_train(
            state.discriminator, d_params, d_batch_stats, images, g_drop_key
        )
        return losses.generator_loss(logits), new_d_stats

    (g_loss, d_batch_stats), image_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(fake_images)
    (g_grads,) = g_vjp(image_grads)
    g_updates, g_opt_state = state.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)

    new_state = state.replace(
        step=state.step + 1,
        g_params=g_params,
        g_batch_stats=g_batch_stats,
        g_opt_state=g_opt_state,
        d_params=d_params,
        d_batch_stats=d_batch_stats,
        d_opt_state=d_opt_state,
    )
    metrics = {
        "d_loss": d_loss,
        "g_loss": g_loss,
        "d_real": jax.nn.sigmoid(real_logits).mean(),
        "d_fake": jax.nn.sigmoid(fake_logits).mean(),
        "d_real_acc": _accuracy(real_logits, True),
        "d_fake_acc": _accuracy(fake_logits, False),
    }
    return new_state, metrics


def images_to_float(images: jax.Array) -> jax.Array:
    """uint8 [..., H, W] or [..., H, W, 1] -> float32 [..., H, W, 1] in [-1, 1]."""
    if images.shape[-1] != 1:
        images = images[..., None]
    return images.astype(jnp.float32) / 127.5 - 1.0


def epoch_batches(images: jax.Array, key: jax.Array, batch_size: int) -> jax.Array:
    """Shuffles uint8 images [N, H, W] on device into [N // batch_size, batch_size, H, W].

    The last incomplete batch is dropped.
    """
    num_batches = images.shape[0] // batch_size
    order = jax.random.permutation(key, images.shape[0])[: num_batches * batch_size]
    return images[order].reshape(num_batches, batch_size, *images.shape[1:])


def train_steps(state: GANState, batches: jax.Array, key: jax.Array) -> tuple[GANState, Metrics]:
    """Runs `train_step` over uint8 batches [S, B, H, W] with `lax.scan`.

    Returns the new state and metrics stacked per step, each [S].
    """

    def body(carry: GANState, batch: jax.Array):
        return train_step(carry, images_to_float(batch), key)

    return jax.lax.scan(body, state, batches)


def split_epoch_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Splits an epoch's key into (shuffle_key, step_key)."""
    shuffle_key, step_key = jax.random.split(key)
    return shuffle_key, step_key


def train_epoch(
    state: GANState, images: jax.Array, key: jax.Array, *, batch_size: int
) -> tuple[GANState, Metrics]:
    """One epoch (shuffle, then every full batch) as a single `lax.scan`.

    Bind `batch_size` before jitting: `jax.jit(functools.partial(train_epoch,
    batch_size=128), donate_argnums=0)`.

    Args:
      state: the current state.
      images: uint8 [N, H, W], ideally already on the device.
      key: this epoch's PRNG key (e.g. `jax.random.fold_in(seed_key, epoch)`).
      batch_size: static batch size.

    Returns:
      The new state and per-step metrics, each [N // batch_size].
    """
    shuffle_key, step_key = split_epoch_key(key)
    return train_steps(state, epoch_batches(images, shuffle_key, batch_size), step_key)


@jax.jit
def _sample(state: GANState, latents: jax.Array, labels: jax.Array | None) -> jax.Array:
    variables = {"params": state.g_params, "batch_stats": state.g_batch_stats}
    return state.generator.apply(variables, latents, train=False)


def sample(state: GANState, latents: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """Generates images [B, H, W, C] in [-1, 1] from latents [B, latent_dim].

    Runs the generator in inference mode (BatchNorm running statistics, no dropout).
    `labels` (int [B]) select the classes of a conditional model; others ignore them.
    """
    return _sample(state, latents, labels)


@jax.jit
def _discriminate(state: GANState, images: jax.Array, labels: jax.Array | None) -> jax.Array:
    variables = {"params": state.d_params, "batch_stats": state.d_batch_stats}
    return state.discriminator.apply(variables, images, train=False)


def discriminate(
    state: GANState, images: jax.Array, labels: jax.Array | None = None
) -> jax.Array:
    """D's logits [B] in inference mode for float images [B, H, W, C] in [-1, 1].

    `labels` (int [B]) are used by a conditional discriminator; others ignore them.
    """
    return _discriminate(state, images, labels)


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter tree."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
