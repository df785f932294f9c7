"""SignalCatcher: a first SIGINT asks for a checkpoint, a second stops at once, and the run's
log (train.log) says so in its last line."""

import os
import signal
import time

import pytest

from jaxgan.training import workdir as workdir_lib
from jaxgan.training.signals import SignalCatcher


def _deliver(signum: int) -> None:
    """Sends `signum` to this process and gives Python the moment to run its handler."""
    os.kill(os.getpid(), signum)
    time.sleep(0.05)


def test_a_second_sigint_stops_at_once_and_the_log_says_so_last(tmp_path):
    with workdir_lib.logging_to(tmp_path), SignalCatcher() as catcher:
        _deliver(signal.SIGINT)
        assert catcher.requested()
        with pytest.raises(KeyboardInterrupt):
            _deliver(signal.SIGINT)
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert len(lines) == 2
    assert "stopping after the current step with a checkpoint" in lines[0]
    assert "SIGINT again: stopped at once, without a checkpoint" in lines[-1]


def test_the_previous_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with SignalCatcher():
        assert signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before
