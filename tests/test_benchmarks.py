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


@pytest.mark.slow
def test_step_cost_counts_the_flops_of_a_compiled_step_in_proportion_to_the_batch():
    config = "--config=experiments/configs/dcgan.py:smoke"
    (small,) = _json_lines("benchmarks.step_cost", config, "--batch=16")
    (large,) = _json_lines("benchmarks.step_cost", config, "--batch=32")
    assert small["parameters"] == large["parameters"] > 0
    assert small["gflops_per_step"] > 0 and small["steps_full_run"] > large["steps_full_run"]
    assert large["gflops_per_step"] / small["gflops_per_step"] == pytest.approx(2, rel=0.1)


@pytest.mark.slow
def test_evaluation_speed_times_both_paths_and_they_agree():
    from jaxgan.metrics.inception import weights
    from tests.helpers.require import require_or_skip

    try:
        installed = bool(weights.resolve_weights_path(None))
    except FileNotFoundError:
        installed = False
    require_or_skip(installed, "FID Inception weights not installed (scripts/setup.sh)")
    workdir = "--workdir=tests/fixtures/workdir_dc0a0bd"
    device, host, comparison = _json_lines(
        "benchmarks.evaluation_speed", workdir, "--num=8", "--batch=8", "--repeats=1"
    )
    assert device["seconds"]["evaluate"] > 0 and host["seconds"]["evaluate_via_host"] > 0
    assert device["num"] == host["num"] == 8 and device["step"] == 8
    assert device["metrics"]["fid"] == pytest.approx(host["metrics"]["fid"], rel=1e-6)
    assert max(comparison["abs_difference"].values()) <= 1e-6 * device["metrics"]["fid"]
