"""A workdir written before the reorganisation still loads, generates, evaluates, serves and
resumes.

`tests/fixtures/workdir_dc0a0bd/` was written at commit dc0a0bd, before `config.model` was
nested (its config.json has a flat `g_width` and `model: "dcgan"`), by

    python -m experiments.dcgan --config=experiments/configs/dcgan.py:smoke \
        --config.eval_every=0 --config.num_train_examples=256 --config.batch_size=32

(one epoch of 8 steps). Every test works on a copy; the fixture itself is never changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgan.checkpoint import load_run
from jaxgan.evaluation import generation, offline
from jaxgan.metrics import SmallSampleWarning

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "workdir_dc0a0bd"
STEPS_PER_EPOCH = 8


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module", autouse=True)
def fixture_digests() -> dict[str, str]:
    """The fixture's files as they were before any test of this module ran."""
    digests = _digests(FIXTURE)
    assert "config.json" in digests and "checkpoints/8/meta/metadata" in digests
    return digests


def copy_of_fixture(folder: Path) -> Path:
    workdir = folder / "workdir"
    shutil.copytree(FIXTURE, workdir)
    return workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy for the tests that only read it (an evaluation adds its result file)."""
    return copy_of_fixture(tmp_path_factory.mktemp("old"))


@pytest.fixture(scope="module")
def restored(workdir):
    return load_run(workdir)


def test_load_run_upgrades_the_flat_config_and_restores_step_8(workdir, restored):
    config, state, meta = restored
    assert isinstance(json.loads((workdir / "config.json").read_text())["model"], str)
    assert config.model.name == "dcgan"
    assert (config.model.g_width, config.model.d_width) == (8, 8)
    assert config.model.dropout_rate == pytest.approx(0.3)
    assert "g_width" not in config  # moved, not copied
    assert int(state.step) == STEPS_PER_EPOCH and meta["epoch"] == 1
    assert (state.latent_dim, state.num_classes) == (100, 0)
    assert meta["dataset_info"]["image_shape"] == [28, 28, 1]


def _expected_images(state, seed: int, count: int) -> np.ndarray:
    from jaxgan.core import sample
    from jaxgan.metrics import to_uint8

    latents = generation.image_latents(seed, np.arange(count), latent_dim=state.latent_dim)
    return to_uint8(np.asarray(sample(state, latents, None)))


def test_generate_writes_the_images_of_the_restored_generator(workdir, restored, tmp_path):
    out = tmp_path / "images.npz"
    message = generation.run(str(workdir), 6, 3, None, 0, str(out))
    assert "checkpoint step 8" in message and "no EMA" in message
    with np.load(out) as archive:
        images = archive["images"]
    assert images.dtype == np.uint8 and images.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(images, _expected_images(restored[1], 3, 6))
    assert len(np.unique(images)) > 10  # Not a constant image.


@jax.jit
def pixel_features(preprocessed: jax.Array) -> jax.Array:
    """A cheap stand-in for Inception: 16 pooled pixel values, [B, 16]."""
    pooled = preprocessed[:, ::75, ::75, 0]
    return pooled.reshape(preprocessed.shape[0], -1)


def test_evaluate_scores_the_old_checkpoint_against_its_test_split(workdir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        text = offline.run(workdir=workdir, num_samples=8, batch_size=8, feature_fn=pixel_features)
    assert (workdir / "fid_result_step8_n8.txt").read_text() == text
    for needle in ("Checkpoint step: 8", "N fake: 8", "Reference: fashion_mnist:test[:8]"):
        assert needle in text, needle
    fid = float(next(line for line in text.splitlines() if line.startswith("FID:")).split()[1])
    assert np.isfinite(fid) and fid > 0


def test_serving_loads_the_old_checkpoint(workdir, restored):
    from jaxgan.serving.model import load_snapshot

    snapshot = load_snapshot(
        workdir,
        image_latents=generation.image_latents,
        slerp=generation.slerp,
        buckets=(4,),
        max_steps=2,
    )
    assert snapshot.step == STEPS_PER_EPOCH and snapshot.num_classes == 0
    assert snapshot.dataset["name"] == "fashion_mnist"
    images = snapshot.generate(snapshot.image_latents(5, 4), None)
    np.testing.assert_array_equal(images, _expected_images(restored[1], 5, 4))


def test_training_resumes_the_old_run_from_step_8_to_16(tmp_path):
    from experiments.configs import dcgan
    from jaxgan.training.loop import train_and_evaluate

    workdir = copy_of_fixture(tmp_path)
    config = dcgan.get_config("smoke").unlock()
    config.num_train_examples = 256
    config.batch_size = 32
    config.eval_every = 0
    config.num_epochs = 2
    config.progress = False
    state = train_and_evaluate(config.lock(), workdir)

    assert int(state.step) == 2 * STEPS_PER_EPOCH
    assert (workdir / "checkpoints" / "16").is_dir()
    assert (
        f"Resumed from {workdir / 'checkpoints' / '8'} at step 8"
        in (workdir / "train.log").read_text()
    )
    old_record, new_record = (workdir / "metrics.jsonl").read_text().splitlines()
    assert old_record == (FIXTURE / "metrics.jsonl").read_text().splitlines()[0]
    assert json.loads(new_record)["epoch"] == 2 and json.loads(new_record)["step"] == 16
    assert json.loads((workdir / "config.json").read_text())["model"]["name"] == "dcgan"
    _, reloaded, _ = load_run(workdir)
    assert int(reloaded.step) == 16


def test_the_fixture_is_left_byte_for_byte_as_it_was(fixture_digests):
    assert _digests(FIXTURE) == fixture_digests
