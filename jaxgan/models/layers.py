"""Layers shared by the model families.

Each one computes exactly what a plain flax layer computes (tested against it, gradients
included) in a form that XLA's CPU backend runs fast: `SubpixelConvTranspose` for
`nn.ConvTranspose(padding='SAME')`, `Conv` for `nn.Conv`, `Dropout` for `nn.Dropout`.
`PatchConv` is `Conv` in the form `jax.vmap` over a population's members runs fast.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Threefry-2x32 (Salmon et al. 2011, "Parallel Random Numbers: As Easy as 1, 2, 3"), 20 rounds.
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = np.uint32(0x1BD11BDA)


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


def threefry_2x32(
    key: tuple[jax.Array, jax.Array], counts: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash as straight-line uint32 arithmetic.

    Equal to JAX's `jax.extend.random.threefry2x32_p`, but XLA fuses it into one loop
    over the counts: JAX lowers that primitive on CPU as a rolled `while` loop whose five
    iterations each read and write the whole state, several times slower.

    Args:
      key: two uint32 scalars.
      counts: two uint32 arrays of one shape.

    Returns:
      Two uint32 arrays of the counts' shape.
    """
    key_0, key_1 = key
    key_schedule = (key_0, key_1, key_0 ^ key_1 ^ _THREEFRY_PARITY)
    word_0, word_1 = counts[0] + key_schedule[0], counts[1] + key_schedule[1]
    for block in range(5):
        for rotation in _THREEFRY_ROTATIONS[block % 2]:
            word_0 = word_0 + word_1
            word_1 = (word_1 << np.uint32(rotation)) | (word_1 >> np.uint32(32 - rotation))
            word_1 = word_0 ^ word_1
        word_0 = word_0 + key_schedule[(block + 1) % 3]
        word_1 = word_1 + key_schedule[(block + 2) % 3] + np.uint32(block + 1)
    return word_0, word_1


def _is_threefry(key: jax.Array) -> bool:
    """Whether `key` is a single Threefry-2x32 key (typed, or raw of the default impl)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.shape == () and jax.random.key_impl(key) == "threefry2x32"
    return key.shape == (2,) and jax.config.jax_default_prng_impl == "threefry2x32"


def bernoulli(key: jax.Array, p: float, shape: Sequence[int]) -> jax.Array:
    """Equals `jax.random.bernoulli(key, p, shape)` (float32 `p`), bit for bit, faster on CPU.

    For a Threefry key with `jax_threefry_partitionable` on (JAX's default), the random
    bits are computed by `threefry_2x32` exactly as JAX's partitionable Threefry does
    (one hash of the 64-bit flat index per element, the two words XOR-ed), so XLA fuses
    them; other keys take `jax.random.bernoulli` itself. `uniform < p` with JAX's
    uniform `(bits >> 9) * 2**-23` is the integer test `bits >> 9 < ceil(p * 2**23)`.

    Args:
      key: a PRNG key (typed, or a raw uint32 key of the default implementation).
      p: the probability of True, in [0, 1], a Python float.
      shape: the output shape; at most 2**32 elements.

    Returns:
      bool array of `shape`.
    """
    size = int(np.prod(shape))
    fused = (
        _is_threefry(key)
        and jax.config.jax_threefry_partitionable
        and not jax.config.jax_enable_x64  # with x64, `p` and the uniforms are float64
        and size < 2**32
    )
    if not fused:
        return jax.random.bernoulli(key, p, shape)
    key_words = jax.random.key_data(key)
    padded_size = -(-size // 8) * 8
    low_index = lax.iota(jnp.uint32, padded_size)
    words = threefry_2x32((key_words[0], key_words[1]), (jnp.zeros_like(low_index), low_index))
    threshold = np.uint32(np.ceil(np.float64(np.float32(p)) * 2**23))
    keep = (words[0] ^ words[1]) >> np.uint32(9) < threshold
    # Packing 8 flags per byte is a reduction, which XLA materialises: the Threefry rounds
    # then run once, on their own, instead of inside every consumer of the mask (the
    # forward and the backward pass) fused with float arithmetic, which XLA:CPU runs
    # unvectorised, several times slower.
    bit_positions = jnp.arange(8, dtype=jnp.uint8)
    packed = jnp.sum(
        keep.astype(jnp.uint8).reshape(-1, 8) << bit_positions, axis=1, dtype=jnp.uint8
    )
    unpacked = (packed[:, None] >> bit_positions) & np.uint8(1)
    return unpacked.reshape(-1)[:size].reshape(shape).astype(bool)


class Dropout(nn.Module):
    """`flax.linen.Dropout` with the same masks, generated faster on CPU.

    Drop-in for `nn.Dropout(rate, broadcast_dims, deterministic, rng_collection)`: it
    draws the same key from the same collection and returns the same outputs (tested).
    Its masks come from `bernoulli`; in the DCGAN train step on CPU that cuts the time
    spent on dropout randomness about 4x (from ~12% of the step to ~3%).
    """

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, inputs: jax.Array, deterministic: bool | None = None) -> jax.Array:
        """Zeroes each element with probability `rate` and scales the rest by 1/(1 - rate)."""
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        mask_shape = [
            1 if dim in self.broadcast_dims else size for dim, size in enumerate(inputs.shape)
        ]
        mask = bernoulli(self.make_rng(self.rng_collection), keep_prob, mask_shape)
        mask = jnp.broadcast_to(mask, inputs.shape)
        return lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
