"""Generator/discriminator pairs, by model family name."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models import dcgan, mlp

MODELS = ("dcgan", "mlp")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_models(
    name: str,
    *,
    g_width: int,
    d_width: int,
    dropout_rate: float = 0.3,
    dtype: str = "float32",
) -> tuple[nn.Module, nn.Module]:
    """Returns (generator, discriminator) for a model family.

    Args:
      name: one of `MODELS`.
      g_width, d_width: base widths (channels for 'dcgan', hidden units for 'mlp').
      dropout_rate: discriminator dropout ('dcgan' only).
      dtype: compute dtype, 'float32' or 'bfloat16'; parameters stay float32.
    """
    if name not in MODELS:
        raise ValueError(f"model={name!r} is not a known model; allowed: {', '.join(MODELS)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; allowed: {', '.join(DTYPES)}")
    compute_dtype = DTYPES[dtype]
    if name == "dcgan":
        return (
            dcgan.Generator(width=g_width, dtype=compute_dtype),
            dcgan.Discriminator(width=d_width, dropout_rate=dropout_rate, dtype=compute_dtype),
        )
    return mlp.Generator(width=g_width, dtype=compute_dtype), mlp.Discriminator(
        width=d_width, dtype=compute_dtype
    )
