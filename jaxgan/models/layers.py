"""Layers shared by the model families."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _same_padding_taps(kernel_size: int, stride: int) -> tuple[np.ndarray, int]:
    """Which transposed-conv kernel tap feeds each (input offset, output phase) pair.

    A stride-s transposed convolution with 'SAME' padding (as `jax.lax.conv_transpose`
    defines it) writes output position `o = s*m + r` from input positions `m + d`, with
    kernel tap `t = s*d - r + pad_low`. This returns, for every window offset `d` and phase
    `r`, the tap index `t`, or `kernel_size` (a zero tap) where no tap applies.

    Returns:
      taps: int array [num_offsets, stride].
      min_offset: the input offset of row 0 of `taps` (<= 0).
    """
    pad_total = kernel_size + stride - 2
    pad_low = kernel_size - 1 if stride > kernel_size - 1 else int(np.ceil(pad_total / 2))
    # t = s*d - r + pad_low must lie in [0, k) for some r in [0, s).
    min_offset = -(pad_low // stride)
    max_offset = (kernel_size - 1 - pad_low + stride - 1) // stride
    offsets = np.arange(min_offset, max_offset + 1)[:, None]
    phases = np.arange(stride)[None, :]
    taps = stride * offsets - phases + pad_low
    taps = np.where((taps >= 0) & (taps < kernel_size), taps, kernel_size)
    return taps, int(min_offset)


def depth_to_space(features: jax.Array, stride: int) -> jax.Array:
    """Rearranges [B, H, W, s*s*C] into [B, H*s, W*s, C] (sub-pixel shuffle)."""
    batch, height, width, channels = features.shape
    out_channels = channels // (stride * stride)
    features = features.reshape(batch, height, width, stride, stride, out_channels)
    features = features.transpose(0, 1, 3, 2, 4, 5)
    return features.reshape(batch, height * stride, width * stride, out_channels)


class SubpixelConvTranspose(nn.Module):
    """A transposed convolution computed as a stride-1 convolution plus depth-to-space.

    Mathematically identical to `flax.linen.ConvTranspose(features, kernel_size, strides,
    padding='SAME')` with the same `kernel` [kh, kw, C_in, C_out] and `bias` parameters
    (tested against it), but its gradient is an ordinary convolution. XLA's CPU backend is
    about 20x slower at the gradient of a transposed convolution than at that of a plain
    one; on GPU both forms run at the same speed.

    The kernel is regathered on every call into a [dh, dw, C_in, s*s*C_out] kernel
    (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an
    Efficient Sub-Pixel Convolutional Neural Network").
    """

    features: int
    kernel_size: Sequence[int] = (4, 4)
    strides: Sequence[int] = (2, 2)
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Upsamples [B, H, W, C_in] to [B, H*sh, W*sw, features]."""
        (kernel_h, kernel_w), (stride_h, stride_w) = self.kernel_size, self.strides
        if stride_h != stride_w:
            raise ValueError(f"strides must be equal on both axes, got {self.strides}")
        in_features = inputs.shape[-1]
        kernel = self.param(
            "kernel", self.kernel_init, (kernel_h, kernel_w, in_features, self.features),
            self.param_dtype,
        )
        taps_h, min_h = _same_padding_taps(kernel_h, stride_h)
        taps_w, min_w = _same_padding_taps(kernel_w, stride_w)
        # A zero tap at index k on both spatial axes stands for "no tap".
        padded_kernel = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
        # [Dh, Dw, s, s, C_in, C_out] -> [Dh, Dw, C_in, s*s*C_out]
        subpixel_kernel = padded_kernel[
            taps_h[:, None, :, None], taps_w[None, :, None, :]
        ]
        num_h, num_w = taps_h.shape[0], taps_w.shape[0]
        subpixel_kernel = subpixel_kernel.transpose(0, 1, 4, 2, 3, 5).reshape(
            num_h, num_w, in_features, stride_h * stride_w * self.features
        )
        inputs, subpixel_kernel = nn.dtypes.promote_dtype(
            inputs, subpixel_kernel, dtype=self.dtype
        )
        padding = ((-min_h, num_h - 1 + min_h), (-min_w, num_w - 1 + min_w))
        features = lax.conv_general_dilated(
            inputs, subpixel_kernel, window_strides=(1, 1), padding=padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        outputs = depth_to_space(features, stride_h)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            outputs = outputs + bias.astype(outputs.dtype)
        return outputs
