"""Signals and stops: SIGTERM/SIGINT become a checkpoint and a clear message."""

from __future__ import annotations

import logging
import signal

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
