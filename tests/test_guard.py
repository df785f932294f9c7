"""The redesign guard: seed-faithful smoke runs give the same bits as before the redesign.

`tests/fixtures/guard_digests.json` holds the SHA-256 of the final parameters and
BatchNorm statistics of `dcgan.py:smoke` and `vanilla.py:smoke` on CPU, recorded before
datasets, objectives and models became pluggable. Any change to the layers, the loss,
the order of updates, the data order or the keys changes the digest.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

REPO_ROOT = Path(__file__).resolve().parents[1]
DIGESTS = json.loads((REPO_ROOT / "tests" / "fixtures" / "guard_digests.json").read_text())

pytestmark = pytest.mark.slow


def params_digest(state) -> str:
    """SHA-256 over G's and D's params and BatchNorm statistics, by sorted flax path."""
    digest = hashlib.sha256()
    for group in ("g_params", "g_batch_stats", "d_params", "d_batch_stats"):
        flat = traverse_util.flatten_dict(jax.device_get(getattr(state, group)), sep="/")
        for name in sorted(flat):
            array = np.ascontiguousarray(flat[name])
            digest.update(f"{group}/{name}:{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def _load_config(spec: str):
    path, variant = spec.split(":")
    module_spec = importlib.util.spec_from_file_location("guard_config", REPO_ROOT / path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant).unlock()


@pytest.mark.parametrize(
    "spec", ["experiments/configs/dcgan.py:smoke", "experiments/configs/vanilla.py:smoke"]
)
def test_seed_faithful_smoke_runs_are_bit_identical_to_before(spec, tmp_path):
    from jaxgan.training.loop import train_and_evaluate

    config = _load_config(spec)
    config.eval_every = 0  # Evaluation draws its own keys and never touches the state.
    state = train_and_evaluate(config, tmp_path / "run")
    assert int(state.step) == DIGESTS[spec]["step"]
    assert params_digest(state) == DIGESTS[spec]["sha256"]
