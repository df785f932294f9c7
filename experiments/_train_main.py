"""Shared body of the training entry points: flags, help, logging, errors, exit codes."""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from jaxgan.training.config import FIELD_HELP, MOVED_FIELDS, describe_fields

# The installed `experiments` package: relative config paths that are not found from the
# current directory are looked up here, so the commands run from any directory.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = PACKAGE_ROOT / "experiments" / "configs"

USAGE = """{doc}
usage: python -m {module} [--config=FILE[:VARIANT]] [--workdir=DIR] [--config.FIELD=VALUE ...]

  --config   config file (default {config}); variants: {variants}
  --workdir  output folder (default {workdir}); running the same command again resumes

Config fields, with the values of {config_spec}:
{fields}

Example:
  python -m {module} --config={config}:smoke --workdir=/tmp/smoke --config.num_epochs=2
"""


def resolve_config(spec: str) -> str:
    """`FILE[:VARIANT]` with FILE as given when it exists, else the installed package's file
    (`experiments/configs/dcgan.py` or `dcgan.py`); as given when neither exists."""
    path, colon, variant = spec.partition(":")
    if not path or Path(path).is_absolute() or Path(path).exists():
        return spec
    for base in (PACKAGE_ROOT, CONFIGS_DIR):
        if (base / path).is_file():
            return f"{base / path}{colon}{variant}"
    return spec


def _shown(path: str) -> str:
    """A path inside the installed package as the repository-relative path users type."""
    try:
        return str(Path(path).relative_to(PACKAGE_ROOT))
    except ValueError:
        return path


def _missing_config(argv: list[str]) -> str | None:
    """The one-line error for a --config file that does not exist, listing those that do."""
    given = [a.split("=", 1)[1].partition(":")[0] for a in argv if a.startswith("--config=")]
    if not given or Path(given[-1]).is_file():
        return None
    shipped = [_shown(str(f)) for f in sorted(CONFIGS_DIR.glob("*.py")) if f.stem != "__init__"]
    close = difflib.get_close_matches(given[-1], shipped, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"no config file {given[-1]}; {hint}the configs: {', '.join(shipped)}"


def define_flags(default_config: str, default_workdir: str) -> None:
    try:  # With no --config, overrides of the default config are parsed right here.
        config_flags.DEFINE_config_file(
            "config",
            resolve_config(default_config),
            "Config file; variants as 'file.py:smoke'.",
            lock_config=True,
        )
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        sys.exit(2)
    flags.DEFINE_string("workdir", default_workdir, "Output folder; reruns resume from it.")


def _load_config_module(path: str):
    spec = importlib.util.spec_from_file_location("jaxgan_help_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _usage(argv: list[str], doc: str) -> str:
    given = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    flag_values = flags.FLAGS
    default_config = flag_values["config"].default_as_str.strip("'\"")
    spec = given[-1] if given else default_config
    path, _, variant = spec.partition(":")
    module = _load_config_module(path)
    return USAGE.format(
        doc=doc.strip() + "\n",
        module=Path(argv[0]).stem if argv[0].endswith(".py") else argv[0],
        config=_shown(default_config),
        variants=", ".join(f"{_shown(path)}:{name}" for name in getattr(module, "VARIANTS", ())),
        workdir=flag_values["workdir"].default,
        config_spec=_shown(spec),
        fields=describe_fields(module.get_config(variant)),
    )


def _moved_field(argv: list[str]) -> str | None:
    """The error for an old flat key of a field now under `config.model`, if one is given."""
    for arg in argv:
        name = arg.removeprefix("--config.").split("=", 1)[0]
        if arg.startswith("--config.") and name in MOVED_FIELDS:
            return (
                f"--config.{name} is now --config.{MOVED_FIELDS[name]} (a model family's "
                "own fields live under config.model)"
            )
    return None


def _one_line(error: BaseException) -> str:
    """A flag-parsing error as one line: the config's own message, or the typo hint."""
    text = str(error).replace("\\n", "\n")
    hint = re.search(r'Did you mean "(\w+)" instead of "([\w.]+)"', text)
    if hint:
        return f"--config.{hint.group(2)} is not a config field; did you mean {hint.group(1)}?"
    unknown = re.search(r"Could not override [\w.]+\.(\w+)|key ['\"]?(\w+)['\"]? does not", text)
    if unknown:
        return f"--config.{unknown.group(1) or unknown.group(2)} is not a config field"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    return re.sub(r"^(ValueError|KeyError|AttributeError): ", "", last)


def _config_field_as_flag(error: BaseException) -> str | None:
    """The hint for a config field given as a flag of its own (`--num_epochs=3`)."""
    name = getattr(error, "flagname", None)
    if not isinstance(error, flags.UnrecognizedFlagError) or not name:
        return None
    field = MOVED_FIELDS.get(name) or (name if name in FIELD_HELP else None)
    if field is None:
        return None
    return f"--{name} is not a flag; did you mean --config.{field}?"


def _config_resolved(argv: list[str]) -> list[str]:
    """`argv` with `--config FILE` as `--config=FILE`, and FILE resolved (`resolve_config`)."""
    resolved, args = [], iter(argv)
    for arg in args:
        if arg == "--config":
            arg = f"--config={next(args, '')}"
        resolved.append(
            f"--config={resolve_config(arg[9:])}" if arg.startswith("--config=") else arg
        )
    return resolved


def parse_flags(argv: list[str], *, doc: str, module: str) -> list[str]:
    """absl's parsing with a real `--help` and one-line errors instead of tracebacks.

    A `--config` file not found from the current directory is the installed package's."""
    argv = _config_resolved(argv)
    missing = _missing_config(argv)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        sys.exit(2)
    if any(arg in ("-h", "--help", "--helpshort") for arg in argv[1:]):
        try:
            print(_usage([module, *argv[1:]], doc), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
        hint = _moved_field(argv) or _config_field_as_flag(error) or _one_line(error)
        print(f"error: {hint}", file=sys.stderr)
        sys.exit(2)


def main(argv) -> None:
    from jaxgan.training import compilation_cache
    from jaxgan.training.loop import NonFiniteLossError, TrainingInterrupted, train_and_evaluate
    from jaxgan.training.workdir import LOG_FORMAT

    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    # Backend probing ("Unable to initialize backend 'tpu'") is not news to a user.
    for noisy in ("absl", "jax", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    compilation_cache.enable()
    flag_values = flags.FLAGS
    try:
        train_and_evaluate(flag_values.config, flag_values.workdir)
    except TrainingInterrupted as interrupted:
        print(f"stopped: {interrupted}", file=sys.stderr)
        sys.exit(128 + interrupted.signum)
    except (ValueError, NonFiniteLossError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
