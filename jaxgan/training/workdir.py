"""A training workdir: checks before anything is written, the lock, the log and metrics.

Nothing here creates or changes a file until the caller has checked the config against
the data and the checkpoint: `check_writable` only looks, `prepare` creates.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from jaxgan.fileio import atomic_write_text, read_jsonl

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def check_writable(workdir: str | os.PathLike) -> Path:
    """The absolute workdir path, if this user could create and write it; changes nothing.

    Raises:
      ValueError: it (or the nearest existing folder above it) is not a writable folder.
    """
    path = Path(workdir).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable by this user"
    if problem:
        raise ValueError(
            f"workdir={str(workdir)!r} is not writable ({problem}); allowed: a folder this "
            "user can create and write"
        )
    return path


def prepare(path: Path) -> Path:
    """Creates the workdir and checks that a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"workdir={str(path)!r} is not writable ({error.strerror or error}); "
            "allowed: a folder this user can create and write"
        ) from error
    return path


def check_exists(workdir: Path, step: int) -> None:
    """Raises FileNotFoundError if the workdir was removed while training."""
    # Writers create missing parents, which would scatter a half workdir.
    if not workdir.is_dir():
        raise FileNotFoundError(
            f"workdir {workdir} disappeared during training (at step {step}); nothing more "
            "was written. Put it back to resume from its last checkpoint, or start again."
        )


@contextlib.contextmanager
def exclusive(workdir: Path) -> Iterator[None]:
    """Holds an advisory lock on workdir, so that two runs never write the same files.

    The lock is `flock` on `workdir/.lock`, which holds the owner's pid. The kernel releases
    it when the process ends, however it ends; a clean exit also removes the file (a killed
    run leaves it behind, unlocked and harmless).
    """
    path = workdir / ".lock"
    with _locked(path, workdir) as lock_file:
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        try:
            yield
        finally:
            # Removed while still locked: a run that opened the file before the removal and
            # locks it after the release sees that the path no longer names it, and retries.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _locked(path: Path, workdir: Path) -> IO[str]:
    """`path` opened and flocked, checked to still be the file at `path` once locked."""
    while True:
        lock_file = path.open("a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            owner = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise ValueError(
                f"workdir={str(workdir)!r} is in use by another training run (pid {owner}); "
                "allowed: a workdir no other run is using (wait for that run to end)"
            ) from None
        if _names(path, lock_file):
            return lock_file
        lock_file.close()  # Its holder removed it after this run opened it: take the new one.


def _names(path: Path, handle: IO[str]) -> bool:
    """Whether `path` is (still) the file open as `handle`."""
    opened = os.fstat(handle.fileno())
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


@contextlib.contextmanager
def logging_to(workdir: Path) -> Iterator[None]:
    """Copies the log (INFO and above) into workdir/train.log while the block runs."""
    handler = logging.FileHandler(workdir / "train.log")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl ([] if there is none yet), skipping a last line cut
    short by a kill; a damaged line elsewhere is skipped with a warning, so that the run
    can still resume (`fileio.read_jsonl`)."""
    return read_jsonl(path, strict=False) if path.exists() else []


def trim_metrics(path: Path, last_step: int) -> list[dict[str, Any]]:
    """Drops the records written after the checkpoint resumed from; returns those kept."""
    kept = [record for record in read_metrics(path) if record.get("step", 0) <= last_step]
    if path.exists():
        atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
    return kept
