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
def test_step_cost_times_the_steps_and_fits_whole_epochs_in_the_budget():
    (record,) = _json_lines(
        "benchmarks.step_cost", "--config=experiments/configs/resnet.py:smoke",
        "--time_steps=3", "--repeats=2", "--fit_minutes=0.01",
    )  # fmt: skip
    assert len(record["chunk_seconds"]) == 2 and min(record["chunk_seconds"]) > 0
    per_step = sorted(record["chunk_seconds"])[0] / 3
    assert per_step <= record["seconds_per_step"] <= max(record["chunk_seconds"]) / 3
    assert record["images_per_second"] == pytest.approx(
        record["images_per_step"] / record["seconds_per_step"], rel=1e-3
    )
    steps_per_epoch = record["steps_full_run"] // record["num_epochs"]
    expected = max(1, int(0.6 // (record["seconds_per_step"] * steps_per_epoch)))
    assert record["epochs_in_fit_minutes"] == expected


def test_fit_epochs_counts_whole_epochs_and_refuses_a_zero_step_time():
    from benchmarks.step_cost import fit_epochs

    assert fit_epochs(0.1, 100, 1.0) == 6  # 60 s over 10 s per epoch.
    assert fit_epochs(0.1, 100, 0.99) == 5  # Not rounded up past the budget.
    assert fit_epochs(10.0, 100, 1.0) == 1  # At least one epoch.
    with pytest.raises(ValueError, match="positive step time"):
        fit_epochs(0.0, 100, 1.0)


def test_step_cost_refuses_fit_minutes_without_timing():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.step_cost", "--config=experiments/configs/dcgan.py",
         "--fit_minutes=4"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "needs --time_steps" in result.stderr


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


def test_fid_curve_puts_each_fid_at_its_minutes_of_training(tmp_path, capsys):
    from PIL import Image

    from benchmarks import fid_curve

    run = tmp_path / "run"
    run.mkdir()
    records = [
        {"epoch": 1, "step": 10, "epoch_seconds": 30.0, "d_loss": 1.0},
        {"epoch": 2, "step": 20, "epoch_seconds": 30.0, "fid": 80.0, "eval_seconds": 5.0},
        {"epoch": 3, "step": 30, "epoch_seconds": 60.0, "fid": 40.0, "eval_seconds": 5.0},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "curve.png"
    assert fid_curve.main([f"--workdir={run}", f"--out={out}", "--floor=2.5"]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x[:1] == "{"]
    assert [(p["epoch"], p["minutes"], p["fid"]) for p in line["points"]] == [
        (2, 1.0, 80.0), (3, 2.0, 40.0)
    ]  # fmt: skip
    assert line["run"] == "run" and Image.open(out).size[0] > 300
    with pytest.raises(ValueError, match="no epoch has an FID"):
        fid_curve.fid_points(records[:1])
    with pytest.raises(SystemExit):
        fid_curve.main([f"--workdir={run}", "--label=a", "--label=b"])
    assert "give one each" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fid_curve.main([f"--workdir={tmp_path / 'none'}"])
    assert "not found" in capsys.readouterr().err


def test_loop_overhead_is_what_is_neither_steps_nor_evaluation(tmp_path, capsys):
    from benchmarks import loop_overhead

    records = [
        {"epoch": 1, "wall_time": 100.0, "epoch_seconds": 9.0},
        {"epoch": 2, "wall_time": 111.0, "epoch_seconds": 10.0},
        {"epoch": 3, "wall_time": 124.0, "epoch_seconds": 10.0, "eval_seconds": 2.0},
    ]
    rows = loop_overhead.overheads(records)
    assert [(r["epoch"], r["overhead_seconds"]) for r in rows] == [(2, 1.0), (3, 1.0)]
    assert rows[0]["overhead_fraction"] == 0.1
    timing = {"steps_full_run": 300, "num_epochs": 3, "seconds_per_step": 0.08}
    result = loop_overhead.summary(rows, timing)
    assert result["median_overhead_fraction"] == 0.1
    assert result["in_epoch_overhead_fraction"] == pytest.approx(0.25)  # 10 s vs 8 s alone.
    with pytest.raises(ValueError, match="at least 2"):
        loop_overhead.overheads(records[:1])
    with pytest.raises(ValueError, match="no wall_time"):
        loop_overhead.overheads([records[0], {"epoch": 2, "epoch_seconds": 1.0}])
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "step.jsonl").write_text(json.dumps(timing) + "\n")
    assert loop_overhead.main([f"--workdir={run}", f"--step_time={tmp_path / 'step.jsonl'}"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["epochs"] == 2 and line["median_overhead_seconds"] == 1.0
