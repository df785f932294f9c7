"""DCGAN (Radford et al. 2016) sized for 28x28 grayscale images."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.layers import Conv, Dropout, SubpixelConvTranspose

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here), as in the reference DCGAN.
_BATCH_NORM = dict(momentum=0.9, epsilon=1e-5)


class Generator(nn.Module):
    """Latent [B, latent_dim] -> images [B, 28, 28, 1] in [-1, 1].

    Dense to 7x7x(4w), BatchNorm, ReLU; 4x4 stride-2 transposed conv to 14x14x(2w),
    BatchNorm, ReLU; 4x4 stride-2 transposed conv to 28x28x1, Tanh. `w` is `width`.
    The transposed convolutions are `SubpixelConvTranspose`, the same layer as
    `nn.ConvTranspose(padding='SAME')` in a form XLA differentiates fast on CPU.
    """

    width: int = 64
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, latents: jax.Array, *, train: bool) -> jax.Array:
        batch_norm = lambda: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, dtype=self.dtype, **_BATCH_NORM
        )
        hidden = nn.Dense(7 * 7 * 4 * self.width, use_bias=False, dtype=self.dtype)(latents)
        hidden = nn.relu(batch_norm()(hidden))
        hidden = hidden.reshape(latents.shape[0], 7, 7, 4 * self.width)  # [B, 7, 7, 4w]
        hidden = SubpixelConvTranspose(2 * self.width, use_bias=False, dtype=self.dtype)(hidden)
        hidden = nn.relu(batch_norm()(hidden))  # [B, 14, 14, 2w]
        pixels = SubpixelConvTranspose(1, dtype=self.dtype)(hidden)  # [B, 28, 28, 1]
        return nn.tanh(pixels.astype(jnp.float32))


class Discriminator(nn.Module):
    """Images [B, 28, 28, 1] in [-1, 1] -> real-vs-fake logits [B] (float32).

    4x4 stride-2 conv to 14x14xw, LeakyReLU(0.2), dropout; 4x4 stride-2 conv to 7x7x(2w),
    BatchNorm, LeakyReLU(0.2), dropout; Dense to one logit. `layers.Conv` and
    `layers.Dropout` compute exactly what `nn.Conv` and `nn.Dropout` do (same parameters,
    same dropout masks for a key), in forms XLA runs fast on CPU, inside `lax.scan` too.
    """

    width: int = 64
    dropout_rate: float = 0.3
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        conv = lambda features, **kw: Conv(  # noqa: E731
            features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype, **kw
        )
        hidden = nn.leaky_relu(conv(self.width)(images), 0.2)  # [B, 14, 14, w]
        hidden = Dropout(self.dropout_rate, deterministic=not train)(hidden)
        hidden = conv(2 * self.width, use_bias=False)(hidden)  # [B, 7, 7, 2w]
        hidden = nn.BatchNorm(use_running_average=not train, dtype=self.dtype, **_BATCH_NORM)(
            hidden
        )
        hidden = nn.leaky_relu(hidden, 0.2)
        hidden = Dropout(self.dropout_rate, deterministic=not train)(hidden)
        logits = nn.Dense(1, dtype=self.dtype)(hidden.reshape(images.shape[0], -1))
        return logits[:, 0].astype(jnp.float32)
