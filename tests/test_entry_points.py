"""The six entry points as a user meets them, from any directory: `--help`, the --config path,
and one-line errors for the usual mistakes. Nothing here trains."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "experiments" / "configs"
ENTRY_POINTS = ("train", "dcgan", "vanilla", "evaluate", "generate", "serve")


def run_elsewhere(cwd: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m experiments.MODULE ARGS` in `cwd`, with the installed packages only."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_works_from_any_directory_exits_0_and_starts_with_the_docstring(tmp_path, module):
    result = run_elsewhere(tmp_path, module, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    source = (REPO_ROOT / "experiments" / f"{module}.py").read_text()
    doc = ast.get_docstring(ast.parse(source))
    assert result.stdout.startswith(doc.splitlines()[0] + "\n")
    # One layout: our usage or flag list, never absl's own (a line naming the module's file).
    assert "usage: python -m experiments." in result.stdout or "\nFlags:\n  --" in result.stdout
    assert not re.search(r"^\S*experiments/\w+\.py:$", result.stdout, re.MULTILINE)


@pytest.mark.parametrize(
    "args",
    [
        ["--config=experiments/configs/vanilla.py:smoke"],
        ["--config=vanilla.py:smoke"],
        ["--config", "experiments/configs/vanilla.py:smoke"],
    ],
)
def test_a_config_path_not_found_here_is_the_installed_packages(tmp_path, args):
    result = run_elsewhere(tmp_path, "vanilla", *args, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Config fields, with the values of experiments/configs/vanilla.py:smoke:" in (
        result.stdout
    )


def test_a_resolved_config_is_the_one_trained_and_validated(tmp_path):
    workdir = tmp_path / "run"
    result = run_elsewhere(
        tmp_path, "dcgan", "--config=experiments/configs/dcgan.py:smoke",
        "--config.batch_size=0", f"--workdir={workdir}",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and "config.batch_size=0 is invalid" in result.stderr
    assert not workdir.exists()


def test_resolve_config_prefers_a_file_here(tmp_path, monkeypatch):
    from experiments import _train_main

    monkeypatch.chdir(tmp_path)
    assert _train_main.resolve_config("dcgan.py:cpu") == f"{CONFIGS / 'dcgan.py'}:cpu"
    assert _train_main.resolve_config("experiments/configs/dcgan.py") == str(CONFIGS / "dcgan.py")
    (tmp_path / "dcgan.py").write_text("")
    assert _train_main.resolve_config("dcgan.py:cpu") == "dcgan.py:cpu"
    assert _train_main.resolve_config("missing.py:smoke") == "missing.py:smoke"


def test_a_misspelt_config_path_is_one_line_listing_the_configs(tmp_path):
    result = run_elsewhere(tmp_path, "dcgan", "--config=experiments/configs/dcgn.py:smoke")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: no config file experiments/configs/dcgn.py; did you mean "
                           "experiments/configs/dcgan.py? the configs: ")  # fmt: skip
    for config in sorted(CONFIGS.glob("*.py")):
        assert (config.name == "__init__.py") != (f"experiments/configs/{config.name}" in line)
    assert "config_config" not in line


@pytest.mark.parametrize(
    "flag, field",
    [("--num_epochs=3", "--config.num_epochs"), ("--g_width=8", "--config.model.g_width")],
)
def test_a_config_field_given_as_a_flag_gets_the_config_spelling(tmp_path, flag, field):
    result = run_elsewhere(tmp_path, "dcgan", flag, f"--workdir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"error: {flag.split('=')[0]} is not a flag; did you mean {field}?"
    )
