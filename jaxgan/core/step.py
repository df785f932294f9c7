"""One GAN update and one epoch of them: pure, undecorated, jittable.

Nothing here does I/O or holds global state. `train_step` and `train_epoch` are
undecorated; callers apply `jax.jit` (with `donate_argnums=0`) themselves.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgan.core.augment import diff_augment
from jaxgan.core.batches import Batch, as_batch, batch_to_float, epoch_batches
from jaxgan.core.regularizers import r1_penalty
from jaxgan.core.sharding import split_batch
from jaxgan.core.state import GANState
from jaxgan.models.normalization import SPECTRAL_COLLECTION
from jaxgan.objectives import CriticInputs

Metrics = dict[str, jax.Array]


# fold_in data for the key of a D-side penalty, apart from every other use of a step key.
_PENALTY_STREAM = 0x7FFFFFFF
# fold_in data of DiffAugment's keys (+0 reals, +1 fakes in D's step, +2 fakes in G's).
_AUGMENT_STREAM = 0x7FFF0000


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


def _augmenter(state: GANState, key: jax.Array):
    """DiffAugment (Zhao et al. 2020) with the state's policy: every image D sees goes
    through it, real and fake, in D's update and in G's; the identity without a policy."""
    if not state.augment:
        return lambda images, stream: images
    return lambda images, stream: diff_augment(
        images, jax.random.fold_in(key, _AUGMENT_STREAM + stream), state.augment
    )


def _d_update(state, d, real_images, fake_images, labels, keys, augment):
    """One Adam step of D on a real-only and a fake-only batch; returns (d, metrics).

    `d` is (params, {batch_stats, spectral}, opt_state); `keys` the dropout keys of the
    real and the fake pass, and the penalty key; `augment(images, stream)` DiffAugment.
    """
    d_params, d_stats, d_opt_state = d
    real_key, fake_key, penalty_key = keys
    real_images, fake_images = augment(real_images, 0), augment(fake_images, 1)

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


def _critic_batches(state: GANState, batch: Batch) -> tuple[list[jax.Array], list[Any]]:
    """The real images and labels of each D step: `d_steps` slices of the batch.

    The batch holds `d_steps * B` images; D step i takes rows [i*B, (i+1)*B) and the last
    slice also serves G's step, so each extra critic step sees fresh reals (Gulrajani et
    al. 2017, Algorithm 1). With `d_steps=1` it is the batch itself.
    """
    num = state.objective.d_steps
    images = batch["image"]
    labels = batch["label"] if state.num_classes else None
    if num == 1:
        return [images], [labels]
    if images.shape[0] % num:
        raise ValueError(
            f"with d_steps={num} a batch holds d_steps * B images; got {images.shape[0]}, "
            f"not a multiple of {num}"
        )
    size = images.shape[0] // num
    return (
        [images[i * size : (i + 1) * size] for i in range(num)],
        [None if labels is None else labels[i * size : (i + 1) * size] for i in range(num)],
    )


def _g_update(state, g_vjp, fake_images, d, labels, dropout_key, augment):
    """G's Adam step against (the updated) D on its fakes, pulled back through `g_vjp`;
    returns G's params and optimizer state, D's threaded statistics and G's metrics."""
    d_params, d_stats = d

    def g_loss_fn(images):
        images = augment(images, 2)
        logits, new_d_stats = _apply_d(state, d_params, d_stats, images, labels, dropout_key)
        loss, metrics = state.objective.g_loss(logits)
        return loss, (metrics, new_d_stats)

    (_, (g_metrics, d_stats)), image_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        fake_images
    )
    (g_grads,) = g_vjp(image_grads)
    g_updates, g_opt_state = state.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    return optax.apply_updates(state.g_params, g_updates), g_opt_state, d_stats, g_metrics


def _update_ema(state: GANState, g_params, latents, labels, key):
    """The EMA of G's weights (after `ema_start` steps) and its own BatchNorm statistics,
    from a forward pass of the averaged weights on this step's latents."""
    if not state.ema_decay:
        return state.g_ema, state.g_ema_batch_stats
    rate = jnp.where(state.step < state.ema_start, 1.0, 1.0 - state.ema_decay)
    g_ema = optax.incremental_update(g_params, state.g_ema, step_size=rate)
    stats = state.g_ema_batch_stats
    if stats:
        _, stats = _apply_g(state, g_ema, stats, latents, labels, key)
        stats = jax.lax.stop_gradient(stats)
    return g_ema, stats


