"""Many hosts, for real: two processes on 127.0.0.1, each with two CPU devices.

The two processes form one mesh of four devices (`jax.distributed.initialize`, CPU
collectives over gloo). Their run must equal a one-process run on four devices: the same
global batches (each process loads only its own rows), the same parameters up to the order
of float reductions, the same FID; and only process 0 writes the workdir's files. The
processes are subprocesses of this file: `python tests/test_multihost.py TASK.json`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.helpers.features import conv_features

REPO = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-5, 1e-6  # As in test_sharding: reductions are summed in another order.
TIMEOUT = 600


def _worker(task: dict) -> None:
    from flax import serialization, traverse_util

    from experiments.configs import dcgan
    from jaxgan.evaluation import Evaluator
    from jaxgan.training import loop

    config = dcgan.get_config("smoke").unlock()
    config.num_train_examples = 128  # 2 steps of 64, 16 images per device
    config.eval_every = 1
    config.progress = False
    config.update(task["config"])

    def evaluator(config, test_set):
        return Evaluator.from_dataset(config, test_set, feature_fn=conv_features)

    state = loop.train_and_evaluate(config, task["workdir"], evaluator_factory=evaluator)
    tree = jax.device_get(serialization.to_state_dict(state))
    flat = traverse_util.flatten_dict(tree, sep="/")
    np.savez(f"{task['out']}_process{jax.process_index()}.npz", **flat)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(root: Path, processes: int, devices: int, task: dict) -> None:
    """Runs `task` in `processes` processes of `devices` CPU devices each, to completion."""
    spec = root / f"{Path(task['out']).name}.json"
    spec.write_text(json.dumps(task))
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    if processes > 1:
        env.update(
            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}",
            JAXGAN_NUM_PROCESSES=str(processes),
        )
    logs = [root / f"{Path(task['out']).name}_process{index}.log" for index in range(processes)]
    running = []
    for index, log in enumerate(logs):
        with log.open("w") as output:
            running.append(
                subprocess.Popen(
                    [sys.executable, __file__, str(spec)],
                    cwd=REPO,
                    env={**env, "JAXGAN_PROCESS_ID": str(index)},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        codes = [process.wait(timeout=TIMEOUT) for process in running]
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
    for code, log in zip(codes, logs, strict=True):
        assert code == 0, f"{log.name}:\n{log.read_text()[-4000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    # The yardstick: one process with four devices.
    launch(root, 1, 4, {"workdir": str(root / "one"), "config": {}, "out": str(root / "one")})
    # Two processes with two devices each, started by the environment alone
    # (JAX_COORDINATOR_ADDRESS), then resumed with config.distributed=True for an epoch more.
    launch(root, 2, 2, {"workdir": str(root / "two"), "config": {}, "out": str(root / "two")})
    launch(
        root,
        2,
        2,
        {
            "workdir": str(root / "two"),
            "config": {"num_epochs": 2, "distributed": True},
            "out": str(root / "two_resumed"),
        },
    )
    return root


def _records(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_train_and_score_like_one_process_on_four_devices(runs):
    want = np.load(runs / "one_process0.npz")
    for process in (0, 1):
        got = np.load(runs / f"two_process{process}.npz")
        assert sorted(got.files) == sorted(want.files)
        for name in want.files:
            np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL, err_msg=name)
    (one,), (two, _) = _records(runs / "one"), _records(runs / "two")
    assert two["step"] == one["step"] == 2
    for name in ("fid", "kid_mean", "precision", "recall", "d_loss", "g_loss"):
        assert two[name] == pytest.approx(one[name], rel=1e-5, abs=1e-7), name
    # FID's features are computed per image, so FID agrees far closer than the training.
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-6)


@pytest.mark.slow
def test_only_process_zero_writes_the_workdir(runs):
    log = (runs / "two" / "train.log").read_text()
    assert "mesh: 4 devices (cpu), data=4; 2 processes, this is process 0" in log
    assert "this is process 1" not in log
    # One line per epoch (not one per process), a grid per epoch and one result file.
    assert [r["step"] for r in _records(runs / "two")] == [2, 4]
    assert sorted(p.name for p in (runs / "two" / "samples").iterdir()) == [
        "epoch_0001.png",
        "epoch_0002.png",
    ]
    assert "FID" in (runs / "two" / "fid_result.txt").read_text()
    assert (runs / "two" / "checkpoints" / "2").is_dir()


@pytest.mark.slow
def test_two_processes_resume_their_checkpoint_and_train_on(runs):
    log = (runs / "two" / "train.log").read_text()
    assert f"Resumed from {runs / 'two' / 'checkpoints' / '2'} at step 2" in log
    for process in (0, 1):
        resumed = np.load(runs / f"two_resumed_process{process}.npz")
        before = np.load(runs / f"two_process{process}.npz")
        assert int(resumed["step"]) == 4
        assert not np.allclose(
            resumed["g_params/Dense_0/kernel"], before["g_params/Dense_0/kernel"]
        )
    np.testing.assert_array_equal(
        np.load(runs / "two_resumed_process0.npz")["d_params/Dense_0/kernel"],
        np.load(runs / "two_resumed_process1.npz")["d_params/Dense_0/kernel"],
    )


@pytest.mark.parametrize(
    "environ, launcher",
    [
        ({}, None),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, "JAX_COORDINATOR_ADDRESS"),
        ({"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "8"}, "Slurm"),
        ({"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "1"}, None),  # one task: one process
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8"}, None),  # the batch script, not srun
        ({"OMPI_MCA_orte_hnp_uri": "1;tcp://10.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI"),
        ({"TPU_WORKER_HOSTNAMES": "t1,t2,t3,t4"}, "TPU slice"),
        ({"TPU_WORKER_HOSTNAMES": "t1"}, None),
    ],
)
def test_the_launchers_environment_asks_for_several_processes(environ, launcher):
    from jaxgan.training import distributed

    assert distributed.launched_as_many(environ) == launcher
    if launcher is None:  # Nothing to join: no call to jax.distributed.initialize.
        assert distributed.initialize_distributed(False, environ) is False


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _worker(json.loads(Path(sys.argv[1]).read_text()))
