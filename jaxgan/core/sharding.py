"""Where arrays live: one mesh over every device, batches split, everything else replicated.

One mesh has a single axis, `data`, over every device (of every process). Batches are split
along their batch axis; parameters, BatchNorm statistics and optimizer states are replicated.
The pure `train_step` then runs unchanged under `jax.jit`, which follows these input shardings
and computes with the semantics of one global batch: BatchNorm's statistics and every loss are
those of the whole batch, so the result does not depend on the number of devices (up to the
order of float reductions). On one device the programs and their results are those of an
unsharded run.

    mesh = sharding.data_mesh()                        # e.g. 4 devices: data=4
    state = sharding.replicate(state, mesh)
    step = jax.jit(train_step, out_shardings=sharding.replicated(mesh))
    batch = sharding.put_batch(batch, mesh)            # [B, ...] split over B
    with jax.set_mesh(mesh):                           # lets `split_batch` act
        state, metrics = step(state, batch, key)

Many processes: `jaxgan.training.distributed` joins them; the epoch loader
(`jaxgan.data.loader`) fills each process's devices from the host.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Any = None) -> Mesh:
    """A one-axis mesh `data` over `devices` (default: every device of every process).

    The axis is `Auto`: XLA propagates the input shardings through the program, so code
    written for one device (flax modules, optax) runs unchanged.
    """
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer and BatchNorm state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """Split along `batch_axis` over the `data` axis: 0 for [B, ...], 1 for [S, B, ...]."""
    return NamedSharding(mesh, PartitionSpec(*(None,) * batch_axis, DATA_AXIS))


def describe(mesh: Mesh) -> str:
    """The mesh in words, e.g. '4 devices (cpu), data=4' (and the processes when several)."""
    count = mesh.devices.size
    platform = mesh.devices.flat[0].platform
    axes = ", ".join(f"{name}={size}" for name, size in mesh.shape.items())
    text = f"{count} device{'s' if count > 1 else ''} ({platform}), {axes}"
    if jax.process_count() > 1:
        text += f"; {jax.process_count()} processes, this is process {jax.process_index()}"
    return text


def check_batch_size(batch_size: int, mesh: Mesh, name: str = "config.batch_size") -> None:
    """Refuses a global batch that the mesh's devices cannot share equally (ValueError)."""
    count = mesh.shape[DATA_AXIS]
    if batch_size % count:
        below = batch_size // count * count
        nearest = " or ".join(str(b) for b in (below, below + count) if b > 0)
        raise ValueError(
            f"{name}={batch_size} cannot be split over the {count} devices of the mesh "
            f"({describe(mesh)}): each device takes an equal share of the global batch; "
            f"allowed: a multiple of {count}, e.g. {nearest}"
        )


def _from_host(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host array every process holds; each fills its own devices."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """`tree`'s arrays, each whole on every device of `mesh` (committed there).

    Every process must pass the same values (e.g. a state built from the same seed, or
    restored from the same checkpoint).
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda leaf: _from_host(np.asarray(leaf), sharding), tree)


def put_batch(batch: Any, mesh: Mesh) -> Any:
    """A host batch [B, ...] (or a tree of them), split along B over `mesh`.

    With several processes every process passes the whole global batch and places only
    the rows of its own devices.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(lambda leaf: _from_host(np.asarray(leaf), sharding), batch)


def to_host(array: Any) -> np.ndarray:
    """The whole value of a (possibly split, possibly multi-process) array, on the host."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(array)


def split_batch(array: jax.Array) -> jax.Array:
    """Inside a jitted function: asks XLA to split `array` [B, ...] along B over the mesh.

    For arrays a step creates itself (e.g. latents drawn from a key), which no input sharding
    reaches: without it the generator would run the whole batch on every device. Active only
    under `jax.set_mesh(mesh)` with a `data` axis of more than one device; otherwise it
    returns `array` unchanged. JAX's random numbers do not depend on how they are split
    (`jax_threefry_partitionable`), so neither do the results.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.shape.get(DATA_AXIS, 1) == 1:
        return array
    return jax.lax.with_sharding_constraint(array, PartitionSpec(DATA_AXIS))
