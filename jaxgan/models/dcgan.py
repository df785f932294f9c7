"""DCGAN (Radford et al. 2016) for square images whose side is a multiple of 4.

With `num_classes > 1` it is class-conditional: G concatenates a learned label embedding
to z, and D is a projection discriminator (Miyato & Koyama 2018): logit = w.h + <e(y), h>.
With `spectral_norm`, each of D's layers is spectrally normalised (Miyato et al. 2018),
and D's BatchNorm is left out, as in SN-GAN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.dropout import Dropout
from jaxgan.models.fields import BOOLEAN, FRACTION, POSITIVE_INT, Field
from jaxgan.models.layers import Conv, PatchConv, SubpixelConvTranspose
from jaxgan.models.normalization import BATCH_NORM as _BATCH_NORM
from jaxgan.models.normalization import spectral


def check_image_shape(image_shape: tuple[int, int, int]) -> None:
    height, width, channels = image_shape
    if height % 4 or width % 4 or channels not in (1, 3):
        raise ValueError(
            f"the DCGAN cannot make images of shape {tuple(image_shape)}; allowed: height "
            "and width multiples of 4 (e.g. 28 or 32) and 1 or 3 channels "
            "(set config.image_size / config.channels)"
        )


class Generator(nn.Module):
    """Latents [B, latent_dim] (and labels [B]) -> images [B, H, W, C] in [-1, 1].

    Dense to (H/4)x(W/4)x(4w), BatchNorm, ReLU; 4x4 stride-2 transposed conv to
    (H/2)x(W/2)x(2w), BatchNorm, ReLU; 4x4 stride-2 transposed conv to HxWxC, Tanh.
    `w` is `width`. The transposed convolutions are `SubpixelConvTranspose`, the same
    layer as `nn.ConvTranspose(padding='SAME')` in a form XLA differentiates fast on CPU.
    """

    width: int = 64
    image_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, latents: jax.Array, labels: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        height, width, channels = self.image_shape
        if self.num_classes > 1:
            embedding = nn.Embed(self.num_classes, latents.shape[-1], name="label_embedding")
            latents = jnp.concatenate([latents, embedding(labels)], axis=-1)  # [B, 2 * latent]
        batch_norm = lambda: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, dtype=self.dtype, **_BATCH_NORM
        )
        base = (height // 4, width // 4)
        hidden = nn.Dense(base[0] * base[1] * 4 * self.width, use_bias=False, dtype=self.dtype)(
            latents
        )
        hidden = nn.relu(batch_norm()(hidden))
        hidden = hidden.reshape(latents.shape[0], *base, 4 * self.width)  # [B, H/4, W/4, 4w]
        hidden = SubpixelConvTranspose(2 * self.width, use_bias=False, dtype=self.dtype)(hidden)
        hidden = nn.relu(batch_norm()(hidden))  # [B, H/2, W/2, 2w]
        pixels = SubpixelConvTranspose(channels, dtype=self.dtype)(hidden)  # [B, H, W, C]
        return nn.tanh(pixels.astype(jnp.float32))


class Discriminator(nn.Module):
    """Images [B, H, W, C] in [-1, 1] (and labels [B]) -> real-vs-fake logits [B] (float32).

    4x4 stride-2 conv to (H/2)x(W/2)xw, LeakyReLU(0.2), dropout; 4x4 stride-2 conv to
    (H/4)x(W/4)x(2w), BatchNorm, LeakyReLU(0.2), dropout; Dense to one logit.
    `layers.Conv` and `dropout.Dropout` compute exactly what `nn.Conv` and `nn.Dropout`
    do (same parameters, same dropout masks for a key), in forms XLA runs fast on CPU.
    """

    width: int = 64
    dropout_rate: float = 0.3
    num_classes: int = 0
    spectral_norm: bool = False
    dtype: jnp.dtype = jnp.float32
    # Convolutions as patches @ kernel (`layers.PatchConv`): for `jax.vmap` over members.
    patch_convs: bool = False

    def _layer(self, layer: nn.Module, train: bool) -> Callable[[jax.Array], jax.Array]:
        return spectral(layer, train) if self.spectral_norm else layer

    @nn.compact
    def __call__(
        self, images: jax.Array, labels: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        def conv(index: int, features: int, **options) -> Callable[[jax.Array], jax.Array]:
            # Named as the plain layer would be, so both forms have one parameter tree.
            layer = PatchConv if self.patch_convs else Conv
            return self._layer(
                layer(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                      dtype=self.dtype, name=f"Conv_{index}", **options),
                train,
            )  # fmt: skip

        hidden = nn.leaky_relu(conv(0, self.width)(images), 0.2)  # [B, H/2, W/2, w]
        hidden = Dropout(self.dropout_rate, deterministic=not train)(hidden)
        hidden = conv(1, 2 * self.width, use_bias=self.spectral_norm)(hidden)  # [B, H/4, W/4, 2w]
        if not self.spectral_norm:
            hidden = nn.BatchNorm(use_running_average=not train, dtype=self.dtype, **_BATCH_NORM)(
                hidden
            )
        hidden = nn.leaky_relu(hidden, 0.2)
        hidden = Dropout(self.dropout_rate, deterministic=not train)(hidden)
        features = hidden.reshape(images.shape[0], -1)
        logits = self._layer(nn.Dense(1, dtype=self.dtype), train)(features)[:, 0]
        if self.num_classes > 1:
            embedding = nn.Embed(self.num_classes, features.shape[-1], name="label_projection")
            logits = logits + jnp.sum(embedding(labels) * features, axis=-1)
        return logits.astype(jnp.float32)


FIELDS = {
    "g_width": Field(64, "G base width: channels 4w -> 2w -> C", *POSITIVE_INT),
    "d_width": Field(64, "D base width: channels w -> 2w", *POSITIVE_INT),
    "dropout_rate": Field(0.3, "D's dropout after each conv", *FRACTION, shapes=False),
    "spectral_norm": Field(
        False, "spectral normalisation of D's layers (replaces D's BatchNorm)", *BOOLEAN
    ),
}


def build(
    model: Mapping[str, Any],
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    dtype: jnp.dtype,
    population: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """The registry's entry: (generator, discriminator) from `config.model`'s fields.

    With `population` (the pair is vmapped over a population's members) D's convolutions
    are `layers.PatchConv`, which vmap turns into batched matmuls; G's transposed
    convolutions are matmuls already.
    """
    check_image_shape(image_shape)
    return (
        Generator(model["g_width"], tuple(image_shape), num_classes, dtype),
        Discriminator(
            model["d_width"],
            model["dropout_rate"],
            num_classes,
            model["spectral_norm"],
            dtype,
            population,
        ),
    )
