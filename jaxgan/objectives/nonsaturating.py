"""The original GAN objective with the non-saturating G loss (Goodfellow et al. 2014)."""

from __future__ import annotations

import dataclasses

import jax

from jaxgan import losses
from jaxgan.objectives.base import CriticInputs, Metrics, Objective, accuracy


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
        loss = losses.discriminator_loss(real_logits, fake_logits)
        return loss, {
            "d_loss": loss,
            "d_real": jax.nn.sigmoid(real_logits).mean(),
            "d_fake": jax.nn.sigmoid(fake_logits).mean(),
            "d_real_acc": accuracy(real_logits, True),
            "d_fake_acc": accuracy(fake_logits, False),
        }

    def g_loss(self, fake_logits: jax.Array) -> tuple[jax.Array, Metrics]:
        loss = losses.generator_loss(fake_logits)
        return loss, {"g_loss": loss}
