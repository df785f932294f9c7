"""The speed benchmarks run and print their JSON lines (figures are for the README, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _json_lines(*args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("--model=dcgan", "--steps=2", "--width=4"),
        ("--model=vanilla", "--epochs=2", "--width=4", "--batch=1000"),
    ],
)
def test_train_speed_prints_the_device_and_the_figures(args):
    (line,) = _json_lines("benchmarks.train_speed", *args)
    assert line["framework"] == "jax" and line["s_per_step"] > 0
    assert line["device"]["platform"] == "cpu" and "load_average_1m" in line["device"]
