"""The training configuration: shared defaults and validation at the boundary.

Experiment files in `experiments/configs/` start from `base_config()` and change what
their model needs. `validate_config` runs before any data loading or compilation.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import ml_collections

from jaxgan import data as datasets
from jaxgan import models
from jaxgan.core.augment import AUGMENTATIONS, parse_policy
from jaxgan.models import DTYPES, model_config
from jaxgan.objectives import OBJECTIVES


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by every experiment; see the README's config reference."""
    config = ml_collections.ConfigDict()
    # The model family and its own fields (jaxgan.models): config.model.name, .g_width, ...
    config.model = model_config("dcgan")
    config.latent_dim = 100
    config.dtype = "float32"
    config.conditional = False

    config.dataset = "fashion_mnist"
    config.image_size = 0
    config.channels = 0

    config.loss = "nonsaturating"
    config.d_steps = 1
    # DiffAugment policy for every image D sees, e.g. "translation,cutout" ("": none).
    config.augment = ""
    config.gp_weight = 10.0
    config.ema_decay = 0.0
    config.ema_start = 0
    config.r1_gamma = 0.0
    config.r1_every = 1

    config.learning_rate = 2e-4
    # Two time-scale updates: 0 uses learning_rate.
    config.g_learning_rate = 0.0
    config.d_learning_rate = 0.0
    config.lr_decay = "none"
    config.b1 = 0.5
    config.b2 = 0.999
    config.batch_size = 128
    config.num_epochs = 50
    config.seed = 0
    # K > 0 trains K GANs (seeds seed..seed+K-1) as one vmapped program (jaxgan.core.population).
    config.population = 0
    config.population_learning_rates = ()
    # Many hosts: also switched on by the launcher's environment (jaxgan.training.distributed).
    config.distributed = False

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
    config.fid_batch_size = 0
    config.kid_subset_size = 1000
    config.kid_num_subsets = 100
    return config


_INT32_MAX = 2**31 - 1  # The step counter is int32.
_MAX_POPULATION = 1024


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(value) -> bool:
    return _is_int(value) and value > 0


def _non_negative_int(value) -> bool:
    return _is_int(value) and value >= 0


def _fraction(value) -> bool:
    return _is_real(value) and 0 <= value < 1


def _non_negative_finite(value) -> bool:
    return _is_real(value) and math.isfinite(value) and value >= 0


