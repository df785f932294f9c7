"""Shared fixtures: tiny configs so that every test compiles in seconds on CPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture
def tiny_config():
    """A factory of tiny, unlocked configs: `tiny_config('dcgan', dtype='bfloat16')`."""
    from jaxgan.config import base_config

    def make(model: str = "dcgan", **overrides):
        config = base_config()
        config.model = model
        config.latent_dim = 8
        config.g_width = 4
        config.d_width = 4
        config.dropout_rate = 0.3 if model == "dcgan" else 0.0
        for name, value in overrides.items():
            config[name] = value
        return config

    return make
