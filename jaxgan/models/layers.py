"""Layers shared by the model families.

Each one computes exactly what a plain flax layer computes (tested against it, gradients
included) in a form that XLA's CPU backend runs fast: `SubpixelConvTranspose` for
`nn.ConvTranspose(padding="SAME")`, `Conv` for `nn.Conv` (`Dropout`, for
`nn.Dropout`, is in `jaxgan.models.dropout`).
`PatchConv` is `Conv` in the form `jax.vmap` over a population's members runs fast.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def same_padding_low(kernel_size: int, stride: int) -> int:
    """Low-side padding of `jax.lax.conv_transpose(..., padding='SAME')` along one axis.

    That function pads the stride-dilated input by this amount before a stride-1
    convolution with the (unflipped) kernel.
    """
    if stride > kernel_size - 1:
        return kernel_size - 1
    return -(-(kernel_size + stride - 2) // 2)


def phase_taps(kernel_size: int, stride: int) -> list[list[tuple[int, int]]]:
    """Which kernel taps feed each output phase of a 'SAME' transposed conv, and from where.

    With low padding `p` (`same_padding_low`), input position `i` reaches output
    position `o = stride * i + p - t` through kernel tap `t`. Writing `o = stride * m + r`
    with phase `0 <= r < stride`, tap `t` feeds phase `r` iff `t = p - r + stride * c` for
    an integer `c`, and then `out_r[m] += tap_t[m + c]`.

    Returns:
      For each phase `r`, the list of `(t, c)` pairs, taps in increasing order. A phase
      can have no taps when `stride > kernel_size`.
    """
    pad_low = same_padding_low(kernel_size, stride)
    return [
        [
            (tap, (tap - pad_low + phase) // stride)
            for tap in range(kernel_size)
            if (pad_low - phase - tap) % stride == 0
        ]
        for phase in range(stride)
    ]


def _shift(features: jax.Array, offset: int, axis: int) -> jax.Array:
    """`out[m] = features[m + offset]` along `axis`, zero where that index is outside."""
    if offset == 0:
        return features
    config = [(0, 0, 0)] * features.ndim
    config[axis] = (-offset, offset, 0)
    return lax.pad(features, jnp.zeros((), features.dtype), config)


@jax.custom_jvp
def matmul_f32(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """`lhs @ rhs` for [M, K] @ [K, N], accumulated and returned in float32.

    Its derivatives are the usual ones; only how the `rhs` gradient is computed differs.
    That gradient, `lhs.T @ d_out`, contracts `lhs` over its rows, which XLA's CPU backend
    runs through a path about 2x slower than a plain matmul (Eigen instead of YNNPACK);
    the linearisation therefore transposes `lhs` once, explicitly, which costs a copy.
    """
    return jnp.dot(lhs, rhs, preferred_element_type=jnp.float32)


@matmul_f32.defjvp
def _matmul_f32_jvp(primals, tangents):
    lhs, rhs = primals
    lhs_dot, rhs_dot = tangents
    # The barrier keeps XLA from folding the transpose back into the product.
    lhs_transposed = lax.optimization_barrier(lhs.T)
    tangent = jnp.dot(lhs_dot, rhs, preferred_element_type=jnp.float32) + jnp.dot(
        lhs_transposed.T, rhs_dot, preferred_element_type=jnp.float32
    )
    return matmul_f32(lhs, rhs), tangent


class SubpixelConvTranspose(nn.Module):
    """A 'SAME' transposed convolution computed as one matmul and per-phase shifted sums.

    Mathematically identical to `flax.linen.ConvTranspose(features, kernel_size, strides,
    padding='SAME')` with the same `kernel` [kh, kw, C_in, C_out] and `bias` parameters
    (tested against it, values and gradients), and to `jax.lax.conv_transpose`.

    Every input pixel is multiplied by every kernel tap in one matmul
    [B*H*W, C_in] @ [C_in, kh*kw*C_out]. Each sub-pixel phase of the output (the `s*s`
    interleaved grids `o = s*m + r`) is then a sum of a few shifted tap images
    (`phase_taps`), and the phases are interleaved as in a sub-pixel convolution (Shi et
    al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
    Sub-Pixel Convolutional Neural Network"). The multiplications are exactly the
    transposed convolution's, and both gradients are matmuls plus strided copies.

    Why: XLA's CPU backend computes the kernel gradient of `nn.ConvTranspose` about 60x
    slower than its forward pass (256 -> 128 channels, 7x7, batch 128: 9 s vs 0.16 s),
    and a stride-1 sub-pixel convolution with a [3, 3, C_in, 4*C_out] kernel does 2.25x
    the work for k=4, s=2 (most of its taps are zero). In the DCGAN train step on a
    2-core CPU this layer is ~1.7x faster than that sub-pixel convolution. Products are
    accumulated in float32 and the output is cast to the compute dtype.
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
        batch, height, width, in_features = inputs.shape
        kernel = self.param(
            "kernel",
            self.kernel_init,
            (kernel_h, kernel_w, in_features, self.features),
            self.param_dtype,
        )
        inputs, kernel = nn.dtypes.promote_dtype(inputs, kernel, dtype=self.dtype)
        num_taps = kernel_h * kernel_w
        # [B*H*W, C_in] @ [C_in, (kh, kw, C_out)]: each pixel's contribution through each tap.
        taps = matmul_f32(
            inputs.reshape(-1, in_features),
            kernel.transpose(2, 0, 1, 3).reshape(in_features, num_taps * self.features),
        )
        # Splitting (not slicing) keeps the backward pass a concatenation.
        tap_images = jnp.split(taps.reshape(batch, height, width, -1), num_taps, axis=-1)
        phase_rows = []
        for row_taps in phase_taps(kernel_h, stride_h):
            phase_cols = []
            for col_taps in phase_taps(kernel_w, stride_w):
                parts = [
                    _shift(_shift(tap_images[tap_h * kernel_w + tap_w], shift_h, 1), shift_w, 2)
                    for tap_h, shift_h in row_taps
                    for tap_w, shift_w in col_taps
                ]
                phase = (
                    functools.reduce(operator.add, parts)
                    if parts
                    else jnp.zeros_like(taps, shape=(batch, height, width, self.features))
                )
                phase_cols.append(phase)
            phase_rows.append(jnp.stack(phase_cols, axis=3))  # [B, H, W, sw, C_out]
        outputs = jnp.stack(phase_rows, axis=2)  # [B, H, sh, W, sw, C_out]
        outputs = outputs.reshape(batch, height * stride_h, width * stride_w, self.features)
        outputs = outputs.astype(inputs.dtype)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            outputs = outputs + bias.astype(outputs.dtype)
        return outputs


_NHWC_HWIO = ("NHWC", "HWIO", "NHWC")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_nhwc(
    inputs: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int],
    padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
    """`lax.conv_general_dilated(inputs, kernel, strides, padding)` in NHWC/HWIO layout.

    The value and the gradients are JAX's own (tested); the gradients are written as
    convolutions in the canonical NHWC/HWIO layout, the only one XLA's CPU backend runs
    fast inside a `while` loop (what `lax.scan` compiles to). JAX's own transpose rules
    emit convolutions with permuted dimension labels that XLA canonicalises only outside
    loops; inside them, the kernel gradient of a DCGAN discriminator conv runs ~40x
    slower. Reverse-mode only (`jax.grad`, `jax.vjp`, also nested); no `jax.jvp`.

    Args:
      inputs: [B, H, W, C_in].
      kernel: [kh, kw, C_in, C_out].
      strides: (sh, sw).
      padding: ((low_h, high_h), (low_w, high_w)).

    Returns:
      [B, H_out, W_out, C_out].
    """
    return lax.conv_general_dilated(inputs, kernel, strides, padding, dimension_numbers=_NHWC_HWIO)


def _conv_nhwc_fwd(inputs, kernel, strides, padding):
    return conv_nhwc(inputs, kernel, strides, padding), (inputs, kernel)


def _conv_nhwc_bwd(strides, padding, residuals, out_grad):
    inputs, kernel = residuals
    in_size, out_size, window = inputs.shape[1:3], out_grad.shape[1:3], kernel.shape[:2]
    dilated_out = [(size - 1) * stride + 1 for size, stride in zip(out_size, strides)]
    # d inputs: the stride-dilated output gradient convolved with the flipped kernel,
    # input and output features swapped (padding as in JAX's transpose rule).
    input_padding = []
    for size, k, (low, _), dilated in zip(in_size, window, padding, dilated_out):
        before = k - low - 1
        input_padding.append((before, size + k - 1 - dilated - before))
    flipped_kernel = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    inputs_grad = lax.conv_general_dilated(
        out_grad,
        flipped_kernel,
        (1, 1),
        input_padding,
        lhs_dilation=strides,
        dimension_numbers=_NHWC_HWIO,
    )
    # d kernel: batch and features swapped, [C_in, H, W, B] * [Ho, Wo, B, C_out] with the
    # output gradient dilated by the stride -> [C_in, kh, kw, C_out].
    kernel_padding = [
        (low, dilated - size + k - low - 1)
        for size, k, (low, _), dilated in zip(in_size, window, padding, dilated_out)
    ]
    kernel_grad = lax.conv_general_dilated(
        inputs.transpose(3, 1, 2, 0),
        out_grad.transpose(1, 2, 0, 3),
        (1, 1),
        kernel_padding,
        rhs_dilation=strides,
        dimension_numbers=_NHWC_HWIO,
    )
    return inputs_grad, kernel_grad.transpose(1, 2, 0, 3)


conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


class Conv(nn.Module):
    """`flax.linen.Conv` for 2D NHWC inputs, computed by `conv_nhwc`.

    Same parameters (`kernel` [kh, kw, C_in, C_out], `bias`), names and values as
    `nn.Conv(features, kernel_size, strides, padding)` (tested, with gradients); its
    gradients run fast on CPU inside `lax.scan` as well (see `conv_nhwc`).
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: str | Sequence[tuple[int, int]] = "SAME"
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        """[B, H, W, C_in] -> [B, H_out, W_out, features]."""
        kernel_size, strides = tuple(self.kernel_size), tuple(self.strides)
        kernel = self.param(
            "kernel",
            self.kernel_init,
            (*kernel_size, inputs.shape[-1], self.features),
            self.param_dtype,
        )
        inputs, kernel = nn.dtypes.promote_dtype(inputs, kernel, dtype=self.dtype)
        if isinstance(self.padding, str):
            padding = lax.padtype_to_pads(inputs.shape[1:3], kernel_size, strides, self.padding)
        else:
            padding = self.padding
        padding = tuple((int(low), int(high)) for low, high in padding)
        outputs = self.convolve(inputs, kernel, strides, padding)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            outputs = outputs + bias.astype(outputs.dtype)
        return outputs

    @staticmethod
    def convolve(inputs, kernel, strides, padding) -> jax.Array:
        """The convolution itself, on the promoted inputs and kernel, without the bias."""
        return conv_nhwc(inputs, kernel, strides, padding)


def extract_patches(
    inputs: jax.Array,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
    """[B, H, W, C] -> [B, H_out, W_out, kh * kw * C]: each output position's window.

    Built from strided slices of the padded input (no convolution), features ordered
    (kh, kw, C) like a flattened HWIO kernel; the gradient is pads and adds.
    """
    (kernel_h, kernel_w), (stride_h, stride_w) = kernel_size, strides
    padded = jnp.pad(inputs, ((0, 0), padding[0], padding[1], (0, 0)))
    out_h = (padded.shape[1] - kernel_h) // stride_h + 1
    out_w = (padded.shape[2] - kernel_w) // stride_w + 1
    windows = [
        lax.slice(
            padded,
            (0, row, col, 0),
            (
                padded.shape[0],
                row + stride_h * (out_h - 1) + 1,
                col + stride_w * (out_w - 1) + 1,
                padded.shape[3],
            ),
            (1, stride_h, stride_w, 1),
        )  # fmt: skip
        for row in range(kernel_h)
        for col in range(kernel_w)
    ]
    return jnp.concatenate(windows, axis=-1)


class PatchConv(Conv):
    """`Conv` (same parameters, same values up to float rounding) as patches @ kernel.

    One matmul [B*H_out*W_out, kh*kw*C_in] @ [kh*kw*C_in, C_out] over `extract_patches`.
    Under `jax.vmap` over a population's members, each with its own kernel, this stays a
    batched matmul; a convolution would become a grouped one (`feature_group_count=K`),
    and its kernel gradient a convolution with `batch_group_count=K`, which XLA runs
    several times slower than K separate convolutions (`benchmarks.population_speed`).
    """

    @staticmethod
    def convolve(inputs, kernel, strides, padding) -> jax.Array:
        patches = extract_patches(inputs, kernel.shape[:2], strides, padding)
        outputs = matmul_f32(
            patches.reshape(-1, patches.shape[-1]), kernel.reshape(-1, kernel.shape[-1])
        )
        return outputs.reshape(*patches.shape[:3], kernel.shape[-1]).astype(inputs.dtype)
