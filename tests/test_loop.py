"""The training loop in-process: periodic actions, interrupted evaluations, refused reruns."""

from __future__ import annotations

import json
import os
import signal

import jax
import numpy as np
import pytest

from experiments.configs import dcgan
from jaxgan.checkpoint import CheckpointError, load_run
from jaxgan.training import loop, periodic
from jaxgan.training.config import set_fields
from jaxgan.training.signals import TrainingInterrupted


def _config(**changes):
    config = dcgan.get_config("smoke").unlock()
    config.num_train_examples = 128  # 2 steps of 64 per epoch
    config.num_epochs = 2
    config.sample_every = 0
    config.checkpoint_every = 0
    config.progress = False
    set_fields(config, **changes)
    return config


class FakeEvaluator:
    """Scores the step; polls `should_stop` between five 'batches' like the real one.

    With `interrupt_once`, its first evaluation sends this process a SIGINT halfway.
    """

    calls: list[int] = []

    def __init__(self, config, test_set, *, interrupt_once=False):
        assert test_set.images.shape[1:] == (28, 28, 1)
        self.interrupt = interrupt_once

    def evaluate(self, state, key, *, should_stop):
        del key
        step = int(state.step)
        for batch in range(5):
            if batch == 2 and self.interrupt:
                self.interrupt = False
                os.kill(os.getpid(), signal.SIGINT)
            should_stop()
        FakeEvaluator.calls.append(step)
        return {"fid": float(step), "reference": "fake"}

    def write_report(self, results, path):
        path.write_text(f"FID: {results['fid']}\n")


def _params(state):
    return jax.device_get((state.g_params, state.d_params, state.d_batch_stats))


def _records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_interrupted_evaluation_keeps_the_epoch_and_the_rerun_finishes_it(tmp_path):
    def interrupting(config, test_set):
        return FakeEvaluator(config, test_set, interrupt_once=True)

    workdir = tmp_path / "run"
    FakeEvaluator.calls = []
    with pytest.raises(TrainingInterrupted, match="during the evaluation after epoch 1") as stop:
        loop.train_and_evaluate(_config(eval_every=1), workdir, evaluator_factory=interrupting)
    assert "the latest checkpoint is" in str(stop.value) and str(stop.value).endswith(
        "resume from step 2."
    )
    # The epoch's checkpoint was saved before its evaluation (checkpoint_every=0 alone
    # would have saved none), and the cut-short epoch is not logged yet.
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2"]
    assert not (workdir / "metrics.jsonl").read_text()
    assert FakeEvaluator.calls == []

    state = loop.train_and_evaluate(_config(eval_every=1), workdir, evaluator_factory=FakeEvaluator)
    assert "Finishing epoch 1's outputs first" in (workdir / "train.log").read_text()
    records = _records(workdir)
    assert [(r["epoch"], r["step"], r["fid"]) for r in records] == [(1, 2, 2.0), (2, 4, 4.0)]
    assert FakeEvaluator.calls == [2, 4]
    assert (workdir / "fid_result.txt").read_text() == "FID: 4.0\n"

    uninterrupted = loop.train_and_evaluate(
        _config(eval_every=1), tmp_path / "plain", evaluator_factory=FakeEvaluator
    )
    for got, want in zip(jax.tree.leaves(_params(state)), jax.tree.leaves(_params(uninterrupted))):
        np.testing.assert_array_equal(got, want)
    plain = _records(tmp_path / "plain")
    drop = ("epoch_seconds", "wall_time", "eval_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in records] == [
        {k: v for k, v in r.items() if k not in drop} for r in plain
    ]


@pytest.mark.slow
def test_a_refused_rerun_changes_nothing_in_the_workdir(tmp_path):
    workdir = tmp_path / "run"
    loop.train_and_evaluate(_config(eval_every=0, num_epochs=1), workdir)
    before = {p.relative_to(workdir): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}

    with pytest.raises(CheckpointError, match="g_width: checkpoint 8 vs config 4"):
        loop.train_and_evaluate(_config(eval_every=0, num_epochs=1, g_width=4), workdir)
    with pytest.raises(ValueError, match="batch_size=100000 is larger than the training set"):
        loop.train_and_evaluate(_config(eval_every=0, batch_size=100000), workdir)

    after = {p.relative_to(workdir): p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    after.pop(workdir.joinpath(".lock").relative_to(workdir), None)
    before.pop(workdir.joinpath(".lock").relative_to(workdir), None)
    assert after == before
    config, state, _ = load_run(workdir)  # What evaluate/generate read still works.
    assert config.model.g_width == 8 and int(state.step) == 2


def test_refused_batch_size_creates_no_workdir(tmp_path):
    with pytest.raises(ValueError, match="batch_size=100000"):
        loop.train_and_evaluate(_config(batch_size=100000), tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "every, at_end, due",
    [
        (2, True, [False, True, False, True, True]),
        (0, True, [False, False, False, False, True]),
        (0, False, [False] * 5),
        (1, False, [True] * 5),
    ],
)
def test_periodic_actions_are_due_every_n_epochs_and_at_the_end(every, at_end, due):
    action = periodic.PeriodicAction(every, at_end=at_end)
    assert [action.due(epoch, epoch == 5) for epoch in range(1, 6)] == due


def test_log_epoch_writes_whatever_keys_the_objective_returns(tmp_path):
    class Writer:
        def __init__(self):
            self.scalars = {}

        def add_scalar(self, name, value, step):
            self.scalars[name] = (value, step)

        def flush(self):
            pass

    writer = Writer()
    record = {"epoch": 1, "step": 7, "epoch_seconds": 1.5, "wasserstein": 0.25, "gp": 0.01}
    with (tmp_path / "metrics.jsonl").open("w") as metrics_file:
        periodic.LogEpoch(metrics_file, writer, num_epochs=3)(
            periodic.EpochEnd(state=None, epoch=1, is_last=False, record=record)
        )
    line = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert line["wasserstein"] == 0.25 and line["gp"] == 0.01 and "wall_time" in line
    assert writer.scalars == {"wasserstein": (0.25, 7), "gp": (0.01, 7)}
    assert periodic.format_scalars(record) == "wasserstein 0.25 gp 0.01"
