"""Fault injection, end to end: kills, signals, divergence, disk faults, determinism.

Each scenario runs the real entry point (`python -m experiments.dcgan`) as a subprocess
on a tiny config: 3 epochs of 4 steps, chunks of 2 steps, a checkpoint every epoch. The
faults happen at known moments: `tests/helpers/pausing_run.py` runs the same entry point
and pauses at a given step, or inside a given checkpoint save, while the test kills,
signals or sabotages it. Every rerun is the plain command, as a user would type it.

The subprocesses share a JAX compilation cache, so that only the first one compiles;
a cached executable is the one a fresh compilation would give, so results are the same.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization

from experiments.configs import dcgan
from jaxgan.checkpoint import Checkpointer, signature
from jaxgan.core import create_state
from jaxgan.training import loop

REPO = Path(__file__).resolve().parents[1]
PAUSING_RUN = REPO / "tests" / "helpers" / "pausing_run.py"
STEPS_PER_EPOCH = 4
NUM_EPOCHS = 3
FINAL_STEP = STEPS_PER_EPOCH * NUM_EPOCHS
FLAGS = (
    "--config=experiments/configs/dcgan.py:smoke",
    "--config.eval_every=0",
    f"--config.num_epochs={NUM_EPOCHS}",
    f"--config.num_train_examples={64 * STEPS_PER_EPOCH}",
    "--config.log_every_steps=2",
    "--config.checkpoint_every=1",
    "--config.progress=False",
)
# Fields that legitimately differ between two runs of the same training.
TIMING_FIELDS = ("epoch_seconds", "wall_time", "resumed")
TIMEOUT = 300


@pytest.fixture(scope="module")
def run_env(tmp_path_factory):
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def train(workdir: Path, env: dict, *overrides: str) -> subprocess.CompletedProcess:
    """Runs the plain training command to completion."""
    command = [sys.executable, "-m", "experiments.dcgan", *FLAGS, *overrides]
    return subprocess.run(
        [*command, f"--workdir={workdir}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


class PausedRun:
    """A training subprocess that pauses at a known point and waits to be released."""

    def __init__(self, workdir: Path, env: dict, pause: dict[str, int], *overrides: str):
        control = workdir.parent / f"{workdir.name}_control"
        control.mkdir()
        self.marker, self.release_file = control / "paused", control / "release"
        self.output = control / "output.txt"
        env = {
            **env,
            **{name: str(value) for name, value in pause.items()},
            "JAXGAN_PAUSE_MARKER": str(self.marker),
            "JAXGAN_PAUSE_UNTIL": str(self.release_file),
        }
        command = [sys.executable, str(PAUSING_RUN), "experiments.dcgan", *FLAGS, *overrides]
        with self.output.open("w") as output:
            self.process = subprocess.Popen(
                [*command, f"--workdir={workdir}"],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_for_pause(self) -> int:
        deadline = time.monotonic() + TIMEOUT
        while not self.marker.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"the run never paused:\n{self.output.read_text()[-3000:]}")
            time.sleep(0.1)
        return int(self.marker.read_text())

    def release(self) -> None:
        self.release_file.touch()

    def finish(self) -> tuple[int, str]:
        returncode = self.process.wait(timeout=TIMEOUT)
        return returncode, self.output.read_text()


def final_state(workdir: Path, step: int | None = None):
    """The state in a workdir's checkpoint (default: the latest), as numpy arrays."""
    config = dcgan.get_config("smoke")
    template = jax.eval_shape(functools.partial(create_state, config), jax.random.key(0))
    checkpointer = Checkpointer(workdir / "checkpoints", keep=3)
    state, _ = checkpointer.restore(template, signature(config), step=step)
    checkpointer.close()
    return state


def assert_same_parameters(expected_workdir: Path, actual_workdir: Path) -> None:
    expected = serialization.to_state_dict(final_state(expected_workdir))
    actual = serialization.to_state_dict(final_state(actual_workdir))
    assert int(actual["step"]) == FINAL_STEP
    expected_leaves, expected_tree = jax.tree_util.tree_flatten_with_path(expected)
    actual_leaves, actual_tree = jax.tree_util.tree_flatten_with_path(actual)
    assert expected_tree == actual_tree
    for (path, want), (_, got) in zip(expected_leaves, actual_leaves, strict=True):
        assert np.array_equal(want, got), f"{jax.tree_util.keystr(path)} differs"


