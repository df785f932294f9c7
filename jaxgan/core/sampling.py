"""Inference: sampling the generator and scoring with the discriminator, from a `GANState`.

Both run in inference mode (BatchNorm running statistics, no dropout) and are jitted once
per state structure. They are also importable from `jaxgan.core`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.models.normalization import SPECTRAL_COLLECTION


def check_labels(state: Any, labels: Any) -> jax.Array | None:
    """Labels for `state`'s models: None for unconditional ones, else int32 [B] in range.

    Concrete labels are checked on the host; out-of-range ones are a ValueError (a
    jitted embedding lookup would silently clamp them).
    """
    if not state.num_classes:
        return None
    if labels is None:
        raise ValueError(
            f"this model is class-conditional: pass labels, integers in [0, {state.num_classes})"
        )
    if not isinstance(labels, jax.core.Tracer):
        values = np.asarray(labels)
        if not np.issubdtype(values.dtype, np.integer) or (
            values.size and (values.min() < 0 or values.max() >= state.num_classes)
        ):
            raise ValueError(
                f"labels must be integers in [0, {state.num_classes}); got "
                f"{values.dtype} values in [{values.min()}, {values.max()}]"
            )
    return jnp.asarray(labels, jnp.int32)


def generator_output(state: Any, latents: jax.Array, labels, use_ema: bool) -> jax.Array:
    """G's images in inference mode (traceable; `sample` is the checked, jitted entry)."""
    if use_ema:  # The averaged weights with their own BatchNorm statistics.
        variables = {"params": state.g_ema, "batch_stats": state.g_ema_batch_stats}
    else:
        variables = {"params": state.g_params, "batch_stats": state.g_batch_stats}
    return state.generator.apply(variables, latents, labels, train=False)


_sample = jax.jit(generator_output, static_argnames="use_ema")


def sample(
    state: Any, latents: jax.Array, labels: Any = None, *, use_ema: bool = True
) -> jax.Array:
    """Generates images [B, H, W, C] in [-1, 1] from latents [B, latent_dim].

    Runs the generator in inference mode (BatchNorm running statistics, no dropout), with
    the EMA weights and their own statistics when the state has them and `use_ema`.
    `labels` (int [B]) select the classes of a conditional model (required there);
    unconditional models ignore them.
    """
    labels = check_labels(state, labels)
    return _sample(state, latents, labels, bool(use_ema and state.g_ema))


def discriminator_output(state: Any, images: jax.Array, labels) -> jax.Array:
    """D's logits in inference mode (traceable; `discriminate` is the checked, jitted entry)."""
    variables = {"params": state.d_params, "batch_stats": state.d_batch_stats}
    if state.d_spectral:
        variables[SPECTRAL_COLLECTION] = state.d_spectral
    return state.discriminator.apply(variables, images, labels, train=False)


_discriminate = jax.jit(discriminator_output)


def discriminate(state: Any, images: jax.Array, labels: Any = None) -> jax.Array:
    """D's logits [B] in inference mode for float images [B, H, W, C] in [-1, 1].

    `labels` (int [B]) are needed by a conditional discriminator; others ignore them.
    """
    return _discriminate(state, images, check_labels(state, labels))
