"""Data parallelism with JAX's own sharding: one mesh, batches split, everything else replicated.

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

Many hosts: `initialize_distributed` joins the processes (`jax.distributed.initialize`), the
mesh then spans all their devices, and every process runs the same program on its own
devices; each fills its devices from the host (`EpochLoader`, `put_batch`, `replicate`),
process 0 writes the files (`outputs_folder`) and they agree on when to stop (`agreed`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
# For launches without a cluster manager, beside JAX's own JAX_COORDINATOR_ADDRESS.
NUM_PROCESSES_ENV, PROCESS_ID_ENV = "JAXGAN_NUM_PROCESSES", "JAXGAN_PROCESS_ID"


def _more_than_one(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "")
    return value.isdigit() and int(value) > 1


def launched_as_many(environ: Mapping[str, str] | None = None) -> str | None:
    """The launcher that started this process as one of several, or None.

    Recognises what `jax.distributed.initialize()` can then configure by itself: JAX's
    `JAX_COORDINATOR_ADDRESS`, a Slurm job step of several tasks (`srun`), Open MPI
    (`mpirun -n N`) and multi-host TPU slices that name their workers.
    """
    environ = os.environ if environ is None else environ
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return "JAX_COORDINATOR_ADDRESS"
    if "SLURM_JOB_ID" in environ and _more_than_one(environ, "SLURM_STEP_NUM_TASKS"):
        return "Slurm"
    if "OMPI_MCA_orte_hnp_uri" in environ and _more_than_one(environ, "OMPI_COMM_WORLD_SIZE"):
        return "Open MPI"
    if "," in environ.get("TPU_WORKER_HOSTNAMES", "") or environ.get(
        "MEGASCALE_COORDINATOR_ADDRESS"
    ):
        return "TPU slice"
    return None


def initialize_distributed(requested: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Joins the other processes of a multi-host run; returns whether this run has several.

    Calls `jax.distributed.initialize()` when `requested` (`config.distributed`) or when
    `launched_as_many` recognises the launcher, before anything else touches the devices.
    JAX finds the coordinator, the number of processes and this process's index from the
    cluster (Slurm, Open MPI, TPU pods, Kubernetes); elsewhere set JAX_COORDINATOR_ADDRESS
    (host:port of process 0), JAXGAN_NUM_PROCESSES and JAXGAN_PROCESS_ID.
    """
    environ = os.environ if environ is None else environ
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    if not (requested or launched_as_many(environ)):
        return False
    settings = {}
    if environ.get(NUM_PROCESSES_ENV) and environ.get(PROCESS_ID_ENV):
        settings = {
            "num_processes": int(environ[NUM_PROCESSES_ENV]),
            "process_id": int(environ[PROCESS_ID_ENV]),
        }
    jax.distributed.initialize(**settings)
    return jax.process_count() > 1


def is_main_process() -> bool:
    """Process 0 writes the logs, samples, metrics and reports of a multi-process run."""
    return jax.process_index() == 0


@contextlib.contextmanager
def outputs_folder(workdir: Path) -> Iterator[Path]:
    """Where this process writes its logs, grids, metrics and reports.

    The workdir on process 0; a private temporary folder (removed afterwards) on the others,
    which run the same computations in the same order (their programs share collectives)
    while only process 0's files reach the workdir.
    """
    if is_main_process():
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix=f"jaxgan_process{jax.process_index()}_") as folder:
        yield Path(folder)


def agreed(predicate: Callable[[], bool]) -> Callable[[], bool]:
    """`predicate` made true on every process as soon as it is true on one of them.

    With several processes each call is a collective (every process calls it at the same
    points of the run), so that a signal that reached one process stops all of them at the
    same step. With one process it is `predicate` itself.
    """
    if jax.process_count() == 1:
        return predicate
    from jax.experimental import multihost_utils

    def on_any_process() -> bool:
        flags = multihost_utils.process_allgather(np.array(bool(predicate())))
        return bool(np.any(flags))

    return on_any_process


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


class EpochLoader:
    """Each epoch's shuffled batches [N // B, B, ...], split over the mesh along B.

    `loader(key)` equals `jaxgan.train.epoch_batches(data, key, batch_size)`, element for
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
            # Imported here: the metrics use this module without the training code.
            from jaxgan.train import epoch_batches

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
