"""Signals and stops: SIGTERM/SIGINT become a checkpoint and a clear message."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import jax
import numpy as np

log = logging.getLogger("jaxgan")


class NonFiniteLossError(FloatingPointError):
    """A training metric or a parameter became NaN or Inf."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT arrived; what was kept is in the message."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class EvaluationStopped(Exception):
    """Raised from the evaluation's stop check when a signal arrived."""


class SignalCatcher:
    """Turns SIGTERM/SIGINT into a flag the loop polls; a second one stops at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # Not the main thread: leave signals alone.
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            # The log's last line says what happened, not the checkpoint promised below.
            log.warning(
                "Received %s again: stopped at once, without a checkpoint of the current step "
                "(a rerun resumes from the latest saved one, if any)", signal.Signals(signum).name,
            )  # fmt: skip
            raise KeyboardInterrupt
        self.signum = signum
        log.warning(
            "Received %s: stopping after the current step with a checkpoint (send it again "
            "to stop at once)", signal.Signals(signum).name,
        )  # fmt: skip

    def requested(self) -> bool:
        return self.signum is not None

    def stop_evaluation(self) -> bool:
        if self.signum is not None:
            raise EvaluationStopped
        return False

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def non_finite_arrays(state: Any) -> list[str]:
    """Paths of the state's float arrays that hold a NaN or Inf."""
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    return [
        jax.tree_util.keystr(path)
        for path, leaf in leaves
        if np.issubdtype(np.asarray(leaf).dtype, np.inexact) and not np.isfinite(leaf).all()
    ]


def stopped(signum: int | None, where: str, checkpointer) -> TrainingInterrupted:
    """The exception that ends an interrupted run, naming the checkpoint a rerun resumes from."""
    signum = signum or signal.SIGTERM  # None: the signal reached another process.
    step = latest_on_disk(checkpointer.directory)
    kept = (
        f"the latest checkpoint is {checkpointer.directory / str(step)}. Run the same "
        f"command again to resume from step {step}."
        if step is not None
        else "no checkpoint had been saved yet."
    )
    return TrainingInterrupted(signum, f"Stopped by {signal.Signals(signum).name} {where}; {kept}")


def latest_on_disk(directory: Path) -> int | None:
    """The newest complete checkpoint's step, read from the folder names alone."""
    steps = [int(p.name) for p in directory.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(steps, default=None)


def kept_message(checkpointer) -> str:
    """What a diverged run kept, and what to try next."""
    last = checkpointer.latest_step()
    kept = (
        f"Nothing of it was saved: the latest checkpoint is still step {last}."
        if last is not None
        else "No checkpoint had been saved yet."
    )
    return (
        f"{kept} Lower learning_rate or change the seed, then run again (with a new "
        "learning_rate the run resumes from the latest checkpoint)."
    )
