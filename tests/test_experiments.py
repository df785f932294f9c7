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


def _assert_run_outputs(
    workdir: Path, epochs: int, steps: int, d_outputs: tuple[str, ...] = ("d_real", "d_fake")
) -> None:
    """Every output of a finished run; `d_outputs`: the objective's D statistics (BCE's
    probabilities, or the logits of the others)."""
    config = json.loads((workdir / "config.json").read_text())
    assert config["num_epochs"] == epochs
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    last = records[-1]
    assert last["step"] == steps
    for name in (
        "d_loss",
        "g_loss",
        *d_outputs,
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
    assert Image.open(workdir / "curves.png").size[0] > 300
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
        "Reference: fashion_mnist:test[:16]",
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


def test_a_resnet_run_with_a_learning_rate_decay_is_loaded_by_the_tools(tmp_path):
    """resnet.py decays its learning rate over the run: the tools that restore its checkpoint
    (load_run: evaluate, generate, serve, the quality benchmark) rebuild that schedule."""
    from jaxgan.checkpoint import load_run

    workdir = tmp_path / "run"
    run_module(
        "experiments.train", "--config=experiments/configs/resnet.py:smoke", f"--workdir={workdir}"
    )
    _assert_run_outputs(workdir, epochs=1, steps=8, d_outputs=("d_real_logit", "d_fake_logit"))
    config, state, meta = load_run(workdir)
    assert config.lr_decay == "linear" and int(state.step) == 8 == meta["steps_per_epoch"]
    out = tmp_path / "grid.png"
    run_module("experiments.generate", f"--workdir={workdir}", f"--out={out}", "--num=4")
    assert Image.open(out).size[0] > 28
    result = run_module(
        "experiments.evaluate", f"--workdir={workdir}", "--num_samples=16", "--batch_size=16"
    )
    assert "FID:" in result.stdout


def test_evaluate_scores_the_latest_checkpoint_without_touching_the_runs_report(dcgan_workdir):
    own_report = (dcgan_workdir / "fid_result.txt").read_bytes()
    result = run_module(
        "experiments.evaluate", f"--workdir={dcgan_workdir}", "--num_samples=16", "--batch_size=16"
    )
    assert "FID:" in result.stdout and "Discriminator recall" in result.stdout
    report = (dcgan_workdir / "fid_result_step32_n16.txt").read_text()
    assert "Checkpoint step: 32" in report and "N fake: 16" in report
    assert (dcgan_workdir / "fid_result.txt").read_bytes() == own_report


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
    assert result.stderr.count("config.batch_size=0") == 1  # said once, not twice
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "train.log").exists()  # a refused run writes nothing


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--config.num_epoch=3", "error: --config.num_epoch is not a config field; did you mean "
         "num_epochs?"),
        ("--config=experiments/configs/dcgan.py:smok", "error: dcgan.py has no variant 'smok'; "
         "allowed: dcgan.py, dcgan.py:smoke, dcgan.py:cpu"),
    ],
)  # fmt: skip
def test_command_line_mistakes_get_one_line(tmp_path, flag, expected):
    result = run_module("experiments.dcgan", flag, f"--workdir={tmp_path / 'run'}", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    assert not (tmp_path / "run").exists()


def test_help_lists_the_flags_every_config_field_and_an_example():
    from jaxgan import models
    from jaxgan.training.config import FIELD_HELP

    result = run_module("experiments.dcgan", "--help")
    for needle in ("--config", "--workdir", "Example:", "dcgan.py:smoke"):
        assert needle in result.stdout, needle
    for field, meaning in FIELD_HELP.items():
        if field == "model":  # The family's own fields stand in its place.
            continue
        assert re.search(rf"--config\.{field}\s+\S.*{re.escape(meaning)}", result.stdout), field
    for field, spec in models.MODELS["dcgan"].FIELDS.items():
        assert re.search(rf"--config\.model\.{field}\s+\S.*{re.escape(spec.help)}", result.stdout)
    assert re.search(r"--config\.model\.name +'dcgan' ", result.stdout)
    assert re.search(r"--config\.batch_size +128 ", result.stdout)  # the config's own default


def _write_class_folders(root: Path, per_class: int = 40) -> None:
    rng = np.random.default_rng(0)
    for name, colour in (("blue", (0, 0, 255)), ("red", (255, 0, 0))):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(rng.normal(colour, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")


@pytest.mark.parametrize(
    "overrides, metric_keys",
    [
        (("--config.conditional=True", "--config.channels=3"), {"d_real", "d_fake_acc"}),
        (("--config.loss=hinge", "--config.model.spectral_norm=True"), {"d_real_logit"}),
        (("--config.loss=wgan_gp", "--config.d_steps=5"), {"wasserstein", "gp"}),
    ],
    ids=["conditional-folder-rgb", "hinge-spectral-norm", "wgan-gp"],
)
def test_train_entry_point_runs_any_dataset_objective_and_model(tmp_path, overrides, metric_keys):
    data = tmp_path / "data"
    _write_class_folders(data)
    workdir = tmp_path / "run"
    run_module(
        "experiments.train",
        "--config=experiments/configs/dcgan.py:smoke",
        f"--config.dataset=folder:{data}",
        "--config.batch_size=16",
        "--config.eval_every=0",
        *overrides,
        f"--workdir={workdir}",
    )
    record = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
    assert metric_keys <= set(record) and {"d_loss", "g_loss"} <= set(record)
    if "wasserstein" in record:
        assert "d_real_acc" not in record  # a critic's sign means nothing
    grid = Image.open(workdir / "samples" / "epoch_0001.png")
    final = Image.open(workdir / "samples.png")
    assert grid.mode == final.mode == "RGB"
    # 32x32 images with 2-pixel padding, shown at scale 2: 8 columns of 34 + 2.
    if "--config.conditional=True" in overrides:
        # One row per class, its name in a margin at the left.
        assert grid.size[1] == 2 * (2 * 34 + 2) and grid.size[0] > 2 * (8 * 34 + 2)
    else:
        assert grid.size == (2 * (8 * 34 + 2), 2 * (8 * 34 + 2))
