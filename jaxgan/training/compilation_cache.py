"""JAX's persistent compilation cache, kept in jaxgan's cache folder.

A second run of the same config loads its compiled programs from disk instead of
compiling them again. JAX keys each entry on the program, the compile options, the
backend and the jax/jaxlib versions, so a stale entry is never used.

The cache lives in `$JAXGAN_CACHE_DIR/xla` (default `~/.cache/jaxgan/xla`), beside the
data cache and the converted Inception weights. `JAXGAN_COMPILATION_CACHE=0` turns it
off. As JAX's guide warns, whoever can write to the folder can make a JAX process run
their code: keep it private.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_compilation_cache

from jaxgan import fileio

OPT_OUT_ENV_VAR = "JAXGAN_COMPILATION_CACHE"
# Programs that compile faster than this are not worth a disk entry.
MIN_COMPILE_SECONDS = 0.5
_OFF_VALUES = ("0", "false", "no", "off")


def default_cache_dir() -> Path:
    """`$JAXGAN_CACHE_DIR/xla`, else `~/.cache/jaxgan/xla`."""
    return fileio.default_cache_dir() / "xla"


def enable(
    cache_dir: str | os.PathLike | None = None,
    *,
    min_compile_seconds: float = MIN_COMPILE_SECONDS,
) -> Path | None:
    """Turns on JAX's persistent compilation cache for this process.

    Best called before the first compilation; calling it later works too, since JAX's
    cache is reset to read the new settings at the next compilation.

    Args:
      cache_dir: the folder for compiled programs; default: JAX's own
        `JAX_COMPILATION_CACHE_DIR` when set, else `default_cache_dir()`.
      min_compile_seconds: programs that compile faster are not written.

    Returns:
      The cache folder, or None when `JAXGAN_COMPILATION_CACHE` is 0/false/no/off.
    """
    if os.environ.get(OPT_OUT_ENV_VAR, "").strip().lower() in _OFF_VALUES:
        return None
    if cache_dir is None:
        cache_dir = jax.config.jax_compilation_cache_dir or default_cache_dir()
    path = Path(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    # -1: no size floor and no override of it, as in JAX's guide; compile time decides.
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    # JAX decides whether to use the cache once, at its first compilation; a reset makes
    # it decide again with the settings above.
    jax_compilation_cache.reset_cache()
    return path
