"""Shared body of the training entry points: flags, logging, errors, exit codes."""

from __future__ import annotations

import logging
import sys

from absl import flags
from ml_collections import config_flags

from jaxgan.loop import NonFiniteLossError, TrainingInterrupted, train_and_evaluate


def define_flags(default_config: str, default_workdir: str) -> None:
    config_flags.DEFINE_config_file(
        "config", default_config, "Config file; variants as 'file.py:smoke'.", lock_config=True
    )
    flags.DEFINE_string("workdir", default_workdir, "Output folder; reruns resume from it.")


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("absl").setLevel(logging.WARNING)
    flag_values = flags.FLAGS
    try:
        train_and_evaluate(flag_values.config, flag_values.workdir)
    except TrainingInterrupted as interrupted:
        sys.exit(128 + interrupted.signum)
    except (ValueError, NonFiniteLossError, OSError) as error:
        # Already logged (to the terminal and train.log) by the loop when it could be.
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
