"""Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, "Improved Training of WGANs")."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxgan.objectives.base import CriticInputs, Metrics, Objective


def gradient_penalty(inputs: CriticInputs) -> jax.Array:
    """mean (||grad_x D(x_hat)||_2 - 1)^2 at x_hat = e x + (1 - e) G(z), e ~ U[0, 1] per image."""
    real, fake = inputs.real_images, inputs.fake_images
    mix = jax.random.uniform(inputs.key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    interpolates = mix * real + (1.0 - mix) * jax.lax.stop_gradient(fake)
    grads = jax.grad(lambda images: jnp.sum(inputs.critic(images)))(interpolates)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


@dataclasses.dataclass(frozen=True)
class WGANGP(Objective):
    """D (the critic): mean D(G(z)) - mean D(x) + gp_weight * GP. G: -mean D(G(z)).

    Usually run with `d_steps=5` critic updates per G update. Metrics: `wasserstein` is
    the critic's estimate mean D(x) - mean D(G(z)); `gp` the penalty before weighting.
    No accuracy is reported: a critic's sign has no meaning.
    """

    name = "wgan_gp"
    d_metrics = ("d_loss", "wasserstein", "gp")
    g_metrics = ("g_loss",)
    gp_weight: float = 10.0

    @classmethod
    def from_config(cls, config) -> WGANGP:
        return cls(d_steps=config.d_steps, gp_weight=float(config.gp_weight))

    def d_loss(
        self, real_logits: jax.Array, fake_logits: jax.Array, inputs: CriticInputs
    ) -> tuple[jax.Array, Metrics]:
        wasserstein = real_logits.mean() - fake_logits.mean()
        penalty = gradient_penalty(inputs)
        loss = -wasserstein + self.gp_weight * penalty
        return loss, {"d_loss": loss, "wasserstein": wasserstein, "gp": penalty}

    def g_loss(self, fake_logits: jax.Array) -> tuple[jax.Array, Metrics]:
        loss = -jnp.mean(fake_logits)
        return loss, {"g_loss": loss}