def _augment_policy(value) -> bool:
    try:
        parse_policy(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def _dataset(value) -> bool:
    try:
        datasets.parse(value)
    except ValueError:
        return False
    return True


# field: (test, what is allowed). Every field of `base_config()` is listed.
_RULES = {
    "model": (
        lambda v: isinstance(v, ml_collections.ConfigDict),
        "a ConfigDict: name and the family's fields (jaxgan.models.model_config)",
    ),
    "latent_dim": (_positive_int, "a positive integer"),
    "dtype": (lambda v: isinstance(v, str) and v in DTYPES, f"one of {', '.join(DTYPES)}"),
    "conditional": (lambda v: isinstance(v, bool), "True or False"),
    "dataset": (_dataset, datasets.FORMS),
    "image_size": (
        lambda v: _is_int(v) and (v == 0 or 4 <= v <= 1024),
        "0 (the dataset's own size) or an integer in [4, 1024]",
    ),
    "channels": (lambda v: _is_int(v) and v in (0, 1, 3), "0 (the dataset's own), 1 or 3"),
    "loss": (lambda v: isinstance(v, str) and v in OBJECTIVES, "one of " + ", ".join(OBJECTIVES)),
    "d_steps": (lambda v: _is_int(v) and 1 <= v <= 100, "an integer in [1, 100]"),
    "gp_weight": (_non_negative_finite, "a finite number >= 0"),
    "ema_decay": (_fraction, "a number in [0, 1) (0 turns the EMA off)"),
    "ema_start": (_non_negative_int, "a non-negative integer (steps)"),
    "augment": (_augment_policy, "'' or a comma-separated list of " + ", ".join(AUGMENTATIONS)),
    "g_learning_rate": (_non_negative_finite, "a finite number >= 0 (0: learning_rate)"),
    "d_learning_rate": (_non_negative_finite, "a finite number >= 0 (0: learning_rate)"),
    "lr_decay": (lambda v: v in ("none", "linear"), "'none' or 'linear'"),
    "r1_gamma": (_non_negative_finite, "a finite number >= 0 (0 turns R1 off)"),
    "r1_every": (_positive_int, "a positive integer"),
    "learning_rate": (
        lambda v: _is_real(v) and math.isfinite(v) and v > 0,
        "a positive finite number",
    ),
    "b1": (_fraction, "a number in [0, 1)"),
    "b2": (_fraction, "a number in [0, 1)"),
    "batch_size": (_positive_int, "a positive integer"),
    "num_epochs": (
        lambda v: _positive_int(v) and v <= _INT32_MAX,
        f"an integer in [1, {_INT32_MAX}] (the step counter is int32)",
    ),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "population": (
        lambda v: _is_int(v) and 0 <= v <= _MAX_POPULATION,
        f"0 (one GAN) or an integer in [1, {_MAX_POPULATION}] (GANs trained as one program)",
    ),
    "population_learning_rates": (
        lambda v: (
            isinstance(v, tuple | list)
            and all(_is_real(r) and math.isfinite(r) and r > 0 for r in v)
        ),
        "() (every member uses learning_rate) or a tuple of positive finite numbers, one "
        "per member",
    ),
    "distributed": (lambda v: isinstance(v, bool), "True or False"),
    "num_train_examples": (_non_negative_int, "a non-negative integer (0 means all)"),
    "data_dir": (lambda v: isinstance(v, str), "a string path ('' for the default)"),
    "tfds_data_dir": (lambda v: isinstance(v, str), "a string path ('' for the default)"),
    "sample_every": (_non_negative_int, "a non-negative integer (0 disables)"),
    "checkpoint_every": (_non_negative_int, "a non-negative integer (0: only at the end)"),
    "keep_checkpoints": (_positive_int, "a positive integer"),
    "log_every_steps": (_positive_int, "a positive integer"),
    "progress": (lambda v: isinstance(v, bool), "True or False"),
    "eval_every": (_non_negative_int, "a non-negative integer (0 disables)"),
    "fid_num_samples": (
        lambda v: _is_int(v) and v >= 6,
        "an integer >= 6 (density/coverage use each image's 5 nearest neighbours)",
    ),
    "fid_batch_size": (
        _non_negative_int,
        "0 (auto: 50 on CPU; on GPU/TPU from the device's memory, at most 250 per device) "
        "or a positive integer",
    ),
    "kid_subset_size": (_positive_int, "a positive integer"),
    "kid_num_subsets": (_positive_int, "a positive integer"),
}


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming each invalid field, its value and what is allowed.

    Checks everything that does not need the dataset; the batch size against the
    dataset's size is checked by `check_batch_size` once the data is loaded. Fields
    a config adds beyond `base_config()` are not checked here.
    """
    problems = []
    for field, (is_valid, allowed) in _RULES.items():
        if field not in config:
            problems.append(f"config.{field} is missing; allowed: {allowed}")
        elif not is_valid(config[field]):
            problems.append(f"config.{field}={config[field]!r} is invalid; allowed: {allowed}")
    if not problems:
        problems = models.model_problems(config.model) or _population_problems(config)
    if problems:
        raise ValueError("Invalid config:\n  " + "\n  ".join(problems))


# What a population cannot take: separate G/D learning rates and a learning-rate decay.
SINGLE_GAN_FIELDS = ("g_learning_rate", "d_learning_rate", "lr_decay")


def single_gan_fields(config: ml_collections.ConfigDict) -> list[str]:
    """The `SINGLE_GAN_FIELDS` set in `config` (a population cannot take them; each seed
    then trains alone): a nonzero rate, a decay other than 'none'."""
    return [name for name in SINGLE_GAN_FIELDS if config[name] not in (0, 0.0, "none")]


def _population_problems(config: ml_collections.ConfigDict) -> list[str]:
    """What is wrong between the population fields and the others (each valid alone)."""
    size, rates = config.population, tuple(config.population_learning_rates)
    problems = []
    if rates and len(rates) != size:
        problems.append(
            f"config.population_learning_rates has {len(rates)} values but "
            f"config.population={size}; allowed: () or exactly {size} values"
            + ("" if size else " (set config.population to use it)")
        )
    if size and single_gan_fields(config):
        problems.append(
            "config.g_learning_rate, d_learning_rate and lr_decay are for one GAN; a "
            "population's members share one rate each (population_learning_rates); allowed: "
            "0, 0 and 'none' with config.population > 0"
        )
    if size and config.seed + size > 2**32:
        problems.append(
            f"config.seed={config.seed} with config.population={size} needs seeds up to "
            f"{config.seed + size - 1}; allowed: seed + population <= 2**32"
        )
    return problems


def smoke(config: ml_collections.ConfigDict, **values: Any) -> ml_collections.ConfigDict:
    """A config's `:smoke` variant: one epoch, a grid and an evaluation (N=16) at its end,
    then `values` (the family's tiny widths, the data and batch sizes); returns `config`."""
    config.update(
        num_epochs=1, sample_every=1, eval_every=1, fid_num_samples=16, fid_batch_size=16,
        kid_subset_size=16, kid_num_subsets=10,
    )  # fmt: skip
    return set_fields(config, **values)


def unknown_variant(path: str, variant: str, variants: tuple[str, ...]) -> ValueError:
    """The error of a config file asked for a variant it does not have."""
    from pathlib import Path

    name = Path(path).name
    allowed = ", ".join([f"{name}", *(f"{name}:{v}" for v in variants)])
    return ValueError(f"{name} has no variant {variant!r}; allowed: {allowed}")


def images_per_step(config: ml_collections.ConfigDict) -> int:
    """Real images one step takes: `batch_size` per D step (fresh reals for each)."""
    return int(config.batch_size) * int(config.get("d_steps", 1))


def check_batch_size(batch_size: int, num_examples: int) -> None:
    """Raises ValueError when not even one full batch fits in the training set."""
    if batch_size > num_examples:
        raise ValueError(
            f"config.batch_size={batch_size} is larger than the training set "
            f"({num_examples} images); allowed: 1 to {num_examples}"
        )


# What each field means, for `--help` and the README's config reference.
FIELD_HELP = {
    "model": "the model family (model.name) and its own fields",
    "latent_dim": "size of z",
    "dtype": "compute dtype (params, optimizer state and losses stay float32)",
    "conditional": "class-conditional G (label embedding) and projection D",
    "dataset": "data source: " + datasets.FORMS,
    "image_size": "resize images to SxS (0: the dataset's own size)",
    "channels": "1 (gray) or 3 (RGB); 0: the dataset's own",
    "loss": "objective: " + ", ".join(OBJECTIVES),
    "d_steps": "D (critic) steps per G step, each on its own batch_size reals",
    "augment": "DiffAugment policy on every image D sees: " + ", ".join(AUGMENTATIONS),
    "gp_weight": "gradient-penalty weight of wgan_gp",
    "ema_decay": "EMA of G's weights per step, used for samples and FID (0: off)",
    "ema_start": "steps before the EMA starts averaging (until then it copies G)",
    "r1_gamma": "R1 penalty weight on reals (0: off)",
    "r1_every": "apply R1 every k steps, scaled by k (lazy R1)",
    "learning_rate": "Adam learning rate, G and D",
    "g_learning_rate": "G's own learning rate (0: learning_rate)",
    "d_learning_rate": "D's own learning rate (0: learning_rate)",
    "lr_decay": "'linear': learning rates fall linearly to 0 over the run",
    "b1": "Adam beta1",
    "b2": "Adam beta2",
    "batch_size": "images per step (the last incomplete batch of an epoch is dropped)",
    "num_epochs": "epochs to train",
    "seed": "same seed, same run",
    "population": "K > 0: train K GANs as one vmapped program, member i with seed + i",
    "population_learning_rates": "one learning rate per member, () for learning_rate",
    "distributed": "one of several processes: jax.distributed.initialize() (automatic under "
    "Slurm srun, mpirun, TPU pods and with JAX_COORDINATOR_ADDRESS)",
    "num_train_examples": "train on the first N images (0: all)",
    "data_dir": "folder with the four FashionMNIST IDX .gz files ('' : Debian's package)",
    "tfds_data_dir": "tfds's data folder ('' : ~/tensorflow_datasets)",
    "sample_every": "epochs between sample grids (0: only the final grid)",
    "checkpoint_every": "epochs between checkpoints (0: only at the end)",
    "keep_checkpoints": "how many of the newest checkpoints to keep",
    "log_every_steps": "steps per compiled chunk on GPU/TPU; NaN checks and progress",
    "progress": "progress bar on a terminal",
    "eval_every": "epochs between evaluations, and always at the end (0: never)",
    "fid_num_samples": "N generated images vs the first N reference images (at least 6)",
    "fid_batch_size": "generator and Inception batch size in evaluation (0: auto, 50 on CPU "
    "(about 2.5 GB), else from the device memory, at most 250 per device)",
    "kid_subset_size": "KID subset size (clipped to N with a warning; at N, one subset: no spread)",
    "kid_num_subsets": "KID number of subsets",
}


# Fields that moved under config.model: the old flat key -> the new one.
MOVED_FIELDS = {name: f"model.{name}" for name in models.FORMERLY_FLAT}


def rows(config: ml_collections.ConfigDict) -> list[tuple[str, Any, str]]:
    """(field, value, meaning) for every field, the model family's as `model.FIELD`."""
    table = []
    for name in config:
        if name == "model":
            table += models.describe(config.model)
        else:
            table.append((name, config[name], FIELD_HELP.get(name, "")))
    return table


def describe_fields(config: ml_collections.ConfigDict) -> str:
    """One line per field: name, value in `config`, meaning."""
    table = rows(config)
    width = max(len(name) for name, _, _ in table)
    return "\n".join(
        f"  --config.{name:<{width}} {value!r:<18} {meaning}" for name, value, meaning in table
    )


def set_fields(config: ml_collections.ConfigDict, **values: Any) -> ml_collections.ConfigDict:
    """Sets fields by name, a model family's own under `config.model`; returns `config`.

    `set_fields(config, g_width=8, num_epochs=2)` sets `config.model.g_width` and
    `config.num_epochs`. `model="mlp"` switches the family, with its defaults.
    """
    if "model" in values:
        config.model = model_config(values.pop("model"))
    for name, value in values.items():
        target = config.model if name in config.model else config
        target[name] = value
    return config
