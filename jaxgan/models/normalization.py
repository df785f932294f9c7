"""Normalisation shared by the model families: the spectral-norm collection, BatchNorm settings.

`SPECTRAL_COLLECTION` names the flax collection that holds spectral normalisation's
power-iteration state; the train step threads it apart from BatchNorm's statistics.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax

SPECTRAL_COLLECTION = "spectral"
# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here), as in the DCGAN reference.
BATCH_NORM = dict(momentum=0.9, epsilon=1e-5)


def spectral(layer: nn.Module, train: bool) -> Callable[[jax.Array], jax.Array]:
    """`layer` under spectral normalisation (Miyato et al. 2018); one power iteration per
    training call, none in inference."""
    normalised = nn.SpectralNorm(layer, collection_name=SPECTRAL_COLLECTION)
    return lambda inputs: normalised(inputs, update_stats=train)