def metric_records(workdir: Path) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def latest_step(workdir: Path) -> int | None:
    checkpointer = Checkpointer(workdir / "checkpoints", keep=3)
    step = checkpointer.latest_step()
    checkpointer.close()
    return step


def assert_resumed_like_reference(workdir: Path, reference: Path, result, from_step: int):
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"Resumed from {workdir / 'checkpoints' / str(from_step)} at step {from_step}"
        in (workdir / "train.log").read_text()
    )
    assert_same_parameters(reference, workdir)
    # No epoch twice, none missing, and the same per-epoch metrics as without the fault.
    assert metric_records(workdir) == metric_records(reference)
    assert (workdir / "fashion_mnist_samples.png").read_bytes() == (
        reference / "fashion_mnist_samples.png"
    ).read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, run_env):
    """An uninterrupted run, the yardstick of every fault below."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    result = train(workdir, run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, run_env, reference):
    workdir = tmp_path_factory.mktemp("second") / "run"
    result = train(workdir, run_env)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_same_seed_gives_identical_bits(reference, second_run):
    assert_same_parameters(reference, second_run)
    for image in ("samples/epoch_0001.png", "fashion_mnist_samples.png"):
        assert (reference / image).read_bytes() == (second_run / image).read_bytes()
    assert metric_records(reference) == metric_records(second_run)
    assert [r["epoch"] for r in metric_records(reference)] == [1, 2, 3]


@pytest.mark.slow
def test_rerun_after_the_last_epoch_only_rewrites_outputs(second_run, run_env):
    metrics = (second_run / "metrics.jsonl").read_bytes()
    samples = (second_run / "fashion_mnist_samples.png").read_bytes()
    (second_run / "fashion_mnist_samples.png").unlink()

    result = train(second_run, run_env)

    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "All 3 epochs are done (step 12): only the final outputs are rewritten"
        in (second_run / "train.log").read_text()
    )
    assert (second_run / "metrics.jsonl").read_bytes() == metrics
    assert (second_run / "fashion_mnist_samples.png").read_bytes() == samples
    assert sorted(p.name for p in (second_run / "checkpoints").iterdir()) == ["12", "4", "8"]


@pytest.fixture(scope="module")
def killed_mid_epoch(tmp_path_factory, run_env):
    """SIGKILL in the middle of epoch 2 (step 6), after epoch 1's checkpoint (step 4)."""
    workdir = tmp_path_factory.mktemp("sigkill") / "run"
    paused = PausedRun(workdir, run_env, {"JAXGAN_PAUSE_AFTER_STEP": 6})
    outcome = {"paused_at": paused.wait_for_pause(), "latest_when_paused": latest_step(workdir)}
    outcome["concurrent"] = train(workdir, run_env)
    outcome["log_after_concurrent"] = (workdir / "train.log").read_text()
    paused.process.send_signal(signal.SIGKILL)
    outcome["killed"] = paused.finish()
    outcome["latest_after_kill"] = latest_step(workdir)
    outcome["rerun"] = train(workdir, run_env)
    outcome["workdir"] = workdir
    return outcome


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_bitwise(killed_mid_epoch, reference):
    outcome = killed_mid_epoch
    assert outcome["paused_at"] == 6 and outcome["latest_when_paused"] == 4
    assert outcome["killed"][0] == -signal.SIGKILL
    assert outcome["latest_after_kill"] == 4
    assert_resumed_like_reference(outcome["workdir"], reference, outcome["rerun"], from_step=4)


@pytest.mark.slow
def test_second_run_on_a_busy_workdir_is_refused(killed_mid_epoch):
    concurrent = killed_mid_epoch["concurrent"]
    assert concurrent.returncode == 1
    assert "is in use by another training run (pid" in concurrent.stderr
    assert "error: workdir=" in concurrent.stderr
    # The refusal is the second run's business: the running run's log stays its own.
    assert "in use by another" not in killed_mid_epoch["log_after_concurrent"]


