"""The ready-to-use pool3 feature function: the network bound to its weights, jitted once."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxgan.metrics.inception.network import InceptionV3
from jaxgan.metrics.inception.weights import load_inception_params, resolve_weights_path


@functools.lru_cache(maxsize=8)
def _build_pool3_fn(
    dtype: np.dtype, weights_path: str, cache_dir: str | None
) -> Callable[[jax.Array], jax.Array]:
    variables = jax.device_put(load_inception_params(weights_path, cache_dir))
    # Full float32 convolutions for the float32 reference; low-precision passes are the point of
    # asking for bfloat16.
    precision = lax.Precision.HIGHEST if dtype == np.float32 else lax.Precision.DEFAULT
    model = InceptionV3(dtype=dtype, precision=precision)
    # Variables are an argument, not a closure constant, so they are not baked into the program.
    apply = jax.jit(model.apply)

    def extract_pool3(images: jax.Array) -> jax.Array:
        return apply(variables, images)

    return extract_pool3


def pool3_fn(
    dtype: jnp.dtype = jnp.float32,
    weights_path: str | None = None,
    cache_dir: str | None = None,
) -> Callable[[jax.Array], jax.Array]:
    """Returns a function images -> pool3 features, with the weights loaded once per process.

    Functions are memoized per (dtype, resolved weights file, cache_dir): calling `pool3_fn`
    again is free and reuses the compiled program.

    Args:
        dtype: Computation dtype, float32 (reference numbers) or bfloat16.
        weights_path: See `load_inception_params`.
        cache_dir: See `load_inception_params`.

    Returns:
        A function mapping [B, 299, 299, 3] float32 images scaled by (x - 128) / 128 to
        [B, 2048] float32 features; it calls a jitted apply (compiled once per batch size).
    """
    path = os.path.abspath(resolve_weights_path(weights_path))
    return _build_pool3_fn(np.dtype(dtype), path, cache_dir)
