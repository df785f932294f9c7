"""Config validation: every field fuzzed, and every refusal before data or compilation."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.configs import dcgan, vanilla
from jaxgan import data as datasets
from jaxgan.training import config as config_lib
from jaxgan.training import loop

REPO = Path(__file__).resolve().parents[1]


def _int_at_least(low: int, high: float = math.inf):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _real(test):
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and test(v)


# What each numeric field accepts, written from the README's config reference rather
# than from the validator, so that the two are checked against each other.
ALLOWED = {
    "latent_dim": _int_at_least(1),
    "batch_size": _int_at_least(1),
    "num_epochs": _int_at_least(1, 2**31 - 1),
    "seed": _int_at_least(0, 2**32 - 1),
    "num_train_examples": _int_at_least(0),
    "sample_every": _int_at_least(0),
    "checkpoint_every": _int_at_least(0),
    "eval_every": _int_at_least(0),
    "keep_checkpoints": _int_at_least(1),
    "log_every_steps": _int_at_least(1),
    "fid_num_samples": _int_at_least(6),
    "fid_batch_size": _int_at_least(0),
    "kid_subset_size": _int_at_least(1),
    "kid_num_subsets": _int_at_least(1),
    "b1": _real(lambda v: 0 <= v < 1),
    "b2": _real(lambda v: 0 <= v < 1),
    "learning_rate": _real(lambda v: math.isfinite(v) and v > 0),
    "image_size": lambda v: _int_at_least(4, 1024)(v) or (_int_at_least(0, 0)(v)),
    "channels": lambda v: _int_at_least(0, 3)(v) and v != 2,
    "d_steps": _int_at_least(1, 100),
    "gp_weight": _real(lambda v: math.isfinite(v) and v >= 0),
    "ema_decay": _real(lambda v: 0 <= v < 1),
    "ema_start": _int_at_least(0),
    "g_learning_rate": _real(lambda v: math.isfinite(v) and v >= 0),
    "d_learning_rate": _real(lambda v: math.isfinite(v) and v >= 0),
    "r1_gamma": _real(lambda v: math.isfinite(v) and v >= 0),
    "r1_every": _int_at_least(1),
    "population": _int_at_least(0, 1024),
}

NUMERIC_FIELDS = sorted(
    name
    for name, value in config_lib.base_config().items()
    if isinstance(value, (int, float)) and not isinstance(value, bool)
)

ANY_VALUE = st.one_of(
    st.integers(),
    st.integers(-3, 3),
    st.integers(2**31 - 3, 2**32 + 3),
    st.sampled_from([2**63, -(2**63), 10**30]),
    st.floats(),  # NaN and +-inf included.
    st.floats(0, 1),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
)


def config_with(**changes) -> ml_collections.ConfigDict:
    """The base config with fields set to values of any type (ConfigDict would refuse)."""
    return ml_collections.ConfigDict({**config_lib.base_config().to_dict(), **changes})


def test_every_numeric_field_has_a_rule():
    assert NUMERIC_FIELDS == sorted(ALLOWED)


SHIPPED_CONFIGS = sorted(
    path.stem for path in (REPO / "experiments" / "configs").glob("*.py") if path.stem != "__init__"
)


@pytest.mark.parametrize("name", ["base_config", *SHIPPED_CONFIGS])
def test_shipped_configs_are_valid(name):
    """Every variant of every config file passes validation, and validation reaches it: the
    same config with one bad value is refused, the value named."""
    import importlib

    if name == "base_config":
        configs = {"": config_lib.base_config()}
    else:
        module = importlib.import_module(f"experiments.configs.{name}")
        configs = {variant: module.get_config(variant) for variant in ("", *module.VARIANTS)}
    assert name == "base_config" or {"", "smoke"} <= set(configs)  # One smoke run each.
    for config in configs.values():
        config_lib.validate_config(config)  # Raises, naming the field, when invalid.
        broken = ml_collections.ConfigDict(config.to_dict())
        broken.batch_size = 0
        with pytest.raises(ValueError, match=r"config\.batch_size=0 is invalid"):
            config_lib.validate_config(broken)


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(NUMERIC_FIELDS), value=ANY_VALUE)
def test_each_numeric_field_accepts_exactly_its_allowed_values(field, value):
    config = config_with(**{field: value})
    if ALLOWED[field](value):
        config_lib.validate_config(config)
        return
    with pytest.raises(ValueError) as raised:
        config_lib.validate_config(config)
    message = str(raised.value)
    assert f"config.{field}={value!r} is invalid; allowed:" in message
    assert message.count("config.") == 1  # No other field is blamed.


@settings(max_examples=100, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(NUMERIC_FIELDS), ANY_VALUE, min_size=2))
def test_every_invalid_field_is_named_at_once(changes):
    invalid = sorted(f for f, v in changes.items() if not ALLOWED[f](v))
    if not invalid:
        config_lib.validate_config(config_with(**changes))
        return
    with pytest.raises(ValueError) as raised:
        config_lib.validate_config(config_with(**changes))
    named = sorted(f for f in changes if f"config.{f}=" in str(raised.value))
    assert named == invalid


@pytest.mark.parametrize(
    "field, value",
    [
        ("model", "resnet"),
        ("model", ""),
        ("model", None),
        ("model", 3),
        ("dtype", "float16"),
        ("dtype", ["float32"]),
        ("progress", 1),
        ("progress", "yes"),
        ("data_dir", None),
        ("tfds_data_dir", 0),
        ("dataset", "cifar10"),
        ("dataset", "tfds:"),
        ("dataset", "tfds:Bad Name"),
        ("dataset", "folder:"),
        ("dataset", None),
        ("loss", "wgan"),
        ("loss", None),
        ("conditional", 1),
    ],
)
def test_other_fields_are_checked(field, value):
    with pytest.raises(ValueError, match=f"config.{field}=.* is invalid; allowed:"):
        config_lib.validate_config(config_with(**{field: value}))


def test_unknown_model_lists_the_known_ones():
    config = config_lib.base_config()
    config.model.name = "stylegan"
    with pytest.raises(
        ValueError, match="config.model.name='stylegan' is invalid; allowed: one of dcgan, mlp"
    ):
        config_lib.validate_config(config)


# The DCGAN family's own fields, from the README's config reference.
MODEL_ALLOWED = {
    "g_width": _int_at_least(1),
    "d_width": _int_at_least(1),
    "dropout_rate": _real(lambda v: 0 <= v < 1),
    "spectral_norm": lambda v: isinstance(v, bool),
}


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(MODEL_ALLOWED)), value=ANY_VALUE)
def test_each_model_field_accepts_exactly_its_allowed_values(field, value):
    values = config_lib.base_config().to_dict()
    values["model"][field] = value
    config = ml_collections.ConfigDict(values)
    if MODEL_ALLOWED[field](value):
        config_lib.validate_config(config)
        return
    with pytest.raises(ValueError) as raised:
        config_lib.validate_config(config)
    assert f"config.model.{field}={value!r} is invalid; allowed:" in str(raised.value)


def test_a_field_of_another_family_is_named():
    config = vanilla.get_config().unlock()
    config.model.name = "dcgan"
    config_lib.validate_config(config)  # Fields it lacks take the family's defaults.
    config = dcgan.get_config().unlock()
    config.model.name = "mlp"
    with pytest.raises(ValueError, match="config.model.dropout_rate is not a field of model"):
        config_lib.validate_config(config)


@pytest.mark.parametrize(
    "field, value, listed",
    [
        ("dataset", "cifar10", "'fashion_mnist', 'tfds:NAME[:VERSION]'"),
        ("loss", "wgan", "one of nonsaturating, hinge, wgan_gp"),
    ],
)
def test_unknown_names_list_what_exists(field, value, listed):
    with pytest.raises(ValueError, match=f"config.{field}='{value}' is invalid; allowed:") as error:
        config_lib.validate_config(config_with(**{field: value}))
    assert listed in str(error.value)


def test_missing_field_is_named():
    config = config_lib.base_config().to_dict()
    del config["keep_checkpoints"]
    with pytest.raises(ValueError, match="config.keep_checkpoints is missing"):
        config_lib.validate_config(ml_collections.ConfigDict(config))


@pytest.mark.parametrize("batch_size, num_examples, ok", [(64, 64, True), (65, 64, False)])
def test_batch_size_against_dataset(batch_size, num_examples, ok):
    if ok:
        config_lib.check_batch_size(batch_size, num_examples)
        return
    with pytest.raises(ValueError, match="batch_size=65 is larger than the training set"):
        config_lib.check_batch_size(batch_size, num_examples)


@pytest.fixture
def nothing_compiles(monkeypatch):
    """Makes model creation (the first compilation) fail the test if it is reached."""

    def forbidden(*args, **kwargs):
        raise AssertionError("create_state was called: the config error came too late")

    monkeypatch.setattr(loop, "create_state", forbidden)


@pytest.fixture
def thousand_images(monkeypatch):
    """A 1000-image training set, loaded without touching the real data."""
    calls = []

    def load(config, split):
        calls.append(split)
        return datasets.Dataset(
            np.zeros((1000, 28, 28, 1), np.uint8),
            np.zeros(1000, np.int32),
            datasets.fashion_mnist.INFO,
            split,
        )

    monkeypatch.setattr(loop.datasets, "load", load)
    return calls


def test_invalid_config_is_refused_before_data_and_workdir(
    tmp_path, nothing_compiles, thousand_images
):
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match="config.learning_rate=nan is invalid"):
        loop.train_and_evaluate(config_with(learning_rate=float("nan")), workdir)
    assert thousand_images == []
    assert not workdir.exists()


def test_invalid_config_on_rerun_changes_nothing_in_the_workdir(tmp_path, nothing_compiles):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "train.log").write_text("the earlier run's log\n")
    with pytest.raises(ValueError, match="config.num_epochs=0 is invalid"):
        loop.train_and_evaluate(config_with(num_epochs=0), workdir)
    assert sorted(p.name for p in workdir.iterdir()) == ["train.log"]
    assert (workdir / "train.log").read_text() == "the earlier run's log\n"


def test_too_small_n_is_refused_at_validation_not_at_the_first_evaluation(
    tmp_path, nothing_compiles, thousand_images
):
    # Issue 20: fid_num_samples=4 passed, trained an epoch, then died at its first evaluation.
    with pytest.raises(ValueError, match=r"config.fid_num_samples=4 is invalid; allowed: an "
                       r"integer >= 6 \(density/coverage"):  # fmt: skip
        loop.train_and_evaluate(config_with(fid_num_samples=4), tmp_path / "run")
    assert thousand_images == []
    config_lib.validate_config(config_with(fid_num_samples=6, fid_batch_size=0))


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"batch_size": 1001}, r"config.batch_size=1001 is larger than the training set \(1000"),
        (
            {"batch_size": 1, "num_epochs": 2**31 - 1},
            "config.num_epochs=2147483647 gives 2147483647000 steps, more than the int32 step "
            "counter holds; allowed: at most 2147483 epochs",
        ),
    ],
)
def test_dataset_dependent_refusals_come_before_compilation(
    tmp_path, nothing_compiles, thousand_images, changes, expected
):
    config = dcgan.get_config("smoke")
    config.num_train_examples = 0
    for field, value in changes.items():
        config[field] = value
    with pytest.raises(ValueError, match=expected):
        loop.train_and_evaluate(config, tmp_path / "run")
    assert thousand_images == ["train"]
    assert not (tmp_path / "run").exists()  # A refused run creates nothing.


def test_more_train_examples_than_the_dataset_uses_all_with_a_warning(
    thousand_images, caplog, monkeypatch
):
    monkeypatch.setattr(loop, "create_state", lambda *args, **kwargs: "state")
    monkeypatch.setattr(loop, "signature", lambda *args: {})
    config = dcgan.get_config("smoke")
    config.num_train_examples = 1001
    setup = loop._set_up(config)
    assert len(setup.train_set) == 1000
    assert "config.num_train_examples=1001 is more than the 1000 training images" in caplog.text


def test_typo_in_a_config_key_on_the_command_line_is_an_error(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.dcgan",
            "--config=experiments/configs/dcgan.py:smoke",
            "--config.num_epoch=3",
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "num_epoch" in result.stderr
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"population": 3, "population_learning_rates": (1e-4, 2e-4)},
            "config.population_learning_rates has 2 values but config.population=3; "
            "allowed: () or exactly 3 values",
        ),
        (
            {"population_learning_rates": (1e-4,)},
            "config.population=0; allowed: () or exactly 0 values (set config.population",
        ),
        (
            {"population": 4, "seed": 2**32 - 2},
            f"config.seed={2**32 - 2} with config.population=4 needs seeds up to {2**32 + 1}",
        ),
        (
            {"population": 2, "population_learning_rates": (1e-4, -1.0)},
            "config.population_learning_rates=(0.0001, -1.0) is invalid; allowed: () "
            "(every member uses learning_rate) or a tuple of positive finite numbers",
        ),
        ({"population": -1}, "config.population=-1 is invalid; allowed: 0 (one GAN)"),
    ],
)
def test_population_fields_are_checked_with_each_other(changes, expected):
    with pytest.raises(ValueError, match="Invalid config") as raised:
        config_lib.validate_config(config_with(**changes))
    assert expected in str(raised.value)


def test_population_configs_are_valid():
    from experiments.configs import population

    for variant in ("", *population.VARIANTS):
        config = population.get_config(variant)
        config_lib.validate_config(config)
        assert config.population == (2 if variant == "smoke" else 8)