@pytest.mark.slow
def test_a_second_sigint_exits_at_once_with_one_line(tmp_path, run_env):
    workdir = tmp_path / "run"
    paused = PausedRun(workdir, run_env, {"JAXGAN_PAUSE_AFTER_STEP": 6})
    assert paused.wait_for_pause() == 6
    paused.process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    paused.process.send_signal(signal.SIGINT)
    returncode, output = paused.finish()
    assert returncode == 128 + signal.SIGINT
    assert "Traceback" not in output
    assert (
        f"stopped: Stopped by SIGINT at once (a second signal); the latest checkpoint is "
        f"{workdir / 'checkpoints' / '4'}" in output
    )
    assert latest_step(workdir) == 4


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_keeps_the_previous_checkpoint(
    tmp_path, run_env, reference
):
    workdir = tmp_path / "run"
    paused = PausedRun(workdir, run_env, {"JAXGAN_PAUSE_IN_SAVE": 8})
    assert paused.wait_for_pause() == 8
    partial = workdir / "checkpoints" / "8.orbax-checkpoint-tmp"
    assert any(p.is_file() for p in (partial / "state").rglob("*")), "nothing written yet"
    paused.process.send_signal(signal.SIGKILL)
    assert paused.finish()[0] == -signal.SIGKILL

    assert latest_step(workdir) == 4
    # Saves are written in the background, so epoch 2's metrics line may be out before
    # its checkpoint is complete: the rerun cuts it, redoes epoch 2 and writes it once.
    assert [r["epoch"] for r in metric_records(workdir)] in ([1], [1, 2])
    result = train(workdir, run_env)
    assert_resumed_like_reference(workdir, reference, result, from_step=4)
    assert not partial.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, step",
    [(signal.SIGTERM, 6), (signal.SIGINT, 10), (signal.SIGTERM, 8)],
    ids=["SIGTERM-mid-epoch", "SIGINT-mid-epoch", "SIGTERM-at-epoch-end"],
)
def test_signal_saves_a_checkpoint_and_the_rerun_continues_bitwise(
    tmp_path, run_env, reference, signum, step
):
    workdir = tmp_path / "run"
    paused = PausedRun(workdir, run_env, {"JAXGAN_PAUSE_AFTER_STEP": step})
    assert paused.wait_for_pause() == step
    paused.process.send_signal(signum)
    paused.release()
    returncode, output = paused.finish()

    assert returncode == 128 + signum, output[-3000:]
    name = signal.Signals(signum).name
    epoch, position = divmod(step, STEPS_PER_EPOCH)
    where = (
        f"at step {step} (epoch {epoch + 1}, {position}/{STEPS_PER_EPOCH} steps)"
        if position
        else f"after epoch {epoch} (step {step})"  # The epoch is finished first.
    )
    message = (
        f"Stopped by {name} {where}; the latest checkpoint is "
        f"{workdir / 'checkpoints' / str(step)}. Run the same command again to resume from "
        f"step {step}."
    )
    assert message in output
    assert message in (workdir / "train.log").read_text()
    assert latest_step(workdir) == step
    assert [r["epoch"] for r in metric_records(workdir)] == list(range(1, epoch + 1))

    result = train(workdir, run_env)
    assert_resumed_like_reference(workdir, reference, result, from_step=step)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    # An epoch resumed mid-way says so, and its time includes the part before the stop.
    assert [r.get("resumed", False) for r in records] == [
        i == epoch and position > 0 for i in range(NUM_EPOCHS)
    ]


