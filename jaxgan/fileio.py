"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every output of jaxgan (checkpoint metadata aside, which Orbax writes) goes through
`atomic_output`: the data is written to a temporary file in the same folder, flushed,
given the mode a plain `open(path, 'w')` would give (the umask applies), then renamed
over `path`. The one file written by appending, a run's `metrics.jsonl`, is read back
with `read_jsonl`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

CACHE_DIR_ENV_VAR = "JAXGAN_CACHE_DIR"


log = logging.getLogger(__name__)


def read_jsonl(path: str | os.PathLike, *, strict: bool = True) -> list[dict[str, Any]]:
    """The JSON objects of a file of one object per line (`metrics.jsonl`), in order.

    Blank lines are skipped, and so is a last line that does not parse: a record being
    appended, or one cut short when the writer was killed. A bad line anywhere else (not
    JSON, or not an object) raises with `strict`; without it the line is skipped with a
    warning, for readers that must go on (a run resuming).

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: with `strict`, a line before the last is not a JSON object.
    """
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            problem = f"{path}: line {number} is not valid JSON: {error}"
        else:
            if isinstance(record, dict):
                records.append(record)
                continue
            problem = f"{path}: line {number} is {type(record).__name__}, not an object"
        if strict:
            raise ValueError(problem)
        log.warning("%s; skipped", problem)
    return records


def default_cache_dir() -> Path:
    """Where jaxgan keeps what it can rebuild: `$JAXGAN_CACHE_DIR`, else `~/.cache/jaxgan`.

    Prepared datasets, converted Inception weights, reference features, the classifier and
    compiled programs (`xla/`) all live here.
    """
    return Path(os.environ.get(CACHE_DIR_ENV_VAR) or Path.home() / ".cache" / "jaxgan")


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file beside `path`; on a clean exit it replaces `path`.

    Missing parent folders are created. If the block raises, `path` is left as it was
    and the temporary file is removed.

    Args:
      path: the file to write.
      mode: 'wb' (bytes) or 'w' (text, UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r} is not supported; allowed: 'wb' or 'w'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below in every case
        mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False,
        **({"encoding": "utf-8"} if mode == "w" else {}),
    )  # fmt: skip
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates 0600 files; outputs follow the umask like any other file.
        os.chmod(handle.name, 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` atomically; returns the path."""
    with atomic_output(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes UTF-8 `text` to `path` atomically; returns the path."""
    with atomic_output(path, "w") as handle:
        handle.write(text)
    return Path(path)


def atomic_savez(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """`np.savez(path, **arrays)`, atomically; returns the path."""
    with atomic_output(path, "wb") as handle:
        np.savez(handle, **arrays)
    return Path(path)
