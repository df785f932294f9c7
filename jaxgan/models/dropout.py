"""Dropout whose masks equal `flax.linen.Dropout`'s for a key, in a form XLA's CPU backend
runs fast: the Threefry-2x32 hash as straight-line uint32 arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Threefry-2x32 (Salmon et al. 2011, "Parallel Random Numbers: As Easy as 1, 2, 3"), 20 rounds.
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


_THREEFRY_PARITY = np.uint32(0x1BD11BDA)


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