@pytest.mark.slow
def test_divergence_stops_before_any_bad_checkpoint(tmp_path, run_env, reference):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    # The learning rate is not part of a checkpoint's signature: this resumes at step 12.
    result = train(
        workdir, run_env, f"--config.num_epochs={NUM_EPOCHS + 1}", "--config.learning_rate=1e30"
    )

    assert result.returncode == 1, result.stderr[-3000:]
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith("error: Training diverged: ")
    # A metric (or, if the losses stayed finite, a parameter) and the step, both named.
    named = error.removeprefix("error: Training diverged: ").split(" at step ")
    assert named[0].split("=")[0] in {
        "d_fake",
        "d_fake_acc",
        "d_loss",
        "d_real",
        "d_real_acc",
        "g_loss",
    }, error
    assert named[0].split("=")[1] in {"nan", "inf", "-inf"}, error
    assert FINAL_STEP < int(named[1].split(" ")[0]) <= FINAL_STEP + STEPS_PER_EPOCH
    assert "Nothing of it was saved: the latest checkpoint is still step 12." in error
    assert error.removeprefix("error: ") in (workdir / "train.log").read_text()
    assert latest_step(workdir) == FINAL_STEP
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["12", "4", "8"]
    assert_same_parameters(reference, workdir)
    assert metric_records(workdir) == metric_records(reference)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_is_refused_then_the_earlier_one_resumes(
    tmp_path, run_env, reference
):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    latest = workdir / "checkpoints" / str(FINAL_STEP)
    victim = max(
        (p for p in (latest / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    content = bytearray(victim.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 64] = bytes(255 - b for b in content[middle : middle + 64])
    victim.write_bytes(bytes(content))
    log_before = (workdir / "train.log").read_bytes()

    result = train(workdir, run_env)

    assert result.returncode == 1
    error = f"error: Checkpoint {latest} is corrupt"
    assert error in result.stderr
    assert "Move that folder aside to resume from the checkpoint before it (step 8)" in (
        result.stderr
    )
    # A refused run changes nothing in the workdir, its log included.
    assert (workdir / "train.log").read_bytes() == log_before
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["12", "4", "8"]
    assert victim.read_bytes() == bytes(content)

    # Doing what the message says works: the run redoes epoch 3 from step 8.
    latest.rename(tmp_path / "corrupt_12")
    rerun = train(workdir, run_env)
    assert_resumed_like_reference(workdir, reference, rerun, from_step=8)


@pytest.mark.slow
def test_workdir_removed_mid_run_is_reported_not_recreated(tmp_path, run_env):
    workdir = tmp_path / "run"
    paused = PausedRun(workdir, run_env, {"JAXGAN_PAUSE_AFTER_STEP": 6})
    paused.wait_for_pause()
    shutil.rmtree(workdir)
    paused.release()
    returncode, output = paused.finish()

    assert returncode == 1, output[-3000:]
    assert f"error: workdir {workdir} disappeared during training (at step 8)" in output
    assert not workdir.exists()


def _fail_if_called(*args, **kwargs):
    raise AssertionError("reached: the workdir should have been refused first")


@pytest.mark.parametrize("case", ["under_a_file", "read_only_parent"])
def test_unwritable_workdir_is_refused_before_any_work(tmp_path, monkeypatch, case):
    monkeypatch.setattr(loop.datasets, "load", _fail_if_called)
    monkeypatch.setattr(loop, "create_state", _fail_if_called)
    if case == "under_a_file":  # Refused for every user, root included.
        (tmp_path / "file.txt").write_text("not a folder")
        workdir = tmp_path / "file.txt" / "run"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        parent = tmp_path / "read_only"
        parent.mkdir(mode=0o500)
        workdir = parent / "run"

    with pytest.raises(ValueError, match=f"workdir='{workdir}' is not writable"):
        loop.train_and_evaluate(dcgan.get_config("smoke"), workdir)
    assert not workdir.exists()


def test_unwritable_workdir_exits_1_with_the_error(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    workdir = tmp_path / "file.txt" / "run"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.dcgan", *FLAGS, f"--workdir={workdir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert f"error: workdir='{workdir}' is not writable" in result.stderr


@pytest.mark.slow
def test_a_population_stopped_mid_epoch_resumes_bitwise(tmp_path, run_env):
    """K=2: the mid-epoch checkpoint holds both members and their per-step metrics [S, K]."""
    from jaxgan.checkpoint import load_run

    population = "--config.population=2"
    reference = tmp_path / "reference"
    result = train(reference, run_env, population)
    assert result.returncode == 0, result.stderr[-3000:]
    workdir = tmp_path / "run"
    paused = PausedRun(workdir, run_env, {"JAXGAN_PAUSE_AFTER_STEP": 6}, population)
    assert paused.wait_for_pause() == 6
    paused.process.send_signal(signal.SIGTERM)
    paused.release()
    returncode, output = paused.finish()
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    assert latest_step(workdir) == 6

    result = train(workdir, run_env, population)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from" in (workdir / "train.log").read_text()
    for member in (0, 1):
        _, expected, _ = load_run(reference, member=member)
        _, actual, _ = load_run(workdir, member=member)
        for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(actual), strict=True):
            assert np.array_equal(want, got)
    assert metric_records(workdir) == metric_records(reference)
    assert len(metric_records(workdir)[1]["members"]) == 2
