"""The run's ETA (jaxgan.training.runner.Progress) counts the evaluations still to come."""

import types

import pytest

from jaxgan.training import runner

SPE = 10  # Steps per epoch.


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(runner.time, "time", clock)
    return clock


def _progress(num_epochs=4, eval_every=2, start_step=0, records=None):
    config = types.SimpleNamespace(num_epochs=num_epochs, eval_every=eval_every, progress=False)
    return runner.Progress(config, num_epochs * SPE, start_step, records)


def test_evaluations_to_come_follow_eval_every_and_the_final_one():
    progress = _progress(num_epochs=5, eval_every=2)  # After epochs 2, 4 and 5.
    assert [progress.evaluations_to_come(step) for step in (1, 20, 21, 40, 41, 50)] == [
        3, 3, 2, 2, 1, 1,
    ]  # fmt: skip
    assert _progress(eval_every=0).evaluations_to_come(1) == 0


def test_before_any_evaluation_is_measured_the_eta_says_one_is_coming(clock):
    progress, without_evaluations = _progress(), _progress(eval_every=0)
    clock.now += 10.0  # 1 s per step.
    assert progress.eta(10) == "0m30s + evaluation"
    assert without_evaluations.eta(10) == "0m30s"  # No evaluation to come: no note.


def test_a_measured_evaluation_is_counted_once_per_evaluation_to_come(clock):
    records = []
    progress = _progress(records=records)  # Evaluations after epochs 2 and 4.
    clock.now += 20.0  # Two epochs at 1 s per step: both evaluations are still to come.
    assert progress.eta(20) == "0m20s + evaluation"
    records += [{"epoch": 1}, {"epoch": 2, "eval_seconds": 100.0}]
    clock.now += 100.0 + 1.0  # The evaluation, which the time per step leaves out; a step.
    assert progress.seconds_per_step(21) == pytest.approx(1.0)
    # 19 steps (19 s) and the final evaluation (100 s) remain.
    assert progress.eta(21) == "1m59s"


def test_a_resumed_run_uses_the_evaluation_measured_before(clock):
    records = [{"epoch": 1}, {"epoch": 2, "eval_seconds": 50.0}]
    progress = _progress(start_step=20, records=records)
    clock.now += 10.0
    # 1 s per step (the earlier evaluation is not in this session's time): 10 s + 50 s.
    assert progress.eta(30) == "1m00s"
