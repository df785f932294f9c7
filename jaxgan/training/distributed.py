"""Many processes (hosts): joining them, and which one writes and when they stop.

`initialize_distributed` joins the processes (`jax.distributed.initialize`); the mesh
(`jaxgan.core.sharding.data_mesh`) then spans all their devices, and every process runs the
same program on its own devices. Process 0 writes the files (`outputs_folder`) and they
agree on when to stop (`agreed`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import jax
import numpy as np

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
