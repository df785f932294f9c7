"""The epoch loader: each epoch's shuffled batches, split over the mesh's devices."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxgan.core.batches import epoch_batches
from jaxgan.core.sharding import batch_sharding, check_batch_size, replicate


class EpochLoader:
    """Each epoch's shuffled batches [N // B, B, ...], split over the mesh along B.

    `loader(key)` equals `jaxgan.core.epoch_batches(data, key, batch_size)`, element for
    element, on any mesh; `loader(keys)` with a population's keys [K] stacks the members'
    epochs on axis 1. In one process the dataset is copied once to every device and
    shuffled there (no transfer per epoch). With several processes (`on_device=False`) each
    process computes the epoch's permutation and gathers, on the host, only the rows of its
    own devices (`jax.make_array_from_callback`).

    Args:
      data: a host array [N, ...] or a dict of them (e.g. {"image", "label"}), the same in
        every process.
      mesh: the `data_mesh`.
      batch_size: the global batch size, a multiple of the mesh's size.
      on_device: shuffle on the devices (default: when there is one process).
    """

    def __init__(self, data: Any, mesh: Mesh, batch_size: int, *, on_device: bool | None = None):
        check_batch_size(batch_size, mesh)
        self.batch_size, self.mesh = batch_size, mesh
        self.on_device = jax.process_count() == 1 if on_device is None else on_device
        if self.on_device:
            self.data = replicate(data, mesh)
            self._shuffle = jax.jit(
                epoch_batches, static_argnums=2, out_shardings=batch_sharding(mesh, 1)
            )
            # A population's keys [K]: [N // B, K, B, ...], member k's batches at [:, k].
            self._shuffle_members = jax.jit(
                jax.vmap(epoch_batches, in_axes=(None, 0, None), out_axes=1),
                static_argnums=2,
                out_shardings=batch_sharding(mesh, 2),
            )
        else:
            self.data = jax.tree.map(np.asarray, data)

    def __call__(self, key: jax.Array) -> Any:
        """The epoch of `key`; for a population's keys [K], [N // B, K, B, ...] batches."""
        members = key.shape[0] if key.ndim else None
        if self.on_device:
            shuffle = self._shuffle if members is None else self._shuffle_members
            return shuffle(self.data, key, self.batch_size)
        count = len(jax.tree.leaves(self.data)[0])
        num_batches = count // self.batch_size
        keys = [key] if members is None else list(key)
        orders = [
            np.asarray(jax.random.permutation(k, count))[: num_batches * self.batch_size].reshape(
                num_batches, self.batch_size
            )
            for k in keys
        ]
        order = orders[0] if members is None else np.stack(orders, axis=1)
        sharding = batch_sharding(self.mesh, batch_axis=order.ndim - 1)

        def load(array: np.ndarray) -> jax.Array:
            def rows(index: tuple[slice, ...]) -> np.ndarray:
                head, tail = index[: order.ndim], index[order.ndim :]
                return array[order[head]][(*(slice(None),) * order.ndim, *tail)]

            shape = (*order.shape, *array.shape[1:])
            return jax.make_array_from_callback(shape, sharding, rows)

        return jax.tree.map(load, self.data)
