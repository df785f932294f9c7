"""The training configuration: shared defaults and validation at the boundary.

Experiment files in `experiments/configs/` start from `base_config()` and change what
their model needs. `validate_config` runs before any data loading or compilation.
"""

from __future__ import annotations

import math
import numbers

import ml_collections

from jaxgan.models import DTYPES, MODELS


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by every experiment; see the README's config reference."""
    config = ml_collections.ConfigDict()
    config.model = "dcgan"
    config.latent_dim = 100
    config.g_width = 64
    config.d_width = 64
    config.dropout_rate = 0.3
    config.dtype = "float32"

    config.learning_rate = 2e-4
    config.b1 = 0.5
    config.b2 = 0.999
    config.batch_size = 128
    config.num_epochs = 50
    config.seed = 0

    # 0 uses the whole train split; a positive number keeps the first N images.
    config.num_train_examples = 0
    config.data_dir = ""
    config.tfds_data_dir = ""

    config.sample_every = 5
    config.checkpoint_every = 1
    config.keep_checkpoints = 3
    config.log_every_steps = 50
    config.progress = True

    config.eval_every = 10
    config.fid_num_samples = 10000
    config.fid_batch_size = 250
    config.kid_subset_size = 1000
    config.kid_num_subsets = 100
    return config


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the field, its value and what is allowed.

    Checks everything that does not need the dataset; the batch size against the
    dataset's size is checked by `check_batch_size` once the data is loaded.
    """
    problems = []

    def need(ok: bool, field: str, allowed: str) -> None:
        if not ok:
            problems.append(f"config.{field}={config.get(field)!r} is invalid: {allowed}")

    need(config.model in MODELS, "model", f"must be one of {', '.join(MODELS)}")
    need(config.dtype in DTYPES, "dtype", f"must be one of {', '.join(DTYPES)}")
    for field in ("latent_dim", "g_width", "d_width", "batch_size", "num_epochs"):
        need(_is_int(config[field]) and config[field] > 0, field, "must be a positive integer")
    for field in ("learning_rate",):
        value = config[field]
        need(_is_real(value) and math.isfinite(value) and value > 0, field,
             "must be a positive finite number")
    for field in ("b1", "b2"):
        value = config[field]
        need(_is_real(value) and 0 <= value < 1, field, "must be in [0, 1)")
    need(_is_real(config.dropout_rate) and 0 <= config.dropout_rate < 1, "dropout_rate",
         "must be in [0, 1)")
    need(_is_int(config.seed) and 0 <= config.seed < 2**32, "seed",
         "must be an integer in [0, 2**32)")
    for field in ("sample_every", "checkpoint_every", "eval_every", "num_train_examples"):
        need(_is_int(config[field]) and config[field] >= 0, field,
             "must be a non-negative integer (0 disables / means all)")
    for field in ("keep_checkpoints", "log_every_steps", "fid_batch_size",
                  "kid_subset_size", "kid_num_subsets"):
        need(_is_int(config[field]) and config[field] > 0, field, "must be a positive integer")
    need(_is_int(config.fid_num_samples) and config.fid_num_samples >= 2, "fid_num_samples",
         "must be an integer >= 2")
    for field in ("data_dir", "tfds_data_dir"):
        need(isinstance(config[field], str), field, "must be a string path ('' for default)")
    if problems:
        raise ValueError("Invalid config:\n  " + "\n  ".join(problems))


def check_batch_size(batch_size: int, num_examples: int) -> None:
    """Raises ValueError when not even one full batch fits in the training set."""
    if batch_size > num_examples:
        raise ValueError(
            f"config.batch_size={batch_size} is larger than the training set "
            f"({num_examples} images); allowed: 1 to {num_examples}"
        )
