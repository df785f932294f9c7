"""The original GAN objective with the non-saturating G loss (Goodfellow et al. 2014)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from jaxgan.objectives.base import CriticInputs, Metrics, Objective, accuracy


def binary_cross_entropy(logits: jax.Array, is_real: bool) -> jax.Array:
    """Mean of -[y log sigmoid(l) + (1 - y) log(1 - sigmoid(l))] with y = is_real."""
    logits = logits.astype(jnp.float32)
    labels = jnp.full_like(logits, 1.0 if is_real else 0.0)
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """BCE(D(x), 1) + BCE(D(G(z)), 0): the sum of the real-batch and fake-batch losses."""
    return binary_cross_entropy(real_logits, True) + binary_cross_entropy(fake_logits, False)


def generator_loss(fake_logits: jax.Array) -> jax.Array:
    """The non-saturating generator loss BCE(D(G(z)), 1) = -mean log D(G(z))."""
    return binary_cross_entropy(fake_logits, True)


@dataclasses.dataclass(frozen=True)
class NonSaturating(Objective):
    """D: BCE(D(x), 1) + BCE(D(G(z)), 0). G: BCE(D(G(z)), 1) = -mean log D(G(z)).

    Metrics: d_real and d_fake are D's mean probability on each batch (before D's
    update), d_real_acc and d_fake_acc its accuracy at 0.5.
    """

    name = "nonsaturating"
    d_metrics = ("d_loss", "d_real", "d_fake", "d_real_acc", "d_fake_acc")
    g_metrics = ("g_loss",)

    def d_loss(
        self, real_logits: jax.Array, fake_logits: jax.Array, inputs: CriticInputs
    ) -> tuple[jax.Array, Metrics]:
        del inputs
        loss = discriminator_loss(real_logits, fake_logits)
        return loss, {
            "d_loss": loss,
            "d_real": jax.nn.sigmoid(real_logits).mean(),
            "d_fake": jax.nn.sigmoid(fake_logits).mean(),
            "d_real_acc": accuracy(real_logits, True),
            "d_fake_acc": accuracy(fake_logits, False),
        }

    def g_loss(self, fake_logits: jax.Array) -> tuple[jax.Array, Metrics]:
        loss = generator_loss(fake_logits)
        return loss, {"g_loss": loss}