def _extra_critic_steps(state, d, real_batches, label_batches, step_key):
    """D's first `d_steps - 1` updates, each on its own reals and fresh fakes (own z and
    dropout keys); returns D and G's BatchNorm statistics after them."""
    g_batch_stats = state.g_batch_stats
    for extra in range(state.objective.d_steps - 1):
        keys = jax.random.split(jax.random.fold_in(step_key, extra + 1), 4)
        latent_shape = (real_batches[extra].shape[0], state.latent_dim)
        latents = split_batch(jax.random.normal(keys[0], latent_shape, jnp.float32))
        labels = label_batches[extra]
        fake_images, g_batch_stats = _apply_g(
            state, state.g_params, g_batch_stats, latents, labels, keys[0]
        )
        augment = _augmenter(state, keys[1])
        d, _ = _d_update(state, d, real_batches[extra], fake_images, labels, keys[1:], augment)
    return d, g_batch_stats


def train_step(state: GANState, batch: Batch, key: jax.Array) -> tuple[GANState, Metrics]:
    """One GAN update: `objective.d_steps` D steps, then one G step.

    Order: each extra critic step (when `d_steps > 1`) draws its own z and updates D on
    its own slice of real images (see below) and a fresh fake batch. Then (1) G
    generates one fake batch G(z) in training mode; (2) D takes one Adam step on a
    real-only batch and that fake-only batch, with G held fixed; (3) G takes one Adam step
    against the *updated* D on the same G(z) (as the PyTorch DCGAN reference does); (4)
    the EMA of G's weights is updated, and its own BatchNorm statistics from a forward
    pass of the averaged weights. BatchNorm statistics (and D's spectral-norm state) are
    threaded through every forward pass in that order. The losses are the objective's;
    an R1 penalty on reals is added to D's loss when `r1_gamma > 0`. A conditional pair
    generates with the real batch's labels, and D judges the fakes with those labels.
    With a DiffAugment policy every image D sees is augmented first.

    Randomness is derived from `key` and `state.step`, so the same key may be passed at
    every step: noise and dropout differ from step to step and are reproducible.

    Args:
      state: the current `GANState`.
      batch: {"image": float [B, H, W, C] in [-1, 1], "label": int32 [B] in
        [0, num_classes)}; the label is needed by conditional models only. A bare image
        array is accepted as {"image": array}. With `d_steps > 1` the batch holds
        `d_steps * B` images: D step i takes rows [i*B, (i+1)*B), the last D step and
        G's step the last B.
      key: a base PRNG key.

    Returns:
      The new state and a flat dict of float32 scalars: d_loss, g_loss and the
      objective's other keys (e.g. d_real, d_fake, d_real_acc, d_fake_acc), from the
      last D step, measured before its update.
    """
    real_batches, label_batches = _critic_batches(state, as_batch(batch))
    step_key = jax.random.fold_in(key, state.step)
    latent_key, real_drop_key, fake_drop_key, g_drop_key = jax.random.split(step_key, 4)
    penalty_key = jax.random.fold_in(step_key, _PENALTY_STREAM)
    latent_shape = (real_batches[-1].shape[0], state.latent_dim)
    d = (state.d_params, {"batch_stats": state.d_batch_stats}, state.d_opt_state)
    if state.d_spectral:
        d[1][SPECTRAL_COLLECTION] = state.d_spectral
    d, g_batch_stats = _extra_critic_steps(state, d, real_batches, label_batches, step_key)

    # Latents drawn here get no input sharding: split them over the mesh like the batch.
    latents = split_batch(jax.random.normal(latent_key, latent_shape, jnp.float32))
    labels = label_batches[-1]

    def g_forward(g_params):
        return _apply_g(state, g_params, g_batch_stats, latents, labels, latent_key)

    # One generator forward serves both updates; its VJP is pulled back after D's update,
    # so G's gradient is taken against the updated D without a second forward pass.
    fake_images, g_vjp, g_batch_stats = jax.vjp(g_forward, state.g_params, has_aux=True)
    augment = _augmenter(state, step_key)
    d, d_metrics = _d_update(
        state, d, real_batches[-1], fake_images, labels,
        (real_drop_key, fake_drop_key, penalty_key), augment,
    )  # fmt: skip
    d_params, d_stats, d_opt_state = d

    g_params, g_opt_state, d_stats, g_metrics = _g_update(
        state, g_vjp, fake_images, (d_params, d_stats), labels, g_drop_key, augment
    )
    g_ema, g_ema_batch_stats = _update_ema(state, g_params, latents, labels, latent_key)

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
        g_ema_batch_stats=g_ema_batch_stats,
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
