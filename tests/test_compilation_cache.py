"""jaxgan.training.compilation_cache: compiled programs land in the cache folder and are reused.

Each case runs in its own Python process: JAX's cache settings are process-wide, and
the test suite's other compilations must not write into (or read from) a test folder.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Compiles once before `enable()` (JAX then has already set up its cache if it has a
# folder), then a named function after it, with `enable(sys.argv[1])` when given; reports
# what enable returned and the cache hits JAX counted.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp
    from jaxgan.training import compilation_cache

    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **kwargs: hits.append(event)
        if event == "/jax/compilation_cache/cache_hits" else None
    )
    jax.jit(jnp.cos)(1.0).block_until_ready()
    path = compilation_cache.enable(
        sys.argv[1] if len(sys.argv) > 1 else None, min_compile_seconds=0
    )

    @jax.jit
    def cached_program(x):
        return jnp.tanh(x @ x.T).sum()

    cached_program(jnp.ones((8, 8))).block_until_ready()
    print(json.dumps({"path": None if path is None else str(path), "hits": len(hits)}))
    """
)


def _run(cache_root, *args, **env_overrides):
    env = {key: value for key, value in os.environ.items() if not key.startswith("JAX_")}
    env.pop("JAXGAN_COMPILATION_CACHE", None)
    env.update(JAXGAN_CACHE_DIR=str(cache_root), JAX_PLATFORMS="cpu", **env_overrides)
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _entries(folder):
    return sorted(path.name for path in folder.rglob("*") if path.is_file())


def test_enable_writes_under_jaxgan_cache_dir_and_the_next_process_reads_it(tmp_path):
    first = _run(tmp_path)
    cache_dir = tmp_path / "xla"
    assert first["path"] == str(cache_dir)
    entries = _entries(cache_dir)
    assert any("cached_program" in name for name in entries), entries
    assert first["hits"] == 0

    second = _run(tmp_path)
    assert second["hits"] >= 1
    assert _entries(cache_dir) == entries


@pytest.mark.parametrize("value", ["0", "false", "OFF"])
def test_opt_out_writes_nothing(tmp_path, value):
    result = _run(tmp_path, JAXGAN_COMPILATION_CACHE=value)
    assert result["path"] is None
    assert _entries(tmp_path) == []


def test_jax_own_cache_dir_variable_is_kept(tmp_path):
    jax_dir = tmp_path / "jax_own"
    result = _run(tmp_path / "jaxgan", JAX_COMPILATION_CACHE_DIR=str(jax_dir))
    assert result["path"] == str(jax_dir)
    assert any("cached_program" in name for name in _entries(jax_dir))
    assert not (tmp_path / "jaxgan").exists()


def test_an_explicit_folder_wins_even_after_jax_set_up_its_own(tmp_path):
    jax_dir, chosen_dir = tmp_path / "jax_own", tmp_path / "chosen"
    result = _run(tmp_path / "jaxgan", chosen_dir, JAX_COMPILATION_CACHE_DIR=str(jax_dir))
    assert result["path"] == str(chosen_dir)
    assert any("cached_program" in name for name in _entries(chosen_dir))
    assert not any("cached_program" in name for name in _entries(jax_dir))
