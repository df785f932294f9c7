"""One GAN update and one epoch of them: pure, undecorated, jittable.

Nothing here does I/O or holds global state. `train_step` and `train_epoch` are
undecorated; callers apply `jax.jit` (with `donate_argnums=0`) themselves.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgan.core.batches import Batch, as_batch, batch_to_float, epoch_batches
from jaxgan.core.regularizers import r1_penalty
from jaxgan.core.sharding import split_batch
from jaxgan.core.state import GANState
from jaxgan.models.normalization import SPECTRAL_COLLECTION
from jaxgan.objectives import CriticInputs

Metrics = dict[str, jax.Array]


# fold_in data for the key of a D-side penalty, apart from every other use of a step key.
_PENALTY_STREAM = 0x7FFFFFFF


def _apply_g(state: GANState, g_params, g_batch_stats, latents, labels, dropout_key):
    """G in training mode: (images, new BatchNorm statistics)."""
    images, updates = state.generator.apply(
        {"params": g_params, "batch_stats": g_batch_stats},
        latents,
        labels,
        train=True,
        rngs={"dropout": dropout_key},
        mutable=["batch_stats"],
    )
    return images, updates.get("batch_stats", {})


def _apply_d(state: GANState, d_params, d_stats, images, labels, dropout_key):
    """D in training mode: (logits, new {batch_stats, spectral} state)."""
    logits, updates = state.discriminator.apply(
        {"params": d_params, **d_stats},
        images,
        labels,
        train=True,
        rngs={"dropout": dropout_key},
        mutable=["batch_stats", SPECTRAL_COLLECTION],
    )
    return logits, {name: updates.get(name, {}) for name in d_stats}


def _d_update(state, d, real_images, fake_images, labels, keys):
    """One Adam step of D on a real-only and a fake-only batch; returns (d, metrics).

    `d` is (params, {batch_stats, spectral}, opt_state); `keys` the dropout keys of the
    real and the fake pass, and the penalty key.
    """
    d_params, d_stats, d_opt_state = d
    real_key, fake_key, penalty_key = keys

    def d_loss_fn(d_params):
        real_logits, stats = _apply_d(state, d_params, d_stats, real_images, labels, real_key)
        fake_logits, stats = _apply_d(state, d_params, stats, fake_images, labels, fake_key)

        def critic(images):  # For penalties: D's BatchNorm/spectral updates are discarded.
            return _apply_d(state, d_params, stats, images, labels, penalty_key)[0]

        inputs = CriticInputs(critic, real_images, fake_images, penalty_key)
        loss, metrics = state.objective.d_loss(real_logits, fake_logits, inputs)
        if state.r1_gamma:
            # Lazy R1 (StyleGAN2): every r1_every steps, scaled up by r1_every.
            penalty = jax.lax.cond(
                state.step % state.r1_every == 0,
                lambda: r1_penalty(critic, real_images),
                lambda: jnp.zeros((), jnp.float32),
            )
            loss = loss + 0.5 * state.r1_gamma * state.r1_every * penalty
            metrics = {**metrics, "r1": penalty}
        return loss, (metrics, stats)

    (_, (metrics, d_stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
    d_updates, d_opt_state = state.d_tx.update(d_grads, d_opt_state, d_params)
    return (optax.apply_updates(d_params, d_updates), d_stats, d_opt_state), metrics


def train_step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
    """One GAN update: `objective.d_steps` D steps, then one G step.

    Order: each extra critic step (when `d_steps > 1`) draws its own z and updates D on
    the real batch and a fresh fake batch. Then (1) G generates one fake batch G(z) in
    training mode; (2) D takes one Adam step on a real-only batch and that fake-only
    batch, with G held fixed; (3) G takes one Adam step against the *updated* D on the
    same G(z) (as the PyTorch DCGAN reference does); (4) the EMA of G's weights is
    updated. BatchNorm statistics (and D's spectral-norm state) are threaded through
    every forward pass in that order. The losses are the objective's; an R1 penalty on
    reals is added to D's loss when `r1_gamma > 0`. A conditional pair generates with
    the real batch's labels.

    Randomness is derived from `key` and `state.step`, so the same key may be passed at
    every step: noise and dropout differ from step to step and are reproducible.

    Args:
      state: the current `GANState`.
      batch: {"image": float [B, H, W, C] in [-1, 1], "label": int32 [B] in
        [0, num_classes)}; the label is needed by conditional models only. A bare image
        array is accepted as {"image": array}.
      key: a base PRNG key.

    Returns:
      The new state and a flat dict of float32 scalars: d_loss, g_loss and the
      objective's other keys (e.g. d_real, d_fake, d_real_acc, d_fake_acc), from the
      last D step, measured before its update.
    """
    batch = as_batch(batch)
    real_images = batch["image"]
    labels = batch["label"] if state.num_classes else None
    step_key = jax.random.fold_in(key, state.step)
    latent_key, real_drop_key, fake_drop_key, g_drop_key = jax.random.split(step_key, 4)
    penalty_key = jax.random.fold_in(step_key, _PENALTY_STREAM)
    latent_shape = (real_images.shape[0], state.latent_dim)
    d = (state.d_params, {"batch_stats": state.d_batch_stats}, state.d_opt_state)
    if state.d_spectral:
        d[1][SPECTRAL_COLLECTION] = state.d_spectral
    g_batch_stats = state.g_batch_stats

    for extra in range(state.objective.d_steps - 1):
        keys = jax.random.split(jax.random.fold_in(step_key, extra + 1), 4)
        latents = split_batch(jax.random.normal(keys[0], latent_shape, jnp.float32))
        fake_images, g_batch_stats = _apply_g(
            state, state.g_params, g_batch_stats, latents, labels, keys[0]
        )
        d, _ = _d_update(state, d, real_images, fake_images, labels, keys[1:])

    # Latents drawn here get no input sharding: split them over the mesh like the batch.
    latents = split_batch(jax.random.normal(latent_key, latent_shape, jnp.float32))

    def g_forward(g_params):
        return _apply_g(state, g_params, g_batch_stats, latents, labels, latent_key)

    # One generator forward serves both updates; its VJP is pulled back after D's update,
    # so G's gradient is taken against the updated D without a second forward pass.
    fake_images, g_vjp, g_batch_stats = jax.vjp(g_forward, state.g_params, has_aux=True)
    d, d_metrics = _d_update(
        state, d, real_images, fake_images, labels, (real_drop_key, fake_drop_key, penalty_key)
    )
    d_params, d_stats, d_opt_state = d

    def g_loss_fn(images):
        logits, new_d_stats = _apply_d(state, d_params, d_stats, images, labels, g_drop_key)
        loss, metrics = state.objective.g_loss(logits)
        return loss, (metrics, new_d_stats)

    (_, (g_metrics, d_stats)), image_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        fake_images
    )
    (g_grads,) = g_vjp(image_grads)
    g_updates, g_opt_state = state.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    g_ema = state.g_ema
    if state.ema_decay:
        g_ema = optax.incremental_update(g_params, g_ema, step_size=1.0 - state.ema_decay)

    new_state = state.replace(
        step=state.step + 1,
        g_params=g_params,
        g_batch_stats=g_batch_stats,
        g_opt_state=g_opt_state,
        d_params=d_params,
        d_batch_stats=d_stats["batch_stats"],
        d_opt_state=d_opt_state,
        d_spectral=d_stats.get(SPECTRAL_COLLECTION, state.d_spectral),
        g_ema=g_ema,
    )
    metrics = {"d_loss": d_metrics["d_loss"], "g_loss": g_metrics["g_loss"]}
    metrics.update({**d_metrics, **g_metrics})
    return new_state, metrics


def train_steps(state: GANState, batches: Any, key: jax.Array) -> tuple[GANState, Metrics]:
    """Runs `train_step` over uint8 batches ({"image": [S, B, H, W, C], "label": [S, B]}).

    One `lax.scan`. Returns the new state and metrics stacked per step, each [S].
    """

    def body(carry: GANState, batch):
        return train_step(carry, batch_to_float(as_batch(batch)), key)

    return jax.lax.scan(body, state, batches)


def split_epoch_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Splits an epoch's key into (shuffle_key, step_key)."""
    shuffle_key, step_key = jax.random.split(key)
    return shuffle_key, step_key


def train_epoch(
    state: GANState, data: Any, key: jax.Array, *, batch_size: int
) -> tuple[GANState, Metrics]:
    """One epoch (shuffle, then every full batch) as a single `lax.scan`.

    Bind `batch_size` before jitting: `jax.jit(functools.partial(train_epoch,
    batch_size=128), donate_argnums=0)`.

    Args:
      state: the current state.
      data: {"image": uint8 [N, H, W, C], "label": int32 [N]} (or the images alone),
        ideally already on the device.
      key: this epoch's PRNG key (e.g. `jax.random.fold_in(seed_key, epoch)`).
      batch_size: static batch size.

    Returns:
      The new state and per-step metrics, each [N // batch_size].
    """
    shuffle_key, step_key = split_epoch_key(key)
    return train_steps(state, epoch_batches(data, shuffle_key, batch_size), step_key)
