"""The vanilla MLP GAN (Goodfellow et al. 2014), for images of any shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.fields import POSITIVE_INT, Field


class Generator(nn.Module):
    """Latent [B, latent_dim] -> float32 images [B, H, W, C] in [-1, 1].

    Linear, ReLU, Linear, ReLU, Linear, Tanh with hidden widths (width, 2 * width).
    """

    width: int = 256
    image_shape: tuple[int, int, int] = (28, 28, 1)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, latents: jax.Array, labels: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        del labels, train  # Unconditional, no dropout or BatchNorm: a uniform interface.
        hidden = nn.relu(nn.Dense(self.width, dtype=self.dtype)(latents))
        hidden = nn.relu(nn.Dense(2 * self.width, dtype=self.dtype)(hidden))
        num_pixels = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        pixels = nn.Dense(num_pixels, dtype=self.dtype)(hidden).astype(jnp.float32)
        return nn.tanh(pixels).reshape(latents.shape[0], *self.image_shape)


class Discriminator(nn.Module):
    """Images [B, H, W, C] in [-1, 1] -> real-vs-fake logits [B] (float32).

    Linear, LeakyReLU(0.2), Linear, LeakyReLU(0.2), Linear with widths (2 * width, width).
    """

    width: int = 256
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, images: jax.Array, labels: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        del labels, train
        hidden = images.reshape(images.shape[0], -1)
        hidden = nn.leaky_relu(nn.Dense(2 * self.width, dtype=self.dtype)(hidden), 0.2)
        hidden = nn.leaky_relu(nn.Dense(self.width, dtype=self.dtype)(hidden), 0.2)
        logits = nn.Dense(1, dtype=self.dtype)(hidden)
        return logits[:, 0].astype(jnp.float32)


FIELDS = {
    "g_width": Field(256, "G hidden units: w -> 2w", *POSITIVE_INT),
    "d_width": Field(256, "D hidden units: 2w -> w", *POSITIVE_INT),
}


def build(
    model: Mapping[str, Any],
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    dtype: jnp.dtype,
    population: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """The registry's entry: (generator, discriminator). Unconditional, no dropout."""
    del population  # Dense layers vmap well as they are.
    if num_classes > 1:
        raise ValueError(
            "model 'mlp' is unconditional; allowed: conditional=False, or config.model.name='dcgan'"
        )
    return (
        Generator(width=model["g_width"], image_shape=tuple(image_shape), dtype=dtype),
        Discriminator(width=model["d_width"], dtype=dtype),
    )
