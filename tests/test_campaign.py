"""`benchmarks/device_campaign.sh` at toy scale (CAMPAIGN_SMOKE=1): a device's minutes are
scarce, so the script's own wiring is checked on a CPU before they are spent on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "device_campaign.sh"


def _campaign(
    part: str, tmp_path: Path, python: str = sys.executable, **variables: str
) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        **variables,
        "CAMPAIGN_SMOKE": "1",
        "PYTHON": python,
        "OUT": str(tmp_path / "out"),
        "CAMPAIGN_SCRATCH": str(tmp_path / "scratch"),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), part], cwd=REPO_ROOT, env=environment, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip


def _passed(part: str, tmp_path: Path, **variables: str) -> Path:
    """Runs a part at toy scale, checks it exited 0, returns its output folder."""
    result = _campaign(part, tmp_path, **variables)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "out"


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_the_resnet_part_trains_the_epochs_that_fit_and_scores_the_run(tmp_path):
    out = _passed("resnet", tmp_path)
    (timing,) = _records(out / "step_time_resnet.jsonl")
    assert timing["time_steps"] == 50 and timing["seconds_per_step"] > 0
    fitted = min(timing["epochs_in_fit_minutes"], timing["num_epochs"])
    records = _records(out / "quality_resnet.jsonl")
    (seed,) = [record for record in records if "seed" in record and "fid" in record]
    assert seed["epochs"] == fitted and seed["fid"] > 0
    assert "--override num_epochs=" in records[-1]["benchmark_command"]
    assert list(out.glob("fashion_mnist_samples*.png")) and list(out.glob("seed0.log"))


@pytest.mark.slow
def test_the_curve_part_evaluates_about_every_minute_of_training(tmp_path):
    out = _passed("curve", tmp_path)
    (status,) = _records(out / "curve.json")
    assert status["curve_rc"] == 0 and "--config.eval_every=" in status["flags"]
    metrics = _records(out / "metrics.jsonl")
    assert metrics and "fid" in metrics[-1]
    assert (out / "curves.png").is_file() and (out / "fid_curve_resnet.png").is_file()
    (curve,) = _records(out / "fid_curve.jsonl")
    assert [point["epoch"] for point in curve["points"]] == [r["epoch"] for r in metrics]


def test_an_unknown_part_is_refused_with_the_allowed_ones(tmp_path):
    result = _campaign("bogus", tmp_path)
    assert result.returncode == 2
    assert "unknown part 'bogus'; allowed: eval, default, resnet" in result.stderr


def test_a_failing_step_fails_the_part(tmp_path):
    """A part whose command fails exits non-zero (its JSON lines say which failed)."""
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no python here' >&2\nexit 3\n")
    broken.chmod(0o755)
    result = _campaign("dcgan", tmp_path, python=str(broken))
    assert result.returncode == 3 and "no python here" in result.stderr


@pytest.mark.slow
def test_the_default_part_times_the_command_and_its_loop_overhead(tmp_path):
    out = _passed("default", tmp_path)
    (command,) = _records(out / "default_command.json")
    assert command["rc"] == 0 and command["default_command_seconds"] >= 0
    assert (out / "fid_result.txt").is_file()
    modes = {record["mode"] for record in _records(out / "fid_precision.jsonl")}
    assert modes == {"float32", "tf32", "bfloat16"}
    (overhead,) = _records(out / "loop_overhead.jsonl")
    assert "in_epoch_overhead_fraction" in overhead


@pytest.mark.slow
def test_the_bf16_part_times_and_trains_in_bfloat16_for_the_epochs_asked(tmp_path):
    out = _passed("resnet_bf16", tmp_path, EPOCHS="2")
    (timing,) = _records(out / "step_time_resnet_bf16.jsonl")
    assert timing["dtype"] == "bfloat16" and timing["seconds_per_step"] > 0
    records = _records(out / "quality_resnet_bf16.jsonl")
    (seed,) = [record for record in records if "seed" in record and "fid" in record]
    assert seed["epochs"] == 2  # EPOCHS, not the epochs that fit.
    command = records[-1]["benchmark_command"]
    assert "--override dtype=bfloat16" in command and "--override num_epochs=2" in command
