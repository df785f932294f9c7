"""Generator/discriminator pairs, by model family name.

A family is one file with `build(*, g_width, d_width, dropout_rate, dtype, image_shape,
num_classes, spectral_norm) -> (generator, discriminator)` plus one line in `MODELS`.
Every module is called as `module(inputs, labels=None, *, train)`; unconditional ones
ignore the labels. A family may also take `population=False`: when True (a population's
members, `jax.vmap`ped) it builds layers that vmap well; families without it are used
as they are.
"""

from __future__ import annotations

import inspect
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models import dcgan, mlp

MODELS = {
    "dcgan": dcgan.build,
    "mlp": mlp.build,
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_models(
    name: str,
    *,
    g_width: int,
    d_width: int,
    dropout_rate: float = 0.3,
    dtype: str = "float32",
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 0,
    spectral_norm: bool = False,
    population: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """Returns (generator, discriminator) of a model family.

    Args:
      name: a key of `MODELS`.
      g_width, d_width: base widths (channels for 'dcgan', hidden units for 'mlp').
      dropout_rate: discriminator dropout ('dcgan' only).
      dtype: compute dtype, 'float32' or 'bfloat16'; parameters stay float32.
      image_shape: (H, W, C) of the images.
      num_classes: > 1 for a class-conditional pair; 0 or 1 for an unconditional one.
      spectral_norm: spectral normalisation in the discriminator.
      population: the pair will be vmapped over a population's members; passed to
        families whose `build` takes it.
    """
    if name not in MODELS:
        raise ValueError(f"model={name!r} is not a known model; allowed: {', '.join(MODELS)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; allowed: {', '.join(DTYPES)}")
    family = MODELS[name]
    options = {"population": True} if population and _takes_population(family) else {}
    return family(
        **options,
        g_width=g_width,
        d_width=d_width,
        dropout_rate=dropout_rate,
        dtype=DTYPES[dtype],
        image_shape=tuple(image_shape),
        num_classes=num_classes,
        spectral_norm=spectral_norm,
    )


def _takes_population(family) -> bool:
    return "population" in inspect.signature(family).parameters


def build_from_config(config: Any, image_shape, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """`build_models` with the config's fields; conditional only if `config.conditional`."""
    return build_models(
        config.model,
        g_width=config.g_width,
        d_width=config.d_width,
        dropout_rate=config.dropout_rate,
        dtype=config.dtype,
        image_shape=image_shape,
        num_classes=num_classes if config.get("conditional", False) else 0,
        spectral_norm=config.get("spectral_norm", False),
        population=bool(config.get("population", 0)),
    )
