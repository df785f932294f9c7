"""The vanilla MLP GAN (Goodfellow et al. 2014) for 28x28 grayscale images."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Generator(nn.Module):
    """Latent [B, latent_dim] -> float32 images [B, 28, 28, 1] in [-1, 1].

    Linear, ReLU, Linear, ReLU, Linear, Tanh with hidden widths (width, 2 * width).
    """

    width: int = 256
    image_shape: tuple[int, int, int] = (28, 28, 1)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, latents: jax.Array, *, train: bool) -> jax.Array:
        del train  # No dropout or BatchNorm; kept for a uniform model interface.
        hidden = nn.relu(nn.Dense(self.width, dtype=self.dtype)(latents))
        hidden = nn.relu(nn.Dense(2 * self.width, dtype=self.dtype)(hidden))
        num_pixels = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        pixels = nn.Dense(num_pixels, dtype=self.dtype)(hidden).astype(jnp.float32)
        return nn.tanh(pixels).reshape(latents.shape[0], *self.image_shape)


class Discriminator(nn.Module):
    """Images [B, 28, 28, 1] in [-1, 1] -> real-vs-fake logits [B] (float32).

    Linear, LeakyReLU(0.2), Linear, LeakyReLU(0.2), Linear with widths (2 * width, width).
    """

    width: int = 256
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        del train
        hidden = images.reshape(images.shape[0], -1)
        hidden = nn.leaky_relu(nn.Dense(2 * self.width, dtype=self.dtype)(hidden), 0.2)
        hidden = nn.leaky_relu(nn.Dense(self.width, dtype=self.dtype)(hidden), 0.2)
        logits = nn.Dense(1, dtype=self.dtype)(hidden)
        return logits[:, 0].astype(jnp.float32)
