"""The workdir lock: one run at a time, and no `.lock` left in a finished workdir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jaxgan.training import workdir


def test_the_lock_names_its_owner_refuses_a_second_run_and_goes_on_release(tmp_path):
    with workdir.exclusive(tmp_path):
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(
            ValueError, match=rf"in use by another training run \(pid {os.getpid()}"
        ):
            with workdir.exclusive(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()  # Issue 20: it stayed in finished workdirs.
    with workdir.exclusive(tmp_path):  # and the next run takes the workdir again
        assert (tmp_path / ".lock").exists()


def test_the_lock_goes_also_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError), workdir.exclusive(tmp_path):
        raise RuntimeError("the run failed")
    assert not (tmp_path / ".lock").exists()


def test_a_run_that_opened_the_removed_lock_file_takes_the_new_one(tmp_path, monkeypatch):
    # The race of removing the file: run B opens .lock, run A removes it and releases its
    # lock, B locks the removed file. Unless B checks, run C then locks a new .lock and
    # both B and C write the workdir.
    path = tmp_path / ".lock"
    with workdir.exclusive(tmp_path):
        stale = path.open("a+")  # B's open, before A's release
    opened = []
    real_open = Path.open

    def open_for_b(self, *args, **kwargs):
        opened.append(self)
        return stale if len(opened) == 1 else real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_for_b)
    with workdir.exclusive(tmp_path):
        assert stale.closed and len(opened) == 2
        with pytest.raises(ValueError, match="in use by another training run"):
            with workdir.exclusive(tmp_path):  # C
                pass
