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


@pytest.fixture(scope="session", autouse=True)
def isolated_cache_dir(tmp_path_factory):
    """Tests never write to the user's `~/.cache/jaxgan`: JAXGAN_CACHE_DIR is a temporary
    folder for the whole session (subprocesses inherit it). The prepared datasets and the
    converted Inception weights of the real cache are linked in read-only, so that tests
    need neither TensorFlow nor a new conversion; a write replaces the link, not its target.
    """
    real = Path(os.environ.get("JAXGAN_CACHE_DIR", Path.home() / ".cache" / "jaxgan"))
    cache = tmp_path_factory.mktemp("jaxgan_cache")
    for pattern in ("fashion_mnist_v*.npz", "fid_inception_v*.npz"):
        for source in real.glob(pattern):
            (cache / source.name).symlink_to(source)
    previous = os.environ.get("JAXGAN_CACHE_DIR")
    os.environ["JAXGAN_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("JAXGAN_CACHE_DIR", None)
    else:
        os.environ["JAXGAN_CACHE_DIR"] = previous


@pytest.fixture
def tiny_config():
    """A factory of tiny, unlocked configs: `tiny_config('dcgan', dtype='bfloat16')`."""
    from jaxgan.models import model_config
    from jaxgan.training.config import base_config, set_fields

    def make(model: str = "dcgan", **overrides):
        config = base_config()
        config.model = model_config(model, g_width=4, d_width=4)
        config.latent_dim = 8
        return set_fields(config, **overrides)

    return make
