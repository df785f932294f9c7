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

from tests.helpers import require  # noqa: E402  Needs REPO_ROOT on the path.


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requirement(condition, reason): tests/helpers/require.py's requirement"
    )


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requirement"):
        require.require_or_skip(mark.args[0], mark.kwargs["reason"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under JAXGAN_REQUIRE_ALL=1 a skip whose reason names a requirement is a failure."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and require.require_all()) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if require.names_a_requirement(reason):
        report.outcome = "failed"
        report.longrepr = require.failure_reason(reason.removeprefix("Skipped: "))


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
