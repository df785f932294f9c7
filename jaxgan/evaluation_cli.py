"""What `experiments.evaluate` does: score a workdir's latest checkpoint or two image sets."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxgan import config as config_lib
from jaxgan import data, evaluation
from jaxgan.checkpoint import Checkpointer, signature
from jaxgan.metrics.fid import inception_features
from jaxgan.train import create_state

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_image_set(path: str | Path) -> np.ndarray:
    """Images from an .npz file (key 'images', else its only array) or a folder of images.

    Returns:
      uint8 or float array [N, H, W] / [N, H, W, C], validated later by the FID protocol.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected an .npz file or image folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        arrays = []
        for file in files:
            try:
                with Image.open(file) as picture:
                    mode = "L" if picture.mode in ("L", "1", "I;16") else "RGB"
                    arrays.append(np.asarray(picture.convert(mode)))
            except (UnidentifiedImageError, OSError) as error:
                raise ValueError(f"{file} is not a readable image ({error})") from error
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"images in {path} differ in size or channels: {sorted(shapes)}")
        return np.stack(arrays)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: allowed inputs are an .npz file or a folder of images")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = "images" if "images" in archive.files else None
            if key is None and len(archive.files) == 1:
                key = archive.files[0]
            if key is None:
                raise ValueError(
                    f"{path} has arrays {archive.files}; name the images 'images' or store one"
                )
            return archive[key]
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error})") from error


def _compare_sets(real, fake, *, batch_size: int, resize: str) -> dict[str, Any]:
    real_images, fake_images = load_image_set(real), load_image_set(fake)
    real_features = inception_features(real_images, batch_size, progress=True, resize=resize)
    fake_features = inception_features(fake_images, batch_size, progress=True, resize=resize)
    smallest = min(len(real_features), len(fake_features))
    results = evaluation.feature_metrics(
        real_features, fake_features, kid_subsets=100, kid_size=min(1000, smallest)
    )
    results.update(
        reference=str(real), resize=resize, kid_subset_size=min(1000, smallest), kid_num_subsets=100
    )
    return results


def _evaluate_workdir(workdir, num_samples, batch_size, resize) -> dict[str, Any]:
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {workdir} a training workdir?")
    config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    if num_samples is not None:
        config.fid_num_samples = num_samples
    config.fid_batch_size = batch_size
    config_lib.validate_config(config)
    checkpointer = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
    template = create_state(config, jax.random.key(config.seed))
    state, _ = checkpointer.restore(template, signature(config))
    test_images, _ = data.load_fashion_mnist(
        "test", data_dir=config.data_dir or None, tfds_data_dir=config.tfds_data_dir or None
    )
    evaluator = evaluation.Evaluator(config, workdir, test_images, resize=resize)
    # A key of its own, distinct from the ones the training loop used.
    return evaluator.evaluate(state, jax.random.fold_in(jax.random.key(config.seed), 1_000_003))


def run(
    *,
    workdir=None,
    num_samples=None,
    real=None,
    fake=None,
    output=None,
    batch_size: int = 250,
    resize: str = "half_pixel",
) -> str:
    """Runs an evaluation, writes the report and returns it as text."""
    if (real is None) != (fake is None):
        raise ValueError("--real and --fake go together: give both, or neither with --workdir")
    if workdir is None and real is None:
        raise ValueError("give --workdir=DIR, or --real=PATH and --fake=PATH")
    if workdir is not None and real is not None:
        raise ValueError("give either --workdir or --real/--fake, not both")
    if num_samples is not None and num_samples < 2:
        raise ValueError(f"--num_samples={num_samples} is invalid; allowed: 2 or more")
    if batch_size < 1:
        raise ValueError(f"--batch_size={batch_size} is invalid; allowed: a positive integer")
    if workdir is not None:
        results = _evaluate_workdir(workdir, num_samples, batch_size, resize)
        output = output or Path(workdir) / "fid_result.txt"
    else:
        results = _compare_sets(real, fake, batch_size=batch_size, resize=resize)
        output = output or "fid_result.txt"
    evaluation.write_report(results, output)
    log.info("Wrote %s", output)
    return Path(output).read_text()
