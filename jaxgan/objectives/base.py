"""The interface every objective implements, and the D-side inputs a penalty may need."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class CriticInputs:
    """What a discriminator-side penalty may evaluate, besides the logits.

    Attributes:
      critic: images [B, H, W, C] -> logits [B], D in training mode with the parameters
        being differentiated (its BatchNorm updates are discarded).
      real_images, fake_images: the batch D just scored, float [B, H, W, C].
      key: a PRNG key for the penalty's own randomness.
    """

    critic: Callable[[jax.Array], jax.Array]
    real_images: jax.Array
    fake_images: jax.Array
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class Objective:
    """A GAN objective: its losses, its update schedule and its metric keys.

    Subclasses are frozen dataclasses, hence hashable: a `GANState` holds one as a static
    field, and `train_step` compiles for it. The step calls `d_loss` on each D update
    (`d_steps` of them per G update) and `g_loss` on the G update.

    Class attributes:
      name: the `config.loss` string.
      d_metrics, g_metrics: the metric keys each loss returns, in order.
    """

    name: ClassVar[str] = ""
    d_metrics: ClassVar[tuple[str, ...]] = ()
    g_metrics: ClassVar[tuple[str, ...]] = ()
    d_steps: int = 1

    @classmethod
    def from_config(cls, config) -> Objective:
        """The objective with its settings from the config; by default `d_steps` only."""
        return cls(d_steps=config.d_steps)

    def d_loss(
        self, real_logits: jax.Array, fake_logits: jax.Array, inputs: CriticInputs
    ) -> tuple[jax.Array, Metrics]:
        """D's scalar loss and metrics, from float32 logits [B] of a real and a fake batch."""
        raise NotImplementedError

    def g_loss(self, fake_logits: jax.Array) -> tuple[jax.Array, Metrics]:
        """G's scalar loss and metrics, from D's float32 logits [B] on a fake batch."""
        raise NotImplementedError


def accuracy(logits: jax.Array, is_real: bool) -> jax.Array:
    """Fraction of logits on the correct side of 0 (probability 0.5 for a sigmoid D)."""
    return jnp.mean((logits > 0) if is_real else (logits <= 0)).astype(jnp.float32)
