"""Batches as `train_step` takes them: uint8 to float, and an epoch's shuffled batches.

A batch is a dict `{"image": float [B, H, W, C] in [-1, 1], "label": int32 [B]}`;
unconditional models ignore the label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

Batch = Mapping[str, jax.Array]


def as_batch(batch: Batch | jax.Array) -> Batch:
    return batch if isinstance(batch, Mapping) else {"image": batch}


def images_to_float(images: jax.Array) -> jax.Array:
    """uint8 images [..., H, W, C] -> float32 in [-1, 1], same shape."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def batch_to_float(batch: Batch) -> Batch:
    """A uint8 batch {"image", "label"} -> the float batch `train_step` takes."""
    return {**batch, "image": images_to_float(batch["image"])}


def epoch_batches(data: Any, key: jax.Array, batch_size: int) -> Any:
    """Shuffles a dataset on device into [N // batch_size, batch_size, ...] batches.

    `data` is an array [N, ...] or a dict of them (e.g. {"image": uint8 [N, H, W, C],
    "label": int32 [N]}); every array is shuffled with the same permutation. The last
    incomplete batch is dropped.
    """
    count = jax.tree.leaves(data)[0].shape[0]
    num_batches = count // batch_size
    order = jax.random.permutation(key, count)[: num_batches * batch_size]
    return jax.tree.map(lambda a: a[order].reshape(num_batches, batch_size, *a.shape[1:]), data)
