"""GAN losses on discriminator logits (Goodfellow et al. 2014, "Generative Adversarial Nets").

All functions take float logits of any shape and return a scalar mean over the batch.
Logits are cast to float32 first, so the losses stay exact under bfloat16 compute.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


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
