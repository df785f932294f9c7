"""ResNet GAN (SNGAN, Miyato et al. 2018; BigGAN, Brock et al. 2019) for square images.

G: Dense to a `base x base x g_width` grid, residual up-blocks (BN, ReLU, nearest x2,
3x3 conv, BN, ReLU, 3x3 conv; shortcut x2 and 1x1 conv), BN, ReLU, 3x3 conv, tanh. The
image side must be `base * 2**n` with `base` in 4..7; G has `n` up-blocks (28: 7x7 and
two, 32: 4x4 and three, 64: 4x4 and four), all `g_width` wide.

D: `d_blocks` residual blocks, all `d_width` wide (ReLU, 3x3 conv, ReLU, 3x3 conv, and
2x2 average pooling while the side is above 8: 28 -> 14 -> 7, 32 -> 16 -> 8, 64 -> 8;
the rest keep their side, as in SNGAN's and BigGAN's 32 px D); the first block is
SNGAN's "optimised" one (no leading ReLU, shortcut pooled then 1x1 conv). Then ReLU,
global sum pooling and Dense to one logit. Every D layer is spectrally normalised; D has
no BatchNorm.

With `num_classes > 1` G's BatchNorms are conditional, their gain (1 + .) and bias
linear in one shared class embedding (BigGAN), and D is a projection discriminator
(Miyato & Koyama 2018): logit += <e(y), h>, `e` a spectrally normalised embedding.
`attention` puts one SAGAN self-attention block (Zhang et al. 2019) after G's and D's
first block of that resolution. G is not spectrally normalised: the train step keeps
spectral-norm state for D only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan.models.fields import BOOLEAN, NON_NEGATIVE_INT, POSITIVE_INT, Field
from jaxgan.models.layers import Conv
from jaxgan.models.normalization import BATCH_NORM, spectral

# Square sides `base * 2**n`, base in 4..7, from 28 to 64 px.
SIDES = (28, 32, 40, 48, 56, 64)
# D pools while its feature maps are larger than this.
D_FINAL_SIDE = 8

FIELDS: dict[str, Field] = {
    "g_width": Field(256, "channels of every G block", *POSITIVE_INT),
    "d_width": Field(128, "channels of every D block", *POSITIVE_INT),
    "d_blocks": Field(
        4,
        "D's residual blocks; the first ones pool until the side is <= 8, the rest keep it",
        *POSITIVE_INT,
    ),
    "embed_dim": Field(128, "G's shared class embedding width (conditional only)", *POSITIVE_INT),
    "attention": Field(
        0, "resolution of the self-attention block in G and D (0: none)", *NON_NEGATIVE_INT
    ),
    "orthogonal_init": Field(
        True, "orthogonal initialisation (BigGAN); else flax's defaults", *BOOLEAN
    ),
}


def generator_plan(side: int) -> tuple[int, int]:
    """(base side, number of up-blocks) with `side == base * 2**blocks`, `base` in 4..7."""
    blocks = 0
    while side >= 8 and side % 2 == 0:
        side, blocks = side // 2, blocks + 1
    return side, blocks


def discriminator_plan(side: int, num_blocks: int) -> list[bool]:
    """Whether each D block pools: while the side is above `D_FINAL_SIDE`."""
    pools = []
    while side > D_FINAL_SIDE and len(pools) < num_blocks:
        pools.append(True)
        side //= 2
    return pools + [False] * (num_blocks - len(pools))


def attention_sides(side: int, num_blocks: int) -> list[int]:
    """The resolutions where both G's and D's blocks output feature maps."""
    base, up_blocks = generator_plan(side)
    g_sides = {base * 2 ** (index + 1) for index in range(up_blocks)}
    d_sides, current = set(), side
    for pools in discriminator_plan(side, num_blocks):
        current = current // 2 if pools else current
        d_sides.add(current)
    return sorted(g_sides & d_sides)


def _init(orthogonal: bool) -> dict[str, nn.initializers.Initializer]:
    return {"kernel_init": nn.initializers.orthogonal()} if orthogonal else {}


def _upsample(features: jax.Array) -> jax.Array:
    """Nearest-neighbour x2: [B, H, W, C] -> [B, 2H, 2W, C]."""
    batch, height, width, channels = features.shape
    tiled = jnp.broadcast_to(
        features[:, :, None, :, None, :], (batch, height, 2, width, 2, channels)
    )
    return tiled.reshape(batch, 2 * height, 2 * width, channels)


def _avg_pool(features: jax.Array) -> jax.Array:
    """2x2 average pooling: [B, H, W, C] -> [B, H/2, W/2, C] (H, W even)."""
    batch, height, width, channels = features.shape
    return features.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


class ConditionalBatchNorm(nn.Module):
    """BatchNorm [B, H, W, C]; with a class embedding [B, E] its gain is 1 + W_g e and its
    bias W_b e (BigGAN's shared embedding), otherwise the usual learned scale and bias."""

    dtype: jnp.dtype = jnp.float32
    orthogonal_init: bool = True

    @nn.compact
    def __call__(
        self, features: jax.Array, class_embedding: jax.Array | None, *, train: bool
    ) -> jax.Array:
        affine = class_embedding is None
        normalised = nn.BatchNorm(
            use_running_average=not train,
            use_scale=affine,
            use_bias=affine,
            dtype=self.dtype,
            **BATCH_NORM,
        )(features)
        if affine:
            return normalised
        channels, init = features.shape[-1], _init(self.orthogonal_init)
        gain = nn.Dense(channels, use_bias=False, dtype=self.dtype, name="gain", **init)
        bias = nn.Dense(channels, use_bias=False, dtype=self.dtype, name="bias", **init)
        gain_values = 1 + gain(class_embedding)[:, None, None, :]  # [B, 1, 1, C]
        return normalised * gain_values + bias(class_embedding)[:, None, None, :]


class GBlock(nn.Module):
    """Residual up-block: [B, H, W, C_in] -> [B, 2H, 2W, features]."""

    features: int
    dtype: jnp.dtype = jnp.float32
    orthogonal_init: bool = True

    @nn.compact
    def __call__(
        self, inputs: jax.Array, class_embedding: jax.Array | None, *, train: bool
    ) -> jax.Array:
        def conv(kernel: int, use_bias: bool = True) -> Conv:
            init = _init(self.orthogonal_init)
            return Conv(
                self.features, (kernel, kernel), use_bias=use_bias, dtype=self.dtype, **init
            )

        def batch_norm(features: jax.Array) -> jax.Array:
            norm = ConditionalBatchNorm(self.dtype, self.orthogonal_init)
            return norm(features, class_embedding, train=train)

        hidden = _upsample(nn.relu(batch_norm(inputs)))  # [B, 2H, 2W, C_in]
        # No bias before BatchNorm: it would subtract it again.
        hidden = conv(3, use_bias=False)(hidden)
        hidden = conv(3)(nn.relu(batch_norm(hidden)))  # [B, 2H, 2W, features]
        return hidden + conv(1)(_upsample(inputs))


class DBlock(nn.Module):
    """Residual D block: [B, H, W, C_in] -> [B, H/2, W/2, features] (or [B, H, W, features]
    without `pool`); every conv spectrally normalised. `first`: SNGAN's optimised block."""

    features: int
    pool: bool
    first: bool = False
    dtype: jnp.dtype = jnp.float32
    orthogonal_init: bool = True

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
        def conv(kernel: int, features: jax.Array) -> jax.Array:
            init = _init(self.orthogonal_init)
            layer = Conv(self.features, (kernel, kernel), dtype=self.dtype, **init)
            return spectral(layer, train)(features)

        pool = _avg_pool if self.pool else lambda features: features
        hidden = inputs if self.first else nn.relu(inputs)
        hidden = pool(conv(3, nn.relu(conv(3, hidden))))
        if self.first:
            shortcut = conv(1, _avg_pool(inputs))
        elif self.pool or inputs.shape[-1] != self.features:
            shortcut = pool(conv(1, inputs))
        else:
            shortcut = inputs
        return hidden + shortcut


class SelfAttention(nn.Module):
    """SAGAN self-attention [B, H, W, C] -> [B, H, W, C]: x + gamma * o(softmax(theta phi) g),
    phi and g max-pooled 2x2, gamma starting at 0 (Zhang et al. 2019; BigGAN's form)."""

    spectral_norm: bool
    dtype: jnp.dtype = jnp.float32
    orthogonal_init: bool = True

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
        batch, height, width, channels = inputs.shape
        key_width, value_width = max(channels // 8, 1), max(channels // 2, 1)

        def conv(features: int, name: str, values: jax.Array) -> jax.Array:
            init = _init(self.orthogonal_init)
            layer = Conv(features, (1, 1), use_bias=False, dtype=self.dtype, name=name, **init)
            return (spectral(layer, train) if self.spectral_norm else layer)(values)

        def pooled(values: jax.Array) -> jax.Array:  # [B, H/2 * W/2, C']
            values = nn.max_pool(values, (2, 2), strides=(2, 2))
            return values.reshape(batch, -1, values.shape[-1])

        queries = conv(key_width, "theta", inputs).reshape(batch, height * width, key_width)
        keys = pooled(conv(key_width, "phi", inputs))
        values = pooled(conv(value_width, "g", inputs))
        scores = jnp.einsum("bqc,bkc->bqk", queries, keys).astype(jnp.float32)
        weights = jax.nn.softmax(scores, axis=-1).astype(values.dtype)  # [B, HW, HW/4]
        attended = jnp.einsum("bqk,bkc->bqc", weights, values)
        attended = attended.reshape(batch, height, width, value_width)
        gamma = self.param("gamma", nn.initializers.zeros_init(), ())
        return inputs + gamma.astype(self.dtype) * conv(channels, "o", attended)


class Generator(nn.Module):
    """Latents [B, latent_dim] (and labels [B] int) -> images [B, H, W, C] float32 in [-1, 1]."""

    width: int = 256
    image_shape: tuple[int, int, int] = (32, 32, 3)
    num_classes: int = 0
    embed_dim: int = 128
    attention: int = 0
    orthogonal_init: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, latents: jax.Array, labels: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        side, _, channels = self.image_shape
        base, num_blocks = generator_plan(side)
        init = _init(self.orthogonal_init)
        class_embedding = None
        if self.num_classes > 1:
            embedding_init = (
                {"embedding_init": nn.initializers.orthogonal()} if self.orthogonal_init else {}
            )
            class_embedding = nn.Embed(
                self.num_classes, self.embed_dim, dtype=self.dtype, name="shared_embedding",
                **embedding_init,
            )(labels)  # [B, embed_dim]  # fmt: skip
        hidden = nn.Dense(base * base * self.width, dtype=self.dtype, **init)(latents)
        hidden = hidden.reshape(latents.shape[0], base, base, self.width)  # [B, b, b, g_width]
        for index in range(num_blocks):
            block = GBlock(self.width, self.dtype, self.orthogonal_init, name=f"block_{index}")
            hidden = block(hidden, class_embedding, train=train)
            resolution = base * 2 ** (index + 1)  # [B, resolution, resolution, g_width]
            if resolution == self.attention:
                attention = SelfAttention(
                    False, self.dtype, self.orthogonal_init, name=f"attention_{resolution}"
                )
                hidden = attention(hidden, train=train)
        hidden = nn.relu(
            nn.BatchNorm(use_running_average=not train, dtype=self.dtype, **BATCH_NORM)(hidden)
        )
        pixels = Conv(channels, (3, 3), dtype=self.dtype, **init)(hidden)  # [B, H, W, C]
        return jnp.tanh(pixels.astype(jnp.float32))


class Discriminator(nn.Module):
    """Images [B, H, W, C] (and labels [B] int) -> real-vs-fake logits [B] float32."""

    width: int = 128
    num_blocks: int = 4
    num_classes: int = 0
    attention: int = 0
    orthogonal_init: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, images: jax.Array, labels: jax.Array | None = None, *, train: bool
    ) -> jax.Array:
        hidden, resolution, attended = images.astype(self.dtype), images.shape[1], False
        for index, pool in enumerate(discriminator_plan(resolution, self.num_blocks)):
            block = DBlock(
                self.width, pool, index == 0, self.dtype, self.orthogonal_init,
                name=f"block_{index}",
            )  # fmt: skip
            hidden = block(hidden, train=train)
            resolution = resolution // 2 if pool else resolution
            if resolution == self.attention and not attended:
                attention = SelfAttention(
                    True, self.dtype, self.orthogonal_init, name=f"attention_{resolution}"
                )
                hidden, attended = attention(hidden, train=train), True
        features = jnp.sum(nn.relu(hidden), axis=(1, 2))  # [B, d_width]
        init = _init(self.orthogonal_init)
        logits = spectral(nn.Dense(1, dtype=self.dtype, name="logit", **init), train)(features)
        logits = logits[:, 0]
        if self.num_classes > 1:
            # An embedding is a Dense on one-hot labels; its [K, d_width] matrix is normalised.
            projection = nn.Dense(
                self.width, use_bias=False, dtype=self.dtype, name="class_projection", **init
            )
            one_hot = jax.nn.one_hot(labels, self.num_classes, dtype=features.dtype)
            class_embedding = spectral(projection, train)(one_hot)  # [B, d_width]
            logits = logits + jnp.sum(class_embedding * features, axis=-1)
        return logits.astype(jnp.float32)


def check_settings(model: Mapping[str, Any], image_shape: tuple[int, int, int]) -> None:
    """Raises ValueError unless the image shape and the fields fit this family."""
    height, width, channels = image_shape
    if height != width or height not in SIDES or channels not in (1, 3):
        raise ValueError(
            f"the resnet model cannot make images of shape {tuple(image_shape)}; allowed: "
            f"square sides {', '.join(map(str, SIDES))} (4..7 times a power of 2) and "
            "1 or 3 channels (set config.image_size / config.channels)"
        )
    pools = sum(discriminator_plan(height, 10**6))
    if model["d_blocks"] < pools:
        raise ValueError(
            f"model.d_blocks={model['d_blocks']} is too few for {height} px images; "
            f"allowed: at least {pools} (D pools until its side is <= {D_FINAL_SIDE})"
        )
    sides = attention_sides(height, model["d_blocks"])
    if model["attention"] and model["attention"] not in sides:
        raise ValueError(
            f"model.attention={model['attention']} is not a resolution of both G and D for "
            f"{height} px images; allowed: 0 (none) or one of {', '.join(map(str, sides))}"
        )


def build(
    model: Mapping[str, Any],
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    dtype: jnp.dtype,
    population: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """The registry's entry: (generator, discriminator).

    Args:
      model: this family's fields (`FIELDS`) by name, already checked one by one.
      image_shape: (H, W, C); see `check_settings`.
      num_classes: > 1 for a class-conditional pair.
      dtype: compute dtype (jnp.float32 or jnp.bfloat16); parameters stay float32.
      population: ignored; the convolutions are the same when vmapped over members.
    """
    del population
    check_settings(model, tuple(image_shape))
    generator = Generator(
        width=model["g_width"],
        image_shape=tuple(image_shape),
        num_classes=num_classes,
        embed_dim=model["embed_dim"],
        attention=model["attention"],
        orthogonal_init=model["orthogonal_init"],
        dtype=dtype,
    )
    discriminator = Discriminator(
        width=model["d_width"],
        num_blocks=model["d_blocks"],
        num_classes=num_classes,
        attention=model["attention"],
        orthogonal_init=model["orthogonal_init"],
        dtype=dtype,
    )
    return generator, discriminator
