"""The GAN's state: both networks, their optimizers and the static settings of a run.

`create_state` builds a `GANState` from a config; nothing here does I/O.
"""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxgan.core.augment import parse_policy
from jaxgan.models import build_from_config
from jaxgan.models.normalization import SPECTRAL_COLLECTION
from jaxgan.objectives import NonSaturating, Objective, build_objective


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
      g_ema_batch_stats: the EMA generator's own BatchNorm statistics, running averages
        of its activations on each step's latents (an empty dict without EMA or
        BatchNorm). The online G's statistics do not belong to the averaged weights.
      generator, discriminator: the flax modules (static).
      g_tx, d_tx: the optax optimizers (static).
      objective: the `jaxgan.objectives.Objective` (static): losses and D steps per step.
      latent_dim: size of the generator's input noise (static).
      num_classes: > 1 for a class-conditional pair, else 0 (static).
      ema_decay: decay of `g_ema` per step, 0 for none (static).
      ema_start: steps before the average starts; until then `g_ema` follows `g_params`
        (static).
      augment: the DiffAugment policy applied to every image D sees, e.g.
        ("translation", "cutout"); () for none (static).
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
    g_ema_batch_stats: Any
    generator: nn.Module = struct.field(pytree_node=False)
    discriminator: nn.Module = struct.field(pytree_node=False)
    g_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    objective: Objective = struct.field(pytree_node=False, default=NonSaturating())
    latent_dim: int = struct.field(pytree_node=False, default=100)
    num_classes: int = struct.field(pytree_node=False, default=0)
    ema_decay: float = struct.field(pytree_node=False, default=0.0)
    ema_start: int = struct.field(pytree_node=False, default=0)
    augment: tuple[str, ...] = struct.field(pytree_node=False, default=())
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


@functools.cache
def adam_linear_decay(
    learning_rate: float, b1: float, b2: float, total_steps: int
) -> optax.GradientTransformation:
    """Adam whose learning rate falls linearly from `learning_rate` to 0 over `total_steps`."""
    schedule = optax.linear_schedule(learning_rate, 0.0, transition_steps=total_steps)
    return optax.adam(schedule, b1=b1, b2=b2)


def learning_rates(config: Any) -> tuple[float, float]:
    """(G's, D's) learning rate: `g_learning_rate` / `d_learning_rate`, 0 meaning
    `learning_rate` (two time-scale updates, Heusel et al. 2017)."""
    base = float(config.learning_rate)
    return (
        float(_setting(config, "g_learning_rate", 0.0)) or base,
        float(_setting(config, "d_learning_rate", 0.0)) or base,
    )


def optimizers(config: Any, total_steps: int = 0) -> tuple[Any, Any]:
    """G's and D's optimizers: Adam with the config's rates, betas and decay.

    A population keeps its learning rate in the optimizer state (members may differ).
    With `d_steps` critic steps per train step D's Adam counts `d_steps` updates per
    step, so D's linear decay runs over `d_steps * total_steps` of its own updates: both
    rates reach 0 together at the run's last step.
    """
    b1, b2 = float(config.b1), float(config.b2)
    if _setting(config, "population", 0):
        tx = adam_with_learning_rate_in_state(b1, b2)
        return tx, tx
    decay = _setting(config, "lr_decay", "none")
    if decay == "linear" and total_steps <= 0:
        raise ValueError("lr_decay='linear' needs create_state(..., total_steps=N) with N > 0")
    g_rate, d_rate = learning_rates(config)
    if decay == "linear":
        d_updates = total_steps * int(_setting(config, "d_steps", 1))
        return (adam_linear_decay(g_rate, b1, b2, total_steps),
                adam_linear_decay(d_rate, b1, b2, d_updates))  # fmt: skip
    return adam(g_rate, b1, b2), adam(d_rate, b1, b2)


def _warn_about_batch_norm_penalties(config: Any, d_batch_stats: Any) -> None:
    """Gradient penalties assume D judges each image alone; BatchNorm couples the batch."""
    penalised = _setting(config, "loss", "") == "wgan_gp" or _setting(config, "r1_gamma", 0)
    if penalised and d_batch_stats:
        warnings.warn(
            "a gradient penalty (wgan_gp or r1_gamma > 0) with a BatchNorm discriminator: "
            "the penalty's per-image gradients mix the batch (Gulrajani et al. 2017 use no "
            "BatchNorm in the critic); set config.model.spectral_norm=True (DCGAN) or use "
            "a family without BatchNorm in D (resnet)",
            UserWarning,
            stacklevel=3,
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
    total_steps: int = 0,
) -> GANState:
    """Initialises both networks, their Adam optimizers and the objective.

    Args:
      config: an `ml_collections.ConfigDict` from `experiments/configs/` (or any object
        with its fields: `model` (a mapping: `name` and the family's fields, see
        `jaxgan.models`), `latent_dim`, `learning_rate`, `b1`, `b2`; optional `dtype`,
        `loss`, `d_steps`, `gp_weight`, `conditional`, `ema_decay`, `r1_gamma`,
        `r1_every`).
      key: PRNG key for the initial parameters.
      image_shape: (H, W, C) of the training images (the dataset's `info.image_shape`).
      num_classes: the dataset's number of classes; used when `config.conditional`.
      total_steps: the run's length in steps, for `lr_decay="linear"` (which needs it).
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
    g_tx, d_tx = optimizers(config, total_steps)
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
    _warn_about_batch_norm_penalties(config, d_variables.get("batch_stats"))
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
        g_ema_batch_stats=(
            jax.tree.map(jnp.copy, g_variables.get("batch_stats", {})) if ema_decay else {}
        ),
        generator=generator,
        discriminator=discriminator,
        g_tx=g_tx,
        d_tx=d_tx,
        objective=objective,
        latent_dim=int(config.latent_dim),
        num_classes=num_classes,
        ema_decay=ema_decay,
        ema_start=int(_setting(config, "ema_start", 0)),
        augment=parse_policy(_setting(config, "augment", "")),
        r1_gamma=float(_setting(config, "r1_gamma", 0.0)),
        r1_every=int(_setting(config, "r1_every", 1)),
    )
    return set_learning_rate(state, float(config.learning_rate)) if in_population else state


def step_of(state: GANState) -> int:
    """`state.step` as an int; for a population's stacked state, the step its members share."""
    return int(np.ravel(jax.device_get(state.step))[0])


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter tree."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
