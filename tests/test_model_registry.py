"""A new model family is one file plus one line: a family written outside the library,
registered from its config file, trains, shows its fields in `--help` and has them checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from jaxgan import models

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

# A family as a researcher would write it, in a folder of their own.
FAMILY = '''
"""A one-hidden-layer MLP pair, defined outside jaxgan."""

import flax.linen as nn
import jax.numpy as jnp

from jaxgan.models.fields import POSITIVE_INT, Field

FIELDS = {"hidden": Field(8, "hidden units of the tiny G and D", *POSITIVE_INT)}


class Generator(nn.Module):
    hidden: int
    image_shape: tuple

    @nn.compact
    def __call__(self, latents, labels=None, *, train):
        del labels, train
        features = nn.relu(nn.Dense(self.hidden)(latents))
        pixels = nn.Dense(self.image_shape[0] * self.image_shape[1] * self.image_shape[2])
        return nn.tanh(pixels(features)).reshape(latents.shape[0], *self.image_shape)


class Discriminator(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, images, labels=None, *, train):
        del labels, train
        features = nn.leaky_relu(nn.Dense(self.hidden)(images.reshape(images.shape[0], -1)))
        return nn.Dense(1)(features)[:, 0].astype(jnp.float32)


def build(model, *, image_shape, num_classes, dtype, population=False):
    del num_classes, dtype, population
    return Generator(model["hidden"], tuple(image_shape)), Discriminator(model["hidden"])
'''

CONFIG = '''
"""The tiny family on 128 FashionMNIST images, one epoch."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny_family  # noqa: E402

from jaxgan import models  # noqa: E402
from jaxgan.training.config import base_config  # noqa: E402


def get_config(variant=""):
    del variant
    models.register("tiny", tiny_family)
    config = base_config()
    config.model = models.model_config("tiny")
    config.latent_dim = 8
    config.num_train_examples = 128
    config.batch_size = 32
    config.num_epochs = 1
    config.eval_every = 0
    config.sample_every = 0
    config.log_every_steps = 4
    config.progress = False
    return config.lock()
'''


def run_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("outside")
    (folder / "tiny_family.py").write_text(textwrap.dedent(FAMILY))
    (folder / "tiny.py").write_text(textwrap.dedent(CONFIG))
    return folder / "tiny.py"


def test_a_family_from_outside_the_library_trains_through_the_entry_point(config_file):
    workdir = config_file.parent / "run"
    result = run_train(f"--config={config_file}", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-4000:]
    assert (workdir / "checkpoints" / "4").is_dir()  # 128 images / 32 = 4 steps
    (record,) = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 4 and {"d_loss", "g_loss"} <= set(record)
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"] == {"name": "tiny", "hidden": 8}
    assert "tiny on fashion_mnist" in (workdir / "train.log").read_text()


def test_help_lists_the_familys_own_field_with_its_help(config_file):
    result = run_train(f"--config={config_file}", "--help")
    assert result.returncode == 0, result.stderr[-4000:]
    assert re.search(
        r"--config\.model\.hidden +8 +hidden units of the tiny G and D", result.stdout
    ), result.stdout
    assert re.search(r"--config\.model\.name +'tiny' ", result.stdout), result.stdout


def test_an_invalid_family_field_is_a_one_line_error_naming_it(config_file, tmp_path):
    result = run_train(
        f"--config={config_file}", f"--workdir={tmp_path / 'run'}", "--config.model.hidden=0"
    )
    assert result.returncode == 1, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if "config.model.hidden" in line]
    assert len(problems) == 1, result.stderr
    assert "config.model.hidden=0 is invalid; allowed: a positive integer" in problems[0]
    assert not (tmp_path / "run").exists()


def test_register_refuses_a_module_without_fields_or_build(monkeypatch):
    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
    build = lambda model, **shapes: None  # noqa: E731
    for family in (
        types.SimpleNamespace(build=build),
        types.SimpleNamespace(FIELDS={}),
        types.SimpleNamespace(FIELDS=[], build=build),
        types.SimpleNamespace(FIELDS={}, build="not callable"),
    ):
        with pytest.raises(ValueError, match="'broken' needs a FIELDS dict and a build function"):
            models.register("broken", family)
    assert "broken" not in models.MODELS
    models.register("fine", types.SimpleNamespace(FIELDS={}, build=build))
    assert "fine" in models.MODELS
