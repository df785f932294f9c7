"""Runs a training entry point with one pause injected, for the fault-injection tests.

    python tests/helpers/pausing_run.py experiments.dcgan --config=... --workdir=...

The pause gives a test a known moment to kill, signal or sabotage the process. Set one:
  JAXGAN_PAUSE_AFTER_STEP=N  pause once the chunk of steps that ends at global step N has
                             run and passed its NaN check, before the loop polls its signal
                             flag (hooks the loop's private per-chunk check).
  JAXGAN_PAUSE_IN_SAVE=N     pause inside the save of checkpoint N, once Orbax has written
                             every file into its temporary folder and before it commits it
                             (hooks Orbax's atomic-rename finalize).
and:
  JAXGAN_PAUSE_MARKER=PATH   written, holding the step, when the pause begins;
  JAXGAN_PAUSE_UNTIL=PATH    the pause ends when this file exists (or after 300 s).
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orbax.checkpoint._src.path import atomicity  # noqa: E402

from jaxgan.training import trainer  # noqa: E402

MAX_PAUSE_SECONDS = 300


def _pause(step: int) -> None:
    Path(os.environ["JAXGAN_PAUSE_MARKER"]).write_text(f"{step}\n")
    until = Path(os.environ["JAXGAN_PAUSE_UNTIL"])
    deadline = time.monotonic() + MAX_PAUSE_SECONDS
    while not until.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _install_pauses() -> None:
    if "JAXGAN_PAUSE_AFTER_STEP" in os.environ:
        pause_step = int(os.environ["JAXGAN_PAUSE_AFTER_STEP"])
        check_chunk = trainer.first_non_finite

        def check_then_pause(chunk_metrics, first_step):
            problem = check_chunk(chunk_metrics, first_step)
            last_step = first_step + len(next(iter(chunk_metrics.values())))
            if problem is None and last_step == pause_step:
                _pause(last_step)
            return problem

        trainer.first_non_finite = check_then_pause

    if "JAXGAN_PAUSE_IN_SAVE" in os.environ:
        save_step = os.environ["JAXGAN_PAUSE_IN_SAVE"]
        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def pause_then_finalize(self, *args, **kwargs):
            if self.get_final().name == save_step:
                _pause(int(save_step))
            return await finalize(self, *args, **kwargs)

        atomicity.AtomicRenameTemporaryPath.finalize = pause_then_finalize


if __name__ == "__main__":
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    _install_pauses()
    runpy.run_module(module, run_name="__main__", alter_sys=True)
