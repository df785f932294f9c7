"""A stand-in for Inception with a real convolution, for the device-count tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def conv_features(preprocessed: jax.Array) -> jax.Array:
    """[B, 299, 299, 3] -> [B, 16]: a fixed 5x5 convolution, ReLU, mean and RMS pooling."""
    kernel = jnp.asarray(np.random.default_rng(0).normal(size=(5, 5, 3, 8)), jnp.float32)
    maps = jax.lax.conv_general_dilated(
        preprocessed, kernel, (4, 4), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    maps = jax.nn.relu(maps)
    return jnp.concatenate([maps.mean(axis=(1, 2)), jnp.sqrt((maps**2).mean(axis=(1, 2)))], 1)
