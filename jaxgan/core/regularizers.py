"""Penalties on D's gradients, added to D's loss by the train step."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def r1_penalty(critic, real_images: jax.Array) -> jax.Array:
    """mean ||grad_x D(x)||^2 over real images (Mescheder et al. 2018), before gamma / 2."""
    grads = jax.grad(lambda images: jnp.sum(critic(images)))(real_images)
    return jnp.mean(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1))
