"""The hinge objective (Lim & Ye 2017; Miyato et al. 2018, SN-GAN)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxgan.objectives.base import CriticInputs, Metrics, Objective, accuracy


@dataclasses.dataclass(frozen=True)
class Hinge(Objective):
    """D: mean relu(1 - D(x)) + mean relu(1 + D(G(z))). G: -mean D(G(z)).

    Metrics: d_real_logit and d_fake_logit are D's mean raw output on each batch; D's
    sign still classifies, so d_real_acc and d_fake_acc are its accuracy at logit 0.
    """

    name = "hinge"
    d_metrics = ("d_loss", "d_real_logit", "d_fake_logit", "d_real_acc", "d_fake_acc")
    g_metrics = ("g_loss",)

    def d_loss(
        self, real_logits: jax.Array, fake_logits: jax.Array, inputs: CriticInputs
    ) -> tuple[jax.Array, Metrics]:
        del inputs
        loss = jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
        return loss, {
            "d_loss": loss,
            "d_real_logit": real_logits.mean(),
            "d_fake_logit": fake_logits.mean(),
            "d_real_acc": accuracy(real_logits, True),
            "d_fake_acc": accuracy(fake_logits, False),
        }

    def g_loss(self, fake_logits: jax.Array) -> tuple[jax.Array, Metrics]:
        loss = -jnp.mean(fake_logits)
        return loss, {"g_loss": loss}
