"""Pure training functions: state creation, one GAN step, one epoch, sampling.

Nothing here does I/O or holds global state. `train_step` and `train_epoch` are
undecorated; callers apply `jax.jit` (with `donate_argnums=0`) themselves.

A batch is a dict `{"image": float [B, H, W, C] in [-1, 1], "label": int32 [B]}`;
unconditional models ignore the label.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxgan import sharding
from jaxgan.models import build_from_config
from jaxgan.models.dcgan import SPECTRAL_COLLECTION
from jaxgan.objectives import CriticInputs, NonSaturating, Objective, build_objective

Metrics = dict[str, jax.Array]
Batch = Mapping[str, jax.Array]
# fold_in data for the key of a D-side penalty, apart from every other use of a step key.
_PENALTY_STREAM = 0x7FFFFFFF


class GANState(struct.PyTreeNode):
    """Everything that changes during training, plus the static modules and settings.

    Attributes:
      step: int32 scalar, number of completed `train_step` calls.
      g_params, g_batch_stats, g_opt_state: the generator's parameters, BatchNorm
        statistics (an empty dict for models without BatchNorm) and Adam state.
      d_params, d_batch_stats, d_opt_state: the same for the discriminator.
      d_spectral: D's spectral-normalisation state (power-iteration vectors and the
        last sigmas; an empty dict without spectral norm), kept apart from BatchNorm's.
      g_ema: an exponential moving average of `g_params` (an empty dict when
        `ema_decay` is 0); `sample` uses it when present.
      generator, discriminator: the flax modules (static).
      g_tx, d_tx: the optax optimizers (static).
      objective: the `jaxgan.objectives.Objective` (static): losses and D steps per step.
      latent_dim: size of the generator's input noise (static).
      num_classes: > 1 for a class-conditional pair, else 0 (static).
      ema_decay: decay of `g_ema` per step, 0 for none (static).
      r1_gamma, r1_every: weight of the R1 penalty on reals and its period in steps
        (static; `r1_gamma=0` turns it off).
    """

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    g_opt_state: Any
    d_params: Any
    d_batch_stats: Any
    d_opt_state: Any
    d_spectral: Any
    g_ema: Any
    generator: nn.Module = struct.field(pytree_node=False)
    discriminator: nn.Module = struct.field(pytree_node=False)
    g_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    objective: Objective = struct.field(pytree_node=False, default=NonSaturating())
    latent_dim: int = struct.field(pytree_node=False, default=100)
    num_classes: int = struct.field(pytree_node=False, default=0)
    ema_decay: float = struct.field(pytree_node=False, default=0.0)
    r1_gamma: float = struct.field(pytree_node=False, default=0.0)
    r1_every: int = struct.field(pytree_node=False, default=1)


@functools.cache
def adam(learning_rate: float, b1: float, b2: float) -> optax.GradientTransformation:
    """Adam, memoised so that equal settings give the same (static) object.

    States built by separate `create_state` calls then share one tree structure: they can
    be stacked for `jax.vmap`, and a jitted step compiled for one serves the others.
    """
    return optax.adam(learning_rate, b1=b1, b2=b2)


@functools.cache
def adam_with_learning_rate_in_state(b1: float, b2: float) -> optax.GradientTransformation:
    """Adam whose learning rate is an array in its state (`optax.inject_hyperparams`).

    Members of a population share this one static optimizer and keep their own learning
    rates in `opt_state.hyperparams["learning_rate"]` (see `set_learning_rate`), so that
    one `jax.vmap`ped step trains them all.
    """
    return optax.inject_hyperparams(lambda learning_rate: optax.adam(learning_rate, b1=b1, b2=b2))(
        learning_rate=0.0
    )


def set_learning_rate(state: GANState, learning_rate: Any) -> GANState:
    """`state` with G's and D's learning rate set; only for `adam_with_learning_rate_in_state`.

    `learning_rate` is a number, or one per member [K] for a population's stacked state.
    """

    def with_rate(opt_state):
        # A new array for each optimizer: one buffer in two leaves cannot be donated.
        hyperparams = {
            **opt_state.hyperparams,
            "learning_rate": jnp.array(learning_rate, jnp.float32),
        }
        return opt_state._replace(hyperparams=hyperparams)

    return state.replace(
        g_opt_state=with_rate(state.g_opt_state), d_opt_state=with_rate(state.d_opt_state)
    )


def _setting(config: Any, name: str, default: Any) -> Any:
    """A config field, or its default for configs (or plain objects) that lack it."""
    if isinstance(config, Mapping) or hasattr(config, "get"):
        return config.get(name, default)
    return getattr(config, name, default)


def create_state(
    config: Any,
    key: jax.Array,
    *,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
) -> GANState:
    """Initialises both networks, their Adam optimizers and the objective.

    Args:
      config: an `ml_collections.ConfigDict` from `experiments/configs/` (or any object
        with its fields: `model`, `g_width`, `d_width`, `dropout_rate`, `dtype`,
        `latent_dim`, `learning_rate`, `b1`, `b2`; optional `loss`, `d_steps`,
        `gp_weight`, `conditional`, `spectral_norm`, `ema_decay`, `r1_gamma`, `r1_every`).
      key: PRNG key for the initial parameters.
      image_shape: (H, W, C) of the training images (the dataset's `info.image_shape`).
      num_classes: the dataset's number of classes; used when `config.conditional`.
    """
    conditional = bool(_setting(config, "conditional", False))
    if conditional and num_classes < 2:
        raise ValueError(
            f"conditional=True needs a dataset with at least 2 classes; this one has "
            f"{num_classes}; allowed: conditional=False"
        )
    generator, discriminator = build_from_config(config, image_shape, num_classes)
    objective_config = {
        "loss": _setting(config, "loss", "nonsaturating"),
        "d_steps": _setting(config, "d_steps", 1),
        "gp_weight": _setting(config, "gp_weight", 10.0),
    }
    objective = build_objective(types.SimpleNamespace(**objective_config))
    in_population = bool(_setting(config, "population", 0))
    if in_population:  # The learning rate lives in the state: members may differ in it.
        g_tx = d_tx = adam_with_learning_rate_in_state(float(config.b1), float(config.b2))
    else:
        g_tx = d_tx = adam(float(config.learning_rate), float(config.b1), float(config.b2))
    num_classes = num_classes if conditional else 0
    ema_decay = float(_setting(config, "ema_decay", 0.0))

    # One compiled initialisation instead of hundreds of small eager ops.
    @jax.jit
    def init(key):
        g_key, d_key = jax.random.split(key)
        latents = jnp.zeros((2, config.latent_dim), jnp.float32)
        labels = jnp.zeros((2,), jnp.int32) if num_classes else None
        g_variables = generator.init(g_key, latents, labels, train=False)
        images = generator.apply(g_variables, latents, labels, train=False)
        d_variables = discriminator.init(d_key, images, labels, train=False)
        return g_variables, d_variables

    g_variables, d_variables = init(key)
    state = GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_variables["params"],
        g_batch_stats=g_variables.get("batch_stats", {}),
        g_opt_state=g_tx.init(g_variables["params"]),
        d_params=d_variables["params"],
        d_batch_stats=d_variables.get("batch_stats", {}),
        d_opt_state=d_tx.init(d_variables["params"]),
        d_spectral=d_variables.get(SPECTRAL_COLLECTION, {}),
        g_ema=jax.tree.map(jnp.copy, g_variables["params"]) if ema_decay else {},
        generator=generator,
        discriminator=discriminator,
        g_tx=g_tx,
        d_tx=d_tx,
        objective=objective,
        latent_dim=int(config.latent_dim),
        num_classes=num_classes,
        ema_decay=ema_decay,
        r1_gamma=float(_setting(config, "r1_gamma", 0.0)),
        r1_every=int(_setting(config, "r1_every", 1)),
    )
    return set_learning_rate(state, float(config.learning_rate)) if in_population else state


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


def r1_penalty(critic, real_images: jax.Array) -> jax.Array:
    """mean ||grad_x D(x)||^2 over real images (Mescheder et al. 2018), before gamma / 2."""
    grads = jax.grad(lambda images: jnp.sum(critic(images)))(real_images)
    return jnp.mean(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1))


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


def _as_batch(batch: Batch | jax.Array) -> Batch:
    return batch if isinstance(batch, Mapping) else {"image": batch}


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
    batch = _as_batch(batch)
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
        latents = sharding.split_batch(jax.random.normal(keys[0], latent_shape, jnp.float32))
        fake_images, g_batch_stats = _apply_g(
            state, state.g_params, g_batch_stats, latents, labels, keys[0]
        )
        d, _ = _d_update(state, d, real_images, fake_images, labels, keys[1:])

    # Latents drawn here get no input sharding: split them over the mesh like the batch.
    latents = sharding.split_batch(jax.random.normal(latent_key, latent_shape, jnp.float32))

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


def images_to_float(images: jax.Array) -> jax.Array:
    """uint8 images [..., H, W, C] -> float32 in [-1, 1], same shape."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def batch_to_float(batch: Batch) -> Batch:
    """A uint8 batch {"image", "label"} -> the float batch `train_step` takes."""
    return {**batch, "image": images_to_float(batch["image"])}


def epoch_batches(data: Any, key: jax.Array, batch_size: int) -> Any:
    """Shuffles a dataset on device into [N // batch_size, batch_size, ...] batches.

    `data` is an array [N, ...] or a dict of them (e.g. {"image": uint8 [N, H, W, C],
    "label": int32 [N]}); every array is shuffled with the same permutation. The last
    incomplete batch is dropped.
    """
    count = jax.tree.leaves(data)[0].shape[0]
    num_batches = count // batch_size
    order = jax.random.permutation(key, count)[: num_batches * batch_size]
    return jax.tree.map(lambda a: a[order].reshape(num_batches, batch_size, *a.shape[1:]), data)


def train_steps(state: GANState, batches: Any, key: jax.Array) -> tuple[GANState, Metrics]:
    """Runs `train_step` over uint8 batches ({"image": [S, B, H, W, C], "label": [S, B]}).

    One `lax.scan`. Returns the new state and metrics stacked per step, each [S].
    """

    def body(carry: GANState, batch):
        return train_step(carry, batch_to_float(_as_batch(batch)), key)

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


def step_of(state: GANState) -> int:
    """`state.step` as an int; for a population's stacked state, the step its members share."""
    return int(np.ravel(jax.device_get(state.step))[0])


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter tree."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))


# Inference lives in its own module; these names stay importable from here.
from jaxgan.sampling import check_labels, discriminate, sample  # noqa: E402

__all__ = [
    "GANState",
    "batch_to_float",
    "check_labels",
    "count_params",
    "create_state",
    "set_learning_rate",
    "discriminate",
    "epoch_batches",
    "images_to_float",
    "sample",
    "split_epoch_key",
    "step_of",
    "train_epoch",
    "train_step",
    "train_steps",
]
