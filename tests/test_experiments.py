"""End-to-end runs of each experiment's `:smoke` config on the real data, as a user runs them."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_module(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def dcgan_workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dcgan")
    run_module(
        "experiments.dcgan", "--config=experiments/configs/dcgan.py:smoke", f"--workdir={workdir}"
    )
    return workdir


def _assert_run_outputs(workdir: Path, epochs: int, steps: int) -> None:
    config = json.loads((workdir / "config.json").read_text())
    assert config["num_epochs"] == epochs
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    last = records[-1]
    assert last["step"] == steps
    for name in (
        "d_loss",
        "g_loss",
        "d_real",
        "d_fake",
        "d_real_acc",
        "d_fake_acc",
        "fid",
        "kid_mean",
        "precision",
        "recall",
        "density",
        "coverage",
        "d_eval_accuracy",
        "wall_time",
        "epoch_seconds",
    ):
        assert np.isfinite(last[name]), name
    assert last["fid"] > 0
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    grid = Image.open(workdir / "samples" / f"epoch_{epochs:04d}.png")
    final = Image.open(workdir / "fashion_mnist_samples.png")
    assert grid.size == final.size == (2 * (8 * 30 + 2),) * 2
    assert (workdir / "checkpoints" / str(steps)).is_dir()
    report = (workdir / "fid_result.txt").read_text()
    assert re.search(r"^FID: \d+\.\d+$", report, re.MULTILINE)
    for needle in (
        "KID:",
        "Precision (k=3)",
        "Recall (k=3)",
        "Density (k=5)",
        "Coverage (k=5)",
        "Discriminator accuracy",
        "Discriminator precision",
        "Discriminator recall",
        "N real: 16",
        "N fake: 16",
        "Reference: fashion_mnist test[:16]",
        f"Checkpoint step: {steps}",
        "FID protocol",
    ):
        assert needle in report, needle
    log = (workdir / "train.log").read_text()
    assert "parameters" in log and "epoch 1/" in log


def test_dcgan_smoke_writes_every_output(dcgan_workdir):
    _assert_run_outputs(dcgan_workdir, epochs=1, steps=32)


def test_vanilla_smoke_writes_every_output(tmp_path):
    run_module(
        "experiments.vanilla",
        "--config=experiments/configs/vanilla.py:smoke",
        f"--workdir={tmp_path}",
    )
    _assert_run_outputs(tmp_path, epochs=1, steps=20)


def test_evaluate_scores_the_latest_checkpoint(dcgan_workdir):
    (dcgan_workdir / "fid_result.txt").unlink()
    result = run_module(
        "experiments.evaluate", f"--workdir={dcgan_workdir}", "--num_samples=16", "--batch_size=16"
    )
    assert "FID:" in result.stdout and "Discriminator recall" in result.stdout
    report = (dcgan_workdir / "fid_result.txt").read_text()
    assert "Checkpoint step: 32" in report and "N fake: 16" in report


def test_evaluate_compares_two_image_sets(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "real.npz", images=real)
    folder = tmp_path / "fake"
    folder.mkdir()
    for index in range(8):
        Image.fromarray(np.clip(real[index].astype(int) // 2 + 60, 0, 255).astype(np.uint8)).save(
            folder / f"{index:02d}.png"
        )
    output = tmp_path / "result.txt"
    result = run_module(
        "experiments.evaluate",
        f"--real={tmp_path / 'real.npz'}",
        f"--fake={folder}",
        f"--output={output}",
        "--batch_size=8",
    )
    report = output.read_text()
    assert report == result.stdout.rstrip("\n") + "\n"
    fid_value = float(re.search(r"^FID: (\S+)$", report, re.MULTILINE).group(1))
    assert fid_value > 0 and "N real: 8" in report and "N fake: 8" in report


def test_bad_config_fails_fast_with_the_field_named(tmp_path):
    result = run_module(
        "experiments.dcgan",
        "--config=experiments/configs/dcgan.py:smoke",
        f"--workdir={tmp_path}",
        "--config.batch_size=0",
        check=False,
    )
    assert result.returncode == 1
    assert "config.batch_size=0" in result.stderr and "positive integer" in result.stderr
    assert "config.batch_size=0" in (tmp_path / "train.log").read_text()


def test_readme_research_snippet_runs():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Research API", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert "train_step" in snippet and len(snippet.strip().splitlines()) <= 12
    result = subprocess.run(
        [sys.executable, "-c", snippet], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = eval(result.stdout.strip().splitlines()[-1])  # the snippet prints a dict literal
    assert set(metrics) >= {"d_loss", "g_loss"} and all(np.isfinite(list(metrics.values())))
